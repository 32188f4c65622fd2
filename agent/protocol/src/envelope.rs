//! The message envelope (PROTOCOL.md §2) and the request/response helpers.
//!
//! ```json
//! {"id":"0190f3c2-…","type":"device.status","ts":"2026-02-14T10:30:00.123Z",
//!  "token":"eyJ…","payload":{}}
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::iso8601::{Config, EncodedConfig, TimePrecision};
use time::format_description::well_known::Iso8601;
use time::OffsetDateTime;

use crate::error::ErrorBody;

/// A message type of the protocol: a payload struct and its `type` string.
///
/// Implemented by every payload struct of this crate (`auth.login`, `device.status`,
/// `stream.start`, …). A response type's [`Message::TYPE`] ends in `.response`.
pub trait Message: Serialize + DeserializeOwned {
    /// The envelope `type`, e.g. `"device.status"` (PROTOCOL.md §2).
    const TYPE: &'static str;
}

/// Suffix of response types: a response to `stream.start` is `stream.start.response`
/// (PROTOCOL.md §2).
pub const RESPONSE_SUFFIX: &str = ".response";

/// One protocol frame (PROTOCOL.md §2): a JSON text frame carrying `id`, `type`,
/// `ts`, optional `token` and an object `payload`.
///
/// Decoding is lenient where the protocol allows it: a missing or `null` payload
/// reads as `{}`; `id` and `ts` are kept as the strings that were sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Message id: a UUIDv7 string for messages this crate creates; a response
    /// echoes the request's id verbatim.
    pub id: String,
    /// Dotted message type, e.g. `stream.start` or `stream.start.response`.
    #[serde(rename = "type")]
    pub msg_type: String,
    /// RFC 3339 UTC timestamp with milliseconds, e.g. `2026-02-14T10:30:00.123Z`.
    pub ts: String,
    /// Session token (JWT) on every agent → control-plane message after login;
    /// absent on `auth.login` and on control-plane messages that do not carry one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Type-specific payload; always an object, `{}` when empty.
    #[serde(default, deserialize_with = "object_or_null")]
    pub payload: Map<String, Value>,
}

/// A payload that cannot be put into an envelope (serialises to something other
/// than a JSON object, or fails to serialise).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// `serde_json` failed.
    #[error("cannot serialise payload of {msg_type}: {source}")]
    Json {
        /// The message type.
        msg_type: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The payload is not a JSON object.
    #[error("payload of {msg_type} is not a JSON object")]
    NotAnObject {
        /// The message type.
        msg_type: String,
    },
}

impl Envelope {
    /// A new envelope for `msg` with a fresh UUIDv7 id, `ts` = now, no token.
    /// Errors: the payload does not serialise to a JSON object.
    pub fn new<M: Message>(msg: &M) -> Result<Self, EncodeError> {
        Ok(Self::with_payload(M::TYPE, to_object(M::TYPE, msg)?))
    }

    /// A new envelope of type `msg_type` with a ready payload object (fresh UUIDv7
    /// id, `ts` = now, no token).
    pub fn with_payload(msg_type: impl Into<String>, payload: Map<String, Value>) -> Self {
        Self {
            id: new_id(),
            msg_type: msg_type.into(),
            ts: timestamp(OffsetDateTime::now_utc()),
            token: None,
            payload,
        }
    }

    /// The response to the request (`request_id`, `request_type`): same id, type
    /// `<request_type>.response`, payload `{"success":true, …body's fields}` or
    /// `{"success":false,"error":{"code","message"}}` (PROTOCOL.md §2).
    /// `body` must serialise to an object (use `serde_json::Map::new()` for none).
    /// Errors: `body` does not serialise to an object.
    pub fn response<T: Serialize>(
        request_id: &str,
        request_type: &str,
        result: Result<&T, &ErrorBody>,
    ) -> Result<Self, EncodeError> {
        let msg_type = format!("{request_type}{RESPONSE_SUFFIX}");
        let payload = response_payload(&msg_type, result)?;
        Ok(Self {
            id: request_id.to_owned(),
            ts: timestamp(OffsetDateTime::now_utc()),
            token: None,
            payload,
            msg_type,
        })
    }

