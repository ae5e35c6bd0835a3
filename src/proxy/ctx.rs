//! Per-request state, created in `new_ctx` and dropped when the request ends.

use super::routes::Route;
use crate::buffers::BufferLease;
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::pipeline::attempts::AttemptRecord;
use crate::state::State;
use crate::telemetry::trace::TraceContext;
use crate::types::usage::Usage;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use prometheus::IntGauge;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a passthrough request goes, decided in `request_filter` and used by the proxy-path
/// hooks (`upstream_peer`, `upstream_request_filter`).
pub(crate) struct PassthroughTarget {
    pub provider: String,
    pub upstream: Upstream,
    pub public_only: bool,
    /// JSON path of the config target chosen (`config` without a config).
    pub option_path: String,
    /// The path below the provider's base path, dot segments resolved (`below_v1`, checked).
    pub path: String,
    /// Provider auth headers that replace the client's `Authorization`.
    pub auth: Vec<(HeaderName, HeaderValue)>,
    /// The target's adapter, key and options, for a route the gateway answers with a request
    /// of its own (a provider's `count_tokens`, which Bedrock signs with the options' keys).
    pub adapter: Arc<dyn crate::providers::Provider>,
    pub api_key: Option<crate::settings::Secret>,
    pub options: Arc<crate::providers::ProviderOptions>,
}

/// Counts the request in `portgate_inflight_requests` for exactly as long as it lives.
pub(crate) struct Inflight(IntGauge);

impl Inflight {
    pub(crate) fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Inflight(gauge.clone())
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What the response body told the meter.
#[derive(Default)]
pub(crate) struct Relayed {
    pub usage: Option<Usage>,
    /// The model the provider says served the request.
    pub model: Option<String>,
    pub first_chunk_at: Option<Instant>,
    pub last_chunk_at: Option<Instant>,
    /// Content events of a stream.
    pub events: u32,
    /// The response body (JSON only, when `log.log_bodies` is on).
    pub body: Option<Value>,
}

/// `x-portkey-cache-status` when no cache applies to the request.
pub(crate) const CACHE_DISABLED: &str = "DISABLED";

pub(crate) struct RequestCtx {
    /// The settings and everything built from them, as they were when the request arrived: a
    /// reload swaps in new ones for new requests, this one finishes on these.
    pub state: Arc<State>,
    pub started: Instant,
    pub route: Route,
    pub trace_id: String,
    pub trace: Option<TraceContext>,
    /// The value of `x-portgate-hop` to send upstream (incoming marks plus this instance).
    pub hop: String,
    /// `x-portkey-metadata`, validated.
    pub metadata: Map<String, Value>,
    /// The provider slug that served (or was meant to serve) the request.
    pub provider: Option<String>,
    /// The `model` the client asked for (unified routes).
    pub model: Option<String>,
    /// Whether the client asked for a stream (`"stream": true`).
    pub stream: bool,
    pub passthrough: Option<PassthroughTarget>,
    /// JSON path of the config target that answered.
    pub last_used: Option<String>,
    /// Retries made by the answering target (-1: they ran out).
    pub retry_count: Option<crate::pipeline::answer::Retries>,
    /// `x-portkey-cache-status` of an answer that went through the attempt loop.
    pub cache_status: Option<&'static str>,
    /// The answer as sent to the client, collected for the cache (a miss to be stored).
    pub cache_capture: Option<crate::cache::Capture>,
    pub budget_exhausted: bool,
    /// What the request is charged after its answer against rate limits and budgets.
    pub limit_charges: crate::limits::Charges,
    /// Every upstream send of the request, in order.
    pub attempts: Vec<AttemptRecord>,
    /// Time spent waiting on providers (attempts, backoff, relaying the body).
    pub upstream_time: Duration,
    pub relayed: Relayed,
    /// The request body, kept only when `log.log_bodies` or the log store's `bodies` is on.
    pub request_body: Option<Bytes>,
    /// The answer as sent to the client, kept for the log store (with its `bodies` on).
    pub transcript: Option<Box<crate::log_store::Transcript>>,
    /// The failure that decided the response, if any (logged once in `logging`).
    pub error: Option<GatewayError>,
    /// Feedback ids created or updated (feedback routes).
    pub feedback_ids: Vec<String>,
    /// Guardrail verdicts of the request (access log).
    pub guardrails: crate::guardrails::telemetry::Verdicts,
    pub _inflight: Option<Inflight>,
    /// The request body's share of the buffer budget, returned when the request ends.
    pub lease: Option<BufferLease>,
}

impl RequestCtx {
    pub(crate) fn new(state: Arc<State>, inflight: Option<Inflight>) -> Self {
        RequestCtx {
            state,
            started: Instant::now(),
            route: Route::NotFound,
            trace_id: String::new(),
            trace: None,
            hop: String::new(),
            metadata: Map::new(),
            provider: None,
            model: None,
            stream: false,
            passthrough: None,
            last_used: None,
            retry_count: None,
            cache_status: None,
            cache_capture: None,
            budget_exhausted: false,
            limit_charges: Default::default(),
            attempts: Vec::new(),
            upstream_time: Duration::ZERO,
            relayed: Relayed::default(),
            request_body: None,
            transcript: None,
            error: None,
            feedback_ids: Vec::new(),
            guardrails: Default::default(),
            _inflight: inflight,
            lease: None,
        }
    }
}
