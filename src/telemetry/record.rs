//! The one place a finished request is accounted for: Prometheus families and the access-log
//! line, from what the request context collected. Runs in Pingora's `logging` hook, which is
//! called exactly once per request, success or failure.

use super::access_log::{now_rfc3339, redact};
use super::metrics::status_class;
use crate::proxy::{RequestCtx, Route};
use crate::state::State;
use serde_json::{json, Map, Value};

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
    let cache_status = "DISABLED";

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
        .map(|k| ctx.metadata.get(k).and_then(Value::as_str).unwrap_or(""))
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
                m.budget_exhausted.with_label_values(&[&a.target]).inc();
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
    if let Some(u) = usage {
        let served_label = m.model_label(served, priced);
        for (kind, n, always) in [
            ("input", u.input, true),
            ("output", u.output, true),
            ("cached_input", u.cached_input, false),
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
    let ms = |d: std::time::Duration| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    let attempts: Vec<Value> = ctx
        .attempts
        .iter()
        .map(|a| {
            json!({
                "path": a.path, "provider": a.provider, "kind": a.kind.label(),
                "status": a.status, "error": a.error, "ms": ms(a.duration),
            })
        })
        .collect();
    let retries = ctx
        .attempts
        .iter()
        .filter(|a| {
            a.kind == crate::dispatch::attempts::AttemptKind::Retry
                && a.error != Some("retry_budget_exhausted")
        })
        .count();
    let mut line = Map::new();
    line.insert("timestamp".into(), json!(now_rfc3339()));
    line.insert("event".into(), json!("request"));
    line.insert("trace_id".into(), json!(ctx.trace_id));
    if let Some(t) = &ctx.trace {
        line.insert("w3c_trace_id".into(), json!(t.trace_id));
        line.insert("parent_span_id".into(), json!(t.parent_id));
        line.insert("span_id".into(), json!(t.span_id));
    }
    line.insert("route".into(), json!(ctx.route.label()));
    line.insert("method".into(), json!(method));
    line.insert("path".into(), json!(path));
    line.insert("client".into(), json!(client));
    line.insert("status".into(), json!(status));
    line.insert("provider".into(), json!(ctx.provider));
    line.insert("model_requested".into(), json!(ctx.model));
    line.insert("model_served".into(), json!(ctx.metered.model));
    line.insert("stream".into(), json!(ctx.stream));
    line.insert("target".into(), json!(ctx.last_used));
    line.insert("attempts".into(), Value::Array(attempts));
    line.insert("retries".into(), json!(retries));
    line.insert("retry_budget_exhausted".into(), json!(ctx.budget_exhausted));
    line.insert("cache_status".into(), json!(cache_status));
    line.insert(
        "tokens".into(),
        usage.map_or(Value::Null, |u| {
            json!({"input": u.input, "output": u.output, "cached_input": u.cached_input, "reasoning": u.reasoning})
        }),
    );
    line.insert("cost_usd".into(), json!(cost));
    line.insert(
        "latency_ms".into(),
        json!({"total": ms(total), "upstream": ms(ctx.upstream_time), "ttft": ttft.map(ms)}),
    );
    line.insert("overhead_ms".into(), json!(ms(overhead)));
    line.insert("metadata".into(), Value::Object(ctx.metadata.clone()));
    if let Some(e) = &ctx.error {
        line.insert(
            "error".into(),
            json!({"kind": e.kind(), "message": e.to_string()}),
        );
    }
    if state.access_log.log_bodies {
        let mut req = ctx
            .request_body
            .as_ref()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .unwrap_or(Value::Null);
        redact(&mut req);
        let mut resp = ctx.metered.body.clone().unwrap_or(Value::Null);
        redact(&mut resp);
        line.insert("request_body".into(), req);
        line.insert("response_body".into(), resp);
    }
    state.access_log.write(&Value::Object(line));
}
