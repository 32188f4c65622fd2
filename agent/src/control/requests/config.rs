//! `config.get` and `config.set` (PROTOCOL.md §5).
//!
//! What `config.set` may change (docs/protocol.md "config.set"):
//!
//! | key | remotely |
//! |---|---|
//! | `agent.status_interval_s`, `update.max_size_mb`, `update.login_timeout_s` | applied at once and persisted in `<state_dir>/remote-config.toml` |
//! | `control_plane.*` (url, tls), `update.binary_path`, `update.tls` | refused `unsupported` when different: a wrong value would cut the device off or let the control plane write anywhere; edit the file on the device |
//! | `agent.state_dir`, `agent.media_dir`, `nmos.*` | refused `unsupported` when different: need a restart |
//! | secrets (`enrollment_token`, `device_key`, …) | ignored, named in `ignored_secrets` |
//! | `streams` | diffed against the live streams (see [`apply_streams`]); not persisted |
//!
//! Keys equal to the running value are accepted, so a `config.get` result can be
//! sent back with a few changes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use braid_pipelines::StreamPlan;
use braid_protocol::config::{
    find_secrets, AgentDoc, ConfigDoc, ConfigGetResponse, ConfigSet, ConfigSetResponse,
    ControlPlaneDoc, NmosDoc, StreamChanges, TlsDoc, TlsModeName, UpdateDoc,
};
use braid_protocol::error::{ErrorBody, ErrorCode};
use braid_protocol::stream::{EndReason, StreamStart};
use braid_protocol::Envelope;
use serde_json::{Map, Value};

use super::super::Control;
use super::{typed_response, Ctx};
use crate::config::{Config, RemoteOverrides, TlsConfig, TlsMode};
use crate::streams::StreamsHandle;

fn tls_doc(tls: &TlsConfig) -> TlsDoc {
    TlsDoc {
        mode: Some(match tls.mode {
            TlsMode::Standard => TlsModeName::Standard,
            TlsMode::Pinned => TlsModeName::Pinned,
            TlsMode::Insecure => TlsModeName::Insecure,
        }),
        pin_sha256: (!tls.pin_sha256.is_empty()).then(|| tls.pin_sha256.clone()),
    }
}

/// The config document of `config.get`: the running config without
/// infrastructure secrets (the `enrollment_token` has no field in the document;
/// the device key and session token live outside the config), plus the live
/// streams' specs (stream-level credentials kept).
pub(in crate::control) fn running_doc(
    config: &Config,
    binary_path: &Path,
    streams: Vec<StreamStart>,
) -> ConfigDoc {
    ConfigDoc {
        control_plane: Some(ControlPlaneDoc {
            url: Some(config.control_plane.url.clone()),
            tls: Some(tls_doc(&config.control_plane.tls)),
        }),
        agent: Some(AgentDoc {
            state_dir: Some(config.agent.state_dir.display().to_string()),
            media_dir: Some(config.agent.media_dir.display().to_string()),
            status_interval_s: Some(config.agent.status_interval_s),
        }),
        nmos: Some(NmosDoc {
            enabled: Some(config.nmos.enabled),
            port: Some(config.nmos.port),
        }),
        update: Some(UpdateDoc {
            binary_path: Some(binary_path.display().to_string()),
            max_size_mb: Some(config.update.max_size_mb),
            login_timeout_s: Some(config.update.login_timeout_s),
            tls: config.update.tls.as_ref().map(tls_doc),
        }),
        streams: Some(streams),
    }
}

/// `config.get`: `{"success":true,"config":{…}}`.
pub(in crate::control) fn config_get(control: &Control, id: &str) -> Envelope {
    let doc = running_doc(
        &control.config,
        control.update.binary_path(),
        control.streams.specs(),
    );
    typed_response(
        id,
        &ConfigGetResponse {
            success: true,
            config: Some(doc),
            error: None,
        },
    )
}

/// Agent-level keys of a `config.set` that differ from the running config.
#[derive(Debug, Default, PartialEq)]
struct AgentChanges {
    overrides: RemoteOverrides,
    changed: Vec<String>,
}

fn unsupported(key: &str, why: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Unsupported,
        format!("config.{key} cannot be changed by config.set: {why}"),
    )
}

fn positive(key: &str, v: u64) -> Result<u64, ErrorBody> {
    if v == 0 {
        return Err(ErrorBody::new(
            ErrorCode::InvalidPayload,
            format!("field `config.{key}`: must be at least 1"),
        ));
    }
    Ok(v)
}

