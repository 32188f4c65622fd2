//! `device.status.media_inputs` (PROTOCOL.md §4): the generated test pattern, then
//! the V4L2 capture devices of [`super::v4l`].

use braid_protocol::device::{MediaInput, MediaInputStatus, MediaInputType};

/// `media_inputs[].device` of the generated test pattern.
pub const TEST_DEVICE: &str = "test";

/// Modes offered by the test pattern (any `WIDTHxHEIGHT@FPS` works; these are
/// the advertised ones).
pub const TEST_CAPABILITIES: &[&str] = &["1920x1080@30", "1280x720@30", "640x360@30"];

/// The test pattern entry; `busy` when a stream uses it (`busy` holds the inputs
/// live streams use).
pub fn test_pattern(busy: &[String]) -> MediaInput {
    MediaInput {
        device: TEST_DEVICE.into(),
        kind: MediaInputType::Test,
        label: "Test pattern".into(),
        capabilities: TEST_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
        status: if busy.iter().any(|b| b == TEST_DEVICE) {
            MediaInputStatus::Busy
        } else {
            MediaInputStatus::Available
        },
        formats: Vec::new(),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pattern_busy_when_used() {
        assert_eq!(test_pattern(&[]).status, MediaInputStatus::Available);
        assert_eq!(
            test_pattern(&["test".to_owned()]).status,
            MediaInputStatus::Busy
        );
        assert_eq!(test_pattern(&[]).capabilities.len(), 3);
    }
}
