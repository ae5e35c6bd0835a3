//! Observability: diagnostics logging (one `tracing` stack, with Pingora's `log` output bridged
//! into it), Prometheus metrics, cost from pricing, token usage, W3C trace context, and the
//! access log written once per request.

pub mod access_log;
pub mod labels;
pub mod metrics;
pub mod pricing;
pub mod record;
pub mod trace;
pub mod usage;

use crate::settings::LogSettings;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (text or JSON lines on stderr) and bridges the `log` crate,
/// which Pingora uses, into it. Safe to call more than once; later calls do nothing.
pub fn init(settings: &LogSettings) {
    let _ = tracing_log::LogTracer::init();
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if settings.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
