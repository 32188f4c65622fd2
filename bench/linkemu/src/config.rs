//! Emulator configuration: a TOML file listing links (`[[link]]`), or one link from the
//! command line, resolved into [`LinkSpec`]s for the relay.
//!
//! ```toml
//! seed = 1                               # base of every link's loss/jitter seeds
//! [[link]]
//! name = "modem1"
//! listen = "127.0.0.1:20000"             # sender side: RTP on P (even), RTCP on P+1
//! forward = "127.0.0.1:21000"            # receiver's RTP port R (even); RTCP to R+1
//! rate_bps = 2_000_000                   # or: trace = "TMobile-LTE-short.up"
//! delay_ms = 15                          # one-way, forward
//! jitter_ms = 0
//! loss = 0.01                            # independent loss, forward
//! gilbert_elliott = { mean_loss = 0.02, mean_burst = 4 }   # or { p, r, loss_good, loss_bad }
//! queue_ms = 200                         # or queue_bytes = 60000
//! reverse = { delay_ms = 15, loss = 0.01 }                  # receiver -> sender, uncapped
//! events = [ { at_ms = 20000, action = "down" }, { at_ms = 40000, action = "up" },
//!            { at_ms = 50000, action = "rate", rate_bps = 1_000_000 } ]
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::loss::GilbertElliottConfig;
use crate::model::{Action, Capacity, Event, PathConfig, QueueLimit};
use crate::trace::Trace;

/// Queue size when a link gives neither `queue_ms` nor `queue_bytes` (ms of its rate).
pub const DEFAULT_QUEUE_MS: u64 = 1000;

/// A configuration error; the text names the link and the field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Base seed; link `i` uses `seed + i` unless it has its own.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Directory for relative `trace` paths (default: the config file's directory).
    #[serde(default)]
    pub traces_dir: Option<PathBuf>,
    /// The links.
    #[serde(default, rename = "link")]
    pub links: Vec<LinkConfig>,
}

fn default_seed() -> u64 {
    1
}

fn one() -> f64 {
    1.0
}

/// One link as written in the file (see the module example).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// Name in the report (default `link<i>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Sender-facing address: RTP port P (even), RTCP P+1.
    pub listen: SocketAddr,
    /// Receiver's RTP address R (even port); RTCP goes to R+1.
    pub forward: SocketAddr,
    /// Local address of the two sockets facing the receiver, ephemeral ports (default:
    /// the `forward` address when it is a loopback address, else any).
    #[serde(default)]
    pub bind_back: Option<IpAddr>,
    /// Fixed capacity (bit/s of IP datagrams).
    #[serde(default)]
    pub rate_bps: Option<u64>,
    /// Mahimahi trace file (capacity).
    #[serde(default)]
    pub trace: Option<PathBuf>,
    /// Start this far into the trace (ms).
    #[serde(default)]
    pub trace_offset_ms: u64,
    /// Multiplier of the trace's capacity.
    #[serde(default = "one")]
    pub trace_scale: f64,
    /// One-way propagation delay, forward (ms).
    #[serde(default)]
    pub delay_ms: f64,
    /// Jitter, forward (ms): delay ± uniform(jitter).
    #[serde(default)]
    pub jitter_ms: f64,
    /// Let jitter reorder datagrams.
    #[serde(default)]
    pub reorder: bool,
    /// Independent loss probability, forward (0..=1).
    #[serde(default)]
    pub loss: f64,
    /// Bursty loss, forward.
    #[serde(default)]
    pub gilbert_elliott: Option<GilbertElliottConfig>,
    /// Queue size in bytes.
    #[serde(default)]
    pub queue_bytes: Option<u64>,
    /// Queue size in ms of the link's rate.
    #[serde(default)]
    pub queue_ms: Option<u64>,
    /// Receiver → sender direction.
    #[serde(default)]
    pub reverse: ReverseConfig,
    /// Schedule.
    #[serde(default)]
    pub events: Vec<EventConfig>,
    /// Seed of this link (default: file seed + index).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// The reverse (receiver → sender) direction: uncapped, delayed, optionally lossy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseConfig {
    /// One-way delay (ms); default: the forward `delay_ms`.
    #[serde(default)]
    pub delay_ms: Option<f64>,
    /// Independent loss probability (0..=1).
    #[serde(default)]
    pub loss: f64,
    /// Bursty loss.
    #[serde(default)]
    pub gilbert_elliott: Option<GilbertElliottConfig>,
}

