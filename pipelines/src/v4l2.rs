//! V4L2 capture format negotiation: choose the best of a device's modes for the
//! requested resolution and frame rate (issue 7 "Sources").
//!
//! A capture device offers a list of modes (pixel format × size × frame rates), as
//! GStreamer reports them in `v4l2src`'s source caps (`gst-device-monitor-1.0` prints
//! the same list). [`modes_from_caps`] turns such caps into [`V4l2Mode`]s and
//! [`choose_mode`] picks one; both are pure, so the choice is tested on recorded
//! capability lists (an MJPEG-only HDMI grabber, a YUYV webcam) without a device.
//! [`probe_modes`] reads a real device's caps at run time.
//!
//! Choice, in order of importance (what a broadcast engineer would pick by hand):
//! 1. a mode that reaches the requested frame rate (motion matters more than pixels);
//! 2. the requested size exactly, else the smallest larger size (downscale), else
//!    the largest smaller one (upscale, last resort);
//! 3. raw (NV12, then YUYV: no decode, no generation loss) over MJPEG;
//! 4. the requested frame rate exactly, else the lowest rate above it (`videorate`
//!    drops frames), never more work than needed.

use std::fmt;
use std::path::Path;

/// A frame rate as a fraction, frames per second = `num / den`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fps {
    /// Numerator.
    pub num: i32,
    /// Denominator (> 0).
    pub den: i32,
}

impl Fps {
    /// `num / den` as a float, frames/s.
    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den.max(1))
    }
}

impl fmt::Display for Fps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// Pixel formats a capture device delivers, as far as the choice cares.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Packed 4:2:2 (`video/x-raw,format=YUY2`, V4L2 `YUYV`).
    Yuyv,
    /// Semi-planar 4:2:0 (`video/x-raw,format=NV12`).
    Nv12,
    /// Motion JPEG (`image/jpeg`), needs a JPEG decoder.
    Mjpeg,
    /// Any other raw format (`video/x-raw,format=…`), usable through `videoconvert`.
    OtherRaw(String),
}

impl PixelFormat {
    /// Preference among formats at an equal size and rate: lower is better.
    fn rank(&self) -> u8 {
        match self {
            PixelFormat::Nv12 => 0,
            PixelFormat::Yuyv => 1,
            PixelFormat::OtherRaw(_) => 2,
            PixelFormat::Mjpeg => 3,
        }
    }

    /// Whether frames need decoding.
    pub fn is_compressed(&self) -> bool {
        matches!(self, PixelFormat::Mjpeg)
    }
}

/// Frame rates of one mode: a discrete list or a continuous range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rates {
    /// The rates listed by the device (V4L2 discrete frame intervals).
    List(Vec<Fps>),
    /// Any rate in `min..=max` (V4L2 stepwise/continuous intervals).
    Range {
        /// Lowest rate.
        min: Fps,
        /// Highest rate.
        max: Fps,
    },
}

/// One capture mode of a device: a format at one size with its frame rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4l2Mode {
    /// Pixel format.
    pub format: PixelFormat,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Frame rates offered at this size.
    pub rates: Rates,
}

/// The mode chosen for a stream, with the exact caps to ask `v4l2src` for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4l2Choice {
    /// Pixel format.
    pub format: PixelFormat,
    /// Capture width, pixels.
    pub width: u32,
    /// Capture height, pixels.
    pub height: u32,
    /// Capture frame rate.
    pub fps: Fps,
}

impl V4l2Choice {
    /// The caps filter put right after `v4l2src`, e.g.
    /// `image/jpeg,width=1920,height=1080,framerate=30/1`.
    pub fn caps(&self) -> String {
        let head = match &self.format {
            PixelFormat::Mjpeg => "image/jpeg".to_owned(),
            PixelFormat::Yuyv => "video/x-raw,format=YUY2".to_owned(),
            PixelFormat::Nv12 => "video/x-raw,format=NV12".to_owned(),
            PixelFormat::OtherRaw(f) => format!("video/x-raw,format={f}"),
        };
        format!(
            "{head},width={},height={},framerate={}",
            self.width, self.height, self.fps
        )
    }
}

