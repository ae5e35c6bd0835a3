//! What the store keeps. A request is handed over as the proxy finished it (its access-log
//! line, the request body, the answer's chunks) and becomes a [`StoredRequest`] on the store's
//! thread: parsing, redaction and stream reassembly cost the request nothing.

use super::transcript::Transcript;
use crate::types::redact::redact;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A finished request as the proxy hands it over.
pub struct RequestRecord {
    /// The request's access-log line (JSON).
    pub line: Vec<u8>,
    /// The request body, when bodies are kept.
    pub request: Option<Bytes>,
    /// The answer sent to the client, when bodies are kept for this route.
    pub answer: Option<Box<Transcript>>,
    /// Whether the answer was an event stream.
    pub sse: bool,
}

/// A feedback as created: Portkey's fields plus the id the gateway gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRow {
    pub feedback_id: String,
    pub trace_id: String,
    pub value: i64,
    pub weight: f64,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    pub timestamp: String,
}

/// A change to a feedback (`PUT /v1/feedback/{id}`): the fields given replace the stored ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackChange {
    pub feedback_id: String,
    #[serde(default)]
    pub value: Option<i64>,
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    pub timestamp: String,
}

/// What the writer is handed.
pub(crate) enum Entry {
    Request(Box<RequestRecord>),
    Feedback(FeedbackRow),
    FeedbackChange(FeedbackChange),
    /// Answered once everything queued before it is written.
    Flush(std::sync::mpsc::Sender<()>),
}

/// A request as stored: the columns a dataset filters on, the whole access-log line, and the
/// bodies (redacted) when kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRequest {
    pub trace_id: String,
    pub timestamp: String,
    pub route: String,
    pub status: u16,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub model_served: Option<String>,
    pub stream: bool,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// The error's kind when the request failed, or failed after its answer started (cut).
    pub error: Option<String>,
    /// Whether a guardrail denied the request or its answer.
    pub denied: bool,
    pub line: Value,
    pub request: Option<Value>,
    pub answer: Option<Value>,
}

fn text(line: &Value, key: &str) -> Option<String> {
    line.get(key).and_then(Value::as_str).map(str::to_string)
}

impl StoredRequest {
    /// Decodes a handed-over request; `None` when its line is not JSON (never the case for
    /// lines the proxy wrote).
    pub(crate) fn from_record(record: RequestRecord) -> Option<StoredRequest> {
        let mut line: Value = serde_json::from_slice(&record.line).ok()?;
        if let Some(map) = line.as_object_mut() {
            // The access log's own copies of the bodies, when it keeps them: stored once.
            map.remove("request_body");
            map.remove("response_body");
        }
        let tokens = line.get("tokens");
        let count = |k: &str| tokens.and_then(|t| t.get(k)).and_then(Value::as_u64);
        let denied = line.get("status").and_then(Value::as_u64) == Some(446)
            || line
                .get("guardrails")
                .and_then(Value::as_array)
                .is_some_and(|verdicts| {
                    verdicts.iter().any(|v| {
                        v.get("deny").and_then(Value::as_bool) == Some(true)
                            && v.get("verdict").and_then(Value::as_bool) == Some(false)
                    })
                });
        let request = record.request.and_then(|b| {
            let mut v: Value = serde_json::from_slice(&b).ok()?;
            redact(&mut v);
            Some(v)
        });
        let answer = record.answer.and_then(|t| {
            let mut v = t.answer(record.sse)?;
            redact(&mut v);
            Some(v)
        });
        Some(StoredRequest {
            trace_id: text(&line, "trace_id").unwrap_or_default(),
            timestamp: text(&line, "timestamp").unwrap_or_default(),
            route: text(&line, "route").unwrap_or_default(),
            status: line
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(0),
            provider: text(&line, "provider"),
            model: text(&line, "model_requested"),
            model_served: text(&line, "model_served"),
            stream: line.get("stream").and_then(Value::as_bool).unwrap_or(false),
            input_tokens: count("input"),
            output_tokens: count("output"),
            cost_usd: line.get("cost_usd").and_then(Value::as_f64),
            metadata: line
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            error: line
                .get("error")
                .and_then(|e| e.get("kind"))
                .and_then(Value::as_str)
                .map(str::to_string),
            denied,
            line,
            request,
            answer,
        })
    }

    /// Whether the client got a whole, successful answer: a 2xx, not cut short, not denied.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status) && self.error.is_none() && !self.denied
    }
}
