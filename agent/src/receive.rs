//! `braid-agent receive --config FILE`: the platform side of a bonded stream.
//! A `ristbondsrc` (docs/elements.md) merges the links of one sender and hands
//! the MPEG-TS to an output: UDP (unicast or multicast, 7 TS packets per
//! datagram), SRT (`srtsink`, e.g. a listener for a playout or a decoder), or a
//! file. systemd runs one per config as `braid-receiver@NAME.service` from
//! `/etc/braid/receiver-NAME.conf` (`Type=notify`: `READY=1` once the pipeline
//! plays, `STATUS=` with the receive counters).
//!
//! ```toml
//! [input]
//! links = ["rist://@0.0.0.0:15000", "rist://@0.0.0.0:15002"]  # even ports; RTCP on port+1
//! latency_ms = 1000            # reorder / retransmission buffer, ms (1-60000)
//! stats_interval_ms = 1000     # period of the counters in STATUS=, ms
//! [output]
//! type = "udp"                 # udp | srt | file
//! address = "239.10.10.1:5000" # udp: HOST:PORT (multicast allowed)
//! multicast_iface = "eth1"     # udp, optional
//! ttl = 16                     # udp multicast TTL, optional (default 1)
//! # type = "srt"; uri = "srt://:9000?mode=listener"
//! # type = "file"; path = "/var/lib/braid/receiver-NAME.ts"
//! ```
//!
//! Runs until SIGTERM/SIGINT (then EOS is sent so a file is complete), or until
//! the pipeline fails (exit status 1; the unit restarts it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::StreamExt;
use gst::prelude::*;
use ristbond_core::link::LinkUri;
use serde::Deserialize;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{parse_toml, read_file, ConfigError, Source};
use crate::notify;

/// How long a stop waits for EOS to reach the output.
const EOS_TIMEOUT: Duration = Duration::from_secs(3);

/// A receiver config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// `[input]`: the bonded RIST links.
    pub input: Input,
    /// `[output]`: where the merged TS goes.
    pub output: Output,
}

/// `[input]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Listen URIs `rist://@BIND_IP:PORT[?iface=IF]`, PORT even (TR-06-1 §5.1).
    pub links: Vec<String>,
    /// `ristbondsrc latency`: reorder / recovery buffer, ms (default 1000).
    #[serde(default = "default_latency")]
    pub latency_ms: u32,
    /// `ristbondsrc stats-interval`, ms (default 1000).
    #[serde(default = "default_stats_interval")]
    pub stats_interval_ms: u32,
}

/// `[output]`, selected by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Output {
    /// MPEG-TS over UDP (`tsparse alignment=7 ! udpsink`): 7 × 188-byte TS
    /// packets per datagram (SMPTE 2022-2 / the usual IPTV framing).
    Udp {
        /// `HOST:PORT` (`[V6]:PORT`); a multicast group is allowed.
        address: String,
        /// Interface for multicast output (`udpsink multicast-iface`).
        #[serde(default)]
        multicast_iface: Option<String>,
        /// Multicast TTL (`udpsink ttl-mc`, default 1).
        #[serde(default)]
        ttl: Option<u8>,
    },
    /// SRT (`tsparse alignment=7 ! srtsink uri=…`, 1316-byte messages), e.g.
    /// `srt://:9000?mode=listener`.
    Srt {
        /// The `srt://` URI with its query options.
        uri: String,
    },
    /// A TS file (`filesink`), overwritten at start.
    File {
        /// Absolute path (under /var/lib/braid for the packaged unit).
        path: PathBuf,
    },
}

fn default_latency() -> u32 {
    1000
}
fn default_stats_interval() -> u32 {
    1000
}

