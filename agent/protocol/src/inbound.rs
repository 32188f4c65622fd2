//! Typed decoding of frames (PROTOCOL.md §2): known types with their payload
//! structs, unknown types told apart (to be ignored), malformed frames, and invalid
//! payloads with the offending field named (e.g. `source.resolution`).

use serde_json::{Map, Value};

use crate::auth::{AuthLoginResponse, RemoteResponse, SecretRotate};
use crate::config::{ConfigGet, ConfigSet, ConfigUpdate};
use crate::envelope::{Envelope, Message, RESPONSE_SUFFIX};
use crate::error::{ErrorBody, ErrorCode};
use crate::stream::{StreamLinksUpdate, StreamStart, StreamStop};
use crate::update::AgentUpdate;

/// Every control-plane → agent type this crate decodes (PROTOCOL.md §3, §5), besides
/// the generic `*.response` ([`Inbound::Response`]).
pub const KNOWN_TYPES: &[&str] = &[
    AuthLoginResponse::TYPE,
    StreamStart::TYPE,
    StreamStop::TYPE,
    StreamLinksUpdate::TYPE,
    ConfigUpdate::TYPE,
    ConfigGet::TYPE,
    ConfigSet::TYPE,
    SecretRotate::TYPE,
    AgentUpdate::TYPE,
];

/// A decoded control-plane → agent message body.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// `auth.login.response` (PROTOCOL.md §3); boxed (it carries an opaque config).
    AuthLoginResponse(Box<AuthLoginResponse>),
    /// `stream.start` request (PROTOCOL.md §5); boxed, it is by far the largest.
    StreamStart(Box<StreamStart>),
    /// `stream.stop` request (PROTOCOL.md §5).
    StreamStop(StreamStop),
    /// `stream.links.update` request (PROTOCOL.md §5).
    StreamLinksUpdate(StreamLinksUpdate),
    /// `config.update` request (PROTOCOL.md §5); boxed (many optional fields).
    ConfigUpdate(Box<ConfigUpdate>),
    /// `config.get` request (PROTOCOL.md §5).
    ConfigGet(ConfigGet),
    /// `config.set` request (PROTOCOL.md §5); boxed (it carries stream specs).
    ConfigSet(Box<ConfigSet>),
    /// `secret.rotate` request (PROTOCOL.md §5).
    SecretRotate(SecretRotate),
    /// `agent.update` request (PROTOCOL.md §5).
    AgentUpdate(AgentUpdate),
    /// Any other `*.response` from the control plane (an answer to an agent
    /// message); `token_expired` in it triggers a re-login (PROTOCOL.md §3.4).
    Response(RemoteResponse),
}

/// A frame of a known type with a valid payload.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// Envelope `id` (empty when the frame had none).
    pub id: String,
    /// Envelope `type`.
    pub msg_type: String,
    /// Envelope `token`, if any.
    pub token: Option<String>,
    /// The typed payload.
    pub body: Inbound,
    /// The payload object as received (for checks the types cannot express, such
    /// as secrets to be ignored in `config.set`).
    pub payload: Map<String, Value>,
}

/// Outcome of [`decode`] for a well-formed frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A known type with a valid payload.
    Known(InboundMessage),
    /// A type this agent does not know: to be logged once per type and ignored.
    Unknown {
        /// Envelope `id`, if any.
        id: Option<String>,
        /// Envelope `type`.
        msg_type: String,
    },
}

/// A frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, not an object, or no string `type`: nothing can be answered.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A known type whose payload does not match its schema.
    #[error("invalid payload of {msg_type}: {error}")]
    InvalidPayload {
        /// Envelope `id`, if the frame had one (then it is answered).
        id: Option<String>,
        /// Envelope `type`.
        msg_type: String,
        /// The offending field and why.
        error: PayloadError,
    },
}

impl DecodeError {
    /// The `error` body of the `<type>.response` to send for this failure: code
    /// `invalid_payload` naming the field. `None` for malformed frames.
    pub fn error_body(&self) -> Option<ErrorBody> {
        match self {
            DecodeError::Malformed(_) => None,
            DecodeError::InvalidPayload { error, .. } => Some(error.error_body()),
        }
    }
}

/// Where and why a payload does not match its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct PayloadError {
    /// Dotted path of the field inside the payload, e.g. `encoder.bitrate_kbps`,
    /// `bonding_config.links[0].uri`; `payload` for the payload itself.
    pub field: String,
    /// What is wrong, e.g. `missing field`, `invalid type: string "5000", expected u32`.
    pub reason: String,
}

impl PayloadError {
    /// Error body with code `invalid_payload` and a message naming the field.
    pub fn error_body(&self) -> ErrorBody {
        ErrorBody::new(ErrorCode::InvalidPayload, self.to_string())
    }
}

