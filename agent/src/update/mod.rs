//! `agent.update` (PROTOCOL.md §5): download, verify, keep the previous binary,
//! swap atomically, restart through systemd, roll back automatically.
//!
//! Files (see docs/protocol.md "agent.update" for the whole design):
//!
//! | path | what |
//! |---|---|
//! | `<binary_path>` | the installed update (`[update] binary_path`, default `<state_dir>/bin/braid-agent`: the hardened unit can write only its state directory) |
//! | `<binary_path>.new` | the download while it is checked; removed on any failure |
//! | `<binary_path>.prev` | copy of the binary that installed the update (it was running and logged in: known good) |
//! | `<binary_path>.base` | [`launch::Base`]: the packaged binary (launcher) this update supersedes |
//! | `<state_dir>/updates/pending.json` | [`marker::Marker`] until the new binary logs in |
//!
//! The packaged `/usr/bin/braid-agent run` starts an installed update in its
//! place ([`launch`]: exec, loop guard, superseded by a later package install).
//!
//! Order of an install ([`UpdateHandle::install`]): download `.new` over https
//! (size-capped, hashed while streaming) → SHA-256 compared → `.new` run once as
//! `braid-agent preflight` (must start, load the config and GStreamer) → `.prev`
//! written → `.base` written → marker written → `rename(.new, binary_path)` →
//! response. Until the
//! rename nothing the service runs has changed; a failure removes `.new` and the
//! marker. With `restart_after` the agent then exits with [`RESTART_EXIT_CODE`]
//! and systemd (`Restart=always`) starts the new binary.
//!
//! Rollback, three guards, each restoring `.prev` over `binary_path` and
//! leaving the marker in state `rolled_back` for the next start to report:
//! 1. the new binary itself: not logged in `[update] login_timeout_s` (120 s)
//!    after its start → roll back, exit [`RESTART_EXIT_CODE`];
//! 2. the new binary at start: more than [`MAX_STARTS`] starts without a login
//!    (crash loop after start-up) → roll back, exit;
//! 3. `braid-agent update-guard`, run by the unit as
//!    `ExecStartPre=-<binary_path>.prev update-guard` before every start
//!    (packaged: `/var/lib/braid/bin/braid-agent.prev`): the
//!    known-good binary counts the starts itself, so a new binary that cannot
//!    even execute is rolled back after [`MAX_STARTS`] starts too.

pub mod launch;
pub mod marker;

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid_protocol::error::{ErrorBody, ErrorCode};
use braid_protocol::event::{Category, Event, Severity};
use braid_protocol::update::AgentUpdate;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use marker::{Marker, State};

/// Exit code of `braid-agent run` when it stops to be restarted into another
/// binary (after `agent.update` with `restart_after`, or after a rollback):
/// `EX_TEMPFAIL`. The unit restarts on it (`Restart=always`; a unit with
/// `Restart=on-failure` restarts on it too, it is not a success code).
pub const RESTART_EXIT_CODE: u8 = 75;
/// Starts a new binary gets without logging in before it is rolled back.
pub const MAX_STARTS: u32 = 3;
/// Longest the preflight run of a downloaded binary may take.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(60);
/// Line `braid-agent preflight` prints on success.
pub const PREFLIGHT_OK: &str = "braid-agent preflight ok";
/// No download progress for this long: the download fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP + TLS connect limit of the download.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// `<binary>` + `suffix` in the same directory (`/var/lib/braid/bin/braid-agent.prev`).
pub fn sibling(binary: &Path, suffix: &str) -> PathBuf {
    let mut name = binary.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    binary.with_file_name(name)
}

/// SHA-256 of a file, lower-case hex. Errors: I/O.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Copy `from` to `to` atomically (`<to>.tmp`, fsync, rename, directory fsync)
/// with `mode`; returns the SHA-256 of what was copied. Errors: I/O.
pub fn copy_atomic(from: &Path, to: &Path, mode: u32) -> std::io::Result<String> {
    let tmp = sibling(to, ".tmp");
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut src = std::fs::File::open(from)?;
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = src.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            dst.write_all(&buf[..n])?;
        }
        dst.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, to)?;
        sync_dir(to)?;
        Ok(hex::encode(hasher.finalize()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(file: &Path) -> std::io::Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new("."))).and_then(|d| d.sync_all())
}

