//! What the control task knows about streams, for `device.status.stream_state`,
//! `media_inputs[].status`, `health.status` and `health.streams_live`.

use std::collections::HashMap;

use braid_protocol::device::StreamState;
use braid_protocol::health::HealthStatus;
use braid_protocol::stream::{LinkState, SourceMode, StreamStart, StreamStats};

/// One stream as seen by the control task.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `media_inputs[].device` it uses: `test`, `/dev/video0`, or the file path.
    input: String,
    /// A `stream.start` is being carried out.
    starting: bool,
    /// A `stream.stop` is being carried out.
    stopping: bool,
    /// The last `stream.stats` had a link that was not `Live`.
    degraded: bool,
    /// The last `stream.stats` had no link `Live` or `Degraded`: nothing carries media.
    no_link: bool,
}

/// Streams starting, live or stopping, by stream id.
#[derive(Debug, Default)]
pub struct StreamBook {
    streams: HashMap<String, Entry>,
}

impl StreamBook {
    /// A `stream.start` was accepted for processing.
    pub fn on_start_requested(&mut self, spec: &StreamStart) {
        let input = match spec.source.mode {
            SourceMode::Test => "test".to_owned(),
            SourceMode::V4l2 => spec.source.device.clone().unwrap_or_default(),
            SourceMode::Media => spec.source.path.clone().unwrap_or_default(),
        };
        self.streams.entry(spec.stream_id.clone()).or_insert(Entry {
            input,
            starting: true,
            stopping: false,
            degraded: false,
            no_link: false,
        });
    }

    /// The start finished: live on success, forgotten on failure.
    pub fn on_start_done(&mut self, stream_id: &str, ok: bool) {
        if ok {
            if let Some(e) = self.streams.get_mut(stream_id) {
                e.starting = false;
            }
        } else if self.streams.get(stream_id).is_some_and(|e| e.starting) {
            self.streams.remove(stream_id);
        }
    }

    /// A `stream.stop` is being carried out.
    pub fn on_stop_requested(&mut self, stream_id: &str) {
        if let Some(e) = self.streams.get_mut(stream_id) {
            e.stopping = true;
        }
    }

    /// A `stream.stats` arrived (marks the stream live; remembers link health).
    pub fn on_stats(&mut self, stats: &StreamStats) {
        if let Some(e) = self.streams.get_mut(&stats.stream_id) {
            e.starting = false;
            e.degraded = stats.links.iter().any(|l| l.state != LinkState::Live);
            e.no_link = !stats
                .links
                .iter()
                .any(|l| matches!(l.state, LinkState::Live | LinkState::Degraded));
        }
    }

    /// A `stream.ended` arrived.
    pub fn on_ended(&mut self, stream_id: &str) {
        self.streams.remove(stream_id);
    }

    /// Aggregate state: `starting` if any stream is starting, else `stopping` if
    /// any is stopping, else `live` if any exists, else `idle`.
    pub fn state(&self) -> StreamState {
        let any = |f: fn(&Entry) -> bool| self.streams.values().any(f);
        if any(|e| e.starting) {
            StreamState::Starting
        } else if any(|e| e.stopping) {
            StreamState::Stopping
        } else if self.streams.is_empty() {
            StreamState::Idle
        } else {
            StreamState::Live
        }
    }

    /// Devices used by the streams.
    pub fn busy_inputs(&self) -> Vec<String> {
        self.streams.values().map(|e| e.input.clone()).collect()
    }

    /// Streams starting, live or stopping.
    pub fn count(&self) -> usize {
        self.streams.len()
    }

    /// Streams past their start (live or stopping).
    pub fn live_count(&self) -> usize {
        self.streams.values().filter(|e| !e.starting).count()
    }

    /// From the streams' last `stream.stats`: `critical` when a live stream has no
    /// link `Live` or `Degraded` (nothing carries its media), `degraded` when a link
    /// of a stream is not `Live`, else `ok`.
    pub fn health(&self) -> HealthStatus {
        if self.streams.values().any(|e| e.no_link) {
            HealthStatus::Critical
        } else if self.streams.values().any(|e| e.degraded) {
            HealthStatus::Degraded
        } else {
            HealthStatus::Ok
        }
    }

    /// Whether `stream_id` is starting, live or stopping.
    pub fn contains(&self, stream_id: &str) -> bool {
        self.streams.contains_key(stream_id)
    }

    /// Whether any stream is known.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_protocol::stream::{LinkStats, OutputStats};

    fn start(id: &str) -> StreamStart {
        serde_json::from_value(serde_json::json!({
            "stream_id": id,
            "source": {"mode": "test", "resolution": "320x240", "framerate": 30},
            "encoder": {"bitrate_kbps": 500},
            "bonding_config": {"links": [{"id": 0, "uri": "rist://127.0.0.1:15000"}]}
        }))
        .unwrap()
    }

    fn stats(id: &str, state: LinkState) -> StreamStats {
        StreamStats {
            stream_id: id.into(),
            uptime_s: 1,
            encoder_bitrate_kbps: 500,
            links: vec![LinkStats {
                id: 0,
                interface: "x".into(),
                state,
                rtt_ms: 0.0,
                loss_rate: 0.0,
                capacity_bps: 0,
                sent_bytes: 0,
                retransmitted_packets: 0,
                signal_dbm: None,
            }],
            output: OutputStats::default(),
        }
    }

    #[test]
    fn lifecycle() {
        let mut b = StreamBook::default();
        assert_eq!(b.state(), StreamState::Idle);
        b.on_start_requested(&start("a"));
        assert_eq!(b.state(), StreamState::Starting);
        assert_eq!(b.busy_inputs(), vec!["test".to_owned()]);
        b.on_start_done("a", true);
        assert_eq!(b.state(), StreamState::Live);
        assert_eq!(b.live_count(), 1);
        b.on_stats(&stats("a", LinkState::Down));
        assert_eq!(b.health(), HealthStatus::Critical);
        b.on_stats(&stats("a", LinkState::Degraded));
        assert_eq!(b.health(), HealthStatus::Degraded);
        b.on_stats(&stats("a", LinkState::Live));
        assert_eq!(b.health(), HealthStatus::Ok);
        b.on_stop_requested("a");
        assert_eq!(b.state(), StreamState::Stopping);
        b.on_ended("a");
        assert_eq!(b.state(), StreamState::Idle);
        b.on_start_requested(&start("b"));
        assert_eq!((b.count(), b.live_count()), (1, 0));
        b.on_start_done("b", false);
        assert!(b.is_empty());
    }
}