/// Parse GStreamer caps of a capture device (`v4l2src` src caps or the device
/// monitor's caps) into modes. Structures other than `video/x-raw` and `image/jpeg`
/// (H.264 cameras, `video/x-bayer`…) are skipped; a structure with lists of formats,
/// sizes or rates becomes one mode per format and size. Width/height ranges
/// (stepwise devices) become the range's end points.
pub fn modes_from_caps(caps: &gst::CapsRef) -> Vec<V4l2Mode> {
    let mut out = Vec::new();
    for s in caps.iter() {
        let formats: Vec<PixelFormat> = match s.name().as_str() {
            "image/jpeg" => vec![PixelFormat::Mjpeg],
            "video/x-raw" => strings(s, "format")
                .into_iter()
                .map(|f| match f.as_str() {
                    "YUY2" => PixelFormat::Yuyv,
                    "NV12" => PixelFormat::Nv12,
                    _ => PixelFormat::OtherRaw(f),
                })
                .collect(),
            _ => continue,
        };
        let widths = ints(s, "width");
        let heights = ints(s, "height");
        let Some(rates) = rates(s) else { continue };
        for format in &formats {
            for &width in &widths {
                for &height in &heights {
                    out.push(V4l2Mode {
                        format: format.clone(),
                        width,
                        height,
                        rates: rates.clone(),
                    });
                }
            }
        }
    }
    out
}

fn strings(s: &gst::StructureRef, field: &str) -> Vec<String> {
    if let Ok(v) = s.get::<String>(field) {
        return vec![v];
    }
    if let Ok(list) = s.get::<gst::List>(field) {
        return list.iter().filter_map(|v| v.get::<String>().ok()).collect();
    }
    Vec::new()
}

fn ints(s: &gst::StructureRef, field: &str) -> Vec<u32> {
    if let Ok(v) = s.get::<i32>(field) {
        return u32::try_from(v).into_iter().collect();
    }
    if let Ok(r) = s.get::<gst::IntRange<i32>>(field) {
        return [r.min(), r.max()]
            .into_iter()
            .filter_map(|v| u32::try_from(v).ok())
            .collect();
    }
    if let Ok(list) = s.get::<gst::List>(field) {
        return list
            .iter()
            .filter_map(|v| v.get::<i32>().ok())
            .filter_map(|v| u32::try_from(v).ok())
            .collect();
    }
    Vec::new()
}

fn fps(f: gst::Fraction) -> Fps {
    Fps {
        num: f.numer(),
        den: f.denom(),
    }
}

fn rates(s: &gst::StructureRef) -> Option<Rates> {
    if let Ok(f) = s.get::<gst::Fraction>("framerate") {
        return Some(Rates::List(vec![fps(f)]));
    }
    if let Ok(r) = s.get::<gst::FractionRange>("framerate") {
        return Some(Rates::Range {
            min: fps(r.min()),
            max: fps(r.max()),
        });
    }
    if let Ok(list) = s.get::<gst::List>("framerate") {
        let v: Vec<Fps> = list
            .iter()
            .filter_map(|v| v.get::<gst::Fraction>().ok())
            .map(fps)
            .collect();
        return (!v.is_empty()).then_some(Rates::List(v));
    }
    None
}

/// Tolerance when comparing frame rates (29.97 counts as 30), frames/s.
const FPS_TOLERANCE: f64 = 0.05;

/// The rate to capture at from `rates` for a wanted rate `want` (frames/s): the
/// exact one, else the lowest above it, else the highest below it.
fn pick_rate(rates: &Rates, want: u32) -> Fps {
    let w = f64::from(want);
    match rates {
        Rates::List(list) => {
            let mut sorted = list.clone();
            sorted.sort_by(|a, b| a.as_f64().total_cmp(&b.as_f64()));
            if let Some(exact) = sorted
                .iter()
                .find(|f| (f.as_f64() - w).abs() < FPS_TOLERANCE)
            {
                return *exact;
            }
            if let Some(above) = sorted.iter().find(|f| f.as_f64() > w) {
                return *above;
            }
            *sorted.last().expect("rate lists are never empty")
        }
        Rates::Range { min, max } => {
            let want = Fps {
                num: i32::try_from(want).unwrap_or(i32::MAX),
                den: 1,
            };
            if want.as_f64() < min.as_f64() {
                *min
            } else if want.as_f64() > max.as_f64() {
                *max
            } else {
                want
            }
        }
    }
}

