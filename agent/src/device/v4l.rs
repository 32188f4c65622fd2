//! Capture devices for `device.status.media_inputs` (PROTOCOL.md §4) with the
//! `v4l` crate (V4L2 API, linux/videodev2.h).
//!
//! - Listing: every `videoN` of `/sys/class/video4linux`, opened as `/dev/videoN`;
//!   only capture nodes are kept: `VIDIOC_QUERYCAP` device caps with
//!   `V4L2_CAP_VIDEO_CAPTURE` or `_MPLANE`, and not a memory-to-memory device
//!   (`V4L2_CAP_VIDEO_M2M*`: codecs, scalers). Metadata nodes (UVC's second node,
//!   `V4L2_CAP_META_CAPTURE` only) are left out. A node that cannot be opened is
//!   listed with its `error` (e.g. permission denied: the agent is not in group
//!   `video`).
//! - Modes ([`describe`]): `VIDIOC_ENUM_FMT` → `VIDIOC_ENUM_FRAMESIZES` →
//!   `VIDIOC_ENUM_FRAMEINTERVALS`, as [`CaptureMode`]s (`WIDTHxHEIGHT@FPS` plus the
//!   pixel format). Stepwise/continuous ranges are reported as the common sizes
//!   and frame rates inside the range plus the maximum, not every step. A driver
//!   without size enumeration gives its current format (`VIDIOC_G_FMT`); a size
//!   without interval enumeration is reported without `@FPS`.
//! - The four queries go through the [`Node`] trait: [`LiveNode`] asks the kernel,
//!   [`Recording`] answers from recorded results (tests, and field reports made
//!   with [`Recording::record`]).
//! - `busy`: a stream of this agent uses it, or another process has it open (its
//!   `/proc/<pid>/fd` links to the node, as `fuser` finds it; processes of other
//!   users are visible only to root or with `CAP_SYS_PTRACE`).
//! - Hotplug ([`watch`]): inotify on `/dev` (`IN_CREATE`, `IN_DELETE`, `IN_ATTRIB`
//!   for udev's permission change), falling back to reading the sysfs list every
//!   second; `device` events for capture devices connected and removed.
//!
//! Multi-planar-only capture devices (`V4L2_CAP_VIDEO_CAPTURE_MPLANE` without the
//! single-planar cap, e.g. some SoC HDMI receivers) are listed, but the `v4l`
//! crate enumerates single-planar formats only: their modes are empty, with an
//! `error` that says so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use braid_protocol::device::{CaptureFormat, MediaInput, MediaInputStatus, MediaInputType};
use braid_protocol::event::{Category, Event, Severity};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::events::EventSink;
use super::notify::ChangeNotifier;

/// Where the kernel lists V4L2 devices.
pub const SYS_CLASS_V4L: &str = "/sys/class/video4linux";
/// Where the device nodes are.
pub const DEV_DIR: &str = "/dev";

/// `V4L2_CAP_VIDEO_CAPTURE`.
pub const CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
/// `V4L2_CAP_VIDEO_CAPTURE_MPLANE`.
pub const CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x0000_1000;
/// `V4L2_CAP_VIDEO_M2M_MPLANE`.
pub const CAP_VIDEO_M2M_MPLANE: u32 = 0x0000_4000;
/// `V4L2_CAP_VIDEO_M2M`.
pub const CAP_VIDEO_M2M: u32 = 0x0000_8000;
/// `V4L2_CAP_META_CAPTURE`.
pub const CAP_META_CAPTURE: u32 = 0x0080_0000;

/// Sizes offered from a stepwise/continuous size range when they fit it.
const COMMON_SIZES: &[(u32, u32)] = &[
    (3840, 2160),
    (2560, 1440),
    (1920, 1080),
    (1600, 900),
    (1280, 720),
    (1024, 576),
    (960, 540),
    (720, 576),
    (720, 480),
    (640, 480),
    (640, 360),
    (320, 240),
];
/// Frame rates (frames per `den` s: num/den) offered from an interval range.
const COMMON_RATES: &[(u32, u32)] = &[
    (60, 1),
    (60000, 1001),
    (50, 1),
    (30, 1),
    (30000, 1001),
    (25, 1),
    (24, 1),
    (15, 1),
    (10, 1),
    (5, 1),
];

