//! `secret.rotate` (PROTOCOL.md §5): the new device key is written to
//! `credentials.json` atomically (0600) before the response; from then on only the
//! new key is used (next `auth.login`, including token refreshes on this
//! connection). The connection is not dropped.

use braid_protocol::auth::{SecretRotate, SecretRotateResponse};
use braid_protocol::error::{ErrorBody, ErrorCode};
use braid_protocol::Envelope;

use super::super::Control;
use super::typed_response;
use crate::credentials::{self, Credentials};

/// Persist and adopt the new key; the response to send. Errors in the response:
/// `unsupported` when the agent has no credentials yet (not enrolled), `internal`
/// when the file cannot be written (the old key then stays in use, on disk and in
/// memory).
pub(in crate::control) async fn secret_rotate(
    control: &mut Control,
    id: &str,
    req: SecretRotate,
) -> Envelope {
    let fail = |code, message: String| SecretRotateResponse {
        success: false,
        sender_id: None,
        error: Some(ErrorBody::new(code, message)),
    };
    let Some(current) = control.credentials.clone() else {
        return typed_response(
            id,
            &fail(
                ErrorCode::Unsupported,
                "no device key to rotate: this agent has not enrolled".into(),
            ),
        );
    };
    let new = Credentials {
        sender_id: current.sender_id.clone(),
        device_key: req.device_key,
    };
    let dir = control.config.agent.state_dir.clone();
    let to_store = new.clone();
    let stored = tokio::task::spawn_blocking(move || credentials::store(&dir, &to_store)).await;
    let resp = match stored {
        Ok(Ok(())) => {
            tracing::info!(sender_id = %new.sender_id, "device key rotated and saved");
            control.credentials = Some(new);
            SecretRotateResponse {
                success: true,
                sender_id: Some(current.sender_id),
                error: None,
            }
        }
        Ok(Err(e)) => {
            tracing::error!("secret.rotate: cannot save the new key, keeping the old one: {e}");
            fail(
                ErrorCode::Internal,
                format!("cannot save the new device key ({e}); the old key stays in use"),
            )
        }
        Err(e) => fail(
            ErrorCode::Internal,
            format!("secret.rotate task failed: {e}"),
        ),
    };
    typed_response(id, &resp)
}