/// Whether `a` and `b` name the same file (same device and inode).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Put `.prev` back over the binary and mark the update `rolled_back` with
/// `reason`. Errors: `.prev` missing or I/O (the marker is left as it was).
pub fn rollback(state_dir: &Path, m: &mut Marker, reason: &str) -> std::io::Result<()> {
    tracing::error!(
        binary = %m.binary_path.display(),
        prev = %m.prev_path.display(),
        "rolling the agent update back: {reason}"
    );
    let sha = copy_atomic(&m.prev_path, &m.binary_path, 0o755)?;
    if sha != m.prev_sha256 {
        tracing::warn!(
            "{} has SHA-256 {sha}, not the recorded {}; restored anyway",
            m.prev_path.display(),
            m.prev_sha256
        );
    }
    m.state = State::RolledBack;
    m.reason = Some(reason.to_owned());
    marker::store(state_dir, m)
}

/// What `braid-agent update-guard` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardOutcome {
    /// No update pending.
    Nothing,
    /// A pending update's start counted (n-th start).
    Counted(u32),
    /// The pending update was rolled back.
    RolledBack(String),
    /// The marker did not match the installed binary and was removed.
    Stale,
}

/// `braid-agent update-guard` (the unit's `ExecStartPre`, run from
/// `<binary_path>.prev`): count this start of a pending update; after
/// [`MAX_STARTS`] starts without a login, roll back. Errors: unreadable marker or
/// I/O during rollback.
pub fn guard(state_dir: &Path) -> std::io::Result<GuardOutcome> {
    let Some(mut m) = marker::load(state_dir)? else {
        return Ok(GuardOutcome::Nothing);
    };
    if m.state != State::Pending {
        return Ok(GuardOutcome::Nothing);
    }
    if sha256_file(&m.binary_path).ok().as_deref() != Some(m.new_sha256.as_str()) {
        marker::remove(state_dir)?;
        return Ok(GuardOutcome::Stale);
    }
    m.guard_starts += 1;
    if m.guard_starts > MAX_STARTS {
        let reason =
            format!("the new binary did not log in after {MAX_STARTS} starts of the service");
        rollback(state_dir, &mut m, &reason)?;
        return Ok(GuardOutcome::RolledBack(reason));
    }
    marker::store(state_dir, &m)?;
    Ok(GuardOutcome::Counted(m.guard_starts))
}

/// A successful install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// SHA-256 of the installed binary, lower-case hex.
    pub sha256: String,
    /// Its size, bytes.
    pub size_bytes: u64,
}

/// The update side of the agent: install requests, the trial of a freshly
/// installed binary (commit at login, rollback on timeout), restart requests.
/// Cheap to clone.
#[derive(Clone)]
pub struct UpdateHandle {
    inner: Arc<Inner>,
}

struct Inner {
    state_dir: PathBuf,
    binary_path: PathBuf,
    config_path: PathBuf,
    tls: Result<Arc<rustls::ClientConfig>, String>,
    restart: CancellationToken,
    committed: CancellationToken,
    busy: AtomicBool,
    trial: Mutex<Option<Marker>>,
    notes: Mutex<Vec<Event>>,
}

impl std::fmt::Debug for UpdateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateHandle")
            .field("binary_path", &self.inner.binary_path)
            .field("state_dir", &self.inner.state_dir)
            .finish()
    }
}

