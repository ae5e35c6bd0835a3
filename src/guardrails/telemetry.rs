//! What guardrails write into a request's access-log line: the verdicts of each hook and
//! check (ids and verdicts only, never the examined text). Metrics are in
//! `telemetry::guardrails`; `pipeline::verdicts` records both, and the feedback of
//! `on_fail` / `on_success`.

use serde::Serialize;
use std::sync::Arc;

/// One check's verdict, for the access log.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckLine {
    pub id: Arc<str>,
    pub verdict: bool,
    pub errored: bool,
}

/// One hook's verdict, for the access log.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct VerdictLine {
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
pub(crate) struct Verdicts(pub Vec<VerdictLine>);

impl Verdicts {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
