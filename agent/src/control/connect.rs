//! Opening the WebSocket to the control plane (PROTOCOL.md §1): `wss://` only
//! (`ws://` needs `BRAID_ALLOW_INSECURE=1`), TLS per `[control_plane.tls]`, JSON
//! text frames up to 1 MiB (checked by the session; the transport limit is
//! larger so that an oversized frame does not drop the connection).

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::config::{Config, TlsMode};
use crate::tls::{self, PinMismatch, TlsError};

/// The connection type of a control session.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest application frame, bytes (PROTOCOL.md §1).
pub const MAX_FRAME: usize = 1024 * 1024;
/// Transport limit: frames up to this size are read and then rejected by the
/// session without closing; larger ones make tungstenite close the connection.
pub const TRANSPORT_MAX: usize = 16 * MAX_FRAME;
/// TCP connect + TLS + WebSocket handshake must finish within this time.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the control plane cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `ws://` without `BRAID_ALLOW_INSECURE=1`.
    #[error("control_plane.url {0} is not encrypted: only wss:// is accepted (set BRAID_ALLOW_INSECURE=1 to allow ws:// for development)")]
    InsecureUrl(String),
    /// TLS configuration error (bad pin, insecure mode refused, no roots).
    #[error("TLS configuration: {0}")]
    Tls(#[from] TlsError),
    /// The server's certificate does not match `pin_sha256`.
    #[error("TLS handshake refused: {0}")]
    PinMismatch(String),
    /// Any other TLS or certificate failure.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// Nothing within [`CONNECT_TIMEOUT`].
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// TCP, HTTP upgrade or WebSocket failure.
    #[error("{0}")]
    WebSocket(String),
}

/// A checked control-plane endpoint: URL and TLS connector, ready to dial.
#[derive(Clone)]
pub struct Endpoint {
    url: String,
    connector: Connector,
    plain: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("plain", &self.plain)
            .finish()
    }
}

impl Endpoint {
    /// Check the URL and build the TLS client config. `allow_insecure` is
    /// `BRAID_ALLOW_INSECURE=1`. Errors: `ws://` or TLS mode `insecure` without
    /// permission, bad pin, no trusted roots.
    pub fn new(config: &Config, allow_insecure: bool) -> Result<Self, ConnectError> {
        let url = config.control_plane.url.clone();
        let plain = url.starts_with("ws://");
        if plain && !allow_insecure {
            return Err(ConnectError::InsecureUrl(url));
        }
        let connector = if plain {
            Connector::Plain
        } else {
            Connector::Rustls(tls::client_config(
                &config.control_plane.tls,
                allow_insecure,
            )?)
        };
        if config.control_plane.tls.mode == TlsMode::Insecure {
            tracing::warn!("TLS mode insecure: the control plane's certificate is not verified");
        }
        Ok(Self {
            url,
            connector,
            plain,
        })
    }

    /// The URL dialled.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Dial: TCP, TLS, WebSocket upgrade, within [`CONNECT_TIMEOUT`].
    pub async fn connect(&self) -> Result<Ws, ConnectError> {
        if self.plain {
            tracing::warn!(url = %self.url, "connecting without TLS (BRAID_ALLOW_INSECURE=1)");
        }
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(TRANSPORT_MAX))
            .max_frame_size(Some(TRANSPORT_MAX));
        let dial = tokio_tungstenite::connect_async_tls_with_config(
            self.url.as_str(),
            Some(ws_config),
            true,
            Some(self.connector.clone()),
        );
        match tokio::time::timeout(CONNECT_TIMEOUT, dial).await {
            Err(_) => Err(ConnectError::Timeout(CONNECT_TIMEOUT)),
            Ok(Ok((ws, _response))) => Ok(ws),
            Ok(Err(e)) => Err(classify(e)),
        }
    }
}

/// Turn a tungstenite error into a [`ConnectError`], finding TLS causes (pin
/// mismatch first) in the error chain.
fn classify(err: tokio_tungstenite::tungstenite::Error) -> ConnectError {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let rustls_err: Option<&rustls::Error> = match &err {
        WsError::Io(io) => io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        WsError::Tls(tokio_tungstenite::tungstenite::error::TlsError::Rustls(e)) => Some(e),
        _ => None,
    };
    match rustls_err {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            let inner: &(dyn std::error::Error + Send + Sync) = &*other.0;
            match inner.downcast_ref::<PinMismatch>() {
                Some(m) => ConnectError::PinMismatch(m.to_string()),
                None => ConnectError::Handshake(inner.to_string()),
            }
        }
        Some(e) => ConnectError::Handshake(e.to_string()),
        None => ConnectError::WebSocket(err.to_string()),
    }
}
