// SPDX-License-Identifier: MPL-2.0

/**
 * element-braidthumbnail:
 *
 * A sink on raw video that keeps one frame every `interval` ms of running time and,
 * for kept frames only, scales it to `width`×`height` and encodes it as a baseline
 * JPEG (4:2:0, `quality`). Frames that are not kept cost a timestamp comparison:
 * they are neither mapped nor converted.
 *
 * Scaling keeps the picture's display aspect ratio (pixel aspect ratio included):
 * with `add-borders=true` (default) a 4:3 picture in 320×180 is pillarboxed with
 * black bars; with `add-borders=false` it is stretched to fill the frame.
 *
 * Each JPEG is posted on the bus as an element message `braid-thumbnail`:
 *
 * | field | type | meaning |
 * |---|---|---|
 * | `jpeg` | GstBuffer | the JPEG file (JFIF) |
 * | `width`, `height` | guint | its size, pixels |
 * | `pts` | guint64, ns | PTS of the source frame (`GST_CLOCK_TIME_NONE` if none) |
 * | `running-time` | guint64, ns | running time of the source frame (`GST_CLOCK_TIME_NONE` if none) |
 * | `encode-us` | guint64, µs | time spent scaling + encoding this frame |
 *
 * and, when `location` is set, written to that file (atomically: a temporary file
 * renamed over it, so a viewer never sees half a picture).
 *
 * The first frame is always kept; then a frame is kept when its running time is at
 * least `interval` ms after the last kept one (frames without timestamps use the
 * monotonic clock instead). `interval=0` keeps every frame.
 *
 * ## Example pipelines
 * ```bash
 * # One preview per second of a test pattern, written to /tmp/thumb.jpg:
 * gst-launch-1.0 videotestsrc num-buffers=300 ! video/x-raw,width=1280,height=720,framerate=30/1 \
 *   ! braidthumbnail interval=1000 location=/tmp/thumb.jpg
 * # As a branch of a sender (what the agent builds with thumbnails: true):
 * … ! tee name=t ! queue ! x264enc … \
 *   t. ! queue leaky=downstream max-size-buffers=1 ! braidthumbnail sync=false async=false
 * ```
 *
 * Since: plugin 0.1
 */
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;

use super::MESSAGE_NAME;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "braidthumbnail",
        gst::DebugColorFlags::empty(),
        Some("Braid thumbnail sink"),
    )
});

const DEFAULT_INTERVAL_MS: u32 = 10_000;
const DEFAULT_WIDTH: u32 = 320;
const DEFAULT_HEIGHT: u32 = 180;
const DEFAULT_QUALITY: u32 = 75;
const DEFAULT_ADD_BORDERS: bool = true;
const DEFAULT_POST_MESSAGES: bool = true;

/// Raw formats accepted (all handled by `GstVideoConverter`).
const FORMATS: &[gst_video::VideoFormat] = &[
    gst_video::VideoFormat::I420,
    gst_video::VideoFormat::Yv12,
    gst_video::VideoFormat::Nv12,
    gst_video::VideoFormat::Nv21,
    gst_video::VideoFormat::Yuy2,
    gst_video::VideoFormat::Uyvy,
    gst_video::VideoFormat::Y42b,
    gst_video::VideoFormat::Y444,
    gst_video::VideoFormat::I42010le,
    gst_video::VideoFormat::P01010le,
    gst_video::VideoFormat::Rgb,
    gst_video::VideoFormat::Bgr,
    gst_video::VideoFormat::Rgbx,
    gst_video::VideoFormat::Bgrx,
    gst_video::VideoFormat::Xrgb,
    gst_video::VideoFormat::Xbgr,
    gst_video::VideoFormat::Rgba,
    gst_video::VideoFormat::Bgra,
    gst_video::VideoFormat::Argb,
    gst_video::VideoFormat::Abgr,
    gst_video::VideoFormat::Gray8,
];

#[derive(Debug, Clone)]
struct Settings {
    interval_ms: u32,
    width: u32,
    height: u32,
    quality: u32,
    add_borders: bool,
    location: Option<String>,
    post_messages: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            interval_ms: DEFAULT_INTERVAL_MS,
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            quality: DEFAULT_QUALITY,
            add_borders: DEFAULT_ADD_BORDERS,
            location: None,
            post_messages: DEFAULT_POST_MESSAGES,
        }
    }
}