fn tls_equal(doc: &TlsDoc, running: &TlsDoc) -> bool {
    let mode_eq = doc.mode.is_none() || doc.mode == running.mode;
    let pin_eq = match (&doc.pin_sha256, &running.pin_sha256) {
        (None, _) => true,
        (Some(a), Some(b)) => match (crate::tls::parse_pin(a), crate::tls::parse_pin(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        },
        (Some(a), None) => a.is_empty(),
    };
    mode_eq && pin_eq
}

/// Compare the agent-level part of `wanted` with the running config. Errors:
/// `unsupported` naming the first key that cannot change remotely,
/// `invalid_payload` for a value out of range. Nothing is applied here.
fn diff_agent(
    running: &Config,
    binary_path: &Path,
    current: &RemoteOverrides,
    wanted: &ConfigDoc,
) -> Result<AgentChanges, ErrorBody> {
    let mut out = AgentChanges {
        overrides: current.clone(),
        changed: Vec::new(),
    };
    if let Some(cp) = &wanted.control_plane {
        if cp
            .url
            .as_ref()
            .is_some_and(|u| *u != running.control_plane.url)
        {
            return Err(unsupported(
                "control_plane.url",
                "a wrong value would cut the device off; edit the config file on the device",
            ));
        }
        if let Some(tls) = &cp.tls {
            if !tls_equal(tls, &tls_doc(&running.control_plane.tls)) {
                return Err(unsupported(
                    "control_plane.tls",
                    "a wrong value would cut the device off; edit the config file on the device",
                ));
            }
        }
    }
    if let Some(a) = &wanted.agent {
        if a.state_dir
            .as_ref()
            .is_some_and(|d| Path::new(d) != running.agent.state_dir)
        {
            return Err(unsupported("agent.state_dir", "it needs an agent restart"));
        }
        if a.media_dir
            .as_ref()
            .is_some_and(|d| Path::new(d) != running.agent.media_dir)
        {
            return Err(unsupported("agent.media_dir", "it needs an agent restart"));
        }
        if let Some(v) = a.status_interval_s {
            let v = positive("agent.status_interval_s", v)?;
            if v != running.agent.status_interval_s {
                out.overrides.agent.status_interval_s = Some(v);
                out.changed.push("agent.status_interval_s".into());
            }
        }
    }
    if let Some(n) = &wanted.nmos {
        if n.enabled.is_some_and(|e| e != running.nmos.enabled) {
            return Err(unsupported("nmos.enabled", "it needs an agent restart"));
        }
        if n.port.is_some_and(|p| p != running.nmos.port) {
            return Err(unsupported("nmos.port", "it needs an agent restart"));
        }
    }
    if let Some(u) = &wanted.update {
        if u.binary_path
            .as_ref()
            .is_some_and(|p| Path::new(p) != binary_path)
        {
            return Err(unsupported(
                "update.binary_path",
                "it decides which file an update overwrites; edit the config file on the device",
            ));
        }
        if let Some(tls) = &u.tls {
            if !tls_equal(tls, &tls_doc(running.update_tls())) {
                return Err(unsupported(
                    "update.tls",
                    "it decides which servers are trusted for binaries; edit the config file on the device",
                ));
            }
        }
        if let Some(v) = u.max_size_mb {
            let v = positive("update.max_size_mb", v)?;
            if v != running.update.max_size_mb {
                out.overrides.update.max_size_mb = Some(v);
                out.changed.push("update.max_size_mb".into());
            }
        }
        if let Some(v) = u.login_timeout_s {
            let v = positive("update.login_timeout_s", v)?;
            if v != running.update.login_timeout_s {
                out.overrides.update.login_timeout_s = Some(v);
                out.changed.push("update.login_timeout_s".into());
            }
        }
    }
    Ok(out)
}

fn set_failed(id: &str, error: ErrorBody) -> Envelope {
    typed_response(
        id,
        &ConfigSetResponse {
            success: false,
            agent_changed: None,
            ignored_secrets: None,
            streams: None,
            error: Some(error),
        },
    )
}

/// `config.set`. Checks everything first (agent keys, every stream spec); on a
/// refusal answers at once and changes nothing. Then persists and applies the
/// agent keys, and hands the streams part to a task that answers when done.
/// Returns the envelope to send now, if any.
pub(in crate::control) fn config_set(
    control: &mut Control,
    ctx: &Ctx,
    id: String,
    req: ConfigSet,
    payload: &Map<String, Value>,
) -> Option<Envelope> {
    let secrets = payload
        .get("config")
        .map(find_secrets)
        .unwrap_or_default()
        .into_iter()
        .map(|k| format!("config.{k}"))
        .collect::<Vec<_>>();
    if !secrets.is_empty() {
        tracing::warn!(?secrets, "config.set: secrets in the payload are ignored");
    }
    let state_dir = control.config.agent.state_dir.clone();
    let current = match RemoteOverrides::load(&state_dir) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!("config.set: {e}; starting from no overrides");
            RemoteOverrides::default()
        }
    };
    let changes = match diff_agent(
        &control.config,
        control.update.binary_path(),
        &current,
        &req.config,
    ) {
        Ok(c) => c,
        Err(e) => return Some(set_failed(&id, e)),
    };
    // Every stream spec must plan before anything changes.
    if let Some(streams) = &req.config.streams {
        for (i, spec) in streams.iter().enumerate() {
            if let Err(e) = StreamPlan::from_start(spec, Some(&control.config.agent.media_dir)) {
                let code = match e {
                    braid_pipelines::PlanError::NotFound { .. } => ErrorCode::NotFound,
                    braid_pipelines::PlanError::Unsupported { .. } => ErrorCode::Unsupported,
                    braid_pipelines::PlanError::Invalid { .. } => ErrorCode::InvalidPayload,
                };
                return Some(set_failed(
                    &id,
                    ErrorBody::new(
                        code,
                        format!("config.streams[{i}] (stream {}): {e}", spec.stream_id),
                    ),
                ));
            }
        }
    }
    if !changes.changed.is_empty() {
        if let Err(e) = changes.overrides.store(&state_dir) {
            return Some(set_failed(
                &id,
                ErrorBody::new(
                    ErrorCode::Internal,
                    format!(
                        "cannot persist {}: {e}; nothing was changed",
                        state_dir.join(crate::config::REMOTE_FILE).display()
                    ),
                ),
            ));
        }
        changes.overrides.apply(&mut control.config);
        tracing::info!(keys = ?changes.changed, "config.set: agent keys applied and persisted");
    }
    let agent_changed = Some(changes.changed);
    let ignored_secrets = (!secrets.is_empty()).then_some(secrets);
    let Some(wanted) = req.config.streams else {
        return Some(typed_response(
            &id,
            &ConfigSetResponse {
                success: true,
                agent_changed,
                ignored_secrets,
                streams: None,
                error: None,
            },
        ));
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let (changes, error) = apply_streams(&ctx, wanted).await;
        let resp = ConfigSetResponse {
            success: error.is_none(),
            agent_changed,
            ignored_secrets,
            streams: Some(changes),
            error,
        };
        let _ = ctx.outbox.send(typed_response(&id, &resp)).await;
    });
    None
}