/// What to do about a wrong or missing receiver key.
fn receiver_fix(key: &str) -> Option<String> {
    // `input.links[1]` has the advice of `input.links`.
    let key = key.split('[').next().unwrap_or(key);
    let fix = match key {
        "input" => "add an [input] table with `links = [\"rist://@0.0.0.0:15000\"]`",
        "input.links" => {
            "list the listen URIs, e.g. `links = [\"rist://@0.0.0.0:15000\", \
             \"rist://@0.0.0.0:15002\"]` (even ports; port+1 is RTCP)"
        }
        "input.latency_ms" => "give a whole number of ms, 1-60000, e.g. `latency_ms = 1000`",
        "input.stats_interval_ms" => "give a whole number of ms, e.g. 1000 (0 = no counters)",
        "output" => {
            "add an [output] table with `type = \"udp\"` and `address = \"HOST:PORT\"` \
             (or type \"srt\" with `uri`, or type \"file\" with `path`)"
        }
        "output.type" => "set `type` to \"udp\", \"srt\" or \"file\"",
        "output.address" => "give `address = \"HOST:PORT\"`, e.g. \"239.10.10.1:5000\"",
        "output.uri" => "give `uri = \"srt://HOST:PORT\"` or \"srt://:PORT?mode=listener\"",
        "output.path" => "give an absolute `path`, e.g. \"/var/lib/braid/receiver.ts\"",
        _ => return None,
    };
    Some(fix.to_owned())
}

impl ReceiverConfig {
    /// Read and validate a receiver config. Errors ([`ConfigError`]) name the
    /// file, line and fix: unreadable, TOML syntax, unknown key, no links, a
    /// link that is not `rist://@IP:EVEN_PORT`, latency out of 1-60000 ms, a
    /// bad UDP address, SRT URI or file path.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_file(
            path,
            "create it (example: /usr/share/doc/braid/examples/receiver.conf), named \
             /etc/braid/receiver-NAME.conf for braid-receiver@NAME.service",
        )?;
        Self::parse(&text, path)
    }

    /// Parse and validate receiver config text; `path` is for messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Self = parse_toml(text, path, &receiver_fix)?;
        let source = Source::new(path, text);
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            at: source.at_key(key),
            key: key.to_owned(),
            message,
            fix: receiver_fix(key).unwrap_or_else(|| "correct the value".into()),
        };
        if config.input.links.is_empty() {
            return Err(invalid("input.links", "no links".into()));
        }
        for (i, link) in config.input.links.iter().enumerate() {
            let uri = LinkUri::parse(link)
                .map_err(|e| invalid(&format!("input.links[{i}]"), e.to_string()))?;
            if !uri.listen {
                return Err(invalid(
                    &format!("input.links[{i}]"),
                    format!("{link} is a destination; a receiver listens: rist://@BIND_IP:PORT"),
                ));
            }
        }
        if !(1..=60_000).contains(&config.input.latency_ms) {
            return Err(invalid(
                "input.latency_ms",
                format!("{} is out of 1-60000", config.input.latency_ms),
            ));
        }
        match &config.output {
            Output::Udp { address, .. } => {
                split_host_port(address).map_err(|m| invalid("output.address", m))?;
            }
            Output::Srt { uri } => {
                if !uri.starts_with("srt://") {
                    return Err(invalid("output.uri", format!("{uri} is not an srt:// URI")));
                }
            }
            Output::File { path } => {
                if !path.is_absolute() {
                    return Err(invalid(
                        "output.path",
                        format!("{} is not absolute", path.display()),
                    ));
                }
            }
        }
        Ok(config)
    }

    /// The `gst-launch-1.0` description of this receiver (run with
    /// `gst::parse::launch`; printable for a manual run).
    pub fn description(&self) -> String {
        let input = format!(
            "ristbondsrc name=src links={} latency={} stats-interval={}",
            quote(&self.input.links.join(",")),
            self.input.latency_ms,
            self.input.stats_interval_ms
        );
        let output = match &self.output {
            Output::Udp {
                address,
                multicast_iface,
                ttl,
            } => {
                // validate() checked the address.
                let (host, port) = split_host_port(address).unwrap_or_default();
                let mut s = format!(
                    "tsparse alignment=7 ! udpsink name=out host={} port={port} sync=false async=false",
                    quote(&host)
                );
                if let Some(iface) = multicast_iface {
                    s.push_str(&format!(" multicast-iface={}", quote(iface)));
                }
                if let Some(ttl) = ttl {
                    s.push_str(&format!(" ttl-mc={ttl}"));
                }
                s
            }
            Output::Srt { uri } => format!(
                "tsparse alignment=7 ! srtsink name=out uri={} wait-for-connection=false sync=false async=false",
                quote(uri)
            ),
            Output::File { path } => format!(
                "filesink name=out location={} sync=false async=false",
                quote(&path.to_string_lossy())
            ),
        };
        format!("{input} ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 ! {output}")
    }
}

