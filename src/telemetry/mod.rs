//! Observability: diagnostics logging (one `tracing` stack, with Pingora's `log` output bridged
//! into it), Prometheus metrics, cost from pricing, W3C trace context, and the
//! access log written once per request.

pub mod access_log;
pub mod cache;
pub mod guardrails;
pub mod labels;
pub mod metrics;
pub mod pricing;
pub mod trace;
pub mod usage_series;
mod usd;

use crate::settings::LogSettings;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (text or JSON lines on stderr) and bridges the `log` crate,
/// which Pingora uses, into it. Safe to call more than once; later calls do nothing.
///
/// The bridge's max level must be the subscriber's, never `Trace`: `log`'s macros build their
/// arguments before any subscriber can drop the record, and some of Pingora's trace lines
/// format whole buffers (its chunked-body reader formats everything still buffered on every
/// chunk: quadratic in the length of a stream, and most of a long stream's cost).
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // `try_init` also installs the `log` bridge at the subscriber's max level.
    let installed = if settings.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    if installed.is_err() {
        // A subscriber was already installed (an embedding process, or a second call): bridge
        // `log` into it at its own max level, if no bridge is there yet.
        let level = tracing_log::AsLog::as_log(&tracing::level_filters::LevelFilter::current());
        let _ = tracing_log::LogTracer::builder()
            .with_max_level(level)
            .init();
    }
}
