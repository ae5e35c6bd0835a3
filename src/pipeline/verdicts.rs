//! Records the results of one list of hooks: the guardrail metrics, the verdicts for the
//! access-log line, and `on_fail` / `on_success` feedback through the feedback path (an
//! access-log `feedback` line with the trace id, the feedback metrics, the id index used by
//! `PUT /v1/feedback/{id}`).

use crate::guardrails::engine::HookResult;
use crate::guardrails::telemetry::{CheckLine, VerdictLine, Verdicts};
use crate::guardrails::Event;
use crate::state::State;
use crate::telemetry::access_log::now_rfc3339;
use serde_json::json;

/// Records one list's results: metrics, verdicts, feedback.
pub(crate) fn record(
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
