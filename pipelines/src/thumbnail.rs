//! The thumbnail branch of a sender pipeline (`stream.start` with `thumbnails: true`,
//! PROTOCOL.md §4 `thumbnail`): the raw video after the source/slate switch (already
//! scaled to the output size), before the encoder, is split with the plan's
//! `tee name=vtee`; the side branch goes through a leaky one-buffer queue into
//! `braidthumbnail` (plugin `gstbraidthumbnail`, docs/elements.md), which keeps one
//! frame every [`THUMBNAIL_INTERVAL_MS`] and posts it as a 320×180 JPEG
//! (`braid-thumbnail` element message) that the agent forwards.
//!
//! ```text
//! fallbackswitch name=vswitch … ! videorate name=vswitch_rate ! tee name=vtee ! queue name=venc_q ! ENCODER …
//! vtee. ! queue leaky=downstream max-size-buffers=1
//!   ! braidthumbnail name=thumb interval=10000 width=320 height=180 sync=false async=false
//! ```
//!
//! The side branch can never slow the encoder: its queue drops new frames while the
//! element is busy, and the element neither syncs to the clock nor holds up the
//! pipeline's state changes (`async=false`).

/// Name of the `braidthumbnail` element in a pipeline with thumbnails.
pub const THUMBNAIL_NAME: &str = "thumb";
/// Name of the `tee` feeding the thumbnail branch (the plan's raw-video tee).
pub const THUMBNAIL_TEE_NAME: &str = "vtee";
/// Thumbnail cadence, ms (PROTOCOL.md §4: every 10 s per stream).
pub const THUMBNAIL_INTERVAL_MS: u32 = 10_000;

/// Words of the side branch after `vtee. ! queue leaky=downstream max-size-buffers=1 !`
/// (the plan's raw-video branch hook).
pub(crate) fn branch_words() -> Vec<String> {
    [
        "braidthumbnail",
        "name=thumb",
        "interval=10000",
        "width=320",
        "height=180",
        "sync=false",
        "async=false",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_name_the_elements_the_agent_looks_for() {
        let w = branch_words();
        assert_eq!(w[0], "braidthumbnail");
        assert!(w.contains(&format!("name={THUMBNAIL_NAME}")));
        assert!(w.contains(&format!("interval={THUMBNAIL_INTERVAL_MS}")));
        assert!(w.contains(&"async=false".to_owned()));
    }
}
