//! The session token is opaque except for its `exp` claim (PROTOCOL.md §3.4):
//! read without verifying the signature, to re-authenticate at 80 % of its
//! lifetime.

use std::time::Duration;

use base64::Engine;

/// `iat` and `exp` claims of a JWT-shaped token (`header.payload.signature`,
/// base64url), seconds since the Unix epoch. `None` when the token has no
/// readable `exp`.
pub fn lifetime_claims(token: &str) -> Option<(Option<i64>, i64)> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let num = |k: &str| {
        claims
            .get(k)
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
    };
    Some((num("iat"), num("exp")?))
}

/// How long after `now_unix` (s) to re-authenticate: when 80 % of the lifetime
/// (`exp − iat`, or `exp − now` without `iat`) has passed; at least 1 s.
/// `None` when the token has no `exp`.
pub fn refresh_after(token: &str, now_unix: i64) -> Option<Duration> {
    let (iat, exp) = lifetime_claims(token)?;
    let start = iat.unwrap_or(now_unix).min(now_unix);
    let lifetime = (exp - start).max(0) as f64;
    let due = start as f64 + lifetime * 0.8;
    let wait = (due - now_unix as f64).max(1.0);
    Some(Duration::from_secs_f64(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
            e.encode(claims)
        )
    }

    #[test]
    fn reads_exp_and_iat() {
        assert_eq!(
            lifetime_claims(&token(r#"{"exp":2000,"iat":1000}"#)),
            Some((Some(1000), 2000))
        );
        assert_eq!(lifetime_claims(&token(r#"{"sub":"x"}"#)), None);
        assert_eq!(lifetime_claims("opaque"), None);
    }

    #[test]
    fn refresh_at_80_percent() {
        let t = token(r#"{"exp":2000,"iat":1000}"#);
        assert_eq!(refresh_after(&t, 1000), Some(Duration::from_secs(800)));
        assert_eq!(refresh_after(&t, 1500), Some(Duration::from_secs(300)));
        assert_eq!(refresh_after(&t, 1900), Some(Duration::from_secs(1)));
        let t = token(r#"{"exp":1100}"#);
        assert_eq!(refresh_after(&t, 1000), Some(Duration::from_secs(80)));
    }
}