/// Where the last kept frame was, to decide on the next one.
#[derive(Debug, Clone, Copy)]
enum LastKept {
    /// By running time, ns.
    Running(gst::ClockTime),
    /// By the monotonic clock (frames without timestamps).
    Wall(Instant),
}

/// The scaler for the current input caps and output settings.
struct Scaler {
    converter: gst_video::VideoConverter,
    out_info: gst_video::VideoInfo,
}

#[derive(Default)]
struct State {
    in_info: Option<gst_video::VideoInfo>,
    /// Built on the first kept frame after a caps or settings change.
    scaler: Option<Scaler>,
    last_kept: Option<LastKept>,
    frames: u64,
    kept: u64,
}

/// The element.
#[derive(Default)]
pub struct BraidThumbnail {
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The rectangle (x, y, w, h) a picture of display aspect ratio `dar` (w/h) takes in
/// an `ow`×`oh` frame when letterboxed: centred, even sizes where possible.
fn letterbox(dar: f64, ow: u32, oh: u32) -> (u32, u32, u32, u32) {
    let frame = f64::from(ow) / f64::from(oh);
    if !dar.is_finite() || dar <= 0.0 || (dar - frame).abs() < 0.01 {
        return (0, 0, ow, oh);
    }
    if dar > frame {
        let h = ((f64::from(ow) / dar).round() as u32).clamp(2, oh) & !1;
        (0, (oh - h) / 2, ow, h.max(1))
    } else {
        let w = ((f64::from(oh) * dar).round() as u32).clamp(2, ow) & !1;
        ((ow - w) / 2, 0, w.max(1), oh)
    }
}

impl BraidThumbnail {
    /// Whether the frame at `running_time` is kept (and remember it if so).
    fn keep(&self, state: &mut State, interval_ms: u32, running: Option<gst::ClockTime>) -> bool {
        let interval = gst::ClockTime::from_mseconds(u64::from(interval_ms));
        let keep = match (state.last_kept, running) {
            (None, _) => true,
            (Some(LastKept::Running(last)), Some(now)) => {
                // A running time going back (new segment, flush) restarts the cadence.
                now < last || now >= last + interval
            }
            (Some(LastKept::Wall(last)), None) => {
                last.elapsed().as_millis() >= u128::from(interval_ms)
            }
            // The kind of timestamps changed: keep this one and go on with it.
            _ => true,
        };
        if keep {
            state.last_kept = Some(match running {
                Some(rt) => LastKept::Running(rt),
                None => LastKept::Wall(Instant::now()),
            });
        }
        keep
    }

    fn make_scaler(
        &self,
        in_info: &gst_video::VideoInfo,
        settings: &Settings,
    ) -> Result<Scaler, glib::BoolError> {
        let out_info = gst_video::VideoInfo::builder(
            gst_video::VideoFormat::Rgb,
            settings.width,
            settings.height,
        )
        .fps(in_info.fps())
        .par(gst::Fraction::new(1, 1))
        .interlace_mode(in_info.interlace_mode())
        .build()?;
        let mut config = gst_video::VideoConverterConfig::new();
        if settings.add_borders {
            let par = in_info.par();
            let dar = f64::from(in_info.width()) * f64::from(par.numer())
                / (f64::from(in_info.height()) * f64::from(par.denom()).max(1.0));
            let (x, y, w, h) = letterbox(dar, settings.width, settings.height);
            config.set_dest_x(x as i32);
            config.set_dest_y(y as i32);
            config.set_dest_width(Some(w as i32));
            config.set_dest_height(Some(h as i32));
            config.set_fill_border(true);
            config.set_border_argb(0xff00_0000);
        }
        // One thread: the preview must not compete with the encoder for cores.
        config.set_threads(1);
        let converter = gst_video::VideoConverter::new(in_info, &out_info, Some(config))?;
        Ok(Scaler {
            converter,
            out_info,
        })
    }

