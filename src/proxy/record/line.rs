//! The access-log line of a request, written by hand into one buffer in a fixed field order
//! (the `Serialize` derive is kept for tests, which compare the two).

use super::*;

/// The access-log line of a request, written straight from the request context (borrowed
/// fields, no intermediate JSON tree) by [`RequestLine::write_json`]. Field order is the order
/// written. The serde attributes describe the same line: the tests check the hand-written one
/// against serde_json's, byte for byte.
#[cfg_attr(test, derive(Serialize))]
pub(super) struct RequestLine<'a> {
    pub(super) timestamp: String,
    pub(super) event: &'static str,
    pub(super) trace_id: &'a str,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub(super) w3c_trace_id: Option<&'a str>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub(super) parent_span_id: Option<&'a str>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub(super) span_id: Option<&'a str>,
    pub(super) route: &'static str,
    pub(super) method: &'a str,
    pub(super) path: &'a str,
    #[cfg_attr(test, serde(serialize_with = "tests::display"))]
    pub(super) client: Option<&'a ClientAddr>,
    pub(super) status: u16,
    pub(super) provider: Option<&'a str>,
    pub(super) model_requested: Option<&'a str>,
    pub(super) model_served: Option<&'a str>,
    pub(super) stream: bool,
    pub(super) target: Option<&'a str>,
    pub(super) attempts: Attempts<'a>,
    pub(super) retries: usize,
    pub(super) retry_budget_exhausted: bool,
    pub(super) cache_status: &'static str,
    pub(super) tokens: Option<Usage>,
    pub(super) cost_usd: Option<f64>,
    pub(super) latency_ms: Latency,
    pub(super) overhead_ms: f64,
    pub(super) metadata: &'a Map<String, Value>,
    /// Guardrail verdicts (ids and verdicts, never the examined text).
    #[cfg_attr(
        test,
        serde(skip_serializing_if = "crate::guardrails::telemetry::Verdicts::is_empty")
    )]
    pub(super) guardrails: &'a crate::guardrails::telemetry::Verdicts,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub(super) error: Option<ErrorLine<'a>>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub(super) request_body: Option<Value>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub(super) response_body: Option<Value>,
}

#[cfg_attr(test, derive(Serialize))]
pub(super) struct Latency {
    pub(super) total: f64,
    pub(super) upstream: f64,
    pub(super) ttft: Option<f64>,
}

#[cfg_attr(test, derive(Serialize))]
pub(super) struct ErrorLine<'a> {
    pub(super) kind: &'static str,
    pub(super) message: String,
    /// What the client-facing message leaves out (an unknown slug, a refused host's reason).
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub(super) detail: Option<&'a str>,
}

/// The attempts, serialised as a list of objects without collecting them first.
pub(super) struct Attempts<'a>(pub(super) &'a [AttemptRecord]);

#[cfg(test)]
impl Serialize for Attempts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|a| AttemptLine {
            path: a.path.as_deref(),
            provider: &a.provider,
            kind: a.kind.label(),
            status: a.status,
            error: a.error,
            ms: ms(a.duration),
        }))
    }
}

#[cfg(test)]
#[derive(Serialize)]
pub(super) struct AttemptLine<'a> {
    pub(super) path: Option<&'a str>,
    pub(super) provider: &'a str,
    pub(super) kind: &'static str,
    pub(super) status: u16,
    pub(super) error: Option<&'static str>,
    pub(super) ms: f64,
}

impl RequestLine<'_> {
    /// Writes the line as serde_json would serialise it (see [`crate::types::json`]).
    pub(super) fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::new(out);
        o.str("timestamp", &self.timestamp);
        o.str("event", self.event);
        o.str("trace_id", self.trace_id);
        if let Some(id) = self.w3c_trace_id {
            o.str("w3c_trace_id", id);
        }
        if let Some(id) = self.parent_span_id {
            o.str("parent_span_id", id);
        }
        if let Some(id) = self.span_id {
            o.str("span_id", id);
        }
        o.str("route", self.route);
        o.str("method", self.method);
        o.str("path", self.path);
        match self.client {
            Some(addr) => client_addr(o.key("client"), addr),
            None => o.null("client"),
        }
        o.uint("status", u64::from(self.status));
        o.opt_str("provider", self.provider);
        o.opt_str("model_requested", self.model_requested);
        o.opt_str("model_served", self.model_served);
        o.bool("stream", self.stream);
        o.opt_str("target", self.target);
        let out = o.key("attempts");
        out.push(b'[');
        for (i, a) in self.attempts.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let mut line = Object::new(out);
            line.opt_str("path", a.path.as_deref());
            line.str("provider", &a.provider);
            line.str("kind", a.kind.label());
            line.uint("status", u64::from(a.status));
            line.opt_str("error", a.error);
            line.float("ms", ms(a.duration));
            line.end();
        }
        out.push(b']');
        o.uint("retries", self.retries as u64);
        o.bool("retry_budget_exhausted", self.retry_budget_exhausted);
        o.str("cache_status", self.cache_status);
        match &self.tokens {
            Some(u) => {
                let mut t = o.object("tokens");
                t.uint("input", u.input);
                t.uint("output", u.output);
                t.uint("cached_input", u.cached_input);
                t.uint("cache_write", u.cache_write);
                t.uint("reasoning", u.reasoning);
                t.end();
            }
            None => o.null("tokens"),
        }
        o.opt_float("cost_usd", self.cost_usd);
        let mut l = o.object("latency_ms");
        l.float("total", self.latency_ms.total);
        l.float("upstream", self.latency_ms.upstream);
        l.opt_float("ttft", self.latency_ms.ttft);
        l.end();
        o.float("overhead_ms", self.overhead_ms);
        o.value("metadata", self.metadata);
        if !self.guardrails.is_empty() {
            o.value("guardrails", self.guardrails);
        }
        if let Some(e) = &self.error {
            let mut err = o.object("error");
            err.str("kind", e.kind);
            err.str("message", &e.message);
            if let Some(d) = e.detail {
                err.str("detail", d);
            }
            err.end();
        }
        if let Some(body) = &self.request_body {
            o.value("request_body", body);
        }
        if let Some(body) = &self.response_body {
            o.value("response_body", body);
        }
        o.end();
    }
}