fn update_event(severity: Severity, message: String) -> Event {
    Event::new(severity, Category::Update, message)
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

impl UpdateHandle {
    /// Look at the update marker at start (PROTOCOL.md §5 rollback) and build the
    /// handle. `config_path` is the file `run` was given (the preflight of a
    /// download uses it). Effects: a rolled-back marker becomes an event and is
    /// removed; a pending marker for this binary counts this start, and after
    /// [`MAX_STARTS`] starts rolls back and requests a restart
    /// ([`UpdateHandle::restart_requested`] is then already set). Never fails:
    /// problems become events.
    pub fn startup(config: &Config, config_path: &Path, allow_insecure: bool) -> Self {
        let binary_path = launch::Paths::from_config(config).binary_path;
        let tls = crate::tls::client_config(config.update_tls(), allow_insecure)
            .map_err(|e| format!("update TLS settings: {e}"));
        let handle = Self {
            inner: Arc::new(Inner {
                state_dir: config.agent.state_dir.clone(),
                binary_path,
                config_path: config_path.to_owned(),
                tls,
                restart: CancellationToken::new(),
                committed: CancellationToken::new(),
                busy: AtomicBool::new(false),
                trial: Mutex::new(None),
                notes: Mutex::new(Vec::new()),
            }),
        };
        handle.check_marker();
        handle
    }

    fn note(&self, event: Event) {
        self.inner
            .notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    fn check_marker(&self) {
        let dir = &self.inner.state_dir;
        let mut m = match marker::load(dir) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("update marker: {e}");
                let bad = sibling(&marker::path(dir), ".bad");
                let _ = std::fs::rename(marker::path(dir), bad);
                self.note(update_event(
                    Severity::Warning,
                    format!("Update marker unreadable, set aside: {e}"),
                ));
                return;
            }
        };
        match m.state {
            State::RolledBack => {
                let reason = m.reason.clone().unwrap_or_else(|| "unknown".into());
                self.note(update_event(
                    Severity::Critical,
                    format!(
                        "Agent update rolled back: {reason} (sha256 {} replaced by the previous binary {})",
                        short(&m.new_sha256),
                        short(&m.prev_sha256)
                    ),
                ));
                if let Err(e) = marker::remove(dir) {
                    tracing::error!("cannot remove the update marker: {e}");
                }
            }
            State::Pending => {
                let exe = std::env::current_exe().unwrap_or_default();
                if !same_file(&exe, &m.binary_path) {
                    // Not the binary under trial (an older process, or another path).
                    return;
                }
                match sha256_file(&m.binary_path) {
                    Ok(sha) if sha == m.new_sha256 => {}
                    other => {
                        tracing::warn!(
                            "update marker does not match {} ({other:?}); dropped",
                            m.binary_path.display()
                        );
                        let _ = marker::remove(dir);
                        self.note(update_event(
                            Severity::Warning,
                            format!(
                                "Update marker dropped: {} is not the installed update {}",
                                m.binary_path.display(),
                                short(&m.new_sha256)
                            ),
                        ));
                        return;
                    }
                }
                m.agent_starts += 1;
                if m.agent_starts > MAX_STARTS {
                    let reason = format!("the new binary did not log in after {MAX_STARTS} starts");
                    if let Err(e) = rollback(dir, &mut m, &reason) {
                        tracing::error!("rollback failed: {e}");
                        self.note(update_event(
                            Severity::Critical,
                            format!("Agent update rollback failed: {e}"),
                        ));
                        return;
                    }
                    self.request_restart();
                    return;
                }
                if let Err(e) = marker::store(dir, &m) {
                    tracing::error!("cannot count the start in the update marker: {e}");
                }
                tracing::info!(
                    start = m.agent_starts,
                    "running a freshly installed update (sha256 {}): it must log in to be kept",
                    short(&m.new_sha256)
                );
                *self.inner.trial.lock().unwrap_or_else(|p| p.into_inner()) = Some(m);
            }
        }
    }

    /// The binary `agent.update` replaces.
    pub fn binary_path(&self) -> &Path {
        &self.inner.binary_path
    }

    /// Whether this process runs an update that has not logged in yet.
    pub fn on_trial(&self) -> bool {
        self.inner
            .trial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// While on trial: wait `timeout` for a login ([`UpdateHandle::on_login`]);
    /// without one, roll back and request a restart. Returns at once when not on
    /// trial. Run it as a task next to the control task.
    pub async fn watch_trial(self, timeout: Duration) {
        if !self.on_trial() {
            return;
        }
        tokio::select! {
            _ = self.inner.committed.cancelled() => {}
            _ = self.inner.restart.cancelled() => {}
            _ = tokio::time::sleep(timeout) => {
                let taken = self.inner.trial.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(mut m) = taken {
                    let reason = format!("the new binary did not log in within {} s", timeout.as_secs());
                    let dir = self.inner.state_dir.clone();
                    let done = tokio::task::spawn_blocking(move || rollback(&dir, &mut m, &reason)).await;
                    match done {
                        Ok(Ok(())) => self.request_restart(),
                        Ok(Err(e)) => tracing::error!("rollback failed: {e}"),
                        Err(e) => tracing::error!("rollback task failed: {e}"),
                    }
                }
            }
        }
    }

    /// Called at every successful login: commits an update on trial (marker
    /// removed) and returns the events to raise (update outcomes noted at start
    /// and the commit), oldest first.
    pub fn on_login(&self) -> Vec<Event> {
        let taken = self
            .inner
            .trial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(m) = taken {
            match marker::remove(&self.inner.state_dir) {
                Ok(()) => {
                    self.inner.committed.cancel();
                    tracing::info!("update committed: logged in with the new binary");
                    self.note(update_event(
                        Severity::Info,
                        format!(
                            "Agent updated to {} (sha256 {}, from {})",
                            crate::control::AGENT_VERSION,
                            short(&m.new_sha256),
                            m.from_version
                        ),
                    ));
                }
                Err(e) => {
                    tracing::error!("cannot remove the update marker: {e}");
                    *self.inner.trial.lock().unwrap_or_else(|p| p.into_inner()) = Some(m);
                }
            }
        }
        std::mem::take(&mut *self.inner.notes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Ask `braid-agent run` to stop and exit with [`RESTART_EXIT_CODE`].
    pub fn request_restart(&self) {
        self.inner.restart.cancel();
    }

    /// Fires when a restart was requested.
    pub fn restart_token(&self) -> CancellationToken {
        self.inner.restart.clone()
    }

    /// Whether a restart was requested.
    pub fn restart_requested(&self) -> bool {
        self.inner.restart.is_cancelled()
    }

    /// Carry out `agent.update` up to the swap (see the module docs). `max_size` is
    /// the download cap in bytes. Errors (response bodies): `busy` (another update
    /// runs), `not_found` (HTTP 404/410), `unsupported` (larger than the cap),
    /// `verification_failed` (SHA-256 mismatch, or the binary does not pass its
    /// preflight), `internal` (network, TLS, I/O). On any error the binary, `.prev`
    /// and the marker are as they were.
    pub async fn install(&self, req: &AgentUpdate, max_size: u64) -> Result<Installed, ErrorBody> {
        if self.inner.busy.swap(true, Ordering::SeqCst) {
            return Err(ErrorBody::new(
                ErrorCode::Busy,
                "another agent.update is in progress",
            ));
        }
        let result = self.install_inner(req, max_size).await;
        self.inner.busy.store(false, Ordering::SeqCst);
        if let Err(e) = &result {
            tracing::warn!("agent.update failed: {}: {}", code_name(e.code), e.message);
        }
        result
    }

    async fn install_inner(
        &self,
        req: &AgentUpdate,
        max_size: u64,
    ) -> Result<Installed, ErrorBody> {
        let internal = |m: String| ErrorBody::new(ErrorCode::Internal, m);
        req.validate()
            .map_err(|e| ErrorBody::new(ErrorCode::InvalidPayload, e.to_string()))?;
        let tls = self.inner.tls.clone().map_err(internal)?;
        let binary = self.inner.binary_path.clone();
        let new_path = sibling(&binary, ".new");
        let prev_path = sibling(&binary, ".prev");
        tracing::info!(url = %req.binary_url, binary = %binary.display(), "agent.update: downloading");
        if let Some(dir) = binary.parent().filter(|d| !d.as_os_str().is_empty()) {
            // `<state_dir>/bin` on the first update of a packaged install.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
        }

        let (sha, size) = match download(&req.binary_url, &tls, &new_path, max_size).await {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&new_path);
                return Err(e);
            }
        };
        let expected = req.sha256.to_ascii_lowercase();
        if sha != expected {
            let _ = std::fs::remove_file(&new_path);
            return Err(ErrorBody::new(
                ErrorCode::VerificationFailed,
                format!(
                    "SHA-256 of the download is {sha}, expected {expected}; nothing was changed"
                ),
            ));
        }
        if let Err(e) = preflight(&new_path, &self.inner.config_path).await {
            let _ = std::fs::remove_file(&new_path);
            return Err(ErrorBody::new(
                ErrorCode::VerificationFailed,
                format!("the new binary failed its start check: {e}; nothing was changed"),
            ));
        }

        let state_dir = self.inner.state_dir.clone();
        let sha_for_marker = sha.clone();
        let swap = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            // The running binary logged in (this request came over the session):
            // it is the known-good one to keep. /proc/self/exe opens it even when
            // its path was replaced since it started (an update installed
            // without restart).
            let prev_sha = copy_atomic(Path::new("/proc/self/exe"), &prev_path, 0o755)?;
            // Which launcher (the binary the unit starts) this update supersedes:
            // a package installed later wins (launch::decide).
            if let Some(launcher) = launch::launcher_of_this_process() {
                launch::write_base(&binary, &launcher)?;
            }
            let m = Marker {
                version: 1,
                state: State::Pending,
                binary_path: binary.clone(),
                prev_path: prev_path.clone(),
                new_sha256: sha_for_marker,
                prev_sha256: prev_sha,
                from_version: crate::control::AGENT_VERSION.into(),
                installed_at: braid_protocol::envelope::timestamp(time::OffsetDateTime::now_utc()),
                agent_starts: 0,
                guard_starts: 0,
                reason: None,
            };
            marker::store(&state_dir, &m)?;
            if let Err(e) = std::fs::rename(&new_path, &binary).and_then(|()| sync_dir(&binary)) {
                let _ = marker::remove(&state_dir);
                let _ = std::fs::remove_file(&new_path);
                return Err(e);
            }
            Ok(())
        })
        .await
        .map_err(|e| internal(format!("install task failed: {e}")))?;
        swap.map_err(|e| {
            internal(format!(
                "cannot install {}: {e}",
                self.inner.binary_path.display()
            ))
        })?;
        tracing::info!(
            sha256 = %sha,
            size,
            "agent.update: installed {}; previous binary kept as {}",
            self.inner.binary_path.display(),
            sibling(&self.inner.binary_path, ".prev").display()
        );
        Ok(Installed {
            sha256: sha,
            size_bytes: size,
        })
    }
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Stream `url` into `dest` (created 0700), at most `max_size` bytes, hashing
/// on the way. Returns (SHA-256 hex, size). https only, redirects to https only.
async fn download(
    url: &str,
    tls: &Arc<rustls::ClientConfig>,
    dest: &Path,
    max_size: u64,
) -> Result<(String, u64), ErrorBody> {
    let internal = |m: String| ErrorBody::new(ErrorCode::Internal, m);
    let too_big = |n: u64| {
        ErrorBody::new(
            ErrorCode::Unsupported,
            format!(
                "the download is larger than update.max_size_mb ({n} bytes > {max_size} bytes); nothing was changed"
            ),
        )
    };
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured((**tls).clone())
        .https_only(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| internal(format!("HTTP client: {e}")))?;
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| internal(format!("download of {url} failed: {}", error_chain(&e))))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("download of {url}: HTTP {status}"),
        ));
    }
    if !status.is_success() {
        return Err(internal(format!("download of {url}: HTTP {status}")));
    }
    if let Some(len) = resp.content_length() {
        if len > max_size {
            return Err(too_big(len));
        }
    }
    let _ = std::fs::remove_file(dest);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(dest)
        .await
        .map_err(|e| internal(format!("{}: {e}", dest.display())))?;
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| internal(format!("download of {url} failed: {}", error_chain(&e))))?
    {
        total += chunk.len() as u64;
        if total > max_size {
            return Err(too_big(total));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| internal(format!("{}: {e}", dest.display())))?;
    }
    file.sync_all()
        .await
        .map_err(|e| internal(format!("{}: {e}", dest.display())))?;
    Ok((hex::encode(hasher.finalize()), total))
}