/// What `VIDIOC_QUERYCAP` says about a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCaps {
    /// Driver, e.g. `uvcvideo`.
    pub driver: String,
    /// Card name, e.g. `Cam Link 4K: Cam Link 4K`.
    pub card: String,
    /// Bus, e.g. `usb-0000:00:14.0-2`.
    pub bus: String,
    /// `device_caps` bit mask of this node (`V4L2_CAP_*`).
    pub device_caps: u32,
}

/// One entry of `VIDIOC_ENUM_FMT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatDesc {
    /// FourCC, e.g. `YUYV`.
    pub fourcc: String,
    /// Driver's description, e.g. `YUYV 4:2:2`.
    pub description: String,
}

/// A fraction of a second (V4L2 frame intervals are seconds per frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fraction {
    /// Numerator.
    pub numerator: u32,
    /// Denominator.
    pub denominator: u32,
}

impl Fraction {
    fn seconds(self) -> f64 {
        if self.denominator == 0 {
            f64::INFINITY
        } else {
            f64::from(self.numerator) / f64::from(self.denominator)
        }
    }
}

/// One entry of `VIDIOC_ENUM_FRAMESIZES`, pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameSize {
    /// `V4L2_FRMSIZE_TYPE_DISCRETE`.
    Discrete {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// `V4L2_FRMSIZE_TYPE_STEPWISE` or `_CONTINUOUS` (step 1).
    Stepwise {
        /// Least width.
        min_width: u32,
        /// Greatest width.
        max_width: u32,
        /// Width step.
        step_width: u32,
        /// Least height.
        min_height: u32,
        /// Greatest height.
        max_height: u32,
        /// Height step.
        step_height: u32,
    },
}

/// One entry of `VIDIOC_ENUM_FRAMEINTERVALS`, seconds per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameInterval {
    /// `V4L2_FRMIVAL_TYPE_DISCRETE`.
    Discrete(Fraction),
    /// `V4L2_FRMIVAL_TYPE_STEPWISE` or `_CONTINUOUS`.
    Stepwise {
        /// Shortest interval (highest rate).
        min: Fraction,
        /// Longest interval (lowest rate).
        max: Fraction,
        /// Step.
        step: Fraction,
    },
}

/// The V4L2 queries the listing needs, answered by a live node or a recording.
pub trait Node {
    /// `VIDIOC_QUERYCAP`.
    fn caps(&self) -> io::Result<NodeCaps>;
    /// `VIDIOC_ENUM_FMT` for single-planar capture.
    fn formats(&self) -> io::Result<Vec<FormatDesc>>;
    /// `VIDIOC_ENUM_FRAMESIZES` of a pixel format.
    fn frame_sizes(&self, fourcc: &str) -> io::Result<Vec<FrameSize>>;
    /// `VIDIOC_ENUM_FRAMEINTERVALS` of a pixel format and size.
    fn frame_intervals(
        &self,
        fourcc: &str,
        width: u32,
        height: u32,
    ) -> io::Result<Vec<FrameInterval>>;
    /// `VIDIOC_G_FMT`: the current (fourcc, width, height).
    fn current(&self) -> io::Result<(String, u32, u32)>;
}

/// A frame rate as frames per `den` seconds (`num/den` fps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rate {
    /// Frames.
    pub num: u32,
    /// Seconds.
    pub den: u32,
}

impl Rate {
    /// Frames per second.
    pub fn fps(self) -> f64 {
        f64::from(self.num) / f64::from(self.den.max(1))
    }
}

impl fmt::Display for Rate {
    /// `30`, `29.97`, `59.94`, `7.5`: whole rates without decimals, others with up
    /// to two.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den != 0 && self.num.is_multiple_of(self.den) {
            write!(f, "{}", self.num / self.den)
        } else {
            let s = format!("{:.2}", self.fps());
            write!(f, "{}", s.trim_end_matches('0').trim_end_matches('.'))
        }
    }
}

/// One way a capture device can deliver frames. This is the form a pipeline can
/// negotiate from (pixel format, size, exact rate); [`fmt::Display`] gives the
/// `WIDTHxHEIGHT@FPS` of `media_inputs[].capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CaptureMode {
    /// V4L2 FourCC, e.g. `MJPG`.
    pub fourcc: String,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Frame rate; `None` when the driver does not enumerate intervals.
    pub rate: Option<Rate>,
}

