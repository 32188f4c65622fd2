//! Keeping a stream on air when its source goes away (issue 7 "A lost source does
//! not end the stream").
//!
//! The switching itself is gst-plugins-rs `fallbackswitch` in the pipeline (source
//! on `sink_0`, a live slate on `sink_1`; the slate goes on air when the source has
//! delivered nothing for the plan's `switch_timeout_ms`, and the source comes back as
//! soon as it delivers again). The [`Supervisor`] adds what an element cannot:
//!
//! - end-of-stream of a source never reaches the encoder (a probe on the switch's
//!   source input drops it), so a file that ends or a camera that errors out leaves
//!   the slate on air instead of ending the pipeline;
//! - a source that failed (error on the bus, unexpected end) is restarted in place
//!   (its elements to `NULL` and back) with a backoff, and a live source that stalls
//!   on the slate for [`STALL_RESTART`] is restarted too; a looping media file is
//!   restarted at its end with a pad offset, so its running time goes on seamlessly;
//! - switches become [`SourceEvent`]s for the control plane.
//!
//! It is sans-IO in the mini-redis sense: bus messages and the time go in
//! ([`Supervisor::on_message`], [`Supervisor::poll`]), [`Action`]s come out, and the
//! caller runs [`RestartJob`]s (blocking state changes) where it may block. Messages
//! from the elements' streaming threads reach it through the bus as element messages
//! named [`SWITCH_MESSAGE`], [`EOS_MESSAGE`] and [`FLOWING_MESSAGE`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::plan::{names, AudioInput, SourcePlan, StreamPlan, STARTUP_SWITCH_TIMEOUT_MS};
use crate::{BuildError, AUDIO_SWITCH_NAME, VIDEO_SWITCH_NAME};

/// Element message posted by a switch when its active input changes: fields
/// `essence` (`video`|`audio`), `on-source` (bool), `running-time` (u64 ns).
pub const SWITCH_MESSAGE: &str = "braid-source-switch";
/// Element message posted when a source's end-of-stream was kept from the switch:
/// fields `essence`, `end-running-time` (u64 ns, end of its last buffer; 0 if none).
pub const EOS_MESSAGE: &str = "braid-source-eos";
/// Element message posted at the first buffer a source delivers after (re)starting:
/// field `essence`.
pub const FLOWING_MESSAGE: &str = "braid-source-flowing";

/// A live source on the slate this long without an error gets restarted (a hung
/// capture device recovers that way; one that merely has no signal loses nothing).
pub const STALL_RESTART: Duration = Duration::from_secs(5);
/// Restart backoff: first retry after this, doubling per failure.
const RESTART_FIRST: Duration = Duration::from_millis(500);
/// Restart backoff cap.
const RESTART_MAX: Duration = Duration::from_secs(5);

/// The two essences a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Essence {
    /// Picture.
    Video,
    /// Sound.
    Audio,
}

impl Essence {
    /// `video` or `audio`.
    pub fn as_str(self) -> &'static str {
        match self {
            Essence::Video => "video",
            Essence::Audio => "audio",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "video" => Some(Essence::Video),
            "audio" => Some(Essence::Audio),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Essence::Video => 0,
            Essence::Audio => 1,
        }
    }
}

/// What happened to a stream's source, for events (PROTOCOL.md §6, category
/// `stream`).
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// The slate (video) or silence (audio) went on air.
    Lost {
        /// Which essence.
        essence: Essence,
        /// Why, as far as known: the source's last error, `end of file`, or
        /// `no data for N ms`.
        reason: String,
    },
    /// The source is on air again.
    Restored {
        /// Which essence.
        essence: Essence,
        /// How long the slate was on air.
        after: Duration,
    },
}

/// What the caller of the [`Supervisor`] must do.
#[derive(Debug)]
pub enum Action {
    /// Report this (as an event; the caller also tracks `source_lost` timeouts).
    Report(SourceEvent),
    /// Run `job` (blocking) after `delay`, then hand its result to
    /// [`Supervisor::restart_done`].
    Restart {
        /// Wait this long first.
        delay: Duration,
        /// The restart.
        job: RestartJob,
    },
}

