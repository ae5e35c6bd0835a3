//! What one send produced and what a walk answers: the outcome of an attempt, the record of
//! each attempt for logs and metrics, and the answer chosen for the client.

use crate::dispatch::Inbound;
use crate::error::GatewayError;
use crate::providers::Provider;
use std::sync::Arc;
use std::time::Duration;

/// Why a send happened, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptKind {
    First,
    Retry,
    Fallback,
}

impl AttemptKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            AttemptKind::First => "first",
            AttemptKind::Retry => "retry",
            AttemptKind::Fallback => "fallback",
        }
    }
}

/// One upstream send (or a target skipped by its breaker or budget).
#[derive(Debug, Clone)]
pub(crate) struct AttemptRecord {
    pub path: Option<String>,
    pub provider: String,
    pub target: String,
    pub kind: AttemptKind,
    /// Upstream status, or the gateway's for failures without one.
    pub status: u16,
    /// Error kind for failures without an upstream answer.
    pub error: Option<&'static str>,
    pub duration: Duration,
}

/// What the walk ended with.
pub enum Outcome {
    /// An upstream response whose header is read; the body is still to be relayed.
    Response(Box<Inbound>),
    /// An answer from the response cache (the target was not sent to).
    Cached(Arc<crate::cache::Entry>),
    Failed(GatewayError),
    /// An answer the gateway holds whole (a guardrail's 446, or an answer with
    /// `hook_results`); it counts for retries and fallbacks by its status like a live one.
    Held(Box<crate::types::held::HeldAnswer>),
}

impl Outcome {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Outcome::Response(r) => r.status(),
            Outcome::Cached(e) => e.status,
            Outcome::Failed(e) => e.status(),
            Outcome::Held(h) => h.status,
        }
    }
}

pub(crate) struct Answer {
    pub outcome: Outcome,
    /// The adapter of the target that answered: it translates the answer for the client.
    pub adapter: Option<Arc<dyn Provider>>,
    /// JSON path of the target that answered (config requests only).
    pub leaf_path: Option<String>,
    pub provider: Option<String>,
    /// Retries made by the answering target.
    pub retry_count: Retries,
    pub budget_exhausted: bool,
    /// The target was not tried (breaker open, budget spent): a fallback keeps the answer it
    /// already has instead of this one.
    pub skipped: bool,
    /// The gateway added `stream_options.include_usage` to this target's request: the usage
    /// chunk must be hidden from the client.
    pub hide_usage: bool,
    /// The after-request hooks of a streamed answer, run as it is relayed.
    pub guard: Option<Box<crate::pipeline::guard_stream::StreamGuard>>,
    /// What the response cache decided for this target (`x-portkey-cache-status`, and whether
    /// the answer is to be stored).
    pub cache: crate::cache::CacheDecision,
    /// What the answer is charged against its target's virtual-key limits.
    pub charges: crate::limits::Charges,
}

/// The retries a target made, as `x-portkey-retry-attempt-count` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// This many retries, the last of them answered (or the failure was not retriable).
    Made(u32),
    /// Every allowed retry was made and failed, or no wait was left for another.
    RanOut,
}

impl Retries {
    /// The header's value: the count, or Portkey's `-1` when retries ran out.
    pub(crate) fn header_value(self) -> i64 {
        match self {
            Retries::Made(n) => i64::from(n),
            Retries::RanOut => -1,
        }
    }
}