impl fmt::Display for CaptureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)?;
        if let Some(r) = self.rate {
            write!(f, "@{r}")?;
        }
        Ok(())
    }
}

/// A capture node as `device.status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureDevice {
    /// Label (card name).
    pub label: String,
    /// Driver name.
    pub driver: String,
    /// Bus info.
    pub bus: String,
    /// Every mode, largest first, then fastest.
    pub modes: Vec<CaptureMode>,
    /// The modes per pixel format, in the driver's format order.
    pub formats: Vec<CaptureFormat>,
    /// A limitation worth showing (multi-planar formats not enumerated).
    pub note: Option<String>,
}

impl CaptureDevice {
    /// `WIDTHxHEIGHT@FPS` over all formats, without duplicates, largest first.
    pub fn capabilities(&self) -> Vec<String> {
        capability_strings(&self.modes)
    }
}

fn capability_strings(modes: &[CaptureMode]) -> Vec<String> {
    let mut sorted: Vec<&CaptureMode> = modes.iter().collect();
    sorted.sort_by(|a, b| {
        let area = |m: &CaptureMode| u64::from(m.width) * u64::from(m.height);
        let fps = |m: &CaptureMode| m.rate.map(Rate::fps).unwrap_or(0.0);
        area(b)
            .cmp(&area(a))
            .then(b.width.cmp(&a.width))
            .then(fps(b).total_cmp(&fps(a)))
    });
    let mut out: Vec<String> = Vec::new();
    for m in sorted {
        let s = m.to_string();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Whether `device_caps` describe a capture node: video capture (single- or
/// multi-planar) and not memory-to-memory. Metadata-only nodes are not.
pub fn is_capture(device_caps: u32) -> bool {
    device_caps & (CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE) != 0
        && device_caps & (CAP_VIDEO_M2M | CAP_VIDEO_M2M_MPLANE) == 0
}

fn sizes_of(size: &FrameSize) -> Vec<(u32, u32)> {
    match *size {
        FrameSize::Discrete { width, height } => vec![(width, height)],
        FrameSize::Stepwise {
            min_width,
            max_width,
            step_width,
            min_height,
            max_height,
            step_height,
        } => {
            let fits = |v: u32, min: u32, max: u32, step: u32| {
                v >= min && v <= max && (v - min).is_multiple_of(step.max(1))
            };
            let mut out: Vec<(u32, u32)> = vec![(max_width, max_height)];
            for &(w, h) in COMMON_SIZES {
                if fits(w, min_width, max_width, step_width)
                    && fits(h, min_height, max_height, step_height)
                    && !out.contains(&(w, h))
                {
                    out.push((w, h));
                }
            }
            out
        }
    }
}

fn rates_of(interval: &FrameInterval) -> Vec<Rate> {
    match *interval {
        FrameInterval::Discrete(f) if f.numerator > 0 => vec![Rate {
            num: f.denominator,
            den: f.numerator,
        }],
        FrameInterval::Discrete(_) => Vec::new(),
        FrameInterval::Stepwise { min, max, .. } => {
            let (shortest, longest) = (min.seconds(), max.seconds());
            let mut out = Vec::new();
            if min.numerator > 0 {
                out.push(Rate {
                    num: min.denominator,
                    den: min.numerator,
                });
            }
            for &(num, den) in COMMON_RATES {
                let t = f64::from(den) / f64::from(num);
                let r = Rate { num, den };
                if t >= shortest * 0.999
                    && t <= longest * 1.001
                    && !out.iter().any(|o: &Rate| (o.fps() - r.fps()).abs() < 0.001)
                {
                    out.push(r);
                }
            }
            out
        }
    }
}

/// Describe a node: `Ok(None)` when it is not a capture node (metadata, m2m,
/// output); errors only when `VIDIOC_QUERYCAP` fails. Format, size and interval
/// enumeration errors shorten the list, they do not fail the device.
pub fn describe(node: &dyn Node) -> io::Result<Option<CaptureDevice>> {
    let caps = node.caps()?;
    if !is_capture(caps.device_caps) {
        return Ok(None);
    }
    let label = caps
        .card
        .split(':')
        .next()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(&caps.card)
        .to_owned();
    let mut modes = Vec::new();
    let mut formats = Vec::new();
    let single_planar = caps.device_caps & CAP_VIDEO_CAPTURE != 0;
    let descs = if single_planar {
        node.formats().unwrap_or_default()
    } else {
        Vec::new()
    };
    for desc in descs {
        let mut sizes: Vec<(u32, u32)> = node
            .frame_sizes(&desc.fourcc)
            .unwrap_or_default()
            .iter()
            .flat_map(sizes_of)
            .collect();
        if sizes.is_empty() {
            if let Ok((fourcc, w, h)) = node.current() {
                if fourcc == desc.fourcc && w > 0 && h > 0 {
                    sizes.push((w, h));
                }
            }
        }
        let mut format_modes = Vec::new();
        for (width, height) in sizes {
            let rates: Vec<Rate> = node
                .frame_intervals(&desc.fourcc, width, height)
                .unwrap_or_default()
                .iter()
                .flat_map(rates_of)
                .collect();
            let mode = |rate| CaptureMode {
                fourcc: desc.fourcc.clone(),
                width,
                height,
                rate,
            };
            if rates.is_empty() {
                format_modes.push(mode(None));
            }
            for r in rates {
                let m = mode(Some(r));
                if !format_modes.contains(&m) {
                    format_modes.push(m);
                }
            }
        }
        formats.push(CaptureFormat {
            fourcc: desc.fourcc.clone(),
            description: desc.description.clone(),
            capabilities: capability_strings(&format_modes),
        });
        modes.extend(format_modes);
    }
    Ok(Some(CaptureDevice {
        label,
        driver: caps.driver,
        bus: caps.bus,
        modes,
        formats,
        note: (!single_planar)
            .then(|| "multi-planar capture: modes are not enumerated by this agent".to_owned()),
    }))
}

/// A node opened through the `v4l` crate.
pub struct LiveNode {
    dev: v4l::Device,
}

impl LiveNode {
    /// Open `path` (read-write, non-blocking, as V4L2 applications do; opening does
    /// not claim the device).
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            dev: v4l::Device::with_path(path)?,
        })
    }
}