    /// Scale and encode one frame; returns the JPEG and its size.
    fn thumbnail(
        &self,
        scaler: &Scaler,
        in_info: &gst_video::VideoInfo,
        buffer: &gst::BufferRef,
        quality: u32,
    ) -> Result<Vec<u8>, String> {
        let in_frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, in_info)
            .map_err(|e| format!("cannot map the input frame: {e}"))?;
        let mut out = gst::Buffer::with_size(scaler.out_info.size())
            .map_err(|e| format!("cannot allocate the output frame: {e}"))?;
        let (w, h) = (scaler.out_info.width(), scaler.out_info.height());
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        {
            let out_ref = out.get_mut().ok_or("output buffer not writable")?;
            let mut out_frame =
                gst_video::VideoFrameRef::from_buffer_ref_writable(out_ref, &scaler.out_info)
                    .map_err(|e| format!("cannot map the output frame: {e}"))?;
            scaler.converter.frame_ref(&in_frame, &mut out_frame);
            let stride = out_frame.plane_stride()[0] as usize;
            let data = out_frame
                .plane_data(0)
                .map_err(|e| format!("output plane: {e}"))?;
            for row in 0..h as usize {
                let start = row * stride;
                rgb.extend_from_slice(&data[start..start + w as usize * 3]);
            }
        }
        let mut jpeg = Vec::with_capacity(32 * 1024);
        let encoder = jpeg_encoder::Encoder::new(&mut jpeg, quality.clamp(1, 100) as u8);
        encoder
            .encode(&rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| format!("JPEG encoding failed: {e}"))?;
        Ok(jpeg)
    }

