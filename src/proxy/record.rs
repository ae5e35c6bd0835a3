//! The one place a finished request is accounted for: Prometheus families and the access-log
//! line, from what the request context collected. Runs in Pingora's `logging` hook, which is
//! called exactly once per request, success or failure.

use super::{RequestCtx, Route};
use crate::pipeline::attempts::AttemptRecord;
use crate::state::State;
use crate::telemetry::access_log::now_rfc3339;
use crate::telemetry::metrics::status_class;
use crate::types::json::Object;
use crate::types::money::Picos;
use crate::types::redact::redact;
use crate::types::usage::Usage;
use bytes::Bytes;
use pingora::protocols::l4::socket::SocketAddr as ClientAddr;
#[cfg(test)]
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::time::Duration;

mod line;

use line::*;

/// Records the request. `status` is what the client got (0: nothing was sent).
pub(crate) fn record(
    state: &State,
    ctx: &mut RequestCtx,
    status: u16,
    client: Option<&ClientAddr>,
    method: &str,
    path: &str,
) {
    let total = ctx.started.elapsed();
    let m = &state.metrics;
    let provider = ctx.provider.as_deref().unwrap_or("");
    let requested = ctx.model.as_deref().unwrap_or("");
    let served = ctx.relayed.model.as_deref().unwrap_or(requested);
    // Each name is a label without the cap only when it is itself priced: a custom host that
    // answers every request with a priced model's name must not turn each requested name into
    // a new series. The price is the served model's, else the requested one's.
    // A model priced by prompt size takes the tier of this prompt.
    let prompt = ctx.relayed.usage.map_or(0, |u| u.input);
    let served_price = state.pricing.price(provider, served, prompt);
    let requested_price = if served == requested {
        served_price
    } else {
        state.pricing.price(provider, requested, prompt)
    };
    let price = served_price.or(requested_price);
    let model = m.model_label(requested, requested_price.is_some());
    let op = match ctx.route {
        Route::Unified(op) => op.name(),
        Route::LegacyChatComplete => "chat",
        _ => "",
    };
    let error_type = ctx.error.as_ref().map_or("", |e| e.kind());
    let cache_status = ctx.cache_status.unwrap_or("DISABLED");
    // An answer from the cache cost nothing: its tokens and price count as saved, not spent.
    let cache_hit = matches!(cache_status, "HIT" | "SEMANTIC HIT");

    let meta = m.metadata_labels();
    let mut labels: Vec<&str> = Vec::with_capacity(5 + meta.len());
    labels.extend([
        ctx.route.label(),
        provider,
        model,
        status_class(status),
        cache_status,
    ]);
    labels.extend(meta.iter().enumerate().map(|(i, k)| {
        m.metadata_value(i, ctx.metadata.get(k).and_then(Value::as_str).unwrap_or(""))
    }));
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

    let usage = ctx.relayed.usage;
    let mut cost = None;
    if let (Some(u), true) = (usage, cache_hit) {
        cost = price.map(|p| p.cost(&u));
        let c = &m.cache;
        c.saved_tokens.with_label_values(&["input"]).inc_by(u.input);
        c.saved_tokens
            .with_label_values(&["output"])
            .inc_by(u.output);
        if let Some(cost) = cost {
            c.saved_cost
                .inc_by(u64::try_from(cost.0).unwrap_or(u64::MAX));
        }
    } else if let Some(u) = usage {
        let served_label = m.model_label(served, served_price.is_some());
        let series = m.usage_series.get([op, provider, model, served_label]);
        let counts = [
            u.input,
            u.output,
            u.cached_input,
            u.cache_write,
            u.reasoning,
        ];
        for (kind, n) in counts.into_iter().enumerate() {
            series.count(m, kind, n);
            // Input and output always; the other kinds when there are any.
            if kind < 2 || n > 0 {
                series.observe(m, kind, n);
            }
        }
        cost = price.map(|p| p.cost(&u));
        match cost {
            Some(c) => series.cost(m, c),
            None => series.unpriced(m),
        }
    }

    // Rate limits and budgets are charged what the provider reported (not for a cache hit).
    if let (Some(u), false) = (usage, cache_hit) {
        if !ctx.limit_charges.is_empty() {
            state
                .limiter
                .charge(ctx.limit_charges.clone(), u.input + u.output, cost);
        }
    }

    let ttft = match (ctx.stream, ctx.relayed.first_chunk_at) {
        (true, Some(first)) => Some(first.duration_since(ctx.started)),
        _ => None,
    };
    if let Some(t) = ttft {
        m.time_to_first_token
            .with_label_values(&[op, provider, model])
            .observe(t.as_secs_f64());
        let outputs = usage.map_or(u64::from(ctx.relayed.events), |u| u.output);
        if let (Some(first), Some(last), true) = (
            ctx.relayed.first_chunk_at,
            ctx.relayed.last_chunk_at,
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
            a.kind == crate::pipeline::attempts::AttemptKind::Retry
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
        let mut resp = ctx.relayed.body.clone().unwrap_or(Value::Null);
        redact(&mut resp);
        (Some(req), Some(resp))
    } else {
        (None, None)
    };
    let line = RequestLine {
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
        model_served: ctx.relayed.model.as_deref(),
        stream: ctx.stream,
        target: ctx.last_used.as_deref(),
        attempts: Attempts(&ctx.attempts),
        retries,
        retry_budget_exhausted: ctx.budget_exhausted,
        cache_status,
        tokens: usage,
        cost_usd: cost.map(Picos::usd),
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
    };
    // LLM requests go to the log store too, with the same line (written once).
    let store = state.log_store.as_ref().filter(|_| {
        matches!(
            ctx.route,
            Route::Unified(_) | Route::LegacyChatComplete | Route::Passthrough
        )
    });
    let Some(store) = store else {
        state.access_log.write_with(|out| {
            line.write_json(out);
            true
        });
        return;
    };
    let mut written = Vec::with_capacity(1024);
    line.write_json(&mut written);
    state.access_log.write_with(|out| {
        out.extend_from_slice(&written);
        true
    });
    store.record(crate::log_store::RequestRecord {
        line: written,
        // Copied: the body may be a slice of a larger read buffer, which the record would
        // otherwise keep from being reused until the writer's next turn.
        request: ctx.request_body.take().map(|b| Bytes::copy_from_slice(&b)),
        answer: ctx.transcript.take(),
        sse: ctx.stream,
    });
}

/// The client's address as a JSON string, `ip:port` as `Display` writes it. An IPv4 address
/// is written by hand: through `fmt` it cost more than the rest of the line's strings
/// together.
fn client_addr(out: &mut Vec<u8>, addr: &ClientAddr) {
    match addr.as_inet() {
        Some(std::net::SocketAddr::V4(v4)) => {
            let mut digits = itoa::Buffer::new();
            out.push(b'"');
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
            out.push(b':');
            out.extend_from_slice(digits.format(v4.port()).as_bytes());
            out.push(b'"');
        }
        _ => crate::types::json::string(out, &addr.to_string()),
    }
}

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrails::telemetry::{CheckLine, VerdictLine, Verdicts};
    use crate::pipeline::attempts::AttemptKind;

    fn attempt(
        path: Option<&str>,
        kind: AttemptKind,
        error: Option<&'static str>,
    ) -> AttemptRecord {
        AttemptRecord {
            path: path.map(str::to_string),
            provider: "open\"ai".into(),
            target: "openai@api.openai.com".into(),
            kind,
            status: 503,
            error,
            duration: Duration::from_micros(1_234_567),
        }
    }

    /// How serde writes the client's address: its `Display`.
    pub(crate) fn display<S: Serializer>(
        addr: &Option<&ClientAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match addr {
            Some(a) => s.collect_str(a),
            None => s.serialize_none(),
        }
    }

    #[test]
    fn client_addresses_are_written_as_displayed() {
        for text in [
            "127.0.0.1:52274",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.1.20.3:8",
            "[::1]:8787",
            "[2001:db8::ff00:42:8329]:443",
        ] {
            let addr = ClientAddr::Inet(text.parse().unwrap());
            let mut out = Vec::new();
            client_addr(&mut out, &addr);
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"{text}\""));
        }
    }

    fn hand_written(line: &RequestLine<'_>) -> String {
        let mut out = Vec::new();
        line.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// Every field set, with strings that need escaping: the hand-written line is serde_json's.
    #[test]
    fn a_full_line_is_written_as_serde_json_writes_it() {
        let attempts = [
            attempt(Some("targets[0]"), AttemptKind::First, None),
            attempt(None, AttemptKind::Retry, Some("timeout")),
            attempt(Some("targets[1]"), AttemptKind::Fallback, None),
        ];
        let metadata: Map<String, Value> =
            serde_json::from_str(r#"{"_user":"u\"1","team":"a\nb","n":3}"#).unwrap();
        let guardrails = Verdicts(vec![VerdictLine {
            event: "beforeRequestHook",
            hook: "pii\\check".into(),
            verdict: false,
            deny: true,
            skipped: false,
            checks: vec![CheckLine {
                id: "default.regexMatch".into(),
                verdict: false,
                errored: false,
            }],
        }]);
        let client = ClientAddr::Inet("127.0.0.1:52274".parse().unwrap());
        let line = RequestLine {
            timestamp: "2026-12-03T17:53:06.525Z".into(),
            event: "request",
            trace_id: "trace \"quoted\" \u{1}",
            w3c_trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            parent_span_id: Some("00f067aa0ba902b7"),
            span_id: Some("b7ad6b7169203331"),
            route: "chat_completions",
            method: "POST",
            path: "/v1/chat/completions\t",
            client: Some(&client),
            status: 503,
            provider: Some("openai"),
            model_requested: Some("gpt-4o-mini"),
            model_served: Some("gpt-4o-mini-2024-07-18 🦀"),
            stream: true,
            target: Some("targets[1]"),
            attempts: Attempts(&attempts),
            retries: 1,
            retry_budget_exhausted: true,
            cache_status: "MISS",
            tokens: Some(Usage {
                input: 17,
                output: 8,
                cached_input: 2,
                cache_write: 1,
                reasoning: u64::MAX,
            }),
            cost_usd: Some(7.35e-6),
            latency_ms: Latency {
                total: 0.661,
                upstream: 1e21,
                ttft: Some(0.1),
            },
            overhead_ms: 0.141,
            metadata: &metadata,
            guardrails: &guardrails,
            error: Some(ErrorLine {
                kind: "upstream_status",
                message: "openai answered 503: \"busy\"".into(),
                detail: Some("line\r\nbreak"),
            }),
            request_body: Some(serde_json::json!({"messages": [{"content": "hi\u{0}"}]})),
            response_body: Some(Value::Null),
        };
        assert_eq!(hand_written(&line), serde_json::to_string(&line).unwrap());
    }

    /// Every optional field absent: skipped fields are left out, the others are `null`.
    #[test]
    fn a_minimal_line_is_written_as_serde_json_writes_it() {
        let metadata = Map::new();
        let guardrails = Verdicts::default();
        let line = RequestLine {
            timestamp: String::new(),
            event: "request",
            trace_id: "t",
            w3c_trace_id: None,
            parent_span_id: None,
            span_id: None,
            route: "not_found",
            method: "GET",
            path: "/",
            client: None,
            status: 0,
            provider: None,
            model_requested: None,
            model_served: None,
            stream: false,
            target: None,
            attempts: Attempts(&[]),
            retries: 0,
            retry_budget_exhausted: false,
            cache_status: "DISABLED",
            tokens: None,
            cost_usd: None,
            latency_ms: Latency {
                total: 0.0,
                upstream: 0.0,
                ttft: None,
            },
            overhead_ms: f64::NAN,
            metadata: &metadata,
            guardrails: &guardrails,
            error: Some(ErrorLine {
                kind: "not_found",
                message: String::new(),
                detail: None,
            }),
            request_body: None,
            response_body: None,
        };
        let written = hand_written(&line);
        assert_eq!(written, serde_json::to_string(&line).unwrap());
        assert!(!written.contains("w3c_trace_id") && !written.contains("guardrails"));
    }
}