fn fourcc_str(f: &v4l::FourCC) -> String {
    String::from_utf8_lossy(&f.repr).into_owned()
}

fn fourcc_of(s: &str) -> io::Result<v4l::FourCC> {
    let bytes: [u8; 4] = s
        .as_bytes()
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad FourCC {s:?}")))?;
    Ok(v4l::FourCC::new(&bytes))
}

fn fraction(f: v4l::Fraction) -> Fraction {
    Fraction {
        numerator: f.numerator,
        denominator: f.denominator,
    }
}

impl Node for LiveNode {
    fn caps(&self) -> io::Result<NodeCaps> {
        let c = self.dev.query_caps()?;
        Ok(NodeCaps {
            driver: c.driver,
            card: c.card,
            bus: c.bus,
            device_caps: c.capabilities.bits(),
        })
    }

    fn formats(&self) -> io::Result<Vec<FormatDesc>> {
        use v4l::video::Capture;
        Ok(self
            .dev
            .enum_formats()?
            .into_iter()
            .map(|d| FormatDesc {
                fourcc: fourcc_str(&d.fourcc),
                description: d.description,
            })
            .collect())
    }

    fn frame_sizes(&self, fourcc: &str) -> io::Result<Vec<FrameSize>> {
        use v4l::framesize::FrameSizeEnum;
        use v4l::video::Capture;
        Ok(self
            .dev
            .enum_framesizes(fourcc_of(fourcc)?)?
            .into_iter()
            .map(|s| match s.size {
                FrameSizeEnum::Discrete(d) => FrameSize::Discrete {
                    width: d.width,
                    height: d.height,
                },
                FrameSizeEnum::Stepwise(s) => FrameSize::Stepwise {
                    min_width: s.min_width,
                    max_width: s.max_width,
                    step_width: s.step_width,
                    min_height: s.min_height,
                    max_height: s.max_height,
                    step_height: s.step_height,
                },
            })
            .collect())
    }

    fn frame_intervals(
        &self,
        fourcc: &str,
        width: u32,
        height: u32,
    ) -> io::Result<Vec<FrameInterval>> {
        use v4l::frameinterval::FrameIntervalEnum;
        use v4l::video::Capture;
        Ok(self
            .dev
            .enum_frameintervals(fourcc_of(fourcc)?, width, height)?
            .into_iter()
            .map(|i| match i.interval {
                FrameIntervalEnum::Discrete(f) => FrameInterval::Discrete(fraction(f)),
                FrameIntervalEnum::Stepwise(s) => FrameInterval::Stepwise {
                    min: fraction(s.min),
                    max: fraction(s.max),
                    step: fraction(s.step),
                },
            })
            .collect())
    }