    /// Write `jpeg` to `location` through a temporary file renamed over it.
    fn write_file(&self, location: &str, jpeg: &[u8]) -> std::io::Result<()> {
        let target = PathBuf::from(location);
        let mut tmp = target.clone().into_os_string();
        tmp.push(".tmp");
        std::fs::write(&tmp, jpeg)?;
        std::fs::rename(&tmp, &target)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for BraidThumbnail {
    const NAME: &'static str = "GstBraidThumbnail";
    type Type = super::BraidThumbnail;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for BraidThumbnail {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("interval")
                    .nick("Interval")
                    .blurb("Keep one frame every this many ms of running time (0 = every frame)")
                    .maximum(3_600_000)
                    .default_value(DEFAULT_INTERVAL_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("width")
                    .nick("Width")
                    .blurb("Width of the JPEG, pixels")
                    .minimum(16)
                    .maximum(4096)
                    .default_value(DEFAULT_WIDTH)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("height")
                    .nick("Height")
                    .blurb("Height of the JPEG, pixels")
                    .minimum(16)
                    .maximum(4096)
                    .default_value(DEFAULT_HEIGHT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("quality")
                    .nick("Quality")
                    .blurb("JPEG quality, 1 (smallest) to 100 (best)")
                    .minimum(1)
                    .maximum(100)
                    .default_value(DEFAULT_QUALITY)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("add-borders")
                    .nick("Add borders")
                    .blurb("Keep the display aspect ratio with black bars (false: stretch)")
                    .default_value(DEFAULT_ADD_BORDERS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("File the last JPEG is written to (replaced atomically); unset: none")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("post-messages")
                    .nick("Post messages")
                    .blurb("Post a braid-thumbnail element message with each JPEG")
                    .default_value(DEFAULT_POST_MESSAGES)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "interval" => s.interval_ms = value.get().expect("type checked upstream"),
            "width" => s.width = value.get().expect("type checked upstream"),
            "height" => s.height = value.get().expect("type checked upstream"),
            "quality" => s.quality = value.get().expect("type checked upstream"),
            "add-borders" => s.add_borders = value.get().expect("type checked upstream"),
            "location" => s.location = value.get().expect("type checked upstream"),
            "post-messages" => s.post_messages = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
        gst::debug!(CAT, imp = self, "{} set", pspec.name());
        drop(s);
        if matches!(pspec.name(), "width" | "height" | "add-borders") {
            lock(&self.state).scaler = None;
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "interval" => s.interval_ms.to_value(),
            "width" => s.width.to_value(),
            "height" => s.height.to_value(),
            "quality" => s.quality.to_value(),
            "add-borders" => s.add_borders.to_value(),
            "location" => s.location.to_value(),
            "post-messages" => s.post_messages.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for BraidThumbnail {}

impl ElementImpl for BraidThumbnail {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Braid thumbnail sink",
                "Sink/Video",
                "Keeps one frame every interval, scales it and posts it as a JPEG element message",
                "Braid developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(FORMATS.iter().copied())
                .build();
            vec![gst::PadTemplate::new(
                "sink",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &caps,
            )
            .expect("valid sink template")]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for BraidThumbnail {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = State::default();
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let st = std::mem::take(&mut *lock(&self.state));
        gst::info!(
            CAT,
            imp = self,
            "stopped: {} frames seen, {} kept",
            st.frames,
            st.kept
        );
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(caps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse caps {caps}"))?;
        gst::debug!(
            CAT,
            imp = self,
            "input {}x{} {:?}",
            info.width(),
            info.height(),
            info.format()
        );
        let mut st = lock(&self.state);
        st.in_info = Some(info);
        st.scaler = None;
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        // Frames that are not kept cost this lock, the running time and a comparison.
        let interval_ms = lock(&self.settings).interval_ms;
        let running = {
            let segment = self.obj().segment();
            buffer.pts().and_then(|pts| {
                segment
                    .downcast_ref::<gst::ClockTime>()
                    .and_then(|s| s.to_running_time(pts))
            })
        };
        let mut st = lock(&self.state);
        st.frames += 1;
        if !self.keep(&mut st, interval_ms, running) {
            return Ok(gst::FlowSuccess::Ok);
        }
        let settings = lock(&self.settings).clone();
        let Some(in_info) = st.in_info.clone() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ["No caps before the first frame"]
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        if st.scaler.is_none() {
            match self.make_scaler(&in_info, &settings) {
                Ok(s) => st.scaler = Some(s),
                Err(e) => {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        [
                            "Cannot scale {}x{} to {}x{}: {}",
                            in_info.width(),
                            in_info.height(),
                            settings.width,
                            settings.height,
                            e
                        ]
                    );
                    return Err(gst::FlowError::NotNegotiated);
                }
            }
        }
        let started = Instant::now();
        let scaler = st.scaler.as_ref().expect("built above");
        let jpeg = match self.thumbnail(scaler, &in_info, buffer, settings.quality) {
            Ok(j) => j,
            Err(e) => {
                // A preview failing must never stop the stream it belongs to.
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Encode,
                    ["Thumbnail skipped: {}", e]
                );
                return Ok(gst::FlowSuccess::Ok);
            }
        };
        let encode_us = started.elapsed().as_micros() as u64;
        let (w, h) = (scaler.out_info.width(), scaler.out_info.height());
        st.kept += 1;
        let kept = st.kept;
        drop(st);
        gst::debug!(
            CAT,
            imp = self,
            "thumbnail {kept}: {} bytes in {encode_us} µs",
            jpeg.len()
        );

        if let Some(location) = &settings.location {
            if let Err(e) = self.write_file(location, &jpeg) {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ["Cannot write {}: {}", location, e]
                );
            }
        }
        if settings.post_messages {
            let s = gst::Structure::builder(MESSAGE_NAME)
                .field("jpeg", gst::Buffer::from_mut_slice(jpeg))
                .field("width", w)
                .field("height", h)
                .field("pts", buffer.pts().map_or(u64::MAX, |t| t.nseconds()))
                .field("running-time", running.map_or(u64::MAX, |t| t.nseconds()))
                .field("encode-us", encode_us)
                .build();
            let _ = self
                .obj()
                .post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::letterbox;

    #[test]
    fn letterbox_rectangles() {
        assert_eq!(letterbox(16.0 / 9.0, 320, 180), (0, 0, 320, 180));
        assert_eq!(letterbox(4.0 / 3.0, 320, 180), (40, 0, 240, 180));
        // 2.39:1 scope: bars top and bottom.
        assert_eq!(letterbox(2.39, 320, 180), (0, 23, 320, 134));
        assert_eq!(letterbox(f64::NAN, 320, 180), (0, 0, 320, 180));
    }
}
