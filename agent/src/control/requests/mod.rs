//! Handlers of the control-plane requests of PROTOCOL.md §5 other than
//! `stream.start` / `stream.stop`: `stream.links.update`, `config.update`,
//! `config.get`, `config.set`, `secret.rotate`, `agent.update`.
//!
//! Short ones (`config.get`, `secret.rotate`, refusals) answer inline; the others
//! run on their own task and answer through the session's outbox, so the session
//! keeps reading frames, pinging and forwarding stats meanwhile.

mod config;
mod secret;

use std::sync::{Arc, Mutex};

use braid_protocol::config::{ConfigUpdate, ConfigUpdateResponse};
use braid_protocol::error::{ErrorBody, ErrorCode};
use braid_protocol::stream::{StreamLinksUpdate, StreamResponse};
use braid_protocol::update::{AgentUpdate, AgentUpdateResponse};
use braid_protocol::{Envelope, Message};
use tokio::sync::mpsc;

use super::book::StreamBook;
use crate::streams::StreamsHandle;
use crate::update::UpdateHandle;

pub(super) use config::{config_get, config_set};
pub(super) use secret::secret_rotate;

/// What the spawned handlers need; cheap to clone.
#[derive(Clone)]
pub(super) struct Ctx {
    /// The stream manager.
    pub streams: StreamsHandle,
    /// The control task's view of the streams.
    pub book: Arc<Mutex<StreamBook>>,
    /// Where responses go (sent by the session with the session token).
    pub outbox: mpsc::Sender<Envelope>,
    /// Self-update.
    pub update: UpdateHandle,
}

/// A response envelope carrying a typed response payload `M` (whose `TYPE` is
/// `<request>.response`), echoing the request `id`.
pub(super) fn typed_response<M: Message>(id: &str, msg: &M) -> Envelope {
    match Envelope::new(msg) {
        Ok(mut env) => {
            env.id = id.to_owned();
            env
        }
        Err(e) => {
            // Payload structs always serialise to objects; keep the contract anyway.
            let request = M::TYPE
                .strip_suffix(braid_protocol::envelope::RESPONSE_SUFFIX)
                .unwrap_or(M::TYPE);
            let err = ErrorBody::new(ErrorCode::Internal, e.to_string());
            Envelope::response::<serde_json::Map<String, serde_json::Value>>(id, request, Err(&err))
                .unwrap_or_else(|_| Envelope::with_payload(M::TYPE, Default::default()))
        }
    }
}

/// `stream.links.update`: hot add/remove links of a live stream
/// (`StreamsHandle::update_links`: kept ids untouched). Answers
/// `{"success":true,"stream_id","links":[ids]}` or `not_found`,
/// `invalid_payload` (naming `bonding_config.links[i].…`), `pipeline_error`.
pub(super) fn links_update(ctx: &Ctx, id: String, req: StreamLinksUpdate) {
    tracing::info!(stream_id = %req.stream_id, links = req.links.len(), "stream.links.update");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let ids: Vec<u32> = req.links.iter().map(|l| l.id).collect();
        let result = ctx.streams.update_links(&req.stream_id, req.links).await;
        let resp = match result {
            Ok(()) => StreamResponse {
                links: Some(ids),
                ..StreamResponse::ok(&req.stream_id)
            },
            Err(e) => {
                tracing::warn!(stream_id = %req.stream_id, "stream.links.update failed: {}", e.message);
                StreamResponse {
                    success: false,
                    stream_id: None,
                    links: None,
                    error: Some(e),
                }
            }
        };
        let _ = ctx
            .outbox
            .send(response_of::<StreamLinksUpdate, _>(&id, &resp))
            .await;
    });
}

/// A response envelope for request type `R` with an untyped-by-`Message` body.
fn response_of<R: Message, B: serde::Serialize>(id: &str, body: &B) -> Envelope {
    let payload = match serde_json::to_value(body) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => Default::default(),
    };
    let mut env = Envelope::with_payload(
        format!("{}{}", R::TYPE, braid_protocol::envelope::RESPONSE_SUFFIX),
        payload,
    );
    env.id = id.to_owned();
    env
}

/// `config.update`: hot scheduler reload of one live stream or all. Fields that
/// need a restart (`source`, `encoder`, …) are refused with `unsupported` naming
/// them, before anything changes. Returns the refusal to send inline, if any.
pub(super) fn config_update(ctx: &Ctx, id: String, req: ConfigUpdate) -> Option<Envelope> {
    let restart = req.restart_fields();
    if !restart.is_empty() {
        let names = restart.join("`, `");
        let hint = if restart
            .iter()
            .any(|f| *f == "links" || *f == "bonding_config")
        {
            " (links change with stream.links.update, a whole bonding_config with config.set)"
        } else {
            " (they need the stream restarted: stream.stop + stream.start, or config.set)"
        };
        return Some(typed_response(
            &id,
            &ConfigUpdateResponse {
                success: false,
                streams: None,
                error: Some(ErrorBody::new(
                    ErrorCode::Unsupported,
                    format!(
                        "config.update changes scheduler fields only; `{names}` cannot change live{hint}"
                    ),
                )),
            },
        ));
    }
    tracing::info!(stream_id = ?req.stream_id, "config.update");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let ids = match &req.stream_id {
            Some(s) => vec![s.clone()],
            None => ctx.streams.live().await,
        };
        let result = ctx
            .streams
            .update_scheduler(req.stream_id.as_deref(), req.scheduler)
            .await;
        let resp = match result {
            Ok(()) => ConfigUpdateResponse {
                success: true,
                streams: Some(ids),
                error: None,
            },
            Err(e) => {
                tracing::warn!("config.update failed: {}", e.message);
                ConfigUpdateResponse {
                    success: false,
                    streams: None,
                    error: Some(e),
                }
            }
        };
        let _ = ctx.outbox.send(typed_response(&id, &resp)).await;
    });
    None
}

/// `agent.update`: install on a task (see `crate::update`); answer; with
/// `restart_after`, ask `braid-agent run` to exit for the restart once the answer
/// is queued (the session sends queued answers before it closes).
pub(super) fn agent_update(ctx: &Ctx, id: String, req: AgentUpdate, max_size: u64) {
    tracing::info!(url = %req.binary_url, restart_after = req.restart_after, "agent.update");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let result = ctx.update.install(&req, max_size).await;
        let (resp, restart) = match result {
            Ok(done) => (
                AgentUpdateResponse {
                    success: true,
                    sha256: Some(done.sha256),
                    size_bytes: Some(done.size_bytes),
                    restarting: Some(req.restart_after),
                    error: None,
                },
                req.restart_after,
            ),
            Err(e) => (
                AgentUpdateResponse {
                    success: false,
                    sha256: None,
                    size_bytes: None,
                    restarting: None,
                    error: Some(e),
                },
                false,
            ),
        };
        let _ = ctx.outbox.send(typed_response(&id, &resp)).await;
        if restart {
            tracing::info!("restarting into the updated binary");
            ctx.update.request_restart();
        }
    });
}
