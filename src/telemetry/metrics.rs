//! Prometheus metric families, in one struct registered into the gateway's own registry (the
//! `prometheus` crate version Pingora's Prometheus service uses), served on the admin listener's
//! `/metrics`. Names follow the OpenTelemetry GenAI conventions rendered for Prometheus, plus
//! one `portgate_` family; every family is named in README and documented in docs/observability.md.
//!
//! Labels are bounded (see `labels.rs` for the caps and why): providers come from the provider
//! table; model labels are the priced models plus at most `metrics.max_model_labels` others of
//! at most 64 bytes, after which `other` is used; target keys (which a custom host controls)
//! and metadata values are capped the same way; metadata keys become labels only when listed
//! in `metrics.metadata_labels`.

use super::labels::{
    LabelGuard, MAX_METADATA_LEN, MAX_METADATA_VALUES, MAX_MODEL_LEN, MAX_TARGETS, MAX_TARGET_LEN,
};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The bucket boundaries OpenTelemetry's GenAI semantic conventions advise for token counts
/// (powers of 4 from 1 to 4^13).
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    15.0, 20.0, 30.0, 45.0, 60.0,
];
const TPOT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
/// Gateway overhead: fine buckets from 50 µs, as a Pingora proxy's cost is sub-millisecond.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];
const FEEDBACK_BUCKETS: &[f64] = &[-10.0, -7.5, -5.0, -2.5, -1.0, 0.0, 1.0, 2.5, 5.0, 7.5, 10.0];

pub(crate) use super::labels::OTHER;

pub struct Metrics {
    registry: Registry,
    pub token_usage: HistogramVec,
    pub request_duration: HistogramVec,
    pub time_to_first_token: HistogramVec,
    pub time_per_output_token: HistogramVec,
    pub operation_duration: HistogramVec,
    pub requests: IntCounterVec,
    pub attempts: IntCounterVec,
    pub tokens: IntCounterVec,
    /// Micro-dollars would lose nothing, but Prometheus counters are floats: USD as f64.
    /// `portgate_cost_usd_total`, counted in picodollars (`usd.rs`).
    pub cost: IntCounterVec,
    pub unpriced: IntCounterVec,
    pub overhead: Histogram,
    pub inflight: IntGauge,
    pub circuit_state: IntGaugeVec,
    pub budget_exhausted: IntCounterVec,
    pub feedback: IntCounterVec,
    pub feedback_value: Histogram,
    pub access_log_dropped: IntCounter,
    /// `portgate_log_store_dropped_total{reason}`: records the log store lost, because its
    /// queue was full (`queue_full`) or the write failed (`store_error`).
    pub log_store_dropped: IntCounterVec,
    /// `portgate_log_store_records_total{kind}`: records written (`request`, `feedback`,
    /// `feedback_update`).
    pub log_store_records: IntCounterVec,
    /// `portgate_limit_rejections_total{kind, scope}`: requests a rate limit (`rate`), a
    /// budget (`budget`) or an unreadable store (`unavailable`) refused.
    pub limit_rejections: IntCounterVec,
    /// `portgate_limit_used` and `portgate_limit`: each virtual key's and gateway key's limits
    /// and their use in the current window or period, as this replica last saw it (labels:
    /// scope, name, type, window; bounded by the settings).
    pub limit_used: prometheus::GaugeVec,
    pub limit_value: prometheus::GaugeVec,
    /// `portgate_limit_alerts_total{scope, name}`: budgets that crossed their alert threshold.
    pub limit_alerts: IntCounterVec,
    /// `portgate_settings_reloads_total{result}`: reloads of the settings, `ok` or `error`.
    pub settings_reloads: IntCounterVec,
    /// Requests whose connection ended without any response written: the client left before
    /// the answer, or the gateway could not write one. Kept-alive clients must never see this
    /// for a request they sent in good order, so any rate here is worth a look.
    pub closed_without_response: IntCounter,
    /// Guardrail checks, latencies and denials (`guardrails::telemetry`).
    pub guardrails: crate::telemetry::guardrails::GuardMetrics,
    /// The response cache's families (`telemetry/cache.rs`).
    pub cache: crate::telemetry::cache::CacheMetrics,
    metadata_labels: Vec<String>,
    /// Requested and served model names (one set: both name the same models).
    models: LabelGuard,
    /// Target keys, `provider@host:port`.
    targets: LabelGuard,
    /// One per metadata label, in `metadata_labels` order.
    metadata_values: Vec<LabelGuard>,
    /// Token, usage and cost series by label set, resolved once (`usage_series.rs`).
    pub usage_series: super::usage_series::UsageSeriesCache,
}

