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
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

const LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 3.0,
];

pub struct GuardMetrics {
    pub checks: IntCounterVec,
    pub latency: HistogramVec,
    pub denials: IntCounterVec,
    /// Tells these families from another gateway's in the same process (tests run several),
    /// so that a check's cached series are only used with the families they came from.
    id: u64,
}

/// Numbers `GuardMetrics` instances.
static NEXT_METRICS_ID: AtomicU64 = AtomicU64::new(1);

/// One check's metric series, looked up on its first run: `with_label_values` hashes the
/// labels and takes a lock on every call (~800 instructions; ten of them per request with ten
/// checks). Kept with the compiled check, so they live as long as the config that holds it.
#[derive(Debug, Default)]
pub struct CheckHandles(OnceLock<Cached>);

#[derive(Debug)]
struct Cached {
    metrics: u64,
    hook: Arc<str>,
    /// `pass`, `fail`, `error`: each series is created when first counted, as before.
    verdicts: [OnceLock<IntCounter>; 3],
    latency: Histogram,
}

const VERDICTS: [&str; 3] = ["pass", "fail", "error"];

impl CheckHandles {
    /// Counts one run of the check (`verdict` indexes `VERDICTS`) and its latency.
    fn record(&self, m: &GuardMetrics, hook: &Arc<str>, check: &str, verdict: usize, secs: f64) {
        let label = VERDICTS.get(verdict).copied().unwrap_or("error");
        let cached = self.0.get_or_init(|| Cached {
            metrics: m.id,
            hook: hook.clone(),
            verdicts: Default::default(),
            latency: m.latency.with_label_values(&[check]),
        });
        // The same compiled check under another hook label or another gateway's families (not
        // expected, but never miscounted): the series are looked up as usual.
        if cached.metrics != m.id || !Arc::ptr_eq(&cached.hook, hook) {
            m.checks.with_label_values(&[hook, check, label]).inc();
            m.latency.with_label_values(&[check]).observe(secs);
            return;
        }
        if let Some(slot) = cached.verdicts.get(verdict) {
            slot.get_or_init(|| m.checks.with_label_values(&[hook, check, label]))
                .inc();
        }
        cached.latency.observe(secs);
    }
}

impl GuardMetrics {
    pub fn new() -> prometheus::Result<GuardMetrics> {
        Ok(GuardMetrics {
            id: NEXT_METRICS_ID.fetch_add(1, Ordering::Relaxed),
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
                (Some(_), _) => 2,
                (None, true) => 0,
                (None, false) => 1,
            };
            c.handles.record(m, &r.label, &c.id, verdict, c.seconds);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn count(m: &GuardMetrics, hook: &str, check: &str, verdict: &str) -> u64 {
        m.checks.with_label_values(&[hook, check, verdict]).get()
    }

    fn series(m: &GuardMetrics) -> usize {
        use prometheus::core::Collector;
        m.checks
            .collect()
            .iter()
            .map(|f| f.get_metric().len())
            .sum()
    }

    #[test]
    fn cached_series_count_like_a_lookup_and_only_where_they_came_from() {
        let (a, b) = (GuardMetrics::new().unwrap(), GuardMetrics::new().unwrap());
        let handles = CheckHandles::default();
        let hook: Arc<str> = Arc::from("input-guard");
        handles.record(&a, &hook, "default.wordCount", 0, 0.001);
        handles.record(&a, &hook, "default.wordCount", 0, 0.001);
        handles.record(&a, &hook, "default.wordCount", 1, 0.001);
        // A verdict never counted has no series (as with a lookup per run).
        assert_eq!(series(&a), 2);
        assert_eq!(count(&a, "input-guard", "default.wordCount", "pass"), 2);
        assert_eq!(count(&a, "input-guard", "default.wordCount", "fail"), 1);
        // Another gateway's families, and another hook label: counted there, not in `a`'s.
        handles.record(&b, &hook, "default.wordCount", 2, 0.001);
        let other: Arc<str> = Arc::from("before_request");
        handles.record(&a, &other, "default.wordCount", 0, 0.001);
        assert_eq!(count(&b, "input-guard", "default.wordCount", "error"), 1);
        assert_eq!(count(&a, "before_request", "default.wordCount", "pass"), 1);
        assert_eq!(count(&a, "input-guard", "default.wordCount", "pass"), 2);
        let latency = a.latency.with_label_values(&["default.wordCount"]);
        assert_eq!(latency.get_sample_count(), 4);
    }
}
