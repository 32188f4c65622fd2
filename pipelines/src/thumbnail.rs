//! The thumbnail branch of a sender pipeline (`stream.start` with `thumbnails: true`,
//! PROTOCOL.md §4 `thumbnail`): the raw video, after scaling and before the encoder,
//! is split with a `tee`; the side branch goes through a leaky one-buffer queue into
//! `braidthumbnail` (plugin `gstbraidthumbnail`, docs/elements.md), which keeps one
//! frame every [`THUMBNAIL_INTERVAL_MS`] and posts it as a 320×180 JPEG
//! (`braid-thumbnail` element message) that the agent forwards.
//!
//! ```text
//! … ! video/x-raw,format=I420,… ! tee name=thumbtee ! queue ! x264enc name=venc …
//! thumbtee. ! queue leaky=downstream max-size-buffers=1 max-size-bytes=0 max-size-time=0
//!   ! braidthumbnail name=thumb interval=10000 width=320 height=180 sync=false async=false
//! ```
//!
//! The side branch can never slow the encoder: its queue drops new frames while the
//! element is busy, and the element neither syncs to the clock nor holds up the
//! pipeline's state changes (`async=false`).

/// Name of the `braidthumbnail` element in a pipeline with thumbnails.
pub const THUMBNAIL_NAME: &str = "thumb";
/// Name of the `tee` feeding the thumbnail branch.
pub const THUMBNAIL_TEE_NAME: &str = "thumbtee";
/// Thumbnail cadence, ms (PROTOCOL.md §4: every 10 s per stream).
pub const THUMBNAIL_INTERVAL_MS: u32 = 10_000;

/// Words inserted after the raw video caps, before `! ENCODER`: the tee and the
/// main branch's queue.
pub(crate) const TEE_WORDS: &[&str] = &["!", "tee", "name=thumbtee", "!", "queue"];

/// Words of the side branch, appended after the main chain.
pub(crate) const BRANCH_WORDS: &[&str] = &[
    "thumbtee.",
    "!",
    "queue",
    "leaky=downstream",
    "max-size-buffers=1",
    "max-size-bytes=0",
    "max-size-time=0",
    "!",
    "braidthumbnail",
    "name=thumb",
    "interval=10000",
    "width=320",
    "height=180",
    "sync=false",
    "async=false",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_name_the_elements_the_agent_looks_for() {
        assert!(TEE_WORDS.contains(&format!("name={THUMBNAIL_TEE_NAME}").as_str()));
        assert_eq!(BRANCH_WORDS[0], format!("{THUMBNAIL_TEE_NAME}."));
        assert!(BRANCH_WORDS.contains(&format!("name={THUMBNAIL_NAME}").as_str()));
        assert!(BRANCH_WORDS.contains(&format!("interval={THUMBNAIL_INTERVAL_MS}").as_str()));
        assert!(BRANCH_WORDS.contains(&"leaky=downstream"));
    }
}