fn histogram_vec(
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

const GEN_AI: &[&str] = &[
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
];

impl Metrics {
    pub(crate) fn new(
        metadata_labels: &[String],
        max_models: usize,
    ) -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let mut request_labels = vec!["route", "provider", "model", "status_class", "cache_status"];
        let meta_names: Vec<String> = metadata_labels
            .iter()
            .map(|k| format!("metadata_{k}"))
            .collect();
        request_labels.extend(meta_names.iter().map(String::as_str));
        let m = Metrics {
            token_usage: histogram_vec(
                "gen_ai_client_token_usage",
                "Tokens exchanged with the provider per request, by token type.",
                TOKEN_BUCKETS,
                &[
                    "gen_ai_operation_name",
                    "gen_ai_provider_name",
                    "gen_ai_request_model",
                    "gen_ai_response_model",
                    "gen_ai_token_type",
                ],
            )?,
            request_duration: histogram_vec(
                "gen_ai_server_request_duration_seconds",
                "Request duration as the client sees it, from request head to the end of the response.",
                DURATION_BUCKETS,
                &["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"],
            )?,
            time_to_first_token: histogram_vec(
                "gen_ai_server_time_to_first_token_seconds",
                "Streams: time from the request to the first response chunk sent to the client.",
                TTFT_BUCKETS,
                GEN_AI,
            )?,
            time_per_output_token: histogram_vec(
                "gen_ai_server_time_per_output_token_seconds",
                "Streams: time per output token after the first.",
                TPOT_BUCKETS,
                GEN_AI,
            )?,
            operation_duration: histogram_vec(
                "gen_ai_client_operation_duration_seconds",
                "Each upstream attempt, from send to the provider's response header (or failure).",
                DURATION_BUCKETS,
                &["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"],
            )?,
            requests: counter_vec(
                "portgate_requests_total",
                "Requests answered, by route, provider, model, status class and cache status.",
                &request_labels,
            )?,
            attempts: counter_vec(
                "portgate_upstream_attempts_total",
                "Upstream sends by kind (first, retry, fallback) and outcome (status class or error).",
                &["provider", "model", "kind", "outcome"],
            )?,
            tokens: counter_vec(
                "portgate_tokens_total",
                "Tokens by type (input, output, cached_input, cache_write, reasoning).",
                &["provider", "model", "type"],
            )?,
            cost: counter_vec(
                "portgate_cost_usd_total",
                "Spend in US dollars, from exact usage and the price catalog.",
                &["provider", "model"],
            )?,
            unpriced: counter_vec(
                "portgate_cost_unpriced_requests_total",
                "Requests with usage but no price for their model (their cost is not counted).",
                &["provider", "model"],
            )?,
            overhead: Histogram::with_opts(
                HistogramOpts::new(
                    "portgate_overhead_seconds",
                    "Time spent in portgate itself: total minus time waiting on providers and backoff.",
                )
                .buckets(OVERHEAD_BUCKETS.to_vec()),
            )?,
            inflight: IntGauge::new("portgate_inflight_requests", "Requests being served now.")?,
            circuit_state: IntGaugeVec::new(
                Opts::new("portgate_circuit_state", "Circuit breaker state per target and model: 0 closed, 1 half-open, 2 open."),
                &["target", "model"],
            )?,
            budget_exhausted: counter_vec(
                "portgate_retry_budget_exhausted_total",
                "Retries or fallbacks refused because the target's retry budget was spent.",
                &["target"],
            )?,
            feedback: counter_vec(
                "portgate_feedback_total",
                "Feedback records received (kind: create or update).",
                &["kind"],
            )?,
            feedback_value: Histogram::with_opts(
                HistogramOpts::new("portgate_feedback_value", "Feedback values (-10..10).")
                    .buckets(FEEDBACK_BUCKETS.to_vec()),
            )?,
            limit_rejections: counter_vec(
                "portgate_limit_rejections_total",
                "Requests refused by a rate limit (kind=rate), a budget (budget) or because the limits store was unavailable (unavailable), by whose limit (virtual_key, gateway_key, policy).",
                &["kind", "scope"],
            )?,
            limit_used: prometheus::GaugeVec::new(
                Opts::new("portgate_limit_used", "Use of a virtual key's or gateway key's limit in its current window or period (requests, tokens or US dollars), as this replica last read or counted it."),
                &["scope", "name", "type", "window"],
            )?,
            limit_value: prometheus::GaugeVec::new(
                Opts::new("portgate_limit", "A virtual key's or gateway key's limit (requests, tokens or US dollars)."),
                &["scope", "name", "type", "window"],
            )?,
            limit_alerts: counter_vec(
                "portgate_limit_alerts_total",
                "Budgets whose use crossed their alert_threshold (once per period and replica).",
                &["scope", "name"],
            )?,
            settings_reloads: counter_vec(
                "portgate_settings_reloads_total",
                "Reloads of the settings (file change or SIGHUP): ok (swapped in) or error (refused; the running settings stay).",
                &["result"],
            )?,
            access_log_dropped: IntCounter::new(
                "portgate_access_log_dropped_total",
                "Access-log lines dropped because the log output stalled and the buffer was full.",
            )?,
            log_store_dropped: IntCounterVec::new(
                Opts::new(
                    "portgate_log_store_dropped_total",
                    "Log store records dropped: queue full, or the store failed or was down.",
                ),
                &["reason"],
            )?,
            log_store_records: IntCounterVec::new(
                Opts::new(
                    "portgate_log_store_records_total",
                    "Records written to the log store, by kind.",
                ),
                &["kind"],
            )?,
            closed_without_response: IntCounter::new(
                "portgate_downstream_closed_without_response_total",
                "Client connections closed after a request without any response written.",
            )?,
            guardrails: crate::telemetry::guardrails::GuardMetrics::new()?,
            cache: crate::telemetry::cache::CacheMetrics::new()?,
            metadata_labels: metadata_labels.to_vec(),
            models: LabelGuard::new(max_models, MAX_MODEL_LEN),
            targets: LabelGuard::new(MAX_TARGETS, MAX_TARGET_LEN),
            metadata_values: metadata_labels
                .iter()
                .map(|_| LabelGuard::new(MAX_METADATA_VALUES, MAX_METADATA_LEN))
                .collect(),
            usage_series: Default::default(),
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.token_usage.clone()))?;
        r.register(Box::new(m.request_duration.clone()))?;
        r.register(Box::new(m.time_to_first_token.clone()))?;
        r.register(Box::new(m.time_per_output_token.clone()))?;
        r.register(Box::new(m.operation_duration.clone()))?;
        r.register(Box::new(m.requests.clone()))?;
        r.register(Box::new(m.attempts.clone()))?;
        r.register(Box::new(m.tokens.clone()))?;
        r.register(Box::new(super::usd::Usd(m.cost.clone())))?;
        r.register(Box::new(m.unpriced.clone()))?;
        r.register(Box::new(m.overhead.clone()))?;
        r.register(Box::new(m.inflight.clone()))?;
        r.register(Box::new(m.circuit_state.clone()))?;
        r.register(Box::new(m.budget_exhausted.clone()))?;
        r.register(Box::new(m.feedback.clone()))?;
        r.register(Box::new(m.feedback_value.clone()))?;
        r.register(Box::new(m.access_log_dropped.clone()))?;
        r.register(Box::new(m.log_store_dropped.clone()))?;
        r.register(Box::new(m.log_store_records.clone()))?;
        r.register(Box::new(m.limit_rejections.clone()))?;
        r.register(Box::new(m.limit_used.clone()))?;
        r.register(Box::new(m.limit_value.clone()))?;
        r.register(Box::new(m.limit_alerts.clone()))?;
        r.register(Box::new(m.settings_reloads.clone()))?;
        r.register(Box::new(m.closed_without_response.clone()))?;
        m.guardrails.register(r)?;
        m.cache.register(r)?;
        Ok(m)
    }

    /// The model label: priced models always (the price catalog is the operator's, so they
    /// are bounded by it), others while fewer than `max_model_labels` distinct ones were seen
    /// and at most `MAX_MODEL_LEN` bytes long, else `other`.
    /// Counts a request a limit refused: (`rate` | `budget` | `unavailable`, scope).
    pub(crate) fn limit_refused(&self, (kind, scope): (&str, &str)) {
        self.limit_rejections
            .with_label_values(&[kind, scope])
            .inc();
    }

    pub(crate) fn model_label<'a>(&self, model: &'a str, priced: bool) -> &'a str {
        if priced {
            return model;
        }
        self.models.label(model)
    }

    /// The `target` label of `portgate_circuit_state` and
    /// `portgate_retry_budget_exhausted_total`: a custom host from the request is part of the
    /// key, so at most `MAX_TARGETS` keys of `MAX_TARGET_LEN` bytes, else `other`.
    pub(crate) fn target_label<'a>(&self, key: &'a str) -> &'a str {
        self.targets.label(key)
    }

    /// The value of the `i`-th metadata label (`metadata_labels()[i]`): at most
    /// `MAX_METADATA_VALUES` distinct values of `MAX_METADATA_LEN` bytes per key, else `other`.
    pub(crate) fn metadata_value<'a>(&self, i: usize, value: &'a str) -> &'a str {
        match self.metadata_values.get(i) {
            Some(guard) => guard.label(value),
            None => OTHER,
        }
    }

    /// The metadata keys that are labels, in label order.
    pub(crate) fn metadata_labels(&self) -> &[String] {
        &self.metadata_labels
    }

    /// Prometheus text format of every family.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// `2xx`, `4xx`, `5xx` ...; `0xx` for a request that got no response.
