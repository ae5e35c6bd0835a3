//! Logging: one `tracing` stack for the gateway and for Pingora's own `log` output, and the
//! access-log line written once per request.

use crate::proxy::RequestCtx;
use crate::settings::LogSettings;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (text or JSON lines on stdout) and bridges the `log` crate,
/// which Pingora uses, into it. Safe to call more than once; later calls do nothing.
pub fn init(settings: &LogSettings) {
    let _ = tracing_log::LogTracer::init();
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = if settings.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The access-log line of one request. It carries no keys and no bodies.
pub fn access_log(ctx: &RequestCtx, status: u16) {
    let duration_ms = ctx.started.elapsed().as_secs_f64() * 1000.0;
    let provider = ctx.provider.as_deref().unwrap_or("");
    let model = ctx.model.as_deref().unwrap_or("");
    match &ctx.error {
        None => tracing::info!(
            target: "portgate::access",
            trace_id = %ctx.trace_id,
            route = ctx.route.label(),
            provider,
            model,
            stream = ctx.stream,
            status,
            duration_ms,
            "request"
        ),
        Some(e) => tracing::warn!(
            target: "portgate::access",
            trace_id = %ctx.trace_id,
            route = ctx.route.label(),
            provider,
            model,
            stream = ctx.stream,
            status,
            duration_ms,
            error = e.kind(),
            detail = %e,
            "request failed"
        ),
    }
}