    fn current(&self) -> io::Result<(String, u32, u32)> {
        use v4l::video::Capture;
        let f = self.dev.format()?;
        Ok((fourcc_str(&f.fourcc), f.width, f.height))
    }
}

/// Recorded answers of one node, as JSON. Tests use recordings of real devices'
/// ioctl results; [`Recording::record`] makes one from a live node (the same
/// queries [`describe`] makes), for a field report or a new test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// Where it was recorded, e.g. `/dev/video0` (informative).
    pub device: String,
    /// Provenance (which device, how recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `VIDIOC_QUERYCAP`.
    pub caps: NodeCaps,
    /// `VIDIOC_G_FMT`, if it answered.
    #[serde(default)]
    pub current: Option<(String, u32, u32)>,
    /// Every format with its sizes and their intervals.
    #[serde(default)]
    pub formats: Vec<RecordedFormat>,
}

/// One format of a [`Recording`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedFormat {
    /// `VIDIOC_ENUM_FMT` entry.
    pub format: FormatDesc,
    /// `VIDIOC_ENUM_FRAMESIZES` entries (empty: the ioctl failed).
    #[serde(default)]
    pub sizes: Vec<FrameSize>,
    /// `VIDIOC_ENUM_FRAMEINTERVALS` per size queried, as `[width, height, intervals]`.
    #[serde(default)]
    pub intervals: Vec<(u32, u32, Vec<FrameInterval>)>,
}

fn not_recorded(what: &str) -> io::Error {
    // EINVAL is what the kernel answers for an index/format it does not have.
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}: not in the recording"),
    )
}

impl Recording {
    /// Record `node` (queries as in [`describe`]).
    pub fn record(device: &str, node: &dyn Node) -> io::Result<Self> {
        let caps = node.caps()?;
        let mut formats = Vec::new();
        for format in node.formats().unwrap_or_default() {
            let sizes = node.frame_sizes(&format.fourcc).unwrap_or_default();
            let mut intervals = Vec::new();
            for (w, h) in sizes.iter().flat_map(sizes_of) {
                if let Ok(list) = node.frame_intervals(&format.fourcc, w, h) {
                    intervals.push((w, h, list));
                }
            }
            formats.push(RecordedFormat {
                format,
                sizes,
                intervals,
            });
        }
        Ok(Self {
            device: device.to_owned(),
            note: None,
            caps,
            current: node.current().ok(),
            formats,
        })
    }
}

impl Node for Recording {
    fn caps(&self) -> io::Result<NodeCaps> {
        Ok(self.caps.clone())
    }

    fn formats(&self) -> io::Result<Vec<FormatDesc>> {
        Ok(self.formats.iter().map(|f| f.format.clone()).collect())
    }

    fn frame_sizes(&self, fourcc: &str) -> io::Result<Vec<FrameSize>> {
        let f = self
            .formats
            .iter()
            .find(|f| f.format.fourcc == fourcc)
            .ok_or_else(|| not_recorded(fourcc))?;
        if f.sizes.is_empty() {
            return Err(not_recorded("frame sizes"));
        }
        Ok(f.sizes.clone())
    }

    fn frame_intervals(
        &self,
        fourcc: &str,
        width: u32,
        height: u32,
    ) -> io::Result<Vec<FrameInterval>> {
        self.formats
            .iter()
            .find(|f| f.format.fourcc == fourcc)
            .and_then(|f| {
                f.intervals
                    .iter()
                    .find(|(w, h, _)| *w == width && *h == height)
                    .map(|(_, _, list)| list.clone())
            })
            .filter(|l| !l.is_empty())
            .ok_or_else(|| not_recorded("frame intervals"))
    }

    fn current(&self) -> io::Result<(String, u32, u32)> {
        self.current
            .clone()
            .ok_or_else(|| not_recorded("current format"))
    }
}

/// `videoN` names under `sys_class_v4l`, sorted by number.
pub fn node_names(sys_class_v4l: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(sys_class_v4l)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("video"))
        .collect();
    names.sort_by_key(|n| (n[5..].parse::<u32>().unwrap_or(u32::MAX), n.clone()));
    names
}