/// How long a restarted stream waits for the control task to have seen the old
/// stream's `stream.ended` before starting again.
const ENDED_SEEN: Duration = Duration::from_secs(5);

/// The streams part of `config.set`: stop live streams absent from `wanted`
/// (reason `user_stop`), leave identical ones alone, hot-apply bonding-only
/// changes (`StreamsHandle::apply_live`), restart the others (reason
/// `replaced`), start new ones. Returns what happened and the first error.
pub(in crate::control) async fn apply_streams(
    ctx: &Ctx,
    wanted: Vec<StreamStart>,
) -> (StreamChanges, Option<ErrorBody>) {
    let live: BTreeMap<String, StreamStart> = ctx
        .streams
        .specs()
        .into_iter()
        .map(|s| (s.stream_id.clone(), s))
        .collect();
    let mut out = StreamChanges::default();
    let mut first_err: Option<ErrorBody> = None;
    let mut fail = |out: &mut StreamChanges, id: &str, e: ErrorBody| {
        tracing::warn!(stream_id = id, "config.set: {}", e.message);
        out.failed.push(id.to_owned());
        first_err.get_or_insert(ErrorBody::new(
            e.code,
            format!("stream {id}: {}", e.message),
        ));
    };
    let wanted_ids: Vec<&str> = wanted.iter().map(|s| s.stream_id.as_str()).collect();
    for id in live.keys().filter(|id| !wanted_ids.contains(&id.as_str())) {
        lock(ctx).on_stop_requested(id);
        match ctx.streams.stop(id, EndReason::UserStop).await {
            Ok(()) => out.stopped.push(id.clone()),
            Err(e) => fail(&mut out, id, e),
        }
    }
    for spec in wanted {
        let id = spec.stream_id.clone();
        match live.get(&id) {
            Some(cur) if *cur == spec => out.unchanged.push(id),
            Some(cur) if StreamsHandle::live_changeable(cur, &spec) => {
                match ctx.streams.apply_live(spec).await {
                    Ok(()) => out.hot_applied.push(id),
                    Err(e) => fail(&mut out, &id, e),
                }
            }
            Some(_) => {
                lock(ctx).on_stop_requested(&id);
                if let Err(e) = ctx.streams.stop(&id, EndReason::Replaced).await {
                    fail(&mut out, &id, e);
                    continue;
                }
                wait_ended_seen(ctx, &id).await;
                match start(ctx, spec).await {
                    Ok(()) => out.restarted.push(id),
                    Err(e) => fail(&mut out, &id, e),
                }
            }
            None => match start(ctx, spec).await {
                Ok(()) => out.started.push(id),
                Err(e) => fail(&mut out, &id, e),
            },
        }
    }
    for list in [
        &mut out.unchanged,
        &mut out.hot_applied,
        &mut out.restarted,
        &mut out.started,
        &mut out.stopped,
        &mut out.failed,
    ] {
        list.sort();
    }
    (out, first_err)
}