/// One scheduled event as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfig {
    /// Time since the emulator started (ms).
    pub at_ms: u64,
    /// `down`, `up` (both directions), `rate` (needs `rate_bps`), `scale` (needs
    /// `trace_scale`, trace links), `loss` (needs `loss`), `delay` (needs `delay_ms`).
    pub action: String,
    /// For `rate`.
    #[serde(default)]
    pub rate_bps: Option<u64>,
    /// For `scale`.
    #[serde(default)]
    pub trace_scale: Option<f64>,
    /// For `loss`.
    #[serde(default)]
    pub loss: Option<f64>,
    /// For `delay`.
    #[serde(default)]
    pub delay_ms: Option<f64>,
}

impl EventConfig {
    /// Parse the command-line form `AT_MS:ACTION[=VALUE]`, e.g. `20000:down`,
    /// `30000:rate=1000000`, `5000:loss=0.05`.
    pub fn parse_cli(s: &str) -> Result<Self, ConfigError> {
        let (at, rest) = s
            .split_once(':')
            .ok_or_else(|| ConfigError(format!("event {s:?}: expected AT_MS:ACTION[=VALUE]")))?;
        let at_ms = at
            .parse()
            .map_err(|_| ConfigError(format!("event {s:?}: {at:?} is not a time in ms")))?;
        let (action, value) = match rest.split_once('=') {
            Some((a, v)) => (a, Some(v)),
            None => (rest, None),
        };
        let num = |v: Option<&str>| -> Result<f64, ConfigError> {
            v.and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| ConfigError(format!("event {s:?}: {action} needs a number")))
        };
        let mut e = EventConfig {
            at_ms,
            action: action.to_owned(),
            ..Default::default()
        };
        match action {
            "rate" => e.rate_bps = Some(num(value)? as u64),
            "scale" => e.trace_scale = Some(num(value)?),
            "loss" => e.loss = Some(num(value)?),
            "delay" => e.delay_ms = Some(num(value)?),
            _ => {}
        }
        Ok(e)
    }
}

/// A validated link, ready for the relay.
#[derive(Debug, Clone)]
pub struct LinkSpec {
    /// Name in the report.
    pub name: String,
    /// Sender-facing RTP address (RTCP: port + 1).
    pub listen: SocketAddr,
    /// Receiver RTP address (RTCP: port + 1).
    pub forward: SocketAddr,
    /// Local address of the receiver-facing sockets.
    pub bind_back: IpAddr,
    /// Sender → receiver.
    pub forward_path: PathConfig,
    /// Receiver → sender.
    pub reverse_path: PathConfig,
}

fn ms(v: f64, what: &str, link: &str) -> Result<Duration, ConfigError> {
    if !(v.is_finite() && v >= 0.0) {
        return err(format!(
            "link {link}: {what} = {v} must be a non-negative number of ms"
        ));
    }
    Ok(Duration::from_secs_f64(v / 1000.0))
}

fn probability(v: f64, what: &str, link: &str) -> Result<f64, ConfigError> {
    if !(0.0..=1.0).contains(&v) {
        return err(format!(
            "link {link}: {what} = {v} is not a probability in [0, 1]"
        ));
    }
    Ok(v)
}

fn even_port(addr: SocketAddr, what: &str, link: &str) -> Result<(), ConfigError> {
    if !addr.port().is_multiple_of(2) || addr.port() == 0 || addr.port() > 65534 {
        return err(format!(
            "link {link}: {what} port {} must be even and in 2..=65534 (RTP on P, RTCP on P+1)",
            addr.port()
        ));
    }
    Ok(())
}

impl EmulatorConfig {
    /// Read a TOML file; relative trace paths are resolved against `traces_dir`, else the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        let mut cfg: EmulatorConfig =
            toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        if cfg.traces_dir.is_none() {
            cfg.traces_dir = path.parent().map(Path::to_path_buf);
        }
        Ok(cfg)
    }

    /// Validate every link and load its trace.
    pub fn resolve(&self) -> Result<Vec<LinkSpec>, ConfigError> {
        if self.links.is_empty() {
            return err("no links configured");
        }
        let mut specs = Vec::new();
        for (i, link) in self.links.iter().enumerate() {
            let spec = link.resolve(i, self.seed, self.traces_dir.as_deref())?;
            for other in &specs {
                let o: &LinkSpec = other;
                if o.listen.port().abs_diff(spec.listen.port()) < 2
                    && o.listen.ip() == spec.listen.ip()
                {
                    return err(format!(
                        "links {} and {} listen on overlapping ports {} and {}",
                        o.name, spec.name, o.listen, spec.listen
                    ));
                }
            }
            specs.push(spec);
        }
        Ok(specs)
    }
}

