//! Real sockets: the `braid-linkemu` binary relays a link between a UDP "sender" and
//! "receiver" on loopback with its capacity, delay, shared RTP/RTCP queue, reverse
//! path, down/up schedule and exit report.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An even port P with P and P+1 free on 127.0.0.1 right now.
fn free_pair(base: u16) -> u16 {
    let mut p = base & !1;
    loop {
        if UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
        p += 2;
    }
}

fn bind(port: u16) -> UdpSocket {
    let s = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

#[test]
fn relays_both_ways_with_capacity_delay_and_schedule() {
    let p = free_pair(26_100);
    let r = free_pair(p + 2);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("links.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [[link]]
            name = "modem"
            listen = "127.0.0.1:{p}"
            forward = "127.0.0.1:{r}"
            rate_bps = 2_000_000
            delay_ms = 20
            queue_ms = 300
            reverse = {{ delay_ms = 30 }}
            events = [ {{ at_ms = 2500, action = "down" }}, {{ at_ms = 3000, action = "up" }} ]
            "#
        ),
    )
    .unwrap();
    let report_path = dir.path().join("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_braid-linkemu"))
        .arg("--config")
        .arg(&config)
        .arg("--stdin-eof")
        .arg("--report")
        .arg(&report_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line");
    assert_eq!(ready["event"], "ready");
    let epoch = Instant::now();
    let back_rtcp: SocketAddr = ready["links"][0]["back_rtcp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let tx_rtp = bind(0);
    let tx_rtcp = bind(0);
    let rx_rtp = bind(r);
    let rx_rtcp = bind(r + 1);
    let to_rtp: SocketAddr = format!("127.0.0.1:{p}").parse().unwrap();
    let to_rtcp: SocketAddr = format!("127.0.0.1:{}", p + 1).parse().unwrap();

    // 1. One probe: delay ≈ 20 ms.
    let t0 = Instant::now();
    tx_rtp.send_to(&[1u8; 100], to_rtp).unwrap();
    let mut buf = [0u8; 2048];
    let n = loop {
        match rx_rtp.recv_from(&mut buf) {
            Ok((n, _)) => break n,
            Err(_) => assert!(t0.elapsed() < Duration::from_secs(2), "probe lost"),
        }
    };
    let one_way = t0.elapsed();
    assert_eq!(n, 100);
    assert!(one_way >= Duration::from_millis(19), "one-way {one_way:?}");
    assert!(one_way < Duration::from_millis(60), "one-way {one_way:?}");

    // 2. Reverse: the receiver answers on RTCP; it reaches the sender's RTCP socket
    //    from P+1 after ≈ 30 ms (the sender must have spoken on RTCP first).
    tx_rtcp.send_to(b"sr", to_rtcp).unwrap();
    let (_, from) = loop {
        match rx_rtcp.recv_from(&mut buf) {
            Ok(x) => break x,
            Err(_) => continue,
        }
    };
    assert_eq!(from, back_rtcp);
    let t1 = Instant::now();
    rx_rtcp.send_to(b"rr", from).unwrap();
    let (n, from) = loop {
        match tx_rtcp.recv_from(&mut buf) {
            Ok(x) => break x,
            Err(_) => assert!(t1.elapsed() < Duration::from_secs(2), "no reverse RTCP"),
        }
    };
    assert_eq!((&buf[..n], from), (&b"rr"[..], to_rtcp));
    assert!(
        t1.elapsed() >= Duration::from_millis(29),
        "reverse {:?}",
        t1.elapsed()
    );

    // 3. Capacity: offer 4 Mbit/s of 1328-byte datagrams (1356 on the wire) for 1 s;
    //    about 2 Mbit/s gets through, RTCP sent behind them waits in the same queue.
    let start = Instant::now();
    let rx = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while start.elapsed() < Duration::from_millis(1700) {
            if let Ok((n, _)) = rx_rtp.recv_from(&mut buf) {
                got.push((start.elapsed(), n));
            }
        }
        (got, rx_rtp)
    });
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        // 4 Mbit/s = 376 datagrams/s: 4 every ~10.6 ms.
        for _ in 0..4 {
            tx_rtp.send_to(&[7u8; 1328], to_rtp).unwrap();
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(10_600));
    }
    let rtcp_sent = Instant::now();
    tx_rtcp.send_to(b"late", to_rtcp).unwrap();
    let rtcp_delay = loop {
        match rx_rtcp.recv_from(&mut buf) {
            Ok((n, _)) if &buf[..n] == b"late" => break rtcp_sent.elapsed(),
            _ => assert!(rtcp_sent.elapsed() < Duration::from_secs(2), "RTCP lost"),
        }
    };
    let (got, rx_rtp) = rx.join().unwrap();
    // Between 0.3 s and 1.0 s the queue is saturated: 2 Mbit/s of 1356-byte datagrams.
    let in_window = got
        .iter()
        .filter(|(t, _)| *t >= Duration::from_millis(300) && *t < Duration::from_millis(1000))
        .count() as f64;
    let rate = in_window * 1356.0 * 8.0 / 0.7;
    assert!(
        (rate - 2e6).abs() < 0.15e6,
        "saturated rate {rate:.0} bit/s"
    );
    // The queue (300 ms) was full when RTCP arrived: it waited behind RTP.
    assert!(
        rtcp_delay >= Duration::from_millis(200),
        "RTCP did not share the queue: {rtcp_delay:?}"
    );
    assert!((got.len() as u64) < sent, "nothing dropped at 2x overload");

    // 4. Schedule: down from 2.5 s to 3 s after the epoch.
    while epoch.elapsed() < Duration::from_millis(2600) {
        std::thread::sleep(Duration::from_millis(10));
    }
    tx_rtp.send_to(&[9u8; 200], to_rtp).unwrap();
    assert!(rx_rtp.recv_from(&mut buf).is_err() && rx_rtp.recv_from(&mut buf).is_err());
    while epoch.elapsed() < Duration::from_millis(3200) {
        std::thread::sleep(Duration::from_millis(10));
    }
    tx_rtp.send_to(&[9u8; 200], to_rtp).unwrap();
    let t2 = Instant::now();
    loop {
        match rx_rtp.recv_from(&mut buf) {
            Ok((200, _)) => break,
            _ => assert!(t2.elapsed() < Duration::from_secs(1), "nothing after up"),
        }
    }

    // 5. Report at end of stdin.
    drop(child.stdin.take());
    let mut rest = String::new();
    for l in stdout.lines() {
        rest = l.unwrap();
    }
    assert!(child.wait().unwrap().success());
    let report: serde_json::Value = serde_json::from_str(&rest).unwrap();
    assert_eq!(report["event"], "report");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(file, report);
    let fwd = &report["links"][0]["forward"];
    let count = |k: &str| fwd[k].as_u64().unwrap();
    // The queue was empty at the cut, so the one datagram sent while down is the only
    // one lost to it, and it was never queued.
    assert_eq!(count("dropped_down"), 1, "{fwd}");
    assert_eq!(
        count("received"),
        count("enqueued") + count("dropped_queue") + count("dropped_down"),
        "{fwd}"
    );
    assert!(count("dropped_queue") > 0, "{fwd}");
    assert_eq!(
        count("enqueued"),
        count("delivered") + count("dropped_loss"),
        "everything queued left by the end: {fwd}"
    );
    assert_eq!(report["links"][0]["reverse"]["delivered"].as_u64(), Some(1));
    assert!(report["cpu_user_ms"].as_f64().is_some());
}