/// Decode the payload of `M` from a payload object, naming the bad field on failure.
pub fn decode_payload<M: serde::de::DeserializeOwned>(
    payload: &Map<String, Value>,
) -> Result<M, PayloadError> {
    // Deserialising from a borrowed map keeps the frame intact for logging.
    let value = Value::Object(payload.clone());
    serde_path_to_error::deserialize::<_, M>(&value).map_err(payload_error)
}

impl Envelope {
    /// Decode this envelope's payload as `M` (see [`decode_payload`]).
    pub fn decode<M: Message>(&self) -> Result<M, PayloadError> {
        decode_payload(&self.payload)
    }
}

/// Decode one text frame from the control plane (PROTOCOL.md §2).
///
/// - not JSON / not an object / no string `type` → [`DecodeError::Malformed`];
/// - a type this agent does not know → [`Decoded::Unknown`];
/// - a known type whose payload is not an object, does not match, or fails the
///   type's own checks (`validate`: https-only `binary_url`, unique link ids,
///   scheduler ranges…) → [`DecodeError::InvalidPayload`] naming the field;
/// - any other `*.response` type → [`Inbound::Response`];
/// - otherwise [`Decoded::Known`]. Unknown fields are ignored.
pub fn decode(text: &str) -> Result<Decoded, DecodeError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| DecodeError::Malformed(format!("not JSON: {e}")))?;
    let Value::Object(mut frame) = value else {
        return Err(DecodeError::Malformed("not a JSON object".into()));
    };
    let Some(msg_type) = frame.get("type").and_then(Value::as_str).map(str::to_owned) else {
        return Err(DecodeError::Malformed("no string field `type`".into()));
    };
    let id = frame.get("id").and_then(Value::as_str).map(str::to_owned);
    let token = frame
        .get("token")
        .and_then(Value::as_str)
        .map(str::to_owned);

    if !is_known(&msg_type) {
        return Ok(Decoded::Unknown { id, msg_type });
    }
    let invalid = |error: PayloadError| DecodeError::InvalidPayload {
        id: id.clone(),
        msg_type: msg_type.clone(),
        error,
    };
    let payload = match frame.remove("payload") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(invalid(PayloadError {
                field: "payload".into(),
                reason: "not a JSON object".into(),
            }))
        }
    };
    let body = match msg_type.as_str() {
        AuthLoginResponse::TYPE => {
            Inbound::AuthLoginResponse(Box::new(decode_payload(&payload).map_err(invalid)?))
        }
        StreamStart::TYPE => {
            Inbound::StreamStart(Box::new(decode_payload(&payload).map_err(invalid)?))
        }
        StreamStop::TYPE => Inbound::StreamStop(decode_payload(&payload).map_err(invalid)?),
        StreamLinksUpdate::TYPE => {
            let m: StreamLinksUpdate = decode_payload(&payload).map_err(invalid)?;
            m.validate().map_err(invalid)?;
            Inbound::StreamLinksUpdate(m)
        }
        ConfigUpdate::TYPE => {
            let m: ConfigUpdate = decode_payload(&payload).map_err(invalid)?;
            m.validate().map_err(invalid)?;
            Inbound::ConfigUpdate(Box::new(m))
        }
        ConfigGet::TYPE => Inbound::ConfigGet(decode_payload(&payload).map_err(invalid)?),
        ConfigSet::TYPE => {
            let m: ConfigSet = decode_payload(&payload).map_err(invalid)?;
            if let Some(streams) = &m.config.streams {
                for (i, s) in streams.iter().enumerate() {
                    if streams[..i].iter().any(|o| o.stream_id == s.stream_id) {
                        return Err(invalid(PayloadError {
                            field: format!("config.streams[{i}].stream_id"),
                            reason: format!("stream id {} is used twice", s.stream_id),
                        }));
                    }
                    crate::config::validate_scheduler(
                        &s.bonding_config.scheduler,
                        &format!("config.streams[{i}].bonding_config.scheduler"),
                    )
                    .map_err(invalid)?;
                }
            }
            Inbound::ConfigSet(Box::new(m))
        }
        SecretRotate::TYPE => {
            let m: SecretRotate = decode_payload(&payload).map_err(invalid)?;
            m.validate().map_err(invalid)?;
            Inbound::SecretRotate(m)
        }
        AgentUpdate::TYPE => {
            let m: AgentUpdate = decode_payload(&payload).map_err(invalid)?;
            m.validate().map_err(invalid)?;
            Inbound::AgentUpdate(m)
        }
        _ => Inbound::Response(decode_payload(&payload).map_err(invalid)?),
    };
    Ok(Decoded::Known(InboundMessage {
        id: id.unwrap_or_default(),
        msg_type,
        token,
        body,
        payload,
    }))
}

