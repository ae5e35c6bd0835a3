//! Settings that change without a restart. When the settings file changes — an edit, or the
//! atomic replace Kubernetes makes of a ConfigMap or Secret volume (a new symlink target) — or
//! on `SIGHUP`, the settings are loaded again exactly as at start-up (file, environment,
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
use std::path::PathBuf;
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

/// What identifies the file's contents for the watch: its path resolved through symlinks (a
/// ConfigMap's update swaps the link), its modification time and its length.
fn stamp(path: &PathBuf) -> Option<(PathBuf, SystemTime, u64)> {
    let real = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&real).ok()?;
    Some((real, meta.modified().ok()?, meta.len()))
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
        let mut seen = self.reload.watch.as_ref().and_then(stamp);
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
                    let Some(path) = &self.reload.watch else { continue };
                    let now = stamp(path);
                    if now.is_some() && now != seen {
                        seen = now;
                        let _ = self.reload_now("the settings file changed");
                    }
                }
            }
        }
    }
}
