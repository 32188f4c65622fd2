//! `ristbondsink`: RIST Simple Profile (VSF TR-06-1) sender bonded over several links.
//!
//! See the documentation block of the implementation for properties, and
//! `docs/elements.md` for the `ristbond-stats` message.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `ristbondsink` element: a [`gst_base::BaseSink`] that sends
    /// `video/mpegts, systemstream=true` as RTP (PT 33, 90 kHz; RFC 3550) over several
    /// UDP links and retransmits what the receiver NACKs (RFC 4585 §6.2.1,
    /// TR-06-1 §5.3).
    pub struct RistBondSink(ObjectSubclass<imp::RistBondSink>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

/// Register `ristbondsink` with `plugin` (rank none: only used when asked for by name).
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "ristbondsink",
        gst::Rank::NONE,
        RistBondSink::static_type(),
    )
}