pub(crate) fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_labels_are_capped() {
        let m = Metrics::new(&[], 2).unwrap();
        assert_eq!(m.model_label("a", false), "a");
        assert_eq!(m.model_label("b", false), "b");
        assert_eq!(m.model_label("c", false), OTHER);
        assert_eq!(m.model_label("a", false), "a");
        assert_eq!(
            m.model_label("gpt-4o", true),
            "gpt-4o",
            "priced models are always labels"
        );
        let long = "m".repeat(MAX_MODEL_LEN + 1);
        let m = Metrics::new(&[], 10).unwrap();
        assert_eq!(m.model_label(&long, false), OTHER, "too long");
        assert_eq!(m.model_label("short", false), "short");
    }

    #[test]
    fn targets_and_metadata_values_are_capped() {
        let m = Metrics::new(&["plan".into()], 10).unwrap();
        for i in 0..MAX_TARGETS {
            let key = format!("openai@h{i}:443");
            assert_eq!(m.target_label(&key), key);
        }
        assert_eq!(m.target_label("openai@one-too-many:443"), OTHER);
        assert_eq!(m.target_label("openai@h0:443"), "openai@h0:443");
        for i in 0..MAX_METADATA_VALUES {
            let v = format!("v{i}");
            assert_eq!(m.metadata_value(0, &v), v);
        }
        assert_eq!(m.metadata_value(0, "one-too-many"), OTHER);
        assert_eq!(
            m.metadata_value(0, &"x".repeat(MAX_METADATA_LEN + 1)),
            OTHER
        );
    }

    #[test]
    fn renders_text_format() {
        let m = Metrics::new(&["user_plan".into()], 10).unwrap();
        m.requests
            .with_label_values(&[
                "chat_completions",
                "openai",
                "gpt-4o",
                "2xx",
                "DISABLED",
                "paid",
            ])
            .inc();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(
                "portgate_requests_total{cache_status=\"DISABLED\",metadata_user_plan=\"paid\""
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE portgate_overhead_seconds histogram"));
    }
}