fn is_known(msg_type: &str) -> bool {
    KNOWN_TYPES.contains(&msg_type)
        || (msg_type.len() > RESPONSE_SUFFIX.len() && msg_type.ends_with(RESPONSE_SUFFIX))
}

fn payload_error(err: serde_path_to_error::Error<serde_json::Error>) -> PayloadError {
    let mut field = err.path().to_string();
    if field == "." || field == "?" {
        field.clear();
    }
    let reason = err.inner().to_string();
    // serde reports a missing field at the enclosing struct: name the field itself.
    if let Some(name) = reason
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        let field = if field.is_empty() {
            name.to_owned()
        } else {
            format!("{field}.{name}")
        };
        return PayloadError {
            field,
            reason: "missing field".into(),
        };
    }
    PayloadError {
        field: if field.is_empty() {
            "payload".into()
        } else {
            field
        },
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"id":"0190f3c2-0000-7000-8000-000000000001","type":"stream.start",
        "ts":"2026-02-14T10:30:00.123Z","payload":{"stream_id":"str_1",
        "source":{"mode":"test","resolution":"320x240","framerate":30},
        "encoder":{"bitrate_kbps":1000},
        "bonding_config":{"version":1,"links":[{"id":0,"uri":"rist://127.0.0.1:15000"}]},
        "some_future_field":true}}"#;

    fn invalid(text: &str) -> (Option<String>, String, PayloadError) {
        match decode(text) {
            Err(DecodeError::InvalidPayload {
                id,
                msg_type,
                error,
            }) => (id, msg_type, error),
            other => panic!("expected invalid payload, got {other:?}"),
        }
    }

    #[test]
    fn known_type_decodes_and_ignores_unknown_fields() {
        let Ok(Decoded::Known(msg)) = decode(START) else {
            panic!("not decoded")
        };
        assert_eq!(msg.msg_type, "stream.start");
        assert_eq!(msg.id, "0190f3c2-0000-7000-8000-000000000001");
        let Inbound::StreamStart(start) = msg.body else {
            panic!("wrong body")
        };
        assert_eq!(start.source.resolution, "320x240");
    }

    #[test]
    fn unknown_type_is_told_apart() {
        let d = decode(r#"{"id":"1","type":"weather.report","ts":"x","payload":{"rain":true}}"#);
        assert_eq!(
            d,
            Ok(Decoded::Unknown {
                id: Some("1".into()),
                msg_type: "weather.report".into()
            })
        );
    }

    #[test]
    fn malformed_frames() {
        for text in [
            "{not json",
            "[1,2]",
            r#"{"id":"1","payload":{}}"#,
            r#"{"type":7}"#,
        ] {
            assert!(
                matches!(decode(text), Err(DecodeError::Malformed(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn missing_nested_field_is_named() {
        let text = START.replace(r#""resolution":"320x240","#, "");
        let (id, ty, err) = invalid(&text);
        assert_eq!(id.as_deref(), Some("0190f3c2-0000-7000-8000-000000000001"));
        assert_eq!(ty, "stream.start");
        assert_eq!(err.field, "source.resolution");
        assert_eq!(err.reason, "missing field");
        let body = DecodeError::InvalidPayload {
            id,
            msg_type: ty,
            error: err,
        }
        .error_body()
        .unwrap();
        assert_eq!(body.code, ErrorCode::InvalidPayload);
        assert!(
            body.message.contains("source.resolution"),
            "{}",
            body.message
        );
    }

    #[test]
    fn wrong_type_is_named() {
        let text = START.replace(r#""bitrate_kbps":1000"#, r#""bitrate_kbps":"1000""#);
        let (_, _, err) = invalid(&text);
        assert_eq!(err.field, "encoder.bitrate_kbps");
        assert!(
            err.reason.contains("invalid type: string"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn array_element_is_named() {
        let text = START.replace(r#""uri":"rist://127.0.0.1:15000""#, r#""uri":5"#);
        let (_, _, err) = invalid(&text);
        assert_eq!(err.field, "bonding_config.links[0].uri");
    }

    #[test]
    fn top_level_missing_field_and_non_object_payload() {
        let (_, _, err) = invalid(r#"{"id":"2","type":"stream.stop","ts":"x","payload":{}}"#);
        assert_eq!(err.field, "stream_id");
        let (_, _, err) = invalid(r#"{"id":"2","type":"stream.stop","ts":"x","payload":[1]}"#);
        assert_eq!(err.field, "payload");
    }

    fn known(text: &str) -> InboundMessage {
        match decode(text) {
            Ok(Decoded::Known(msg)) => msg,
            other => panic!("expected a known message, got {other:?}"),
        }
    }

    #[test]
    fn every_request_type_decodes() {
        let sha = "ab".repeat(32);
        let cases = [
            (r#"{"id":"1","type":"config.get","ts":"x","payload":{}}"#.to_owned(), "config.get"),
            (r#"{"id":"1","type":"config.get","ts":"x"}"#.to_owned(), "config.get"),
            (
                r#"{"id":"1","type":"config.set","ts":"x","payload":{"config":{}}}"#.to_owned(),
                "config.set",
            ),
            (
                r#"{"id":"1","type":"config.update","ts":"x","payload":{"scheduler":{"storm_enabled":true}}}"#
                    .to_owned(),
                "config.update",
            ),
            (
                r#"{"id":"1","type":"stream.links.update","ts":"x","payload":{"stream_id":"s","links":[{"id":0,"uri":"rist://h:1"}]}}"#
                    .to_owned(),
                "stream.links.update",
            ),
            (
                r#"{"id":"1","type":"secret.rotate","ts":"x","payload":{"device_key":"dk_2"}}"#.to_owned(),
                "secret.rotate",
            ),
            (
                format!(r#"{{"id":"1","type":"agent.update","ts":"x","payload":{{"binary_url":"https://h/b","sha256":"{sha}"}}}}"#),
                "agent.update",
            ),
            (
                r#"{"id":"1","type":"health.response","ts":"x","payload":{"success":false,"error":{"code":"token_expired","message":"m"}}}"#
                    .to_owned(),
                "health.response",
            ),
        ];
        for (text, ty) in cases {
            let msg = known(&text);
            assert_eq!(msg.msg_type, ty);
            let ok = matches!(
                (&msg.body, ty),
                (Inbound::ConfigGet(_), "config.get")
                    | (Inbound::ConfigSet(_), "config.set")
                    | (Inbound::ConfigUpdate(_), "config.update")
                    | (Inbound::StreamLinksUpdate(_), "stream.links.update")
                    | (Inbound::SecretRotate(_), "secret.rotate")
                    | (Inbound::AgentUpdate(_), "agent.update")
                    | (Inbound::Response(_), "health.response")
            );
            assert!(ok, "{ty}: {:?}", msg.body);
        }
        let Inbound::Response(r) = known(
            r#"{"type":"event.response","payload":{"success":false,"error":{"code":"token_expired"}}}"#,
        )
        .body
        else {
            panic!()
        };
        assert!(r.token_expired());
    }

    #[test]
    fn request_checks_name_the_field() {
        let (_, _, e) = invalid(
            r#"{"id":"1","type":"agent.update","ts":"x","payload":{"binary_url":"http://h/b","sha256":"00"}}"#,
        );
        assert_eq!(e.field, "binary_url");
        let (_, _, e) =
            invalid(r#"{"id":"1","type":"agent.update","ts":"x","payload":{"sha256":"00"}}"#);
        assert_eq!(e.field, "binary_url");
        assert_eq!(e.reason, "missing field");
        let (_, _, e) =
            invalid(r#"{"id":"1","type":"secret.rotate","ts":"x","payload":{"device_key":""}}"#);
        assert_eq!(e.field, "device_key");
        let (_, _, e) =
            invalid(r#"{"id":"1","type":"secret.rotate","ts":"x","payload":{"device_key":7}}"#);
        assert_eq!(e.field, "device_key");
        let (_, _, e) = invalid(r#"{"id":"1","type":"config.update","ts":"x","payload":{}}"#);
        assert_eq!(e.field, "scheduler");
        let (_, _, e) = invalid(
            r#"{"id":"1","type":"config.update","ts":"x","payload":{"scheduler":{"failover_loss_rate":2}}}"#,
        );
        assert_eq!(e.field, "scheduler.failover_loss_rate");
        let (_, _, e) = invalid(
            r#"{"id":"1","type":"stream.links.update","ts":"x","payload":{"stream_id":"s","links":[]}}"#,
        );
        assert_eq!(e.field, "links");
        let (_, _, e) = invalid(
            r#"{"id":"1","type":"config.set","ts":"x","payload":{"config":{"agent":{"status_interval_s":"x"}}}}"#,
        );
        assert_eq!(e.field, "config.agent.status_interval_s");
        let start = r#"{"stream_id":"a","source":{"mode":"test","resolution":"1x1","framerate":1},"encoder":{"bitrate_kbps":1},"bonding_config":{"links":[{"id":0,"uri":"rist://h:2"}]}}"#;
        let (_, _, e) = invalid(&format!(
            r#"{{"id":"1","type":"config.set","ts":"x","payload":{{"config":{{"streams":[{start},{start}]}}}}}}"#
        ));
        assert_eq!(e.field, "config.streams[1].stream_id");
    }

    #[test]
    fn a_bare_response_suffix_is_not_a_response() {
        assert!(matches!(
            decode(r#"{"type":".response","payload":{}}"#),
            Ok(Decoded::Unknown { .. })
        ));
    }
}
