//! The systems compared and their pipelines (gst-launch syntax, built in-process with
//! `gst::parse::launch`). Sender: a live source ending in `mpegtsmux name=mux`, then
//! the transport; receiver: the transport, then `fakesink name=out` whose sink pad
//! the receiver role probes.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// A transport under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// Braid `ristbondsink` → `ristbondsrc` over all links.
    Braid,
    /// GStreamer `ristsink bonding-method=round-robin` → `ristsrc bonding-addresses`.
    GstRr,
    /// GStreamer `ristsink bonding-method=broadcast` → `ristsrc bonding-addresses`.
    GstBroadcast,
    /// GStreamer `ristsink` → `ristsrc` over one link (no bonding).
    RistSingle,
    /// `udpsink` → `udpsrc` (MPEG-TS over UDP, no protection; B6 baseline).
    Udp,
    /// The source alone into `fakesink sync=true` (B6: what every sender process
    /// spends before the transport).
    SourceOnly,
}

impl System {
    /// Every system, in report order.
    pub const ALL: [System; 6] = [
        System::Braid,
        System::GstRr,
        System::GstBroadcast,
        System::RistSingle,
        System::Udp,
        System::SourceOnly,
    ];

    /// Name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            System::Braid => "braid",
            System::GstRr => "gst-rr",
            System::GstBroadcast => "gst-broadcast",
            System::RistSingle => "rist-single",
            System::Udp => "udp",
            System::SourceOnly => "source-only",
        }
    }

    /// Human label for the report.
    pub fn label(self) -> &'static str {
        match self {
            System::Braid => "Braid ristbondsink → ristbondsrc",
            System::GstRr => "GStreamer ristsink round-robin → ristsrc",
            System::GstBroadcast => "GStreamer ristsink broadcast → ristsrc",
            System::RistSingle => "GStreamer ristsink → ristsrc, one link",
            System::Udp => "udpsink → udpsrc",
            System::SourceOnly => "source only (no transport)",
        }
    }

    /// Whether it sends over every link of a scenario (otherwise over one).
    pub fn bonded(self) -> bool {
        matches!(self, System::Braid | System::GstRr | System::GstBroadcast)
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for System {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        System::ALL
            .into_iter()
            .find(|sys| sys.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = System::ALL.iter().map(|s| s.name()).collect();
                format!("unknown system {s:?} (one of {})", names.join(", "))
            })
    }
}

/// Where the sender's TS comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Live test pattern encoded with x264 (`frames` frames at 30 fps).
    Live {
        /// Encoder bitrate at start (kbit/s).
        bitrate_kbps: u32,
        /// Frames to send before EOS.
        frames: u64,
        /// Picture width.
        width: u32,
        /// Picture height.
        height: u32,
    },
    /// A TS file replayed in real time from its PCR (`tsparse set-timestamps`).
    File(String),
}

/// Frame rate of the live source.
pub const FPS: u32 = 30;

/// The source part of a sender pipeline, ending in an element named `mux`.
pub fn source_description(source: &Source) -> String {
    match source {
        Source::Live {
            bitrate_kbps,
            frames,
            width,
            height,
        } => format!(
            "videotestsrc is-live=true pattern=smpte horizontal-speed=4 num-buffers={frames} \
             ! video/x-raw,format=I420,width={width},height={height},framerate={FPS}/1 \
             ! x264enc name=enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} \
               key-int-max={gop} \
             ! h264parse ! mpegtsmux name=mux alignment=7",
            gop = 2 * FPS
        ),
        Source::File(path) => format!(
            "filesrc location=\"{path}\" ! tsparse set-timestamps=true alignment=7 \
             ! clocksync ! identity name=mux"
        ),
    }
}

