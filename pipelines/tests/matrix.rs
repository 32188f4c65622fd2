//! Every source × encoder × audio combination this machine can run, built from a
//! `stream.start` JSON, run into a TS file and checked with ffprobe and a PMT reader.

mod common;

use std::time::Duration;

use braid_pipelines::StreamPlan;
use common::*;

#[test]
fn one_combo_smoke() {
    init();
    let plan = StreamPlan::from_start(
        &start(payload(
            "m1",
            serde_json::json!({"mode": "test", "resolution": "320x240", "framerate": 25}),
            "h264",
            Some("aac"),
        )),
        None,
    )
    .unwrap();
    println!("{}", plan.launch_line());
    let out = tmp("m1.ts");
    let log = run_supervised(&plan, &out, Duration::from_secs(3), |_, _| {});
    println!("{:?}", log.events);
    println!("{:?}", ffprobe(&out));
    println!("{:?}", pmt_streams(&out));
    println!("{:?}", continuity(&out));
}
