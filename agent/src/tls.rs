//! TLS client configuration for the control-plane connection (PROTOCOL.md §1):
//! rustls 0.23 with the `ring` provider, in one of three modes:
//!
//! - `standard`: Mozilla roots (webpki-roots) plus the system store;
//! - `pinned`: the SHA-256 of the server's leaf certificate (DER) must equal the
//!   configured pin; no CA chain, no name check; handshake signatures are still
//!   verified with the provider's algorithms;
//! - `insecure`: any certificate (signatures still verified); only with
//!   `BRAID_ALLOW_INSECURE=1`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::config::{TlsConfig, TlsMode};

/// A certificate pin: SHA-256 of the leaf certificate's DER bytes.
pub type Pin = [u8; 32];

/// TLS set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `pin_sha256` is not 32 bytes of hex.
    #[error("pin_sha256 must be 64 hex digits (colons allowed): {0}")]
    BadPin(String),
    /// Mode `insecure` without `BRAID_ALLOW_INSECURE=1`.
    #[error("TLS mode `insecure` is refused unless BRAID_ALLOW_INSECURE=1 is set")]
    InsecureRefused,
    /// No root certificate at all could be loaded in mode `standard`.
    #[error("no trusted root certificates available")]
    NoRoots,
    /// rustls refused the configuration.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Parse a pin: 64 hex digits, optionally separated by colons, any case
/// (e.g. `AB:cd:…` or `abcd…`). Errors: wrong length or a non-hex digit.
pub fn parse_pin(text: &str) -> Result<Pin, TlsError> {
    let digits: String = text.trim().chars().filter(|c| *c != ':').collect();
    if digits.len() != 64 {
        return Err(TlsError::BadPin(format!(
            "{} hex digits, expected 64",
            digits.len()
        )));
    }
    let mut pin = [0u8; 32];
    hex::decode_to_slice(&digits, &mut pin).map_err(|e| TlsError::BadPin(e.to_string()))?;
    Ok(pin)
}

/// Colon-separated upper-case hex of a pin, e.g. `AB:CD:…` (how pins are printed).
pub fn format_pin(pin: &Pin) -> String {
    pin.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// SHA-256 of a DER certificate: its pin.
pub fn cert_pin(der: &[u8]) -> Pin {
    Sha256::digest(der).into()
}

/// The crypto provider used everywhere in Braid: rustls' `ring` provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Build the client config for `tls`. `allow_insecure` is the value of
/// `BRAID_ALLOW_INSECURE=1`. Errors: bad pin, `insecure` not allowed, no roots.
pub fn client_config(tls: &TlsConfig, allow_insecure: bool) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match tls.mode {
        TlsMode::Standard => {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::debug!("system root certificates: {e}");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "system root certificates loaded");
            if roots.is_empty() {
                return Err(TlsError::NoRoots);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsMode::Pinned => {
            let pin = parse_pin(&tls.pin_sha256)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(pin, provider)))
                .with_no_client_auth()
        }
        TlsMode::Insecure => {
            if !allow_insecure {
                return Err(TlsError::InsecureRefused);
            }
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier::any(provider)))
                .with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// Certificate verifier of modes `pinned` (leaf SHA-256 must match) and
/// `insecure` (no pin: any leaf). Handshake signatures are verified in both.
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: Option<Pin>,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    /// A verifier accepting only a leaf whose SHA-256 is `pin`.
    pub fn new(pin: Pin, provider: Arc<CryptoProvider>) -> Self {
        Self {
            pin: Some(pin),
            provider,
        }
    }

    /// A verifier accepting any leaf (mode `insecure`).
    pub fn any(provider: Arc<CryptoProvider>) -> Self {
        Self {
            pin: None,
            provider,
        }
    }
}

/// The error a pin mismatch produces; its text names both pins.
#[derive(Debug, thiserror::Error)]
#[error("certificate pin mismatch: server leaf SHA-256 is {actual}, pin_sha256 is {expected}")]
pub struct PinMismatch {
    /// The server's pin, colon hex.
    pub actual: String,
    /// The configured pin, colon hex.
    pub expected: String,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(expected) = self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let actual = cert_pin(end_entity.as_ref());
        if actual == expected {
            return Ok(ServerCertVerified::assertion());
        }
        let mismatch = PinMismatch {
            actual: format_pin(&actual),
            expected: format_pin(&expected),
        };
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(mismatch))),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_parsing_accepts_colons_and_any_case() {
        let plain = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_pin(&plain).unwrap(), [0xab; 32]);
        assert_eq!(parse_pin(&colons).unwrap(), [0xab; 32]);
        assert_eq!(parse_pin(&format!("  {plain}\n")).unwrap(), [0xab; 32]);
        assert_eq!(format_pin(&[0xab; 32]), colons);
    }

    #[test]
    fn pin_parsing_rejects_bad_input() {
        assert!(parse_pin("").is_err());
        assert!(parse_pin(&"ab".repeat(31)).is_err());
        assert!(parse_pin(&"ab".repeat(33)).is_err());
        assert!(parse_pin(&format!("{}zz", "ab".repeat(31))).is_err());
    }

    #[test]
    fn insecure_needs_permission() {
        let tls = TlsConfig {
            mode: TlsMode::Insecure,
            pin_sha256: String::new(),
        };
        assert!(matches!(
            client_config(&tls, false),
            Err(TlsError::InsecureRefused)
        ));
        assert!(client_config(&tls, true).is_ok());
    }

    #[test]
    fn pinned_verifier_checks_the_leaf() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = cert.cert.der().clone();
        let good = PinnedVerifier::new(cert_pin(&der), provider());
        let bad = PinnedVerifier::new([0; 32], provider());
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let now = UnixTime::now();
        assert!(good.verify_server_cert(&der, &[], &name, &[], now).is_ok());
        let err = bad
            .verify_server_cert(&der, &[], &name, &[], now)
            .unwrap_err();
        let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = err else {
            panic!("unexpected error {err}");
        };
        let mismatch = other
            .0
            .downcast_ref::<PinMismatch>()
            .expect("a PinMismatch");
        assert!(
            mismatch
                .to_string()
                .starts_with("certificate pin mismatch: server leaf SHA-256 is 3F")
                || mismatch.expected.starts_with("00:00")
        );
    }
}
