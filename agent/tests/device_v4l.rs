//! V4L2 capture listing (PROTOCOL.md §4 `media_inputs`) against recorded ioctl
//! results (`tests/fixtures/v4l2/*.json`, the [`Recording`] format that
//! `Recording::record` writes from a live node), and the empty case: no devices
//! gives an empty list, not an error.

use std::path::{Path, PathBuf};

use braid_agent::device::modem::ModemSnapshot;
use braid_agent::device::v4l::{describe, CaptureLister, Recording};
use braid_agent::device::{StatusCollector, SysPaths};
use braid_protocol::device::StreamState;

fn fixture(name: &str) -> Recording {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v4l2")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn uvc_hdmi_grabber_modes_per_format() {
    let dev = describe(&fixture("uvc-hdmi-grabber-video0.json"))
        .unwrap()
        .expect("a capture node");
    assert_eq!(dev.label, "USB Video");
    assert_eq!(dev.driver, "uvcvideo");
    assert_eq!(dev.note, None);
    let caps = dev.capabilities();
    assert_eq!(
        &caps[..7],
        [
            "1920x1080@30",
            "1920x1080@25",
            "1920x1080@20",
            "1920x1080@10",
            "1920x1080@5",
            "1600x1200@30",
            "1600x1200@25"
        ]
    );
    assert!(caps.contains(&"1280x720@60".to_owned()));
    assert!(caps.contains(&"640x480@60".to_owned()));
    // Each mode once, although MJPG and YUYV both offer some of them.
    let mut dedup = caps.clone();
    dedup.dedup();
    assert_eq!(dedup, caps);
    assert_eq!(dev.formats.len(), 2);
    assert_eq!(dev.formats[0].fourcc, "MJPG");
    assert_eq!(dev.formats[0].description, "Motion-JPEG");
    assert_eq!(dev.formats[1].fourcc, "YUYV");
    assert_eq!(
        dev.formats[1].capabilities,
        ["1920x1080@5", "1280x720@10", "640x480@60", "640x480@30"]
    );
    // The structured modes a pipeline can negotiate from.
    let m = dev
        .modes
        .iter()
        .find(|m| m.fourcc == "YUYV" && m.width == 1280)
        .unwrap();
    assert_eq!(
        (m.height, m.rate.unwrap().num, m.rate.unwrap().den),
        (720, 10, 1)
    );
    assert_eq!(m.to_string(), "1280x720@10");
}

#[test]
fn metadata_and_m2m_nodes_are_not_capture_devices() {
    assert!(describe(&fixture("uvc-hdmi-grabber-video1-metadata.json"))
        .unwrap()
        .is_none());
    assert!(describe(&fixture("rkvdec-m2m.json")).unwrap().is_none());
}

#[test]
fn fractional_rates_are_written_as_the_field_does() {
    let dev = describe(&fixture("camlink-4k.json")).unwrap().unwrap();
    assert_eq!(dev.label, "Cam Link 4K");
    assert_eq!(
        dev.capabilities(),
        [
            "3840x2160@29.97",
            "1920x1080@59.94",
            "1920x1080@29.97",
            "1280x720@59.94"
        ]
    );
    let m = &dev.modes[0];
    assert_eq!(
        (m.fourcc.as_str(), m.rate.unwrap().num, m.rate.unwrap().den),
        ("NV12", 30000, 1001)
    );
}

#[test]
fn stepwise_sizes_and_continuous_intervals_give_common_modes() {
    let dev = describe(&fixture("vivid-stepwise.json")).unwrap().unwrap();
    let caps = dev.capabilities();
    assert_eq!(
        &caps[..4],
        [
            "1920x1080@60",
            "1920x1080@59.94",
            "1920x1080@50",
            "1920x1080@30"
        ]
    );
    assert!(caps.contains(&"1280x720@25".to_owned()));
    assert!(caps.contains(&"320x240@5".to_owned()));
    assert!(!caps.iter().any(|c| c.starts_with("3840x2160")));
    // Not every 2-pixel step: a few dozen modes, not millions.
    assert!(caps.len() < 150, "{}", caps.len());
}

#[test]
fn multi_planar_only_devices_are_listed_with_a_note() {
    let dev = describe(&fixture("hdmirx-mplane.json")).unwrap().unwrap();
    assert_eq!(dev.label, "rk_hdmirx");
    assert!(dev.capabilities().is_empty());
    assert!(dev.note.as_deref().unwrap().contains("multi-planar"));
}

#[test]
fn without_size_enumeration_the_current_format_is_the_mode() {
    let dev = describe(&fixture("loopback-no-enum.json"))
        .unwrap()
        .unwrap();
    assert_eq!(dev.label, "Dummy video device (0x0000)");
    assert_eq!(dev.capabilities(), ["1280x720"]);
}

#[test]
fn a_recording_of_a_recording_is_the_same() {
    for name in [
        "uvc-hdmi-grabber-video0.json",
        "camlink-4k.json",
        "vivid-stepwise.json",
        "loopback-no-enum.json",
    ] {
        let original = fixture(name);
        let mut again = Recording::record(&original.device, &original).unwrap();
        again.note = original.note.clone();
        assert_eq!(again, original, "{name}");
    }
}

#[test]
fn no_devices_yields_only_the_test_pattern() {
    let empty = tempfile::tempdir().unwrap();
    // Nothing under /sys/class/video4linux, or no such directory at all.
    for sys in [empty.path().to_owned(), empty.path().join("missing")] {
        let mut lister = CaptureLister::default();
        assert!(lister
            .list(&sys, Path::new("/dev"), Path::new("/proc"), &[])
            .is_empty());
        let paths = SysPaths {
            sys_class_v4l: sys.clone(),
            ..SysPaths::default()
        };
        let (_tx, rx) = tokio::sync::watch::channel(ModemSnapshot::default());
        let mut collector = StatusCollector::new(&empty.path().join("media"), paths, rx);
        let status = collector.collect(StreamState::Idle, &[]);
        assert_eq!(status.media_inputs.len(), 1);
        assert_eq!(status.media_inputs[0].device, "test");
        assert!(status.saved_media.is_empty());
        assert_eq!(status.modem_manager, None);
    }
}
