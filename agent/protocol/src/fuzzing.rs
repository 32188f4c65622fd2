//! Properties checked by the fuzz target `agent/protocol/fuzz` (cargo-fuzz,
//! docs/fuzzing.md) and by the corpus replay test (`tests/fuzz_corpus.rs`). Each
//! function panics when a property does not hold; on any input it must return.

use serde::Serialize;
use serde_json::Value;

use crate::envelope::Envelope;
use crate::inbound::{decode, DecodeError, Decoded, Inbound, KNOWN_TYPES};

fn payload_of<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("a decoded payload encodes")
}

fn body_payload(body: &Inbound) -> Value {
    match body {
        Inbound::AuthLoginResponse(m) => payload_of(m),
        Inbound::StreamStart(m) => payload_of(m),
        Inbound::StreamStop(m) => payload_of(m),
        Inbound::StreamLinksUpdate(m) => payload_of(m),
        Inbound::ConfigUpdate(m) => payload_of(m),
        Inbound::ConfigGet(m) => payload_of(m),
        Inbound::ConfigSet(m) => payload_of(m),
        Inbound::SecretRotate(m) => payload_of(m),
        Inbound::AgentUpdate(m) => payload_of(m),
        Inbound::Response(m) => payload_of(m),
    }
}

/// One control-plane frame (any bytes) through [`decode`] (PROTOCOL.md §2):
///
/// - it never panics;
/// - a known message has a known type, and its typed body encoded back into an
///   envelope decodes to the same body (nothing lost or invented);
/// - an invalid payload names a field, and that name is in the error message the
///   agent would send;
/// - an envelope that parses as [`Envelope`] survives `to_json` unchanged.
pub fn inbound(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode(text) {
        Ok(Decoded::Known(msg)) => {
            assert!(
                KNOWN_TYPES.contains(&msg.msg_type.as_str()) || msg.msg_type.ends_with(".response"),
                "known type {}",
                msg.msg_type
            );
            let Value::Object(payload) = body_payload(&msg.body) else {
                panic!("payload of {} is not an object", msg.msg_type)
            };
            let again = Envelope {
                id: msg.id.clone(),
                msg_type: msg.msg_type.clone(),
                ts: "2026-01-01T00:00:00.000Z".into(),
                token: msg.token.clone(),
                payload,
            };
            match decode(&again.to_json()) {
                Ok(Decoded::Known(back)) => {
                    assert_eq!(back.body, msg.body, "round trip of {}", msg.msg_type)
                }
                other => panic!("re-encoded {} does not decode: {other:?}", msg.msg_type),
            }
        }
        Ok(Decoded::Unknown { msg_type, .. }) => {
            assert!(!KNOWN_TYPES.contains(&msg_type.as_str()));
        }
        Err(DecodeError::Malformed(reason)) => assert!(!reason.is_empty()),
        Err(err @ DecodeError::InvalidPayload { .. }) => {
            let DecodeError::InvalidPayload { error, .. } = &err else {
                unreachable!()
            };
            assert!(!error.field.is_empty(), "{err}");
            let body = err.error_body().expect("invalid payloads are answered");
            assert!(body.message.contains(&error.field), "{}", body.message);
        }
    }
    if let Ok(env) = serde_json::from_str::<Envelope>(text) {
        let back: Envelope = serde_json::from_str(&env.to_json()).expect("to_json parses");
        assert_eq!(back, env);
    }
}
