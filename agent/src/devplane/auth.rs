//! Enrollment and login of the development control plane (PROTOCOL.md §3): one
//! enrollment token, usable once; random sender ids and device keys; session
//! tokens shaped like a JWT (`header.payload.signature`, base64url, HS256 over a
//! random key, with `sub`, `iat` and `exp` claims).

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use braid_protocol::auth::{AuthLogin, RemoteError};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The sender.
    pub sender_id: String,
    /// Session token for the envelopes.
    pub session_token: String,
    /// Set on enrollment: the new persistent device key.
    pub device_key: Option<String>,
}

/// Enrollment state and session-token signer.
pub struct Registry {
    enrollment_token: String,
    consumed: bool,
    devices: HashMap<String, String>,
    key: [u8; 32],
    ttl_s: i64,
}

fn refuse(code: &str, message: &str) -> RemoteError {
    RemoteError {
        code: code.into(),
        message: message.into(),
    }
}

impl Registry {
    /// A registry accepting `enrollment_token` once, issuing tokens valid `ttl_s` s.
    pub fn new(enrollment_token: String, ttl_s: u64) -> Self {
        Self {
            enrollment_token,
            consumed: false,
            devices: HashMap::new(),
            key: rand::rng().random(),
            ttl_s: i64::try_from(ttl_s).unwrap_or(i64::MAX / 2),
        }
    }

    /// Check an `auth.login` at Unix time `now`. Errors (codes):
    /// `invalid_enrollment_token`, `enrollment_token_consumed`,
    /// `invalid_credentials`, `invalid_request`.
    pub fn login(&mut self, req: &AuthLogin, now: i64) -> Result<Granted, RemoteError> {
        if let Some(token) = &req.enrollment_token {
            if *token != self.enrollment_token {
                return Err(refuse(
                    "invalid_enrollment_token",
                    "unknown enrollment token",
                ));
            }
            if self.consumed {
                return Err(refuse(
                    "enrollment_token_consumed",
                    "this enrollment token has already been used",
                ));
            }
            self.consumed = true;
            let mut rng = rand::rng();
            let sender_id = format!("snd_{}", hex::encode(rng.random::<[u8; 6]>()));
            let device_key = format!("dk_{}", hex::encode(rng.random::<[u8; 24]>()));
            self.devices.insert(sender_id.clone(), device_key.clone());
            return Ok(Granted {
                session_token: self.issue(&sender_id, now),
                sender_id,
                device_key: Some(device_key),
            });
        }
        match (&req.sender_id, &req.device_key) {
            (Some(id), Some(key)) if self.devices.get(id) == Some(key) => Ok(Granted {
                session_token: self.issue(id, now),
                sender_id: id.clone(),
                device_key: None,
            }),
            (Some(_), Some(_)) => Err(refuse(
                "invalid_credentials",
                "unknown sender or device key",
            )),
            _ => Err(refuse(
                "invalid_request",
                "auth.login needs enrollment_token or sender_id + device_key",
            )),
        }
    }

    /// A signed session token for `sender_id`, issued at `now`.
    pub fn issue(&self, sender_id: &str, now: i64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = serde_json::json!({"sub": sender_id, "iat": now, "exp": now + self.ttl_s});
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let sig = URL_SAFE_NO_PAD.encode(self.mac(signing_input.as_bytes()));
        format!("{signing_input}.{sig}")
    }

    /// The sender of a valid, unexpired token at `now`; `None` otherwise.
    pub fn verify(&self, token: &str, now: i64) -> Option<String> {
        let (signing_input, sig) = token.rsplit_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).ok()?;
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let claims = signing_input.split('.').nth(1)?;
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        (claims.get("exp")?.as_i64()? > now)
            .then(|| claims.get("sub")?.as_str().map(str::to_owned))?
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(token: Option<&str>, id: Option<&str>, key: Option<&str>) -> AuthLogin {
        AuthLogin {
            enrollment_token: token.map(Into::into),
            sender_id: id.map(Into::into),
            device_key: key.map(Into::into),
            agent_version: "0".into(),
            protocol_version: 1,
            hostname: "h".into(),
            arch: "x".into(),
            capabilities: vec![],
        }
    }

    #[test]
    fn enroll_once_then_log_in_with_the_key() {
        let mut r = Registry::new("enr_1".into(), 3600);
        assert_eq!(
            r.login(&login(Some("bad"), None, None), 0)
                .unwrap_err()
                .code,
            "invalid_enrollment_token"
        );
        let g = r.login(&login(Some("enr_1"), None, None), 0).unwrap();
        let key = g.device_key.clone().unwrap();
        assert!(g.sender_id.starts_with("snd_") && key.starts_with("dk_"));
        assert_eq!(
            r.login(&login(Some("enr_1"), None, None), 0)
                .unwrap_err()
                .code,
            "enrollment_token_consumed"
        );
        let again = r
            .login(&login(None, Some(&g.sender_id), Some(&key)), 10)
            .unwrap();
        assert_eq!(again.device_key, None);
        assert_eq!(
            r.login(&login(None, Some(&g.sender_id), Some("dk_wrong")), 10)
                .unwrap_err()
                .code,
            "invalid_credentials"
        );
        assert_eq!(
            r.login(&login(None, None, None), 0).unwrap_err().code,
            "invalid_request"
        );
    }

    #[test]
    fn tokens_verify_and_expire() {
        let r = Registry::new("e".into(), 100);
        let t = r.issue("snd_1", 1000);
        assert_eq!(t.split('.').count(), 3);
        assert_eq!(r.verify(&t, 1050).as_deref(), Some("snd_1"));
        assert_eq!(r.verify(&t, 1100), None);
        let mut forged = t.clone();
        forged.push('A');
        assert_eq!(r.verify(&forged, 1050), None);
        assert_eq!(
            crate::control::jwt::lifetime_claims(&t),
            Some((Some(1000), 1100))
        );
    }
}
