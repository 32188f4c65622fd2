//! `braid-agent devplane`: a small development control plane (PROTOCOL.md) that
//! the demo runs against the agent.
//!
//! - WSS on `--listen` with a self-signed certificate made at start; its SHA-256
//!   pin is printed and written to `--pin-file`.
//! - One enrollment token (`--token`), usable once; later logins with the issued
//!   sender id + device key; session tokens shaped like JWTs.
//! - Per stream: even UDP port pairs from `--ports`, an in-process receiver
//!   (`ristbondsrc … ! filesink`), `stream.start` with a test source, one printed
//!   line per `stream.stats`, `stream.stop` after `--stream-duration-s`, then EOS,
//!   `verify_ts` and one summary line `demo: OK …` / `demo: FAIL …`.
//! - Without `--stream-duration-s`, streams are driven from stdin: `start`,
//!   `stop`, `quit`; `update URL SHA256` sends `agent.update` (restart after).

pub mod auth;
pub mod cert;
mod conn;
mod plane;
pub mod ports;
pub mod receiver;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::tls::format_pin;
use ports::PortRange;

/// Options of `braid-agent devplane`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Address to listen on (WSS, any path).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// The one enrollment token accepted (once).
    #[arg(long)]
    pub token: String,
    /// Write the certificate's SHA-256 pin (colon hex) to this file.
    #[arg(long)]
    pub pin_file: Option<PathBuf>,
    /// UDP port range for receivers, FIRST-LAST; each link takes an even port and
    /// the next odd one.
    #[arg(long, default_value = "15000-15998")]
    pub ports: PortRange,
    /// Links per stream.
    #[arg(long, default_value_t = 2)]
    pub links: u32,
    /// Encoder bitrate sent in stream.start, kbit/s.
    #[arg(long, default_value_t = 2000)]
    pub bitrate_kbps: u32,
    /// Test-source resolution, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720")]
    pub resolution: String,
    /// Test-source frame rate, frames/s.
    #[arg(long, default_value_t = 30)]
    pub framerate: u32,
    /// Receiver latency (`ristbondsrc latency`), ms.
    #[arg(long, default_value_t = 1000)]
    pub latency_ms: u32,
    /// Start a stream as soon as the agent logs in and stop it after this many
    /// seconds; without it, use the stdin console (`start`, `stop`, `quit`).
    #[arg(long)]
    pub stream_duration_s: Option<u64>,
    /// Where the receiver writes the stream (MPEG-TS).
    #[arg(long, default_value = "target/demo/out.ts")]
    pub out: PathBuf,
    /// Exit after the first stream's summary (exit code 0 on OK, 1 on FAIL).
    #[arg(long)]
    pub exit_after_stream: bool,
    /// Lifetime of issued session tokens, s.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl_s: u64,
}

/// Console commands (one per stdin line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `update URL SHA256`: send `agent.update` (PROTOCOL.md §5) with
    /// `restart_after: true` to the logged-in agent; the answer is printed as
    /// `devplane: agent.update.response {payload}`.
    Update {
        /// `binary_url` (https).
        url: String,
        /// `sha256`, 64 hex digits.
        sha256: String,
    },
    /// Start a stream on the logged-in agent.
    Start,
    /// Stop the running stream.
    Stop,
    /// Exit.
    Quit,
}

/// Run the development control plane until `quit`, Ctrl-C, or (with
/// `--exit-after-stream`) the first stream's summary. Returns the process exit
/// code: 0, or 1 when the demo failed.
pub async fn run(opts: Options) -> anyhow::Result<i32> {
    crate::media::init()?;
    let identity = cert::self_signed()?;
    let pin = format_pin(&identity.pin);
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    if let Some(file) = &opts.pin_file {
        std::fs::write(file, format!("{pin}\n"))
            .with_context(|| format!("writing the pin to {}", file.display()))?;
    }
    println!("devplane: listening on wss://{addr}/agent/ws");
    println!("devplane: pin_sha256 {pin}");

    let (events_tx, events_rx) = mpsc::channel(256);
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config.clone());
    tokio::spawn(conn::accept_loop(listener, acceptor, events_tx.clone()));
    if opts.stream_duration_s.is_none() {
        tokio::spawn(console(events_tx.clone()));
        println!("devplane: console ready: start | stop | update URL SHA256 | quit");
    }
    let ctrl_c = events_tx.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = ctrl_c.send(plane::PlaneEvent::Console(Command::Quit)).await;
        }
    });
    plane::Plane::new(opts).run(events_rx).await
}

/// Read console commands from stdin until EOF.
async fn console(events: mpsc::Sender<plane::PlaneEvent>) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let cmd = match line.trim() {
            "start" => Command::Start,
            "stop" => Command::Stop,
            "quit" | "exit" => Command::Quit,
            "" => continue,
            update if update.starts_with("update ") => {
                let words: Vec<&str> = update.split_whitespace().collect();
                match words.as_slice() {
                    ["update", url, sha256] => Command::Update {
                        url: (*url).to_owned(),
                        sha256: (*sha256).to_owned(),
                    },
                    _ => {
                        println!("devplane: usage: update URL SHA256");
                        continue;
                    }
                }
            }
            other => {
                println!(
                    "devplane: unknown command `{other}` (start | stop | update URL SHA256 | quit)"
                );
                continue;
            }
        };
        if events.send(plane::PlaneEvent::Console(cmd)).await.is_err() {
            return;
        }
    }
}