fn lock(ctx: &Ctx) -> std::sync::MutexGuard<'_, super::super::book::StreamBook> {
    ctx.book.lock().unwrap_or_else(|p| p.into_inner())
}

async fn wait_ended_seen(ctx: &Ctx, id: &str) {
    let deadline = tokio::time::Instant::now() + ENDED_SEEN;
    while lock(ctx).contains(id) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(ctx: &Ctx, spec: StreamStart) -> Result<(), ErrorBody> {
    let id = spec.stream_id.clone();
    lock(ctx).on_start_requested(&spec);
    let result = ctx.streams.start(spec).await;
    lock(ctx).on_start_done(&id, result.is_ok());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            "[control_plane]\nurl = \"wss://h/agent/ws\"\nenrollment_token = \"enr_secret\"\n[agent]\nstate_dir = \"/s\"\nmedia_dir = \"/m\"\n",
            Path::new("/etc/braid/agent.conf"),
        )
        .unwrap()
    }

    #[test]
    fn the_running_doc_has_no_secret() {
        let doc = running_doc(&config(), Path::new("/usr/bin/braid-agent"), vec![]);
        let text = serde_json::to_string(&doc).unwrap();
        assert!(!text.contains("enr_secret"), "{text}");
        assert!(find_secrets(&serde_json::to_value(&doc).unwrap()).is_empty());
        assert_eq!(doc.agent.unwrap().status_interval_s, Some(10));
    }

    #[test]
    fn a_get_result_sent_back_changes_nothing() {
        let c = config();
        let bin = Path::new("/usr/bin/braid-agent");
        let doc = running_doc(&c, bin, vec![]);
        let d = diff_agent(&c, bin, &RemoteOverrides::default(), &doc).unwrap();
        assert!(d.changed.is_empty());
        assert_eq!(d.overrides, RemoteOverrides::default());
    }

    #[test]
    fn live_keys_change_and_others_are_refused_by_name() {
        let c = config();
        let bin = Path::new("/usr/bin/braid-agent");
        let mut doc = running_doc(&c, bin, vec![]);
        doc.agent.as_mut().unwrap().status_interval_s = Some(3);
        doc.update.as_mut().unwrap().login_timeout_s = Some(30);
        let d = diff_agent(&c, bin, &RemoteOverrides::default(), &doc).unwrap();
        assert_eq!(
            d.changed,
            vec!["agent.status_interval_s", "update.login_timeout_s"]
        );
        assert_eq!(d.overrides.agent.status_interval_s, Some(3));

        let refused = |doc: ConfigDoc, key: &str| {
            let e = diff_agent(&c, bin, &RemoteOverrides::default(), &doc).unwrap_err();
            assert_eq!(e.code, ErrorCode::Unsupported);
            assert!(e.message.contains(key), "{}", e.message);
        };
        let mut d = running_doc(&c, bin, vec![]);
        d.control_plane.as_mut().unwrap().url = Some("wss://evil/".into());
        refused(d, "config.control_plane.url");
        let mut d = running_doc(&c, bin, vec![]);
        d.agent.as_mut().unwrap().media_dir = Some("/other".into());
        refused(d, "config.agent.media_dir");
        let mut d = running_doc(&c, bin, vec![]);
        d.update.as_mut().unwrap().binary_path = Some("/etc/passwd".into());
        refused(d, "config.update.binary_path");
        let mut d = running_doc(&c, bin, vec![]);
        d.nmos.as_mut().unwrap().port = Some(1);
        refused(d, "config.nmos.port");
        let mut d = running_doc(&c, bin, vec![]);
        d.control_plane.as_mut().unwrap().tls = Some(TlsDoc {
            mode: Some(TlsModeName::Insecure),
            pin_sha256: None,
        });
        refused(d, "config.control_plane.tls");

        let mut d = running_doc(&c, bin, vec![]);
        d.agent.as_mut().unwrap().status_interval_s = Some(0);
        let e = diff_agent(&c, bin, &RemoteOverrides::default(), &d).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidPayload);
    }
}