impl LinkConfig {
    /// Validate and resolve link number `index` of a file with base seed `seed`.
    pub fn resolve(
        &self,
        index: usize,
        seed: u64,
        traces_dir: Option<&Path>,
    ) -> Result<LinkSpec, ConfigError> {
        let name = self.name.clone().unwrap_or_else(|| format!("link{index}"));
        let n = name.as_str();
        even_port(self.listen, "listen", n)?;
        even_port(self.forward, "forward", n)?;
        let capacity = match (&self.rate_bps, &self.trace) {
            (Some(_), Some(_)) => {
                return err(format!("link {n}: give rate_bps or trace, not both"))
            }
            (None, None) => return err(format!("link {n}: give rate_bps or trace")),
            (Some(0), None) => return err(format!("link {n}: rate_bps must be > 0")),
            (Some(bps), None) => Capacity::Fixed { bps: *bps },
            (None, Some(path)) => {
                let path = match traces_dir {
                    Some(dir) if path.is_relative() => dir.join(path),
                    _ => path.clone(),
                };
                let trace =
                    Trace::load(&path).map_err(|e| ConfigError(format!("link {n}: {e}")))?;
                if !(self.trace_scale.is_finite() && self.trace_scale >= 0.0) {
                    return err(format!(
                        "link {n}: trace_scale {} must be >= 0",
                        self.trace_scale
                    ));
                }
                Capacity::Trace {
                    trace: Arc::new(trace),
                    offset: Duration::from_millis(self.trace_offset_ms),
                    scale: self.trace_scale,
                }
            }
        };
        let queue = match (self.queue_bytes, self.queue_ms) {
            (Some(_), Some(_)) => {
                return err(format!("link {n}: give queue_bytes or queue_ms, not both"))
            }
            (Some(b), None) => QueueLimit::Bytes(b),
            (None, Some(m)) => QueueLimit::Millis(m),
            (None, None) => QueueLimit::Millis(DEFAULT_QUEUE_MS),
        };
        let delay = ms(self.delay_ms, "delay_ms", n)?;
        let ge = |g: &Option<GilbertElliottConfig>| -> Result<_, ConfigError> {
            g.as_ref()
                .map(|g| {
                    g.resolve()
                        .map_err(|e| ConfigError(format!("link {n}: {e}")))
                })
                .transpose()
        };
        let seed = self.seed.unwrap_or(seed.wrapping_add(index as u64));
        let mut fwd_events = Vec::new();
        let mut rev_events = Vec::new();
        for e in &self.events {
            let at = Duration::from_millis(e.at_ms);
            let need = |v: Option<f64>, field: &str| {
                v.ok_or_else(|| {
                    ConfigError(format!(
                        "link {n}: event {:?} at {} ms needs {field}",
                        e.action, e.at_ms
                    ))
                })
            };
            let action = match e.action.as_str() {
                "down" => Action::Down,
                "up" => Action::Up,
                "rate" => {
                    let bps = need(e.rate_bps.map(|b| b as f64), "rate_bps")? as u64;
                    if bps == 0 {
                        return err(format!(
                            "link {n}: event rate at {} ms: rate_bps must be > 0",
                            e.at_ms
                        ));
                    }
                    Action::Rate(bps)
                }
                "scale" => {
                    if !matches!(capacity, Capacity::Trace { .. }) {
                        return err(format!(
                            "link {n}: event scale at {} ms on a link without a trace",
                            e.at_ms
                        ));
                    }
                    Action::TraceScale(need(e.trace_scale, "trace_scale")?.max(0.0))
                }
                "loss" => Action::Loss(probability(need(e.loss, "loss")?, "event loss", n)?),
                "delay" => Action::Delay(ms(need(e.delay_ms, "delay_ms")?, "event delay_ms", n)?),
                other => {
                    return err(format!(
                    "link {n}: unknown event action {other:?} (down, up, rate, scale, loss, delay)"
                ))
                }
            };
            if matches!(action, Action::Down | Action::Up) {
                rev_events.push(Event {
                    at,
                    action: action.clone(),
                });
            }
            fwd_events.push(Event { at, action });
        }
        let forward_path = PathConfig {
            capacity,
            queue,
            delay,
            jitter: ms(self.jitter_ms, "jitter_ms", n)?,
            reorder: self.reorder,
            loss: probability(self.loss, "loss", n)?,
            gilbert_elliott: ge(&self.gilbert_elliott)?,
            seed,
            events: fwd_events,
        };
        let reverse_path = PathConfig {
            capacity: Capacity::Unlimited,
            queue: QueueLimit::Unlimited,
            delay: match self.reverse.delay_ms {
                Some(d) => ms(d, "reverse.delay_ms", n)?,
                None => delay,
            },
            jitter: Duration::ZERO,
            reorder: false,
            loss: probability(self.reverse.loss, "reverse.loss", n)?,
            gilbert_elliott: ge(&self.reverse.gilbert_elliott)?,
            seed: seed ^ 0x5eed_5eed_5eed_5eed,
            events: rev_events,
        };
        let bind_back = self.bind_back.unwrap_or(match self.forward.ip() {
            ip if ip.is_loopback() => ip,
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        Ok(LinkSpec {
            name,
            listen: self.listen,
            forward: self.forward,
            bind_back,
            forward_path,
            reverse_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<LinkSpec>, ConfigError> {
        let cfg: EmulatorConfig = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        cfg.resolve()
    }

    #[test]
    fn full_example_resolves() {
        let specs = parse(
            r#"
            seed = 3
            [[link]]
            name = "m1"
            listen = "127.0.0.1:20000"
            forward = "127.0.0.1:21000"
            rate_bps = 2_000_000
            delay_ms = 15
            loss = 0.01
            gilbert_elliott = { mean_loss = 0.02, mean_burst = 4 }
            queue_ms = 200
            reverse = { delay_ms = 20, loss = 0.01 }
            events = [ { at_ms = 20000, action = "down" }, { at_ms = 40000, action = "up" },
                       { at_ms = 50000, action = "rate", rate_bps = 1_000_000 } ]
            [[link]]
            listen = "127.0.0.1:20002"
            forward = "127.0.0.1:21002"
            rate_bps = 5_000_000
            "#,
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        let m1 = &specs[0];
        assert_eq!(m1.name, "m1");
        assert_eq!(m1.forward_path.delay, Duration::from_millis(15));
        assert_eq!(m1.reverse_path.delay, Duration::from_millis(20));
        assert_eq!(m1.forward_path.queue, QueueLimit::Millis(200));
        assert_eq!(m1.forward_path.events.len(), 3);
        // down/up also cut the reverse direction; a rate change does not.
        assert_eq!(m1.reverse_path.events.len(), 2);
        assert_eq!(m1.forward_path.seed, 3);
        assert_eq!(specs[1].name, "link1");
        assert_eq!(specs[1].forward_path.seed, 4);
        assert_eq!(specs[1].reverse_path.delay, Duration::ZERO);
        assert_eq!(
            specs[1].forward_path.queue,
            QueueLimit::Millis(DEFAULT_QUEUE_MS)
        );
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        let base = "listen = \"127.0.0.1:20000\"\nforward = \"127.0.0.1:21000\"\n";
        for (extra, want) in [
            ("", "give rate_bps or trace"),
            ("rate_bps = 1\ntrace = \"x\"", "not both"),
            ("rate_bps = 0", "must be > 0"),
            ("rate_bps = 1\nloss = 1.5", "not a probability"),
            ("rate_bps = 1\ndelay_ms = -1", "non-negative"),
            (
                "rate_bps = 1\nqueue_ms = 1\nqueue_bytes = 1",
                "queue_bytes or queue_ms",
            ),
            ("trace = \"/nonexistent.up\"", "cannot read trace"),
            (
                "rate_bps = 1\nevents = [{ at_ms = 1, action = \"explode\" }]",
                "unknown event action",
            ),
            (
                "rate_bps = 1\nevents = [{ at_ms = 1, action = \"rate\" }]",
                "needs rate_bps",
            ),
            (
                "rate_bps = 1\nevents = [{ at_ms = 1, action = \"scale\", trace_scale = 2.0 }]",
                "without a trace",
            ),
            (
                "rate_bps = 1\ngilbert_elliott = { mean_loss = 2.0, mean_burst = 3 }",
                "mean_loss",
            ),
            ("rate_bps = 1\nbogus = 3", "unknown field"),
        ] {
            let text = format!("[[link]]\n{base}{extra}\n");
            let e = parse(&text).expect_err(extra);
            assert!(e.0.contains(want), "{extra:?}: {e}");
        }
        let odd = parse(
            "[[link]]\nlisten = \"127.0.0.1:20001\"\nforward = \"127.0.0.1:21000\"\nrate_bps = 1\n",
        )
        .unwrap_err();
        assert!(odd.0.contains("must be even"), "{odd}");
        let overlap = parse(&format!(
            "[[link]]\n{base}rate_bps = 1\n[[link]]\n{base}rate_bps = 1\n"
        ))
        .unwrap_err();
        assert!(overlap.0.contains("overlapping"), "{overlap}");
        assert!(parse("").unwrap_err().0.contains("no links"));
    }

    #[test]
    fn cli_events() {
        let e = EventConfig::parse_cli("30000:rate=1000000").unwrap();
        assert_eq!(
            (e.at_ms, e.action.as_str(), e.rate_bps),
            (30000, "rate", Some(1_000_000))
        );
        let e = EventConfig::parse_cli("20000:down").unwrap();
        assert_eq!((e.at_ms, e.action.as_str()), (20000, "down"));
        assert!(EventConfig::parse_cli("down").is_err());
        assert!(EventConfig::parse_cli("x:down").is_err());
        assert!(EventConfig::parse_cli("1:loss=abc").is_err());
    }
}
