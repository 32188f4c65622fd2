//! The development control plane's TLS identity: a self-signed certificate made
//! at start by rcgen (SAN `127.0.0.1` and `localhost`), and its SHA-256 pin for
//! the agent's `[control_plane.tls] mode = "pinned"`.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

use crate::tls::{cert_pin, provider, Pin};

/// A TLS server config with a fresh self-signed certificate, and its pin.
pub struct Identity {
    /// rustls server config (ring provider), ready for `tokio_rustls::TlsAcceptor`.
    pub server_config: Arc<ServerConfig>,
    /// SHA-256 of the certificate (DER).
    pub pin: Pin,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
}

/// Make a new self-signed certificate for `127.0.0.1` and `localhost`.
/// Errors: key generation or rustls refusing the key.
pub fn self_signed() -> anyhow::Result<Identity> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .context("generating the self-signed certificate")?;
    let cert_der = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let server_config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .context("TLS server certificate")?;
    Ok(Identity {
        server_config: Arc::new(server_config),
        pin: cert_pin(cert_der.as_ref()),
        cert_der,
    })
}
