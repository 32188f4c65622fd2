//! Helpers shared by the integration tests: plugin registration, free ports, TS
//! buffers, pipelines, a lossy UDP relay.

#![allow(dead_code)]

pub mod netns;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::prelude::*;

/// Initialise GStreamer and register the plugin statically (once per test binary).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("gst::init");
        gstristbond::plugin_register_static().expect("register ristbond");
    });
}

/// An even port P >= `base` such that P and P+1 are free on 127.0.0.1 (and 0.0.0.0) right
/// now. Each test passes its own `base` so parallel tests do not race for the same ports.
pub fn free_port_pair(base: u16) -> u16 {
    let mut port = base & !1;
    while port < 65_000 {
        let a = UdpSocket::bind(("0.0.0.0", port));
        let b = UdpSocket::bind(("0.0.0.0", port + 1));
        if a.is_ok() && b.is_ok() {
            return port;
        }
        port += 2;
    }
    panic!("no free port pair above {base}");
}

/// `n` TS packets (188 bytes, sync byte 0x47, PID 0x100, running continuity counter)
/// whose payload bytes are `fill`.
pub fn ts_packets(n: usize, fill: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 188);
    for i in 0..n {
        out.extend_from_slice(&[0x47, 0x01, 0x00, 0x10 | (i as u8 & 0x0f)]);
        out.extend(std::iter::repeat_n(fill, 184));
    }
    out
}

/// Encoder chain producing a deterministic TS (x264 with one thread) of `frames` frames.
pub fn encode_chain(frames: u32) -> String {
    format!(
        "videotestsrc num-buffers={frames} \
         ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 \
         ! x264enc tune=zerolatency bitrate=2000 key-int-max=30 threads=1 \
         ! h264parse ! mpegtsmux alignment=7"
    )
}

/// Run `pipeline` until EOS or error, at most `timeout`. Returns the element messages
/// seen on the bus, panics on error or timeout.
pub fn run_to_eos(pipeline: &gst::Pipeline, timeout: Duration) -> Vec<gst::Structure> {
    let bus = pipeline.bus().expect("pipeline bus");
    pipeline
        .set_state(gst::State::Playing)
        .expect("pipeline to PLAYING");
    let deadline = Instant::now() + timeout;
    let mut elements = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "pipeline did not reach EOS within {timeout:?}"
        );
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(left.as_millis() as u64))
        else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(err) => {
                let _ = pipeline.set_state(gst::State::Null);
                panic!(
                    "pipeline error from {:?}: {} ({:?})",
                    err.src().map(|s| s.path_string()),
                    err.error(),
                    err.debug()
                );
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure() {
                    elements.push(s.to_owned());
                }
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).expect("to NULL");
    elements
}

/// Set `pipeline` to PAUSED and return the first error message's text (start() of the
/// element under test fails), or `None` if it started.
pub fn start_error(pipeline: &gst::Pipeline) -> Option<String> {
    let result = pipeline.set_state(gst::State::Paused);
    let bus = pipeline.bus().expect("bus");
    let mut text = None;
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(err) = msg.view() {
            text = Some(format!("{} {:?}", err.error(), err.debug()));
            break;
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    if result.is_ok() && text.is_none() {
        None
    } else {
        Some(text.unwrap_or_else(|| "state change failed without error message".into()))
    }
}

/// Tiny deterministic PRNG (xorshift64*) for seeded loss.
pub struct XorShift(u64);

impl XorShift {
    /// Seeded generator; `seed` must not be 0.
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    /// Next value, uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A bidirectional UDP relay for one flow (RTP or RTCP of one link): datagrams from the
/// client to `listen` go to `target`; datagrams `target` sends back go to the last
/// client address. Client → target datagrams are dropped with probability `loss` while
/// `armed` is set.
pub struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Datagrams forwarded client → target.
    pub forwarded: Arc<AtomicU64>,
    /// Datagrams dropped client → target.
    pub dropped: Arc<AtomicU64>,
}

impl Relay {
    /// Start relaying `listen` ↔ `target`.
    pub fn start(
        listen: SocketAddr,
        target: SocketAddr,
        loss: f64,
        seed: u64,
        armed: Arc<AtomicBool>,
    ) -> Relay {
        let front = UdpSocket::bind(listen).expect("relay bind");
        let back = UdpSocket::bind("127.0.0.1:0").expect("relay bind back");
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        {
            let (front, back) = (front.try_clone().unwrap(), back.try_clone().unwrap());
            let (client, stop) = (client.clone(), stop.clone());
            let (forwarded, dropped) = (forwarded.clone(), dropped.clone());
            threads.push(std::thread::spawn(move || {
                let mut rng = XorShift::new(seed);
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    *client.lock().unwrap() = Some(from);
                    if armed.load(Ordering::Relaxed) && rng.next_f64() < loss {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    forwarded.fetch_add(1, Ordering::Relaxed);
                    let _ = back.send_to(&buf[..n], target);
                }
            }));
        }
        {
            let (client, stop) = (client.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, _)) = back.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some(to) = *client.lock().unwrap() {
                        let _ = front.send_to(&buf[..n], to);
                    }
                }
            }));
        }
        Relay {
            stop,
            threads,
            forwarded,
            dropped,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Field `name` (guint64) of a `ristbond-stats` structure.
pub fn u64_field(s: &gst::StructureRef, name: &str) -> u64 {
    s.get::<u64>(name)
        .unwrap_or_else(|e| panic!("field {name} of {s}: {e}"))
}

/// The `links` array of a `ristbond-stats` structure.
pub fn links_of(s: &gst::StructureRef) -> Vec<gst::Structure> {
    s.get::<gst::Array>("links")
        .expect("links array")
        .iter()
        .map(|v| v.get::<gst::Structure>().expect("ristbond-link structure"))
        .collect()
}

/// The last `ristbond-stats` structure among `messages`.
pub fn last_stats(messages: &[gst::Structure]) -> Option<gst::Structure> {
    messages
        .iter()
        .rev()
        .find(|s| s.name() == "ristbond-stats")
        .cloned()
}

/// Collect every byte the appsink named `out` in `pipeline` receives, from now on.
pub fn collect_appsink(pipeline: &gst::Pipeline) -> Arc<Mutex<Vec<u8>>> {
    let appsink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let data = Arc::new(Mutex::new(Vec::new()));
    let data2 = data.clone();
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                data2.lock().unwrap().extend_from_slice(&map);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    data
}
