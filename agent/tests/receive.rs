//! `braid-agent receive` (the process `braid-receiver@.service` runs) with real
//! parts: the receiver as a child process with a real `NOTIFY_SOCKET`, a
//! sender pipeline in this process (`videotestsrc ! x264enc ! mpegtsmux !
//! ristbondsink` over two bonded loopback links), and the output checked by
//! decoding it: a TS file, and UDP datagrams caught on a socket.

mod common;

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use gst::prelude::*;

use common::{udp_pairs, AGENT};

const FRAMES: u32 = 90;

/// Two free even ports (RTP) whose odd neighbours are free too.
fn two_links() -> Vec<u16> {
    let pairs = udp_pairs(2);
    let ports = pairs
        .iter()
        .map(|(a, _)| a.local_addr().unwrap().port())
        .collect();
    drop(pairs);
    ports
}

struct Receiver {
    child: Child,
    notify: mpsc::Receiver<String>,
    _sock: std::path::PathBuf,
}

impl Receiver {
    fn start(dir: &Path, conf: &str) -> Self {
        let path = dir.join("receiver.conf");
        std::fs::write(&path, conf).unwrap();
        let sock_path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&sock_path).unwrap();
        let (tx, notify) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    return;
                }
            }
        });
        let child = Command::new(AGENT)
            .args(["receive", "--config"])
            .arg(&path)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("BRAID_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self {
            child,
            notify,
            _sock: sock_path,
        }
    }

    /// The next notification containing `needle`.
    fn wait_notify(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.notify.recv_timeout(left) {
                Ok(m) if m.contains(needle) => return Some(m),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Wait until the delivered-packet count in STATUS= stops growing.
    fn wait_quiet(&self) -> u64 {
        let mut last = 0;
        let mut stable_since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(m) = self.notify.recv_timeout(Duration::from_millis(500)) {
                if let Some(n) = m
                    .split("receiving: ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    if n != last {
                        last = n;
                        stable_since = Instant::now();
                    }
                }
            }
            if last > 0 && stable_since.elapsed() > Duration::from_millis(2500) {
                return last;
            }
        }
        panic!("delivered count never settled (last {last})");
    }

    /// SIGTERM; the exit status and stderr.
    fn stop(mut self) -> (bool, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.finish()
    }

    fn finish(&mut self) -> (bool, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "receiver did not exit");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        (status.success(), err)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send `FRAMES` frames of 320x240 H.264 in TS over the bonded links; blocks
/// until the sender's EOS.
fn send(ports: &[u16]) {
    braid_agent::media::init().unwrap();
    let links: Vec<String> = ports
        .iter()
        .map(|p| format!("rist://127.0.0.1:{p}"))
        .collect();
    let desc = format!(
        "videotestsrc num-buffers={FRAMES} ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
         ! x264enc tune=zerolatency bitrate=600 key-int-max=30 ! h264parse ! mpegtsmux alignment=7 \
         ! ristbondsink links=\"{}\" latency=300",
        links.join(",")
    );
    let pipeline = gst::parse::launch(&desc).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("sender reached neither EOS nor an error");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("sender: {} ({:?})", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).unwrap();
}

fn input(ports: &[u16]) -> String {
    format!(
        "[input]\nlinks = [\"rist://@127.0.0.1:{}\", \"rist://@127.0.0.1:{}\"]\nlatency_ms = 300\nstats_interval_ms = 250\n",
        ports[0], ports[1]
    )
}

#[test]
fn file_output_gets_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rx.ts");
    let ports = two_links();
    let rx = Receiver::start(
        dir.path(),
        &format!(
            "{}[output]\ntype = \"file\"\npath = \"{}\"\n",
            input(&ports),
            out.display()
        ),
    );
    let ready = rx
        .wait_notify("READY=1", Duration::from_secs(20))
        .expect("receiver READY=1");
    assert!(
        ready.contains(&format!(
            "STATUS=listening on rist://@127.0.0.1:{}",
            ports[0]
        )),
        "{ready}"
    );
    send(&ports);
    let delivered = rx.wait_quiet();
    let (ok, err) = rx.stop();
    assert!(ok, "receiver exit: {err}");
    let v = braid_agent::media::verify_ts(&out).unwrap();
    assert_eq!(
        v.frames,
        u64::from(FRAMES),
        "{v:?}, {delivered} packets delivered"
    );
    assert_eq!(v.cc_errors, 0, "{v:?}");
}

#[test]
fn udp_output_carries_aligned_ts_datagrams() {
    let dir = tempfile::tempdir().unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let target = sink.local_addr().unwrap();
    let (tx, datagrams) = mpsc::channel::<Vec<u8>>();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_catcher = stop.clone();
    let catcher = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline && !stop_catcher.load(Ordering::SeqCst) {
            match sink.recv(&mut buf) {
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(_) => continue,
            }
        }
    });
    let ports = two_links();
    let rx = Receiver::start(
        dir.path(),
        &format!(
            "{}[output]\ntype = \"udp\"\naddress = \"{target}\"\n",
            input(&ports)
        ),
    );
    rx.wait_notify("READY=1", Duration::from_secs(20))
        .expect("receiver READY=1");
    send(&ports);
    rx.wait_quiet();
    let (ok, err) = rx.stop();
    assert!(ok, "receiver exit: {err}");

    let mut ts = Vec::new();
    let mut count = 0;
    while let Ok(d) = datagrams.recv_timeout(Duration::from_millis(500)) {
        assert!(
            !d.is_empty() && d.len() % 188 == 0,
            "datagram of {} bytes",
            d.len()
        );
        assert!(d.len() <= 7 * 188, "datagram of {} bytes", d.len());
        assert!(d.chunks(188).all(|p| p[0] == 0x47), "TS sync bytes");
        ts.extend_from_slice(&d);
        count += 1;
    }
    stop.store(true, Ordering::SeqCst);
    drop(datagrams);
    let _ = catcher.join();
    assert!(count > 50, "only {count} datagrams");
    let file = dir.path().join("udp.ts");
    std::fs::write(&file, &ts).unwrap();
    let v = braid_agent::media::verify_ts(&file).unwrap();
    assert_eq!(v.frames, u64::from(FRAMES), "{v:?}");
    assert_eq!(v.cc_errors, 0, "{v:?}");
}

#[test]
fn a_port_in_use_or_a_bad_config_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ports = two_links();
    let _busy = UdpSocket::bind(("127.0.0.1", ports[1])).unwrap();
    let mut rx = Receiver::start(
        dir.path(),
        &format!(
            "{}[output]\ntype = \"udp\"\naddress = \"127.0.0.1:9\"\n",
            input(&ports)
        ),
    );
    let (ok, err) = rx.finish();
    assert!(!ok, "a busy port must fail the receiver");
    assert!(err.contains(&ports[1].to_string()), "names the port: {err}");

    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(
        dir.path(),
        &format!(
            "{}[output]\ntype = \"udp\"\nadress = \"127.0.0.1:9\"\n",
            input(&ports)
        ),
    );
    let (ok, err) = rx.finish();
    assert!(!ok);
    assert!(
        err.contains("receiver.conf, line ") && err.contains("fix:"),
        "{err}"
    );
}