/// `HOST:PORT` / `[V6]:PORT` → (host, port). Errors: a message for the user.
fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{address}: unterminated '['"))?;
        (host, after.strip_prefix(':').unwrap_or(""))
    } else {
        address
            .rsplit_once(':')
            .ok_or_else(|| format!("{address}: expected HOST:PORT"))?
    };
    if host.is_empty() {
        return Err(format!("{address}: no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host.to_owned(), p)),
        _ => Err(format!("{address}: port {port:?} is not 1-65535")),
    }
}

/// A double-quoted `gst-launch` value.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One line of receive counters from the source's `ristbond-stats`
/// (docs/elements.md), for `STATUS=` and the log.
fn stats_line(s: &gst::StructureRef) -> String {
    let get = |f: &str| s.get::<u64>(f).unwrap_or(0);
    let links: Vec<String> = s
        .get::<gst::Array>("links")
        .map(|a| {
            a.iter()
                .filter_map(|v| v.get::<gst::Structure>().ok())
                .map(|l| {
                    format!(
                        "{}={}",
                        l.get::<u32>("id").unwrap_or(0),
                        l.get::<u64>("received-packets").unwrap_or(0)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "receiving: {} packets delivered, {} recovered, {} lost, {} duplicates; per link {}",
        get("packets-delivered"),
        get("packets-recovered"),
        get("packets-lost"),
        get("duplicates"),
        links.join(" ")
    )
}

async fn set_state(pipeline: &gst::Pipeline, state: gst::State) -> anyhow::Result<()> {
    let p = pipeline.clone();
    tokio::task::spawn_blocking(move || p.set_state(state).map(|_| ()))
        .await
        .context("state change task")?
        .with_context(|| format!("receiver pipeline to {state:?}"))
}

fn bus_error(err: &gst::message::Error) -> anyhow::Error {
    anyhow!(
        "receiver pipeline: {}: {} ({})",
        err.src().map(|s| s.name().to_string()).unwrap_or_default(),
        err.error(),
        err.debug().unwrap_or_default()
    )
}

/// Run the receiver described by the config at `path` until SIGTERM/SIGINT.
/// Errors: config ([`ConfigError`] with file, line and fix), GStreamer set-up,
/// or a pipeline error (a port in use, an unreachable output, …).
pub async fn run(path: &Path) -> anyhow::Result<()> {
    let config = ReceiverConfig::load(path)?;
    crate::media::init()?;
    let desc = config.description();
    tracing::info!("receiver {}: {desc}", path.display());
    let pipeline = gst::parse::launch(&desc)
        .with_context(|| format!("receiver pipeline `{desc}`"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("receiver description is not a pipeline"))?;
    let bus = pipeline.bus().context("pipeline without bus")?;
    let mut messages = bus.stream();
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    notify::spawn_watchdog(&tracker, cancel.clone());
    tracker.close();

    if let Err(e) = set_state(&pipeline, gst::State::Playing).await {
        let detail = bus
            .pop_filtered(&[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(err) => Some(bus_error(err)),
                _ => None,
            });
        let _ = set_state(&pipeline, gst::State::Null).await;
        cancel.cancel();
        return Err(detail.unwrap_or(e));
    }

    let outcome: anyhow::Result<bool> = loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break Ok(true) }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break Ok(true) }
            msg = messages.next() => {
                let Some(msg) = msg else { break Err(anyhow!("pipeline bus closed")) };
                match msg.view() {
                    gst::MessageView::Error(err) => break Err(bus_error(err)),
                    gst::MessageView::Eos(_) => {
                        tracing::info!("end of stream");
                        break Ok(false);
                    }
                    gst::MessageView::StateChanged(sc)
                        if sc.src() == Some(pipeline.upcast_ref())
                            && sc.current() == gst::State::Playing =>
                    {
                        let ready = format!("listening on {}", config.input.links.join(", "));
                        tracing::info!("{ready}");
                        notify::ready(&ready);
                    }
                    gst::MessageView::Element(el) => {
                        if let Some(s) = el.structure().filter(|s| s.name() == "ristbond-stats") {
                            let line = stats_line(s);
                            tracing::debug!("{line}");
                            notify::status(&line);
                        }
                    }
                    _ => {}
                }
            }
        }
    };
    notify::stopping();
    if matches!(outcome, Ok(true)) {
        // Let EOS reach the output so a file is complete.
        pipeline.send_event(gst::event::Eos::new());
        let drained = tokio::time::timeout(EOS_TIMEOUT, async {
            while let Some(msg) = messages.next().await {
                if matches!(
                    msg.view(),
                    gst::MessageView::Eos(_) | gst::MessageView::Error(_)
                ) {
                    return;
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("EOS did not reach the output within {EOS_TIMEOUT:?}");
        }
    }
    set_state(&pipeline, gst::State::Null).await?;
    cancel.cancel();
    tracker.wait().await;
    outcome.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ReceiverConfig, ConfigError> {
        ReceiverConfig::parse(text, Path::new("/etc/braid/receiver-a.conf"))
    }

    const INPUT: &str =
        "[input]\nlinks = [\"rist://@0.0.0.0:15000\", \"rist://@127.0.0.1:15002\"]\n";

    #[test]
    fn outputs_render_as_launch_descriptions() {
        let c = parse(&format!(
            "{INPUT}latency_ms = 500\n[output]\ntype = \"udp\"\naddress = \"239.1.1.1:5000\"\nmulticast_iface = \"eth1\"\nttl = 8\n"
        ))
        .unwrap();
        assert_eq!(
            c.description(),
            "ristbondsrc name=src links=\"rist://@0.0.0.0:15000,rist://@127.0.0.1:15002\" latency=500 stats-interval=1000 \
             ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 \
             ! tsparse alignment=7 ! udpsink name=out host=\"239.1.1.1\" port=5000 sync=false async=false multicast-iface=\"eth1\" ttl-mc=8"
        );
        let c = parse(&format!(
            "{INPUT}[output]\ntype = \"srt\"\nuri = \"srt://:9000?mode=listener\"\n"
        ))
        .unwrap();
        assert!(c
            .description()
            .ends_with("tsparse alignment=7 ! srtsink name=out uri=\"srt://:9000?mode=listener\" wait-for-connection=false sync=false async=false"));
        let c = parse(&format!(
            "{INPUT}[output]\ntype = \"file\"\npath = \"/var/lib/braid/a \\\"b\\\".ts\"\n"
        ))
        .unwrap();
        assert!(c.description().ends_with(
            r#"filesink name=out location="/var/lib/braid/a \"b\".ts" sync=false async=false"#
        ));
        assert_eq!(
            split_host_port("[ff02::1]:5000").unwrap(),
            ("ff02::1".into(), 5000)
        );
    }

    #[test]
    fn bad_configs_name_line_and_fix() {
        let err = parse(&format!(
            "{INPUT}[output]\ntype = \"udp\"\naddress = \"h:1\"\nttl_mc = 3\n"
        ))
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{text}");
        assert!(text.contains("unknown key"), "{text}");
        assert!(text.contains("ttl_mc"), "{text}");
        assert!(text.contains("fix:"), "{text}");

        let err = parse(
            "[input]\nlinks = [\n  \"rist://@0.0.0.0:15000\",\n  \"rist://@0.0.0.0:15001\",\n]\n[output]\ntype = \"file\"\npath = \"/x.ts\"\n",
        )
        .unwrap_err();
        assert_eq!(err.at().line, Some(4), "{err}");
        assert!(err.to_string().contains("odd"), "{err}");
        assert!(
            err.to_string().contains("fix: list the listen URIs"),
            "{err}"
        );

        let err = parse(
            "[input]\nlinks = [\"rist://10.0.0.1:15000\"]\n[output]\ntype = \"file\"\npath = \"/x.ts\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("a receiver listens"), "{err}");

        let err = parse(&format!("{INPUT}[output]\ntype = \"rtmp\"\n")).unwrap_err();
        assert!(err.to_string().contains("rtmp"), "{err}");
        assert!(err.to_string().contains("fix:"), "{err}");

        let err = parse(&format!(
            "{INPUT}[output]\ntype = \"udp\"\naddress = \"nohost\"\n"
        ))
        .unwrap_err();
        assert_eq!(err.at().line, Some(5), "{err}");
        let err = parse(&format!(
            "{INPUT}[output]\ntype = \"file\"\npath = \"rel.ts\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("not absolute"), "{err}");
        let err = parse("[input]\nlinks = []\n[output]\ntype = \"file\"\npath = \"/x.ts\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("no links"), "{err}");
        assert_eq!(err.at().line, Some(2), "{err}");
    }

    /// The example shipped in the package parses.
    #[test]
    fn packaged_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/receiver.conf");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = ReceiverConfig::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(c.output, Output::Udp { .. }));
    }
}
