//! Per-request state, created in `new_ctx` and dropped when the request ends.

use super::routes::Route;
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
            error: None,
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
