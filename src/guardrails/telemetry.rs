//! What guardrails tell operators: metrics (`portgate_guardrail_checks_total{hook, check,
//! verdict}`, `portgate_guardrail_check_duration_seconds{check}`,
//! `portgate_guardrail_denials_total{hook}`), the verdicts in the request's access-log line
//! (ids and verdicts only, never the examined text), and `on_fail` / `on_success` feedback
//! recorded through the feedback path (an access-log `feedback` line with the trace id, the
//! feedback metrics, the id index used by `PUT /v1/feedback/{id}`).
//!
//! Labels are bounded: `hook` is a named guardrail's settings id, or `before_request` /
//! `after_request` for hooks written inline in a request's config (their ids are client input);
//! `check` is a built-in check id (unknown ids are refused when the config is parsed).

use super::engine::HookResult;
use super::Event;
use crate::state::State;
use crate::telemetry::access_log::now_rfc3339;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

const LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 3.0,
];

pub struct GuardMetrics {
    pub checks: IntCounterVec,
    pub latency: HistogramVec,
    pub denials: IntCounterVec,
}

impl GuardMetrics {
    pub fn new() -> prometheus::Result<GuardMetrics> {
        Ok(GuardMetrics {
            checks: IntCounterVec::new(
                Opts::new(
                    "portgate_guardrail_checks_total",
                    "Guardrail checks run, by hook (named guardrail id, or before_request/after_request for inline hooks), check id and verdict (pass, fail, error).",
                ),
                &["hook", "check", "verdict"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "portgate_guardrail_check_duration_seconds",
                    "Time one guardrail check took.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["check"],
            )?,
            denials: IntCounterVec::new(
                Opts::new(
                    "portgate_guardrail_denials_total",
                    "Requests or answers denied (446) by a failing deny hook, by hook.",
                ),
                &["hook"],
            )?,
        })
    }

    pub fn register(&self, r: &Registry) -> prometheus::Result<()> {
        r.register(Box::new(self.checks.clone()))?;
        r.register(Box::new(self.latency.clone()))?;
        r.register(Box::new(self.denials.clone()))
    }
}

/// One check's verdict, for the access log.
#[derive(Debug, Clone, Serialize)]
pub struct CheckLine {
    pub id: Arc<str>,
    pub verdict: bool,
    pub errored: bool,
}

/// One hook's verdict, for the access log.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictLine {
    pub event: &'static str,
    pub hook: Arc<str>,
    pub verdict: bool,
    pub deny: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    pub checks: Vec<CheckLine>,
}

/// Every hook run of a request, in order (each attempt's after-request hooks included).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Verdicts(pub Vec<VerdictLine>);

impl Verdicts {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Records one list's results: metrics, verdicts, feedback.
pub fn record(
    state: &State,
    trace_id: &str,
    event: Event,
    results: &[HookResult],
    log: &mut Verdicts,
) {
    let m = &state.metrics.guardrails;
    for r in results {
        let checks = r.tail.as_ref().map(|t| t.checks.as_slice()).unwrap_or(&[]);
        for c in checks {
            let verdict = match (&c.error, c.verdict) {
                (Some(_), _) => "error",
                (None, true) => "pass",
                (None, false) => "fail",
            };
            m.checks
                .with_label_values(&[&*r.label, &*c.id, verdict])
                .inc();
            m.latency.with_label_values(&[&*c.id]).observe(c.seconds);
        }
        if r.denies() {
            m.denials.with_label_values(&[&*r.label]).inc();
        }
        log.0.push(VerdictLine {
            event: event.label(),
            hook: r.id.clone(),
            verdict: r.verdict(),
            deny: r.denies(),
            skipped: r.skipped == Some(true),
            checks: checks
                .iter()
                .map(|c| CheckLine {
                    id: c.id.clone(),
                    verdict: c.verdict,
                    errored: c.error.is_some(),
                })
                .collect(),
        });
        if let Some(f) = r.tail.as_ref().and_then(|t| t.feedback.as_ref()) {
            let id = uuid::Uuid::new_v4().to_string();
            state.feedback.insert(&id, trace_id);
            state
                .metrics
                .feedback
                .with_label_values(&["guardrail"])
                .inc();
            state.metrics.feedback_value.observe(f.value as f64);
            state.access_log.write(&json!({
                "timestamp": now_rfc3339(), "event": "feedback", "feedback_id": id,
                "trace_id": trace_id, "value": f.value, "weight": f.weight, "metadata": f.metadata,
                "source": "guardrail", "hook": r.id,
            }));
        }
    }
}
