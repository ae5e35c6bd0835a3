//! The guardrail metric families: `portgate_guardrail_checks_total{hook, check, verdict}`,
//! `portgate_guardrail_check_duration_seconds{check}`, `portgate_guardrail_denials_total{hook}`.
//!
//! Labels are bounded: `hook` is a named guardrail's settings id, or `before_request` /
//! `after_request` for hooks written inline in a request's config (their ids are client input);
//! `check` is a built-in check id (unknown ids are refused when the config is parsed).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
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
/// labels and takes a lock on every call, once per check per request. Kept with the compiled check, so they live as long as the config that holds it.
#[derive(Debug, Default)]
pub(crate) struct CheckHandles(OnceLock<Cached>);

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
    pub(crate) fn record(
        &self,
        m: &GuardMetrics,
        hook: &Arc<str>,
        check: &str,
        verdict: usize,
        secs: f64,
    ) {
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
    pub(crate) fn new() -> prometheus::Result<GuardMetrics> {
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

    pub(crate) fn register(&self, r: &Registry) -> prometheus::Result<()> {
        r.register(Box::new(self.checks.clone()))?;
        r.register(Box::new(self.latency.clone()))?;
        r.register(Box::new(self.denials.clone()))
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
