//! The demo path end to end: `braid-agent devplane` and `braid-agent run` as two
//! processes; the devplane enrolls the agent, streams over two bonded links into
//! its receiver, stops, verifies the TS and prints `demo: OK …`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

#[tokio::test]
async fn devplane_demo_reports_ok() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo/out.ts");
    let pin_file = dir.path().join("pin");
    let mut devplane = Command::new(AGENT)
        .args([
            "devplane",
            "--listen",
            "127.0.0.1:0",
            "--token",
            "enr_demo",
            "--ports",
            "23000-23998",
        ])
        .args([
            "--links",
            "2",
            "--bitrate-kbps",
            "600",
            "--resolution",
            "320x240",
        ])
        .args([
            "--latency-ms",
            "500",
            "--stream-duration-s",
            "4",
            "--exit-after-stream",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--pin-file")
        .arg(&pin_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = devplane.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("devplane prints its address");
    let url = first
        .strip_prefix("devplane: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first}"))
        .to_owned();
    let pin = std::fs::read_to_string(&pin_file).unwrap();
    assert_eq!(pin.trim().len(), 95, "colon hex SHA-256: {pin}");

    let config = write_config(dir.path(), &url, &pinned(pin.trim()), Some("enr_demo"));
    let mut agent = Agent::run(&config, &dir.path().join("state"), &[]);

    let mut transcript = Vec::new();
    let summary = loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with("demo: ") => break line,
            Ok(line) => transcript.push(line),
            Err(_) => panic!(
                "no summary; devplane said:\n{}\nagent:\n{}",
                transcript.join("\n"),
                agent.log()
            ),
        }
    };
    let status = devplane.wait().unwrap();
    let all = transcript.join("\n");
    assert!(
        summary.starts_with("demo: OK frames="),
        "{summary}\n{all}\n{}",
        agent.log()
    );
    assert!(summary.contains(" links=2 cc_errors=0 out="), "{summary}");
    assert!(status.success());
    assert!(all.contains("enrolled"), "{all}");
    assert!(
        transcript
            .iter()
            .filter(|l| l.starts_with("stats "))
            .count()
            >= 2,
        "{all}"
    );
    assert!(
        all.contains("stream.ended") && all.contains("reason=UserStop"),
        "{all}"
    );
    assert!(
        !all.contains("WARNING"),
        "every agent message carries a valid token:\n{all}"
    );

    agent.terminate();
    assert!(agent
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap()
        .success());
}