/// Describe the node at `path` through the kernel; a panic inside the `v4l` crate
/// (it unwraps UTF-8 in driver strings) becomes an error.
fn describe_live(path: &Path) -> Result<Option<CaptureDevice>, String> {
    let path = path.to_owned();
    std::panic::catch_unwind(move || {
        let node = LiveNode::open(&path).map_err(|e| open_error(&path, &e))?;
        describe(&node).map_err(|e| format!("{}: VIDIOC_QUERYCAP failed: {e}", path.display()))
    })
    .unwrap_or_else(|_| Err("the V4L2 driver answered with unreadable strings".to_owned()))
}

fn open_error(path: &Path, e: &io::Error) -> String {
    let reason = match e.kind() {
        io::ErrorKind::PermissionDenied => {
            "permission denied (is the agent in group video?)".to_owned()
        }
        _ => e.to_string(),
    };
    format!("cannot open {}: {reason}", path.display())
}

/// Nodes among `nodes` that another process has open (`/proc/<pid>/fd`), this
/// process excepted.
pub fn held_by_others(proc_dir: &Path, nodes: &[PathBuf]) -> HashSet<PathBuf> {
    let mut held = HashSet::new();
    if nodes.is_empty() {
        return held;
    }
    let me = std::process::id().to_string();
    let Ok(procs) = fs::read_dir(proc_dir) else {
        return held;
    };
    for p in procs.filter_map(Result::ok) {
        let name = p.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            if let Ok(target) = fs::read_link(fd.path()) {
                if nodes.contains(&target) {
                    held.insert(target);
                }
            }
        }
        if held.len() == nodes.len() {
            break;
        }
    }
    held
}

/// A probed node: its (modification time, inode) key and the probe result.
type CachedProbe = ((u64, u64), Result<Option<CaptureDevice>, String>);

/// What a node was found to be, cached per node identity (inode, device number):
/// a re-plugged device gets a new node and is probed again.
#[derive(Debug, Default)]
pub struct CaptureLister {
    cache: HashMap<PathBuf, CachedProbe>,
}

impl CaptureLister {
    /// The capture entries of `media_inputs`: each capture node under
    /// `sys_class_v4l` (device `<dev_dir>/videoN`), with status `busy` when it is in
    /// `busy_ours` or another process has it open. Blocking (opens devices): call
    /// from a blocking thread. No devices: an empty list.
    pub fn list(
        &mut self,
        sys_class_v4l: &Path,
        dev_dir: &Path,
        proc_dir: &Path,
        busy_ours: &[String],
    ) -> Vec<MediaInput> {
        let mut found: Vec<(PathBuf, Result<CaptureDevice, String>)> = Vec::new();
        let mut seen = HashSet::new();
        for name in node_names(sys_class_v4l) {
            let path = dev_dir.join(&name);
            seen.insert(path.clone());
            let id = match fs::metadata(&path) {
                Ok(m) => (m.ino(), m.rdev()),
                Err(e) => {
                    // Listed by the kernel but the node is not (yet) there: udev is
                    // still creating it, or /dev is not the host's.
                    tracing::debug!("{}: {e}", path.display());
                    continue;
                }
            };
            let entry = match self.cache.get(&path) {
                Some((cached_id, result)) if *cached_id == id && result.is_ok() => result.clone(),
                _ => {
                    let result = describe_live(&path);
                    self.cache.insert(path.clone(), (id, result.clone()));
                    result
                }
            };
            match entry {
                Ok(Some(dev)) => found.push((path, Ok(dev))),
                Ok(None) => {}
                Err(e) => found.push((path, Err(e))),
            }
        }
        self.cache.retain(|p, _| seen.contains(p));
        let nodes: Vec<PathBuf> = found.iter().map(|(p, _)| p.clone()).collect();
        let held = held_by_others(proc_dir, &nodes);
        let mut labels: HashMap<String, usize> = HashMap::new();
        for (_, d) in &found {
            if let Ok(d) = d {
                *labels.entry(d.label.clone()).or_default() += 1;
            }
        }
        found
            .into_iter()
            .map(|(path, dev)| {
                let device = path.to_string_lossy().into_owned();
                let busy = busy_ours.contains(&device) || held.contains(&path);
                let status = if busy {
                    MediaInputStatus::Busy
                } else {
                    MediaInputStatus::Available
                };
                match dev {
                    Ok(d) => MediaInput {
                        label: if labels.get(&d.label).copied().unwrap_or(0) > 1 {
                            format!("{} ({})", d.label, d.bus)
                        } else {
                            d.label.clone()
                        },
                        capabilities: d.capabilities(),
                        formats: d.formats.clone(),
                        error: d.note.clone(),
                        device,
                        kind: MediaInputType::V4l2,
                        status,
                    },
                    Err(e) => MediaInput {
                        label: path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        capabilities: Vec::new(),
                        formats: Vec::new(),
                        error: Some(e),
                        device,
                        kind: MediaInputType::V4l2,
                        status,
                    },
                }
            })
            .collect()
    }
}