fn host_ports(dests: &[SocketAddr]) -> String {
    dests
        .iter()
        .map(|d| format!("{}:{}", d.ip(), d.port()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The transport part of a sender pipeline (after `mux`), named `tx`.
/// `dests`: the receiver-side RTP addresses (or the emulator's) of every link. Braid's
/// `config` TOML is set on `tx` as a property after parsing (see `send`).
pub fn sender_transport(
    system: System,
    dests: &[SocketAddr],
    latency_ms: u32,
    stats_interval_ms: u32,
) -> String {
    match system {
        System::Braid => {
            let links = dests
                .iter()
                .map(|d| format!("rist://{}:{}", d.ip(), d.port()))
                .collect::<Vec<_>>()
                .join(",");
            format!(
                "ristbondsink name=tx links=\"{links}\" latency={latency_ms} \
                 stats-interval={stats_interval_ms} eos-linger={latency_ms}"
            )
        }
        System::GstRr | System::GstBroadcast => format!(
            "rtpmp2tpay ! ristsink name=tx bonding-addresses=\"{}\" bonding-method={} \
             sender-buffer={latency_ms}",
            host_ports(dests),
            if system == System::GstRr {
                "round-robin"
            } else {
                "broadcast"
            }
        ),
        System::RistSingle => format!(
            "rtpmp2tpay ! ristsink name=tx address={} port={} sender-buffer={latency_ms}",
            dests[0].ip(),
            dests[0].port()
        ),
        System::Udp => format!(
            "udpsink name=tx host={} port={} sync=true",
            dests[0].ip(),
            dests[0].port()
        ),
        System::SourceOnly => "fakesink name=tx sync=true".to_owned(),
    }
}

/// The receiver pipeline, ending in `fakesink name=out`; `listen`: the RTP addresses
/// to bind (one per link).
pub fn receiver_description(system: System, listen: &[SocketAddr], latency_ms: u32) -> String {
    let transport = match system {
        System::Braid => {
            let links = listen
                .iter()
                .map(|l| format!("rist://@{}:{}", l.ip(), l.port()))
                .collect::<Vec<_>>()
                .join(",");
            format!("ristbondsrc name=rx links=\"{links}\" latency={latency_ms} stats-interval=500")
        }
        System::GstRr | System::GstBroadcast => format!(
            "ristsrc name=rx bonding-addresses=\"{}\" receiver-buffer={latency_ms} ! rtpmp2tdepay",
            host_ports(listen)
        ),
        System::RistSingle => format!(
            "ristsrc name=rx address={} port={} receiver-buffer={latency_ms} ! rtpmp2tdepay",
            listen[0].ip(),
            listen[0].port()
        ),
        System::Udp => format!(
            "udpsrc name=rx address={} port={} buffer-size=4194304 \
             caps=\"video/mpegts,systemstream=(boolean)true,packetsize=(int)188\"",
            listen[0].ip(),
            listen[0].port()
        ),
        System::SourceOnly => "fakesrc name=rx num-buffers=0".to_owned(),
    };
    format!("{transport} ! fakesink name=out sync=false async=false")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in System::ALL {
            assert_eq!(s.name().parse::<System>(), Ok(s));
        }
        assert!("nope".parse::<System>().unwrap_err().contains("braid"));
    }

    #[test]
    fn pipelines_parse() {
        gst::init().unwrap();
        gstristbond::plugin_register_static().unwrap();
        let dests: Vec<SocketAddr> = vec![
            "127.0.0.1:30000".parse().unwrap(),
            "127.0.0.1:30002".parse().unwrap(),
        ];
        let src = source_description(&Source::Live {
            bitrate_kbps: 1000,
            frames: 10,
            width: 320,
            height: 240,
        });
        for sys in System::ALL {
            let tx = sender_transport(sys, &dests, 1000, 100);
            gst::parse::launch(&format!("{src} ! {tx}"))
                .unwrap_or_else(|e| panic!("{sys} sender: {e}"));
            gst::parse::launch(&receiver_description(sys, &dests, 1000))
                .unwrap_or_else(|e| panic!("{sys} receiver: {e}"));
        }
    }
}