/// Restarting one source branch: its elements to `NULL`, pad offsets set, back to
/// the pipeline's state. Blocking; run it off async workers. `Send + 'static`.
#[derive(Debug, Clone)]
pub struct RestartJob {
    /// Index of the branch in the supervisor ([`SLATES`] for the slates' start).
    pub branch: usize,
    /// Elements, sources first.
    elements: Vec<gst::Element>,
    /// Offsets to set on the branch's tail pads, ns.
    offsets: Vec<(gst::Pad, i64)>,
    /// Start elements held in `NULL` (the slates) instead of restarting them.
    unlock: bool,
}

/// [`RestartJob::branch`] of the job that starts the slates.
pub const SLATES: usize = usize::MAX;

impl RestartJob {
    /// Do it. Errors: an element refused a state change (the device is still gone).
    pub fn run(&self) -> Result<(), String> {
        if self.unlock {
            for e in self.elements.iter().rev() {
                e.set_locked_state(false);
                e.sync_state_with_parent()
                    .map_err(|_| format!("{} did not start", e.name()))?;
            }
            return Ok(());
        }
        for e in &self.elements {
            e.set_state(gst::State::Null)
                .map_err(|_| format!("{} did not stop", e.name()))?;
        }
        for (pad, offset) in &self.offsets {
            pad.set_offset(*offset);
        }
        // Downstream first, so everything is ready when the source pushes.
        for e in self.elements.iter().rev() {
            e.sync_state_with_parent()
                .map_err(|_| format!("{} did not restart", e.name()))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BranchKind {
    /// Capture or generator: restart on failure, offset 0 (timestamps are running
    /// time already).
    Live,
    /// A media file: its timestamps start at 0 each pass.
    File { looping: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BranchStatus {
    Running,
    /// Done for good (a file that ended without looping).
    Ended,
    /// A restart is scheduled or running.
    Restarting,
}

#[derive(Debug)]
struct Branch {
    kind: BranchKind,
    /// Human label: `/dev/video0`, `hw:1,0`, the file name, `test pattern`.
    label: String,
    elements: Vec<gst::Element>,
    /// Essences this branch feeds, with the tail pad (src pad into the switch).
    tails: Vec<(Essence, gst::Pad)>,
    status: BranchStatus,
    failures: u32,
    last_error: Option<String>,
    /// Tails whose end-of-stream was seen in this pass, with their end running time.
    eos: Vec<(Essence, u64)>,
    last_restart: Option<Instant>,
}

#[derive(Debug, Default, Clone)]
struct EssenceState {
    present: bool,
    on_source: bool,
    /// The source delivered at least once.
    flowed: bool,
    lost_at: Option<Instant>,
}

/// Watches one built pipeline's sources; see the module doc.
#[derive(Debug)]
pub struct Supervisor {
    branches: Vec<Branch>,
    essences: [EssenceState; 2],
    switch_timeout: Duration,
    /// Slate elements, held in `NULL` until the sources have started (or the
    /// startup grace is over), so a slow camera does not open on the slate.
    slates: Vec<gst::Element>,
    slates_started: bool,
    attached_at: Instant,
}

fn backoff(failures: u32) -> Duration {
    RESTART_FIRST
        .saturating_mul(1u32 << failures.min(8))
        .min(RESTART_MAX)
}

/// Elements from `tail` upstream until an element with no linked sink pad.
fn walk_upstream(tail: &gst::Element) -> Vec<gst::Element> {
    let mut out = vec![tail.clone()];
    let mut cur = tail.clone();
    loop {
        let Some(prev) = cur
            .sink_pads()
            .first()
            .and_then(|p| p.peer())
            .and_then(|p| p.parent_element())
        else {
            break;
        };
        if out.contains(&prev) {
            break;
        }
        out.push(prev.clone());
        cur = prev;
    }
    out.reverse();
    out
}

/// State of the probe on a switch's source input.
struct InputProbe {
    segment: gst::FormattedSegment<gst::ClockTime>,
    armed: bool,
    last_end: Option<gst::ClockTime>,
}

/// Drop the source's EOS at the switch input (posting [`EOS_MESSAGE`]), track the
/// end running time of its buffers, and post [`FLOWING_MESSAGE`] at the first
/// buffer after each stream-start.
fn install_input_probe(switch: &gst::Element, input: &gst::Pad, essence: Essence) {
    let state = Arc::new(Mutex::new(InputProbe {
        segment: gst::FormattedSegment::new(),
        armed: true,
        last_end: None,
    }));
    let switch_weak = switch.downgrade();
    input.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_pad, info| {
            let Some(switch) = switch_weak.upgrade() else {
                return gst::PadProbeReturn::Ok;
            };
            let ret = input_probe(&switch, &state, essence, info);
            if ret == gst::PadProbeReturn::Handled {
                drop(info.take_event());
            }
            ret
        },
    );
}

/// One call of the switch input probe (see [`install_input_probe`]).
fn input_probe(
    switch: &gst::Element,
    state: &Mutex<InputProbe>,
    essence: Essence,
    info: &gst::PadProbeInfo,
) -> gst::PadProbeReturn {
    {
        {
            let mut st = state.lock().expect("probe state poisoned");
            match &info.data {
                Some(gst::PadProbeData::Buffer(buf)) => {
                    if let Some(pts) = buf.pts() {
                        let end = pts + buf.duration().unwrap_or(gst::ClockTime::ZERO);
                        if let Some(rt) = st.segment.to_running_time(end) {
                            st.last_end = Some(rt);
                        }
                    }
                    if st.armed {
                        st.armed = false;
                        drop(st);
                        let s = gst::Structure::builder(FLOWING_MESSAGE)
                            .field("essence", essence.as_str())
                            .build();
                        let _ = switch
                            .post_message(gst::message::Element::builder(s).src(switch).build());
                    }
                    gst::PadProbeReturn::Ok
                }
                Some(gst::PadProbeData::Event(ev)) => match ev.view() {
                    gst::EventView::StreamStart(_) => {
                        st.armed = true;
                        gst::PadProbeReturn::Ok
                    }
                    gst::EventView::Segment(seg) => {
                        if let Ok(s) = seg.segment().clone().downcast::<gst::ClockTime>() {
                            st.segment = s;
                        }
                        gst::PadProbeReturn::Ok
                    }
                    gst::EventView::Eos(_) => {
                        let end = st.last_end.map(|t| t.nseconds()).unwrap_or(0);
                        drop(st);
                        let s = gst::Structure::builder(EOS_MESSAGE)
                            .field("essence", essence.as_str())
                            .field("end-running-time", end)
                            .build();
                        let _ = switch
                            .post_message(gst::message::Element::builder(s).src(switch).build());
                        // Taken and handled (not `Drop`): the event is freed here and
                        // the upstream push reports success.
                        gst::PadProbeReturn::Handled
                    }
                    _ => gst::PadProbeReturn::Ok,
                },
                _ => gst::PadProbeReturn::Ok,
            }
        }
    }
}

/// Post [`SWITCH_MESSAGE`] whenever the switch's active input changes.
fn watch_switch(switch: &gst::Element, primary: &gst::Pad, essence: Essence) {
    let primary = primary.downgrade();
    switch.connect_notify(Some("active-pad"), move |sw, _| {
        let active = sw.property::<Option<gst::Pad>>("active-pad");
        let on_source = match (active, primary.upgrade()) {
            (Some(a), Some(p)) => a == p,
            _ => false,
        };
        let rt = match (sw.clock(), sw.base_time()) {
            (Some(clock), Some(base)) => clock.time().saturating_sub(base).nseconds(),
            _ => 0,
        };
        let s = gst::Structure::builder(SWITCH_MESSAGE)
            .field("essence", essence.as_str())
            .field("on-source", on_source)
            .field("running-time", rt)
            .build();
        let _ = sw.post_message(gst::message::Element::builder(s).src(sw).build());
    });
}

/// Link a decodebin's new pads to the chains that wait for them (after a restart
/// the launch parser's one-shot delayed links are gone).
fn relink_decodebin(pipeline: &gst::Pipeline) {
    let Some(dec) = pipeline.by_name(names::MEDIA_DECODE) else {
        return;
    };
    let pipeline_weak = pipeline.downgrade();
    dec.connect_pad_added(move |_, pad| {
        let Some(pipeline) = pipeline_weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let Some(kind) = caps.structure(0).map(|s| s.name().to_string()) else {
            return;
        };
        let head = if kind.starts_with("video/") {
            names::VIDEO_HEAD
        } else if kind.starts_with("audio/") {
            names::AUDIO_HEAD
        } else {
            return;
        };
        if let Some(sink) = pipeline.by_name(head).and_then(|e| e.static_pad("sink")) {
            if !sink.is_linked() && !pad.is_linked() {
                let _ = pad.link(&sink);
            }
        }
    });
}

impl Supervisor {
    /// Attach to a pipeline built from `plan` (state `Null`): install the probes and
    /// switch watchers, raise the switch timeouts to [`STARTUP_SWITCH_TIMEOUT_MS`]
    /// until each source delivers its first buffer. Errors:
    /// [`BuildError::MissingElement`] if the pipeline is not the plan's.
    pub fn attach(plan: &StreamPlan, pipeline: &gst::Pipeline) -> Result<Self, BuildError> {
        let mut essences: [EssenceState; 2] = Default::default();
        let mut tails: Vec<(Essence, gst::Element)> = Vec::new();
        let mut slates: Vec<gst::Element> = Vec::new();
        let mut switches = vec![(
            Essence::Video,
            VIDEO_SWITCH_NAME,
            names::VIDEO_TAIL,
            names::VIDEO_SLATE_TAIL,
        )];
        if plan.audio.is_some() {
            switches.push((
                Essence::Audio,
                AUDIO_SWITCH_NAME,
                names::AUDIO_TAIL,
                names::AUDIO_SLATE_TAIL,
            ));
        }
        for (essence, switch_name, tail_name, slate_name) in switches {
            let slate = pipeline
                .by_name(slate_name)
                .ok_or(BuildError::MissingElement(slate_name))?;
            for e in walk_upstream(&slate) {
                e.set_locked_state(true);
                slates.push(e);
            }
            let switch = pipeline
                .by_name(switch_name)
                .ok_or(BuildError::MissingElement(switch_name))?;
            let tail = pipeline
                .by_name(tail_name)
                .ok_or(BuildError::MissingElement(tail_name))?;
            let input = tail
                .static_pad("src")
                .and_then(|p| p.peer())
                .ok_or(BuildError::MissingElement(tail_name))?;
            install_input_probe(&switch, &input, essence);
            watch_switch(&switch, &input, essence);
            essences[essence.index()] = EssenceState {
                present: true,
                on_source: true,
                ..Default::default()
            };
            tails.push((essence, tail));
        }
        relink_decodebin(pipeline);

        let tail_pad = |e: &gst::Element| e.static_pad("src").expect("queues have a src pad");
        let mut branches = Vec::new();
        let video_tail = &tails[0].1;
        let audio_tail = tails.get(1).map(|(_, t)| t);
        match &plan.source {
            SourcePlan::Media { path, looping, .. } => {
                let mut elements = Vec::new();
                for name in [names::VIDEO_SRC, names::MEDIA_DECODE] {
                    elements.push(
                        pipeline
                            .by_name(name)
                            .ok_or(BuildError::MissingElement(name))?,
                    );
                }
                elements.extend(walk_upstream(video_tail));
                let mut branch_tails = vec![(Essence::Video, tail_pad(video_tail))];
                let file_audio = matches!(
                    plan.audio.as_ref().map(|a| &a.input),
                    Some(AudioInput::File)
                );
                if let (true, Some(at)) = (file_audio, audio_tail) {
                    elements.extend(walk_upstream(at));
                    branch_tails.push((Essence::Audio, tail_pad(at)));
                }
                branches.push(Branch::new(
                    BranchKind::File { looping: *looping },
                    path.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    elements,
                    branch_tails,
                ));
            }
            SourcePlan::V4l2 { device, .. } => branches.push(Branch::new(
                BranchKind::Live,
                device.display().to_string(),
                walk_upstream(video_tail),
                vec![(Essence::Video, tail_pad(video_tail))],
            )),
            SourcePlan::Test => branches.push(Branch::new(
                BranchKind::Live,
                "test pattern".into(),
                walk_upstream(video_tail),
                vec![(Essence::Video, tail_pad(video_tail))],
            )),
        }
        if let (Some(audio), Some(at)) = (&plan.audio, audio_tail) {
            let label = match &audio.input {
                AudioInput::Alsa { device } => Some(device.clone()),
                AudioInput::Tone => Some("test tone".into()),
                AudioInput::Silence => Some("silence".into()),
                AudioInput::File => None,
            };
            if let Some(label) = label {
                branches.push(Branch::new(
                    BranchKind::Live,
                    label,
                    walk_upstream(at),
                    vec![(Essence::Audio, tail_pad(at))],
                ));
            }
        }
        Ok(Supervisor {
            branches,
            essences,
            switch_timeout: Duration::from_millis(plan.switch_timeout_ms),
            slates,
            slates_started: false,
            attached_at: Instant::now(),
        })
    }

    /// Label of the source feeding `essence` (`/dev/video0`, `hw:1,0`, a file name).
    pub fn source_label(&self, essence: Essence) -> Option<&str> {
        self.branch_of(essence)
            .map(|i| self.branches[i].label.as_str())
    }

    /// Whether `essence` is on its source (not the slate / silence) right now.
    pub fn on_source(&self, essence: Essence) -> bool {
        let e = &self.essences[essence.index()];
        e.present && e.on_source
    }

    fn branch_of(&self, essence: Essence) -> Option<usize> {
        self.branches
            .iter()
            .position(|b| b.tails.iter().any(|(e, _)| *e == essence))
    }

    /// Index of the branch an element belongs to (the element or one of its
    /// ancestors is one of the branch's elements).
    fn branch_of_object(&self, obj: &gst::Object) -> Option<usize> {
        let mut cur = Some(obj.clone());
        while let Some(o) = cur {
            if let Ok(e) = o.clone().downcast::<gst::Element>() {
                if let Some(i) = self.branches.iter().position(|b| b.elements.contains(&e)) {
                    return Some(i);
                }
            }
            cur = o.parent();
        }
        None
    }

    fn restart(&mut self, i: usize, delay: Duration, now: Instant) -> Action {
        let b = &mut self.branches[i];
        b.status = BranchStatus::Restarting;
        b.last_restart = Some(now + delay);
        let offsets = match b.kind {
            BranchKind::Live => Vec::new(),
            BranchKind::File { .. } => {
                let end = b.eos.iter().map(|(_, t)| *t).max().unwrap_or(0);
                let end = i64::try_from(end).unwrap_or(i64::MAX);
                b.tails.iter().map(|(_, p)| (p.clone(), end)).collect()
            }
        };
        b.eos.clear();
        Action::Restart {
            delay,
            job: RestartJob {
                branch: i,
                elements: b.elements.clone(),
                offsets,
                unlock: false,
            },
        }
    }

    /// Handle one bus message. `None`: not the supervisor's business (the caller
    /// handles it as before). `Some(actions)`: handled, including errors and
    /// warnings of source elements, which must not end the stream.
    pub fn on_message(&mut self, msg: &gst::Message, now: Instant) -> Option<Vec<Action>> {
        match msg.view() {
            gst::MessageView::Element(e) => {
                let s = e.structure()?;
                let essence = s.get::<&str>("essence").ok().and_then(Essence::parse)?;
                match s.name().as_str() {
                    SWITCH_MESSAGE => {
                        let on_source = s.get::<bool>("on-source").unwrap_or(false);
                        Some(self.on_switch(essence, on_source, now))
                    }
                    EOS_MESSAGE => {
                        let end = s.get::<u64>("end-running-time").unwrap_or(0);
                        Some(self.on_eos(essence, end, now))
                    }
                    FLOWING_MESSAGE => {
                        if let Some(i) = self.branch_of(essence) {
                            let b = &mut self.branches[i];
                            b.status = BranchStatus::Running;
                            b.failures = 0;
                        }
                        self.essences[essence.index()].flowed = true;
                        let all = self.essences.iter().all(|e| !e.present || e.flowed);
                        Some(if all { self.start_slates() } else { Vec::new() })
                    }
                    _ => None,
                }
            }
            gst::MessageView::Error(err) => {
                let i = self.branch_of_object(&msg.src()?.clone())?;
                let text = format!("{}", err.error());
                let b = &mut self.branches[i];
                b.last_error = Some(text);
                if b.status == BranchStatus::Restarting {
                    return Some(Vec::new());
                }
                if b.kind == (BranchKind::File { looping: false }) {
                    b.status = BranchStatus::Ended;
                    return Some(Vec::new());
                }
                let delay = backoff(b.failures);
                b.failures += 1;
                Some(vec![self.restart(i, delay, now)])
            }
            gst::MessageView::Warning(_) => {
                self.branch_of_object(&msg.src()?.clone())?;
                Some(Vec::new())
            }
            _ => None,
        }
    }

    fn on_switch(&mut self, essence: Essence, on_source: bool, now: Instant) -> Vec<Action> {
        let branch = self.branch_of(essence);
        let st = &mut self.essences[essence.index()];
        let was = st.on_source;
        st.on_source = on_source;
        if on_source {
            let lost_at = st.lost_at.take();
            if let Some(i) = branch {
                self.branches[i].last_error = None;
            }
            match (was, lost_at) {
                (false, Some(at)) => vec![Action::Report(SourceEvent::Restored {
                    essence,
                    after: now.saturating_duration_since(at),
                })],
                _ => Vec::new(),
            }
        } else {
            if !was {
                return Vec::new();
            }
            st.lost_at = Some(now);
            let reason = branch
                .and_then(|i| {
                    let b = &self.branches[i];
                    b.last_error.clone().or_else(|| {
                        (b.status == BranchStatus::Ended
                            || b.eos.iter().any(|(e, _)| *e == essence))
                        .then(|| "end of stream".to_owned())
                    })
                })
                .unwrap_or_else(|| format!("no data for {} ms", self.switch_timeout.as_millis()));
            vec![Action::Report(SourceEvent::Lost { essence, reason })]
        }
    }

    fn on_eos(&mut self, essence: Essence, end: u64, now: Instant) -> Vec<Action> {
        let Some(i) = self.branch_of(essence) else {
            return Vec::new();
        };
        let b = &mut self.branches[i];
        if b.status == BranchStatus::Restarting {
            return Vec::new();
        }
        b.eos.retain(|(e, _)| *e != essence);
        b.eos.push((essence, end));
        match b.kind {
            BranchKind::File { looping } => {
                if b.eos.len() < b.tails.len() {
                    return Vec::new();
                }
                if looping {
                    b.failures = 0;
                    vec![self.restart(i, Duration::ZERO, now)]
                } else {
                    b.status = BranchStatus::Ended;
                    Vec::new()
                }
            }
            BranchKind::Live => {
                let delay = backoff(b.failures);
                b.failures += 1;
                vec![self.restart(i, delay, now)]
            }
        }
    }

    /// Hand back the result of a [`RestartJob`]. A failed restart is retried with
    /// the next backoff step.
    pub fn restart_done(
        &mut self,
        branch: usize,
        result: Result<(), String>,
        now: Instant,
    ) -> Vec<Action> {
        let Some(b) = self.branches.get_mut(branch) else {
            return Vec::new();
        };
        match result {
            Ok(()) => {
                // Running once data flows (FLOWING_MESSAGE); a restart that yields
                // nothing is caught by the stall check.
                b.status = BranchStatus::Running;
                Vec::new()
            }
            Err(e) => {
                b.last_error = Some(e);
                let delay = backoff(b.failures);
                b.failures += 1;
                vec![self.restart(branch, delay, now)]
            }
        }
    }

    /// The job that starts the slates, once.
    fn start_slates(&mut self) -> Vec<Action> {
        if self.slates_started {
            return Vec::new();
        }
        self.slates_started = true;
        vec![Action::Restart {
            delay: Duration::ZERO,
            job: RestartJob {
                branch: SLATES,
                elements: self.slates.clone(),
                offsets: Vec::new(),
                unlock: true,
            },
        }]
    }

    /// Periodic check (call about once a second): the slates start after the
    /// startup grace ([`STARTUP_SWITCH_TIMEOUT_MS`]) even if a source never
    /// delivered; a live source that has left the slate on air for
    /// [`STALL_RESTART`] since it went off air or was last restarted, with nothing
    /// else in progress, is restarted.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if now.saturating_duration_since(self.attached_at)
            >= Duration::from_millis(STARTUP_SWITCH_TIMEOUT_MS)
        {
            out.extend(self.start_slates());
        }
        for i in 0..self.branches.len() {
            let b = &self.branches[i];
            if b.kind != BranchKind::Live || b.status != BranchStatus::Running {
                continue;
            }
            let lost_since = b
                .tails
                .iter()
                .filter_map(|(e, _)| {
                    let st = &self.essences[e.index()];
                    (!st.on_source).then_some(st.lost_at).flatten()
                })
                .min();
            let Some(lost_since) = lost_since else {
                continue;
            };
            let since = b.last_restart.map_or(lost_since, |r| r.max(lost_since));
            if now.saturating_duration_since(since) >= STALL_RESTART {
                out.push(self.restart(i, Duration::ZERO, now));
            }
        }
        out
    }
}

impl Branch {
    fn new(
        kind: BranchKind,
        label: String,
        elements: Vec<gst::Element>,
        tails: Vec<(Essence, gst::Pad)>,
    ) -> Self {
        let mut uniq: Vec<gst::Element> = Vec::new();
        for e in elements {
            if !uniq.contains(&e) {
                uniq.push(e);
            }
        }
        Branch {
            kind,
            label,
            elements: uniq,
            tails,
            status: BranchStatus::Running,
            failures: 0,
            last_error: None,
            eos: Vec::new(),
            last_restart: None,
        }
    }
}

/// Stop a built pipeline cleanly: the switches stop switching (a source that stops
/// because of the EOS must not bring the slate, and its stream-start, after it),
/// and end-of-stream goes in right after each switch (the sources' own EOS is kept
/// from the switches by the supervisor's probes), so the encoders drain and the mux
/// and sink finish. The caller waits for the pipeline's EOS message. Returns
/// whether the EOS reached every switch output.
pub fn send_eos(pipeline: &gst::Pipeline) -> bool {
    let mut all = true;
    for name in [VIDEO_SWITCH_NAME, AUDIO_SWITCH_NAME] {
        let Some(switch) = pipeline.by_name(name) else {
            continue;
        };
        switch.set_property("auto-switch", false);
        let sent = switch
            .static_pad("src")
            .and_then(|p| p.peer())
            .map(|peer| peer.send_event(gst::event::Eos::new()))
            .unwrap_or(false);
        all &= sent;
    }
    all
}
