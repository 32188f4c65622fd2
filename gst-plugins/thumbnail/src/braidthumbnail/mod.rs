//! `braidthumbnail`: keeps one raw video frame every `interval` ms, scales it and
//! encodes it as JPEG (stream previews, PROTOCOL.md §4 `thumbnail`).
//!
//! See the documentation block of the implementation for properties, and
//! `docs/elements.md` for the `braid-thumbnail` message.

use gst::glib;
use gst::prelude::*;

mod imp;

/// Name of the element message carrying a JPEG (`docs/elements.md`).
pub const MESSAGE_NAME: &str = "braid-thumbnail";

glib::wrapper! {
    /// The `braidthumbnail` element: a [`gst_base::BaseSink`] on `video/x-raw` that
    /// posts a `braid-thumbnail` element message with a JPEG every `interval` ms.
    pub struct BraidThumbnail(ObjectSubclass<imp::BraidThumbnail>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

/// Register `braidthumbnail` with `plugin` (rank none: only used when asked for by
/// name).
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "braidthumbnail",
        gst::Rank::NONE,
        BraidThumbnail::static_type(),
    )
}
