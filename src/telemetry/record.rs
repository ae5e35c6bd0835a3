//! The one place a finished request is accounted for: Prometheus families and the access-log
//! line, from what the request context collected. Runs in Pingora's `logging` hook, which is
//! called exactly once per request, success or failure.

use super::access_log::{now_rfc3339, redact};
use super::metrics::status_class;
use super::usage::Usage;
use crate::dispatch::attempts::AttemptRecord;
use crate::proxy::{RequestCtx, Route};
use crate::state::State;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::time::Duration;

/// Records the request. `status` is what the client got (0: nothing was sent).
pub fn record(
    state: &State,
    ctx: &RequestCtx,
    status: u16,
    client: Option<String>,
    method: &str,
    path: &str,
) {
    let total = ctx.started.elapsed();
    let m = &state.metrics;
    let provider = ctx.provider.as_deref().unwrap_or("");
    let requested = ctx.model.as_deref().unwrap_or("");
    let served = ctx.metered.model.as_deref().unwrap_or(requested);
    let priced =
        state.pricing.is_priced(provider, requested) || state.pricing.is_priced(provider, served);
    let model = m.model_label(requested, priced);
    let op = match ctx.route {
        Route::Unified(op) => op.name(),
        Route::LegacyChatComplete => "chat",
        _ => "",
    };
    let error_type = ctx.error.as_ref().map_or("", |e| e.kind());
    let cache_status = ctx.cache_status.unwrap_or("DISABLED");
    // An answer from the cache cost nothing: its tokens and price count as saved, not spent.
    let cache_hit = matches!(cache_status, "HIT" | "SEMANTIC HIT");

    let mut labels: Vec<&str> = vec![
        ctx.route.label(),
        provider,
        model,
        status_class(status),
        cache_status,
    ];
    let meta: Vec<&str> = m
        .metadata_labels()
        .iter()
        .enumerate()
        .map(|(i, k)| {
            m.metadata_value(i, ctx.metadata.get(k).and_then(Value::as_str).unwrap_or(""))
        })
        .collect();
    labels.extend(meta);
    m.requests.with_label_values(&labels).inc();

    let is_llm = !op.is_empty();
    if is_llm {
        m.request_duration
            .with_label_values(&[op, provider, model, error_type])
            .observe(total.as_secs_f64());
    }
    for a in &ctx.attempts {
        match a.error {
            Some("retry_budget_exhausted") => {
                m.budget_exhausted
                    .with_label_values(&[m.target_label(&a.target)])
                    .inc();
                continue;
            }
            Some("circuit_open") => continue,
            _ => {}
        }
        let outcome = match a.error {
            Some(kind) => kind,
            None => status_class(a.status),
        };
        m.attempts
            .with_label_values(&[&a.provider, model, a.kind.label(), outcome])
            .inc();
        m.operation_duration
            .with_label_values(&[op, &a.provider, model, a.error.unwrap_or("")])
            .observe(a.duration.as_secs_f64());
    }

    let usage = ctx.metered.usage;
    let mut cost = None;
    if let (Some(u), true) = (usage, cache_hit) {
        cost = state.pricing.cost(provider, &[served, requested], &u);
        let c = &m.cache;
        c.saved_tokens.with_label_values(&["input"]).inc_by(u.input);
        c.saved_tokens
            .with_label_values(&["output"])
            .inc_by(u.output);
        if let Some(usd) = cost {
            c.saved_cost.inc_by(usd);
        }
    } else if let Some(u) = usage {
        let served_label = m.model_label(served, priced);
        for (kind, n, always) in [
            ("input", u.input, true),
            ("output", u.output, true),
            ("cached_input", u.cached_input, false),
            ("cache_write", u.cache_write, false),
            ("reasoning", u.reasoning, false),
        ] {
            m.tokens
                .with_label_values(&[provider, model, kind])
                .inc_by(n);
            if always || n > 0 {
                m.token_usage
                    .with_label_values(&[op, provider, model, served_label, kind])
                    .observe(n as f64);
            }
        }
        cost = state.pricing.cost(provider, &[served, requested], &u);
        match cost {
            Some(c) => m.cost.with_label_values(&[provider, model]).inc_by(c),
            None => m.unpriced.with_label_values(&[provider, model]).inc(),
        }
    }

    let ttft = match (ctx.stream, ctx.metered.first_chunk_at) {
        (true, Some(first)) => Some(first.duration_since(ctx.started)),
        _ => None,
    };
    if let Some(t) = ttft {
        m.time_to_first_token
            .with_label_values(&[op, provider, model])
            .observe(t.as_secs_f64());
        let outputs = usage.map_or(u64::from(ctx.metered.events), |u| u.output);
        if let (Some(first), Some(last), true) = (
            ctx.metered.first_chunk_at,
            ctx.metered.last_chunk_at,
            outputs > 1,
        ) {
            let per = last.duration_since(first).as_secs_f64() / (outputs - 1) as f64;
            m.time_per_output_token
                .with_label_values(&[op, provider, model])
                .observe(per);
        }
    }
    let overhead = total.saturating_sub(ctx.upstream_time);
    m.overhead.observe(overhead.as_secs_f64());

    if matches!(ctx.route, Route::Feedback | Route::FeedbackUpdate) {
        // Feedback requests write their own line (see `feedback.rs`).
        return;
    }
    let retries = ctx
        .attempts
        .iter()
        .filter(|a| {
            a.kind == crate::dispatch::attempts::AttemptKind::Retry
                && a.error != Some("retry_budget_exhausted")
        })
        .count();
    let (request_body, response_body) = if state.access_log.log_bodies {
        let mut req = ctx
            .request_body
            .as_ref()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .unwrap_or(Value::Null);
        redact(&mut req);
        let mut resp = ctx.metered.body.clone().unwrap_or(Value::Null);
        redact(&mut resp);
        (Some(req), Some(resp))
    } else {
        (None, None)
    };
    state.access_log.write(&RequestLine {
        timestamp: now_rfc3339(),
        event: "request",
        trace_id: &ctx.trace_id,
        w3c_trace_id: ctx.trace.as_ref().map(|t| t.trace_id.as_str()),
        parent_span_id: ctx.trace.as_ref().map(|t| t.parent_id.as_str()),
        span_id: ctx.trace.as_ref().map(|t| t.span_id.as_str()),
        route: ctx.route.label(),
        method,
        path,
        client,
        status,
        provider: ctx.provider.as_deref(),
        model_requested: ctx.model.as_deref(),
        model_served: ctx.metered.model.as_deref(),
        stream: ctx.stream,
        target: ctx.last_used.as_deref(),
        attempts: Attempts(&ctx.attempts),
        retries,
        retry_budget_exhausted: ctx.budget_exhausted,
        cache_status,
        tokens: usage,
        cost_usd: cost,
        latency_ms: Latency {
            total: ms(total),
            upstream: ms(ctx.upstream_time),
            ttft: ttft.map(ms),
        },
        overhead_ms: ms(overhead),
        metadata: &ctx.metadata,
        guardrails: &ctx.guardrails,
        error: ctx.error.as_ref().map(|e| ErrorLine {
            kind: e.kind(),
            message: e.to_string(),
            detail: e.detail(),
        }),
        request_body,
        response_body,
    });
}

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// The access-log line of a request, serialised straight from the request context (borrowed
/// fields, no intermediate JSON tree). Field order is the order written.
#[derive(Serialize)]
struct RequestLine<'a> {
    timestamp: String,
    event: &'static str,
    trace_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    w3c_trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span_id: Option<&'a str>,
    route: &'static str,
    method: &'a str,
    path: &'a str,
    client: Option<String>,
    status: u16,
    provider: Option<&'a str>,
    model_requested: Option<&'a str>,
    model_served: Option<&'a str>,
    stream: bool,
    target: Option<&'a str>,
    attempts: Attempts<'a>,
    retries: usize,
    retry_budget_exhausted: bool,
    cache_status: &'static str,
    tokens: Option<Usage>,
    cost_usd: Option<f64>,
    latency_ms: Latency,
    overhead_ms: f64,
    metadata: &'a Map<String, Value>,
    /// Guardrail verdicts (ids and verdicts, never the examined text).
    #[serde(skip_serializing_if = "crate::guardrails::telemetry::Verdicts::is_empty")]
    guardrails: &'a crate::guardrails::telemetry::Verdicts,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorLine<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_body: Option<Value>,
}

#[derive(Serialize)]
struct Latency {
    total: f64,
    upstream: f64,
    ttft: Option<f64>,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    kind: &'static str,
    message: String,
    /// What the client-facing message leaves out (an unknown slug, a refused host's reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

/// The attempts, serialised as a list of objects without collecting them first.
struct Attempts<'a>(&'a [AttemptRecord]);

impl Serialize for Attempts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|a| AttemptLine {
            path: a.path.as_deref(),
            provider: &a.provider,
            kind: a.kind.label(),
            status: a.status,
            error: a.error,
            ms: ms(a.duration),
        }))
    }
}

#[derive(Serialize)]
struct AttemptLine<'a> {
    path: Option<&'a str>,
    provider: &'a str,
    kind: &'static str,
    status: u16,
    error: Option<&'static str>,
    ms: f64,
}
