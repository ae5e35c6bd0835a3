//! What running hooks reports: each check's and each hook's result, written in Portkey's
//! hook-result shape field for field, and what a list of hooks decided.

use super::*;

#[derive(Debug, Clone)]
pub(crate) struct CheckError {
    pub name: &'static str,
    pub message: String,
}

/// One check's result: `{id, verdict, data, error?, execution_time, created_at, transformed,
/// log, fail_on_error}`.
#[derive(Debug, Clone)]
pub(crate) struct CheckResult {
    pub id: Arc<str>,
    pub verdict: bool,
    pub data: Data,
    pub error: Option<CheckError>,
    /// Milliseconds.
    pub execution_time: u64,
    pub created_at: Stamp,
    pub transformed: bool,
    pub fail_on_error: bool,
    /// For the latency histogram (seconds).
    pub seconds: f64,
    /// The check's metric series (shared with its spec).
    pub handles: Arc<crate::telemetry::guardrails::CheckHandles>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FeedbackOut {
    pub value: i64,
    pub weight: f64,
    pub metadata: Map<String, Value>,
}

/// The fields of a hook that ran (absent for a skipped one).
#[derive(Debug, Clone)]
pub(crate) struct Ran {
    pub verdict: bool,
    pub deny: bool,
    pub is_async: bool,
    pub transformed: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RanTail {
    pub execution_time: u64,
    pub created_at: Stamp,
    pub feedback: Option<FeedbackOut>,
    pub checks: Vec<CheckResult>,
}

/// One hook's result: `{id, type, verdict, deny, async, transformed, skipped?,
/// execution_time, created_at, feedback, checks}`; a skipped hook is `{id, type, skipped}`.
#[derive(Debug, Clone)]
pub(crate) struct HookResult {
    pub id: Arc<str>,
    pub kind: &'static str,
    pub ran: Option<Ran>,
    pub skipped: Option<bool>,
    pub tail: Option<RanTail>,
    /// The metric label of the hook.
    pub label: Arc<str>,
}

impl CheckResult {
    /// Appends the result's JSON (the reference's field order).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        write::string(out, &self.id);
        out.extend_from_slice(b",\"verdict\":");
        write::bool(out, self.verdict);
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(self.data.as_bytes());
        if let Some(e) = &self.error {
            out.extend_from_slice(b",\"error\":{\"name\":");
            write::string(out, e.name);
            out.extend_from_slice(b",\"message\":");
            write::string(out, &e.message);
            out.push(b'}');
        }
        out.extend_from_slice(b",\"execution_time\":");
        write::int(out, self.execution_time);
        out.extend_from_slice(b",\"created_at\":");
        self.created_at.write(out);
        out.extend_from_slice(b",\"transformed\":");
        write::bool(out, self.transformed);
        out.extend_from_slice(b",\"log\":null,\"fail_on_error\":");
        write::bool(out, self.fail_on_error);
        out.push(b'}');
    }
}

impl HookResult {
    /// Appends the result's JSON (the reference's field order).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        write::string(out, &self.id);
        out.extend_from_slice(b",\"type\":");
        write::string(out, self.kind);
        if let Some(r) = &self.ran {
            out.extend_from_slice(b",\"verdict\":");
            write::bool(out, r.verdict);
            out.extend_from_slice(b",\"deny\":");
            write::bool(out, r.deny);
            out.extend_from_slice(b",\"async\":");
            write::bool(out, r.is_async);
            out.extend_from_slice(b",\"transformed\":");
            write::bool(out, r.transformed);
        }
        if let Some(s) = self.skipped {
            out.extend_from_slice(b",\"skipped\":");
            write::bool(out, s);
        }
        if let Some(t) = &self.tail {
            out.extend_from_slice(b",\"execution_time\":");
            write::int(out, t.execution_time);
            out.extend_from_slice(b",\"created_at\":");
            t.created_at.write(out);
            out.extend_from_slice(b",\"feedback\":");
            match &t.feedback {
                Some(f) => write::serde(out, f),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"checks\":[");
            for (i, c) in t.checks.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                c.write(out);
            }
            out.push(b']');
        }
        out.push(b'}');
    }
}

/// What one list of hooks decided.
#[derive(Debug, Default)]
pub(crate) struct ListRun {
    pub results: Vec<HookResult>,
    /// A failing hook has `deny`.
    pub deny: bool,
    /// The request after mutators (before-request hooks), if any rewrote it.
    pub request: Option<Map<String, Value>>,
    /// The response after mutators (after-request hooks), if any rewrote it.
    pub response: Option<Value>,
}

impl ListRun {
    /// Whether every hook that ran passed.
    pub(crate) fn passed(&self) -> bool {
        self.results.iter().all(HookResult::verdict)
    }
}
