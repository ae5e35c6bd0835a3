//! Settings that change without a restart. When the settings file or a secret file a virtual
//! key reads changes — an edit, or the atomic replace Kubernetes makes of a ConfigMap or Secret
//! volume (a new symlink target) — or on `SIGHUP`, the settings are loaded again exactly as at start-up (file, environment,
//! flags), checked as `portgate --check` checks them, and built into a new state that is
//! swapped in whole: requests in flight finish on the settings they started with, new ones see
//! the new ones; counters, pools, breakers and the cache carry over (`State::reloaded`).
//!
//! Virtual keys (with their `*_file` secrets, read again), named configs, guardrails, limits,
//! prices, trusted hosts and cache settings change this way. Listen addresses, threads, pools
//! and the other process-wide settings keep their running values, and are named in the log
//! when the new file differs. An invalid new file is refused whole, with a log line naming the
//! problem and `portgate_settings_reloads_total{result="error"}`: the running settings stay.

use crate::proxy::Current;
use crate::settings::{Settings, SettingsError};
use crate::state::State;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Loads the settings as at start-up (file, environment, flags).
pub type Loader = Box<dyn Fn() -> Result<Settings, SettingsError> + Send + Sync>;

/// How the settings are reloaded: the loader, and the file to watch (none: `SIGHUP` only).
pub struct Reload {
    pub loader: Loader,
    pub watch: Option<PathBuf>,
}

/// How often the file is looked at.
const POLL: Duration = Duration::from_secs(1);

/// The background task that watches the file and `SIGHUP`, and swaps the settings.
pub(crate) struct Reloader {
    reload: Reload,
    current: Current,
}

impl Reloader {
    pub(crate) fn new(reload: Reload, current: Current) -> Self {
        Reloader { reload, current }
    }

    /// Loads, checks and swaps in the settings once; the outcome is logged and counted.
    pub(crate) fn reload_now(&self, why: &str) -> Result<(), SettingsError> {
        let running = self.current.load_full();
        let result =
            (self.reload.loader)().and_then(|settings| apply(&running, &self.current, settings));
        let outcome = if result.is_ok() { "ok" } else { "error" };
        running
            .metrics
            .settings_reloads
            .with_label_values(&[outcome])
            .inc();
        match &result {
            Ok(()) => tracing::info!(target: "portgate::settings", why, "settings reloaded"),
            Err(e) => {
                tracing::error!(target: "portgate::settings", why, error = %e, "new settings refused: the running settings stay")
            }
        }
        result
    }
}

/// Builds the state of `settings` from the running one and swaps it in.
pub(crate) fn apply(
    running: &State,
    current: &Current,
    settings: Settings,
) -> Result<(), SettingsError> {
    let next = running.reloaded(settings, &|name| std::env::var(name).ok())?;
    current.store(Arc::new(next));
    Ok(())
}

/// What identifies a file's contents for the watch: its path resolved through symlinks (a
/// ConfigMap's update swaps the link), its modification time and its length.
type Stamp = Option<(PathBuf, SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let real = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&real).ok()?;
    Some((real, meta.modified().ok()?, meta.len()))
}

/// The files watched: the settings file, and every secret file the virtual keys read (a key
/// rotated in a Secret volume is picked up like a settings change).
fn watched(settings_file: Option<&Path>, state: &State) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = settings_file.into_iter().map(Path::to_path_buf).collect();
    for row in state.settings.virtual_keys.values() {
        files.extend(row.api_key_file.iter().map(PathBuf::from));
        files.extend(
            row.options
                .iter()
                .filter(|(name, _)| name.ends_with("_file"))
                .map(|(_, path)| PathBuf::from(path)),
        );
    }
    files
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(target: "portgate::settings", error = %e, "SIGHUP reloads are not available");
                None
            }
        };
        let stamps = |state: &State| -> Vec<Stamp> {
            watched(self.reload.watch.as_deref(), state)
                .iter()
                .map(|p| stamp(p))
                .collect()
        };
        let mut seen = stamps(&self.current.load());
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let _ = self.reload_now("SIGHUP");
                }
                _ = tick.tick() => {
                    let now = stamps(&self.current.load());
                    // Not while the settings file itself is missing (mid-replace).
                    let settings_there =
                        self.reload.watch.is_none() || now.first().is_some_and(Option::is_some);
                    if now != seen && settings_there {
                        let _ = self.reload_now("a settings or secret file changed");
                        // What the settings now in force read (a reload may add or drop files).
                        seen = stamps(&self.current.load());
                    }
                }
            }
        }
    }
}
