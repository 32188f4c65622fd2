//! `thumbnail` (PROTOCOL.md §4; seed 000 "320×180 JPEG preview"): a still of a live
//! stream, every 10 s per stream started with `thumbnails: true`.

use serde::{Deserialize, Serialize};

use crate::envelope::Message;

/// Width of a thumbnail, pixels (PROTOCOL.md §4).
pub const WIDTH: u32 = 320;
/// Height of a thumbnail, pixels (PROTOCOL.md §4).
pub const HEIGHT: u32 = 180;
/// The only `format` (PROTOCOL.md §4).
pub const FORMAT_JPEG: &str = "jpeg";

/// Payload of `thumbnail` (PROTOCOL.md §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnail {
    /// The stream it shows.
    pub stream_id: String,
    /// Width, pixels (320).
    pub width: u32,
    /// Height, pixels (180).
    pub height: u32,
    /// Image format: `"jpeg"`.
    pub format: String,
    /// The JPEG file (JFIF, baseline), standard base64 with padding (RFC 4648 §4).
    pub data: String,
}

impl Message for Thumbnail {
    const TYPE: &'static str = "thumbnail";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::assert_golden;

    #[test]
    fn golden_thumbnail() {
        assert_golden(
            r#"{"stream_id":"str_xyz789","width":320,"height":180,"format":"jpeg",
                "data":"/9j/4AAQSkZJRgABAQAAAQABAAD/2Q=="}"#,
            &Thumbnail {
                stream_id: "str_xyz789".into(),
                width: WIDTH,
                height: HEIGHT,
                format: FORMAT_JPEG.into(),
                data: "/9j/4AAQSkZJRgABAQAAAQABAAD/2Q==".into(),
            },
        );
        assert_eq!(Thumbnail::TYPE, "thumbnail");
    }
}
