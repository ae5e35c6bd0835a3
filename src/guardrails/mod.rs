//! Guardrails: Portkey's before- and after-request hooks, run by the gateway
//! itself. A config's hooks are parsed into typed, validated [`Hook`]s when the config is first
//! seen (regexes and JSON schemas compiled once per distinct config, cached with its plan);
//! named guardrails come from the settings' `guardrails:` map and are compiled at start-up.
//!
//! - `parse`: config forms (full hooks, `input_guardrails`/`output_guardrails` shorthand,
//!   references to named guardrails) into [`NodeHooks`], and inheritance into [`LeafHooks`].
//! - `checks/`: the built-in `default.*` checks, one file per family, and `portgate.pii`.
//! - `content`: the text a check examines and how mutators write it back.
//! - `engine`: runs hooks (checks in parallel unless `sequential`), verdicts and the
//!   hook-result JSON of the reference.
//! - `results`: the 446 body, `hook_results` spliced into answers, the held answer.
//! - `telemetry`: metrics, access-log verdicts and `on_fail`/`on_success` feedback.

pub mod checks;
pub mod content;
pub mod engine;
pub mod parse;
pub mod results;
pub mod telemetry;
pub mod write;

#[cfg(test)]
mod golden_tests;

use checks::Check;
use serde_json::{Map, Value};
use std::sync::Arc;

pub(crate) use parse::{compile_named, NamedGuardrails, NodeHooks};

/// What one request's guardrails may spend (`limits.guardrails`): remote checks started, and
/// time for the checks of one list that run on the CPU.
#[derive(Debug)]
pub(crate) struct Allowance {
    pub remote: checks::remote::Quota,
    pub cpu: std::time::Duration,
}

impl Allowance {
    pub(crate) fn new(limits: &crate::settings::GuardrailLimits) -> Allowance {
        Allowance {
            remote: checks::remote::Quota::new(limits.remote_checks_per_request),
            cpu: std::time::Duration::from_millis(limits.check_time_budget_ms),
        }
    }
}

/// `guardrail` checks verdicts; a `mutator` rewrites the request or the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookType {
    Guardrail,
    Mutator,
}

impl HookType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            HookType::Guardrail => "guardrail",
            HookType::Mutator => "mutator",
        }
    }
}

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Before,
    After,
}

impl Event {
    /// The metric label of hooks defined inline in a config.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Event::Before => "before_request",
            Event::After => "after_request",
        }
    }
}

/// `on_fail` / `on_success`: the feedback recorded for the request's trace when the hook fails
/// or passes.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackSpec {
    pub value: i64,
    pub weight: f64,
    pub metadata: Map<String, Value>,
}

/// One check of a hook, compiled.
#[derive(Debug)]
pub struct CheckSpec {
    /// As written, with `default.` prepended when the shorthand had no source.
    pub id: Arc<str>,
    /// `is_enabled: false` checks are kept for the config's shape but never run.
    pub enabled: bool,
    /// `parameters.failOnError`: an erroring check fails the hook instead of passing.
    pub fail_on_error: bool,
    pub(crate) check: Check,
    /// The check's metric series, looked up on its first run and reused after.
    pub(crate) handles: Arc<crate::telemetry::guardrails::CheckHandles>,
}

/// One hook, compiled.
#[derive(Debug)]
pub struct Hook {
    pub id: Arc<str>,
    pub kind: HookType,
    /// Shared, so that a reference to a named guardrail can change `deny` and the like
    /// without recompiling its checks.
    pub checks: Arc<Vec<CheckSpec>>,
    pub deny: bool,
    /// Portkey's open-source gateway never runs async hooks; neither does portgate (they are
    /// reported as skipped).
    pub is_async: bool,
    pub sequential: bool,
    pub on_fail: Option<FeedbackSpec>,
    pub on_success: Option<FeedbackSpec>,
    /// The metric label: the settings id of a named guardrail (bounded by the operator), or
    /// the event for hooks written inline in a request's config (their ids are client input).
    pub label: Arc<str>,
}

impl Hook {
    /// Whether a check of the hook reads the request or answer as a whole document
    /// ([`checks::Check::reads_whole`]); a mutator's checks all may.
    pub(crate) fn reads_whole(&self) -> bool {
        self.kind == HookType::Mutator
            || self
                .checks
                .iter()
                .any(|c| c.enabled && c.check.reads_whole())
    }
}

/// The hooks a target runs, after inheritance. Shared by every leaf that
/// inherits the same lists.
#[derive(Debug, Default)]
pub(crate) struct LeafHooks {
    pub before: Vec<Arc<Hook>>,
    pub after: Vec<Arc<Hook>>,
}

impl LeafHooks {
    pub(crate) fn is_empty(&self) -> bool {
        self.before.is_empty() && self.after.is_empty()
    }
}
