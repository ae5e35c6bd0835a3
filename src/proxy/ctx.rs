//! Per-request state, created in `new_ctx` and dropped when the request ends.

use super::routes::Route;
use crate::dispatch::attempts::AttemptRecord;
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use http::{HeaderName, HeaderValue};
use std::time::Instant;

/// Where a passthrough request goes, decided in `request_filter` and used by the proxy-path
/// hooks (`upstream_peer`, `upstream_request_filter`).
pub struct PassthroughTarget {
    pub provider: String,
    pub upstream: Upstream,
    pub public_only: bool,
    /// Provider auth headers that replace the client's `Authorization`.
    pub auth: Vec<(HeaderName, HeaderValue)>,
}

pub struct RequestCtx {
    pub started: Instant,
    pub route: Route,
    pub trace_id: String,
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
    pub retry_count: Option<i64>,
    pub budget_exhausted: bool,
    /// Every upstream send of the request, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The failure that decided the response, if any (logged once in `logging`).
    pub error: Option<GatewayError>,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            route: Route::NotFound,
            trace_id: String::new(),
            provider: None,
            model: None,
            stream: false,
            passthrough: None,
            last_used: None,
            retry_count: None,
            budget_exhausted: false,
            attempts: Vec::new(),
            error: None,
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