/// Choose the capture mode for `width`×`height` at `framerate` frames/s (see the
/// module doc for the order of preference). `None` if `modes` is empty.
pub fn choose_mode(
    modes: &[V4l2Mode],
    width: u32,
    height: u32,
    framerate: u32,
) -> Option<V4l2Choice> {
    let want_area = u64::from(width) * u64::from(height);
    modes
        .iter()
        .map(|m| {
            let fps = pick_rate(&m.rates, framerate);
            let rate_ok = fps.as_f64() + FPS_TOLERANCE >= f64::from(framerate);
            let area = u64::from(m.width) * u64::from(m.height);
            let (size_class, size_dist) = if m.width == width && m.height == height {
                (0u8, 0u64)
            } else if m.width >= width && m.height >= height {
                (1, area - want_area)
            } else {
                // Upscaling: the bigger the better.
                (2, u64::MAX - area)
            };
            // Lower is better, compared in order.
            let key = (
                !rate_ok,
                size_class,
                size_dist,
                m.format.rank(),
                // Exact rate before a higher one (less work), in milli-frames/s.
                (fps.as_f64() * 1000.0) as u64,
            );
            (
                key,
                V4l2Choice {
                    format: m.format.clone(),
                    width: m.width,
                    height: m.height,
                    fps,
                },
            )
        })
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, c)| c)
}

/// Read the capture modes of a V4L2 device: a `v4l2src` opened in READY state, its
/// source pad's caps. Blocking (opens the device). Errors: the device cannot be
/// opened (absent, busy, not a capture device) or offers no usable format.
pub fn probe_modes(device: &Path) -> Result<Vec<V4l2Mode>, String> {
    use gst::prelude::*;
    let src = gst::ElementFactory::make("v4l2src")
        .property("device", device.to_string_lossy().as_ref())
        .build()
        .map_err(|e| format!("no v4l2src element: {e}"))?;
    src.set_state(gst::State::Ready)
        .map_err(|_| format!("cannot open {}", device.display()))?;
    let caps = src
        .static_pad("src")
        .map(|p| p.query_caps(None))
        .unwrap_or_else(gst::Caps::new_empty);
    let _ = src.set_state(gst::State::Null);
    let modes = modes_from_caps(&caps);
    if modes.is_empty() {
        return Err(format!(
            "{} offers no raw or MJPEG capture format ({caps})",
            device.display()
        ));
    }
    Ok(modes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(format: PixelFormat, width: u32, height: u32, rates: &[i32]) -> V4l2Mode {
        V4l2Mode {
            format,
            width,
            height,
            rates: Rates::List(rates.iter().map(|&num| Fps { num, den: 1 }).collect()),
        }
    }

    #[test]
    fn rate_before_size_before_format() {
        let modes = [
            mode(PixelFormat::Yuyv, 1920, 1080, &[5]),
            mode(PixelFormat::Mjpeg, 1920, 1080, &[30, 60]),
            mode(PixelFormat::Yuyv, 1280, 720, &[10]),
        ];
        let c = choose_mode(&modes, 1920, 1080, 30).unwrap();
        assert_eq!(c.format, PixelFormat::Mjpeg);
        assert_eq!(c.fps, Fps { num: 30, den: 1 });
        // At a rate raw YUYV reaches, raw wins at the same size.
        let c = choose_mode(&modes, 1920, 1080, 5).unwrap();
        assert_eq!(c.format, PixelFormat::Yuyv);
    }

    #[test]
    fn downscale_before_upscale_and_rate_ranges() {
        let modes = [
            V4l2Mode {
                format: PixelFormat::Nv12,
                width: 640,
                height: 480,
                rates: Rates::Range {
                    min: Fps { num: 1, den: 1 },
                    max: Fps { num: 60, den: 1 },
                },
            },
            mode(PixelFormat::Nv12, 1920, 1080, &[30]),
            mode(PixelFormat::Nv12, 3840, 2160, &[30]),
        ];
        let c = choose_mode(&modes, 1280, 720, 30).unwrap();
        assert_eq!((c.width, c.height), (1920, 1080));
        let c = choose_mode(&modes, 320, 240, 25).unwrap();
        assert_eq!((c.width, c.height, c.fps.num), (640, 480, 25));
        assert!(choose_mode(&[], 320, 240, 25).is_none());
    }
}
