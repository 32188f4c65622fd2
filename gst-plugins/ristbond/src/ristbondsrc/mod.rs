//! `ristbondsrc`: RIST Simple Profile (VSF TR-06-1) receiver merging several links.
//!
//! See the documentation block of the implementation for properties, and
//! `docs/elements.md` for the `ristbond-stats` message.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `ristbondsrc` element: a live [`gst_base::PushSrc`] that receives RTP
    /// (PT 33; RFC 3550) on several UDP links, de-duplicates and reorders by sequence
    /// number, NACKs gaps (RFC 4585 §6.2.1, TR-06-1 §5.3) and outputs
    /// `video/mpegts, systemstream=true, packetsize=188`.
    pub struct RistBondSrc(ObjectSubclass<imp::RistBondSrc>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

/// Register `ristbondsrc` with `plugin` (rank none: only used when asked for by name).
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "ristbondsrc",
        gst::Rank::NONE,
        RistBondSrc::static_type(),
    )
}