/// `e` and its sources joined by `: `; a certificate refused by our verifier
/// (pin mismatch) is shown with its own text rather than rustls' debug form.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        match refused_certificate(s) {
            Some(why) => text.push_str(&format!("TLS: {why}")),
            None => text.push_str(&s.to_string()),
        }
        source = s.source();
    }
    text
}

/// The text of a certificate error raised by our own verifier, looking through
/// `io::Error` and boxed errors.
fn refused_certificate(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) =
        e.downcast_ref::<rustls::Error>()
    {
        return Some(other.0.to_string());
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return refused_certificate(inner);
    }
    None
}

/// Run `binary preflight --config <config>`: it must exit 0 within
/// [`PREFLIGHT_TIMEOUT`] and print [`PREFLIGHT_OK`].
async fn preflight(binary: &Path, config: &Path) -> Result<(), String> {
    let run = tokio::process::Command::new(binary)
        .arg("preflight")
        .arg("--config")
        .arg(config)
        .env("BRAID_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PREFLIGHT_TIMEOUT, run)
        .await
        .map_err(|_| format!("no answer within {} s", PREFLIGHT_TIMEOUT.as_secs()))?
        .map_err(|e| format!("cannot execute it: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.contains(PREFLIGHT_OK) {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(" | ");
    Err(format!("{} {}", out.status, tail.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker_for(dir: &Path, new: &Path, prev: &Path) -> Marker {
        std::fs::create_dir_all(dir).unwrap();
        Marker {
            version: 1,
            state: State::Pending,
            binary_path: new.to_owned(),
            prev_path: prev.to_owned(),
            new_sha256: sha256_file(new).unwrap(),
            prev_sha256: sha256_file(prev).unwrap(),
            from_version: "0.0.1".into(),
            installed_at: "2026-01-01T00:00:00.000Z".into(),
            agent_starts: 0,
            guard_starts: 0,
            reason: None,
        }
    }

    #[test]
    fn sibling_names() {
        assert_eq!(
            sibling(Path::new("/usr/bin/braid-agent"), ".prev"),
            PathBuf::from("/usr/bin/braid-agent.prev")
        );
    }

    #[test]
    fn copy_atomic_copies_with_mode_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"hello").unwrap();
        let b = dir.path().join("b");
        let sha = copy_atomic(&a, &b, 0o755).unwrap();
        assert_eq!(sha, hex::encode(Sha256::digest(b"hello")));
        assert_eq!(std::fs::read(&b).unwrap(), b"hello");
        let mode = std::fs::metadata(&b).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(!sibling(&b, ".tmp").exists());
        assert!(copy_atomic(&dir.path().join("missing"), &b, 0o755).is_err());
        assert_eq!(
            std::fs::read(&b).unwrap(),
            b"hello",
            "a failed copy changes nothing"
        );
    }

    #[test]
    fn guard_counts_then_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let bin = dir.path().join("braid-agent");
        let prev = sibling(&bin, ".prev");
        std::fs::write(&bin, b"new").unwrap();
        std::fs::write(&prev, b"old").unwrap();
        assert_eq!(guard(&state).unwrap(), GuardOutcome::Nothing);
        marker::store(&state, &marker_for(&state, &bin, &prev)).unwrap();
        for n in 1..=MAX_STARTS {
            assert_eq!(guard(&state).unwrap(), GuardOutcome::Counted(n));
        }
        assert!(matches!(
            guard(&state).unwrap(),
            GuardOutcome::RolledBack(_)
        ));
        assert_eq!(std::fs::read(&bin).unwrap(), b"old");
        let m = marker::load(&state).unwrap().unwrap();
        assert_eq!(m.state, State::RolledBack);
        assert!(m.reason.unwrap().contains("did not log in"));
        // Rolled back: the guard leaves it for the agent to report.
        assert_eq!(guard(&state).unwrap(), GuardOutcome::Nothing);
    }

    #[test]
    fn guard_drops_a_stale_marker() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let bin = dir.path().join("braid-agent");
        let prev = sibling(&bin, ".prev");
        std::fs::write(&bin, b"new").unwrap();
        std::fs::write(&prev, b"old").unwrap();
        marker::store(&state, &marker_for(&state, &bin, &prev)).unwrap();
        std::fs::write(&bin, b"reinstalled by dpkg").unwrap();
        assert_eq!(guard(&state).unwrap(), GuardOutcome::Stale);
        assert_eq!(marker::load(&state).unwrap(), None);
        assert_eq!(std::fs::read(&bin).unwrap(), b"reinstalled by dpkg");
    }

    #[test]
    fn rollback_without_prev_fails_and_keeps_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let bin = dir.path().join("braid-agent");
        let prev = sibling(&bin, ".prev");
        std::fs::write(&bin, b"new").unwrap();
        std::fs::write(&prev, b"old").unwrap();
        let mut m = marker_for(&state, &bin, &prev);
        marker::store(&state, &m).unwrap();
        std::fs::remove_file(&prev).unwrap();
        assert!(rollback(&state, &mut m, "x").is_err());
        assert_eq!(std::fs::read(&bin).unwrap(), b"new");
        assert_eq!(marker::load(&state).unwrap().unwrap().state, State::Pending);
    }
}