/// What the hotplug watcher remembers of a node.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Capture(String),
    Other,
    Unreadable,
}

fn probe_kind(path: &Path) -> Seen {
    let path = path.to_owned();
    std::panic::catch_unwind(move || match LiveNode::open(&path) {
        Ok(node) => match node.caps() {
            Ok(c) if is_capture(c.device_caps) => Seen::Capture(
                c.card
                    .split(':')
                    .next()
                    .unwrap_or(&c.card)
                    .trim()
                    .to_owned(),
            ),
            Ok(_) => Seen::Other,
            Err(_) => Seen::Unreadable,
        },
        Err(_) => Seen::Unreadable,
    })
    .unwrap_or(Seen::Unreadable)
}

/// Follow capture devices being plugged and removed until `cancel` fires: ping
/// `changes` on any change of the node list and raise `device` events — `info`
/// `Capture device /dev/video2 connected (Cam Link 4K)`, `warning` `Capture device
/// /dev/video2 (Cam Link 4K) removed` — for capture nodes only.
pub async fn watch(
    sys_class_v4l: PathBuf,
    dev_dir: PathBuf,
    changes: ChangeNotifier,
    events: EventSink,
    cancel: CancellationToken,
) {
    let scan = {
        let sys = sys_class_v4l.clone();
        let dev = dev_dir.clone();
        move |prev: BTreeMap<String, Seen>| -> BTreeMap<String, Seen> {
            node_names(&sys)
                .into_iter()
                .map(|n| {
                    let path = dev.join(&n).to_string_lossy().into_owned();
                    let seen = match prev.get(&path) {
                        Some(s @ (Seen::Capture(_) | Seen::Other)) => s.clone(),
                        _ => probe_kind(Path::new(&path)),
                    };
                    (path, seen)
                })
                .collect()
        }
    };
    let mut known = {
        let scan = scan.clone();
        tokio::task::spawn_blocking(move || scan(BTreeMap::new()))
            .await
            .unwrap_or_default()
    };
    let inotify = inotify::Inotify::init().and_then(|i| {
        i.watches().add(
            &dev_dir,
            inotify::WatchMask::CREATE
                | inotify::WatchMask::DELETE
                | inotify::WatchMask::ATTRIB
                | inotify::WatchMask::MOVED_TO
                | inotify::WatchMask::MOVED_FROM,
        )?;
        i.into_event_stream(vec![0u8; 4096])
    });
    let mut stream = match inotify {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "inotify on {} unavailable ({e}); capture devices are polled every second",
                dev_dir.display()
            );
            None
        }
    };
    loop {
        match stream.as_mut() {
            Some(s) => {
                let mut relevant = false;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    ev = s.next() => match ev {
                        Some(Ok(ev)) => relevant = ev.name.as_ref().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("video")),
                        Some(Err(e)) => { tracing::warn!("inotify: {e}"); stream = None; }
                        None => stream = None,
                    },
                }
                if !relevant {
                    continue;
                }
                // udev creates the node, then sets owner and mode: let it finish.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None => tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            },
        }
        let prev = known.clone();
        let scan = scan.clone();
        let now = tokio::task::spawn_blocking(move || scan(prev))
            .await
            .unwrap_or_default();
        if now == known {
            continue;
        }
        for (path, seen) in &now {
            if let Seen::Capture(label) = seen {
                if !matches!(known.get(path), Some(Seen::Capture(_))) {
                    events.raise(Event {
                        details: Some(serde_json::json!({"device": path, "label": label})),
                        ..Event::new(
                            Severity::Info,
                            Category::Device,
                            format!("Capture device {path} connected ({label})"),
                        )
                    });
                }
            }
        }
        for (path, seen) in &known {
            if let Seen::Capture(label) = seen {
                if !matches!(now.get(path), Some(Seen::Capture(_))) {
                    events.raise(Event {
                        details: Some(serde_json::json!({"device": path, "label": label})),
                        ..Event::new(
                            Severity::Warning,
                            Category::Device,
                            format!("Capture device {path} ({label}) removed"),
                        )
                    });
                }
            }
        }
        changes.ping("capture devices");
        known = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_nodes_only() {
        // uvcvideo: video node, metadata node; a codec; vivid output.
        assert!(is_capture(0x0420_0001));
        assert!(!is_capture(0x0480_0000 | CAP_META_CAPTURE));
        assert!(!is_capture(0x0420_4000));
        assert!(!is_capture(CAP_VIDEO_CAPTURE | CAP_VIDEO_M2M));
        assert!(is_capture(0x0420_1000));
        assert!(!is_capture(0x0420_0002));
    }

    #[test]
    fn rates_print_like_the_field_writes_them() {
        let r = |num, den| Rate { num, den }.to_string();
        assert_eq!(r(30, 1), "30");
        assert_eq!(r(30000, 1001), "29.97");
        assert_eq!(r(60000, 1001), "59.94");
        assert_eq!(r(15, 2), "7.5");
        assert_eq!(r(50, 1), "50");
    }

    #[test]
    fn stepwise_ranges_give_common_sizes_and_rates() {
        let s = FrameSize::Stepwise {
            min_width: 16,
            max_width: 1920,
            step_width: 8,
            min_height: 16,
            max_height: 1080,
            step_height: 8,
        };
        let sizes = sizes_of(&s);
        assert_eq!(sizes[0], (1920, 1080));
        assert!(sizes.contains(&(1280, 720)));
        assert!(sizes.contains(&(640, 360)));
        assert!(!sizes.contains(&(3840, 2160)));
        let i = FrameInterval::Stepwise {
            min: Fraction {
                numerator: 1,
                denominator: 30,
            },
            max: Fraction {
                numerator: 1,
                denominator: 1,
            },
            step: Fraction {
                numerator: 1,
                denominator: 1000,
            },
        };
        let rates: Vec<String> = rates_of(&i).iter().map(ToString::to_string).collect();
        assert_eq!(rates, ["30", "29.97", "25", "24", "15", "10", "5"]);
    }

    #[test]
    fn empty_or_missing_sysfs_lists_nothing() {
        let empty = tempfile::tempdir().unwrap();
        let mut l = CaptureLister::default();
        assert!(l
            .list(empty.path(), empty.path(), Path::new("/proc"), &[])
            .is_empty());
        assert!(l
            .list(
                &empty.path().join("none"),
                Path::new("/dev"),
                Path::new("/proc"),
                &[]
            )
            .is_empty());
    }

    #[test]
    fn unopenable_nodes_are_listed_with_an_error() {
        let sys = tempfile::tempdir().unwrap();
        let dev = tempfile::tempdir().unwrap();
        fs::create_dir(sys.path().join("video0")).unwrap();
        // A regular file stands in for a node: opening works, QUERYCAP does not.
        fs::write(dev.path().join("video0"), b"").unwrap();
        let mut l = CaptureLister::default();
        let list = l.list(sys.path(), dev.path(), Path::new("/proc"), &[]);
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0].device, dev.path().join("video0").to_string_lossy());
        assert!(
            list[0]
                .error
                .as_deref()
                .unwrap()
                .contains("VIDIOC_QUERYCAP"),
            "{list:?}"
        );
        assert!(list[0].capabilities.is_empty());
    }

    #[test]
    fn open_files_of_other_processes_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("video9");
        fs::write(&node, b"").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(fs::File::open(&node).unwrap())
            .spawn()
            .unwrap();
        let other = dir.path().join("video8");
        fs::write(&other, b"").unwrap();
        let held = held_by_others(Path::new("/proc"), &[node.clone(), other.clone()]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(held.contains(&node), "{held:?}");
        assert!(!held.contains(&other));
        // Our own open files do not count.
        let _mine = fs::File::open(&other).unwrap();
        assert!(held_by_others(Path::new("/proc"), &[other]).is_empty());
    }
}