    /// The same envelope carrying `token` (PROTOCOL.md §2: on every agent message
    /// after a successful login).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Compact JSON text of the frame.
    pub fn to_json(&self) -> String {
        // An Envelope holds only strings and a JSON map: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Whether this is a response (`type` ends in `.response`).
    pub fn is_response(&self) -> bool {
        self.msg_type.ends_with(RESPONSE_SUFFIX)
    }
}

/// Payload object of a response: `{"success":true, …body}` or
/// `{"success":false,"error":{…}}` (PROTOCOL.md §2).
/// Errors: `body` does not serialise to an object.
pub fn response_payload<T: Serialize>(
    msg_type: &str,
    result: Result<&T, &ErrorBody>,
) -> Result<Map<String, Value>, EncodeError> {
    let mut payload = Map::new();
    match result {
        Ok(body) => {
            payload.insert("success".into(), Value::Bool(true));
            payload.extend(to_object(msg_type, body)?);
        }
        Err(error) => {
            payload.insert("success".into(), Value::Bool(false));
            let error = serde_json::to_value(error).map_err(|source| EncodeError::Json {
                msg_type: msg_type.to_owned(),
                source,
            })?;
            payload.insert("error".into(), error);
        }
    }
    Ok(payload)
}

/// A fresh message id: UUIDv7 (time-ordered), hyphenated lower-case.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `ts` format of PROTOCOL.md §2: RFC 3339 UTC with exactly three fractional
/// digits, e.g. `2026-02-14T10:30:00.123Z`.
pub fn timestamp(at: OffsetDateTime) -> String {
    const CONFIG: EncodedConfig = Config::DEFAULT
        .set_time_precision(TimePrecision::Second {
            decimal_digits: std::num::NonZeroU8::new(3),
        })
        .encode();
    let utc = at.to_offset(time::UtcOffset::UTC);
    // A UTC time within year 0..=9999 always formats.
    utc.format(&Iso8601::<CONFIG>)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00.000Z"))
}

fn to_object<T: Serialize + ?Sized>(
    msg_type: &str,
    value: &T,
) -> Result<Map<String, Value>, EncodeError> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(EncodeError::NotAnObject {
            msg_type: msg_type.to_owned(),
        }),
        Err(source) => Err(EncodeError::Json {
            msg_type: msg_type.to_owned(),
            source,
        }),
    }
}

fn object_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn timestamp_has_milliseconds_and_z() {
        let at = time::macros::datetime!(2026-02-14 10:30:00.123456 +01:00);
        assert_eq!(timestamp(at), "2026-02-14T09:30:00.123Z");
        let at = time::macros::datetime!(2026-02-14 10:30:00 UTC);
        assert_eq!(timestamp(at), "2026-02-14T10:30:00.000Z");
    }

    #[test]
    fn ids_are_uuid_v7() {
        let id = uuid::Uuid::parse_str(&new_id()).unwrap();
        assert_eq!(id.get_version_num(), 7);
    }

    #[test]
    fn golden_envelope_both_ways() {
        let golden = r#"{"id":"0190f3c2-7a3b-7cc1-9a4e-1f2d3c4b5a69","type":"device.status","ts":"2026-02-14T10:30:00.123Z","token":"eyJ.a.b","payload":{}}"#;
        let env = Envelope {
            id: "0190f3c2-7a3b-7cc1-9a4e-1f2d3c4b5a69".into(),
            msg_type: "device.status".into(),
            ts: "2026-02-14T10:30:00.123Z".into(),
            token: Some("eyJ.a.b".into()),
            payload: Map::new(),
        };
        assert_eq!(env.to_json(), golden);
        assert_eq!(serde_json::from_str::<Envelope>(golden).unwrap(), env);
    }

    #[test]
    fn null_or_missing_payload_reads_as_empty_object() {
        let a: Envelope =
            serde_json::from_str(r#"{"id":"1","type":"x","ts":"t","payload":null}"#).unwrap();
        let b: Envelope = serde_json::from_str(r#"{"id":"1","type":"x","ts":"t"}"#).unwrap();
        assert!(a.payload.is_empty() && b.payload.is_empty());
        assert_eq!(
            a.to_json(),
            r#"{"id":"1","type":"x","ts":"t","payload":{}}"#
        );
    }

    #[test]
    fn golden_error_response() {
        let err = ErrorBody::new(ErrorCode::NotFound, "no stream str_1");
        let mut env =
            Envelope::response::<Map<String, Value>>("req-1", "stream.stop", Err(&err)).unwrap();
        assert_eq!(env.msg_type, "stream.stop.response");
        env.ts = "2026-02-14T10:30:00.123Z".into();
        let golden = r#"{"id":"req-1","type":"stream.stop.response","ts":"2026-02-14T10:30:00.123Z","payload":{"success":false,"error":{"code":"not_found","message":"no stream str_1"}}}"#;
        let golden_value: Value = serde_json::from_str(golden).unwrap();
        assert_eq!(serde_json::to_value(&env).unwrap(), golden_value);
        assert_eq!(serde_json::from_str::<Envelope>(golden).unwrap(), env);
    }

    #[test]
    fn golden_success_response_merges_body() {
        #[derive(Serialize)]
        struct Body {
            stream_id: String,
        }
        let body = Body {
            stream_id: "str_1".into(),
        };
        let env = Envelope::response("req-2", "stream.start", Ok(&body)).unwrap();
        assert!(env.is_response());
        let want: Value = serde_json::from_str(r#"{"success":true,"stream_id":"str_1"}"#).unwrap();
        assert_eq!(Value::Object(env.payload), want);
    }
}
