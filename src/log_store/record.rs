//! What the store keeps. A request is handed over as the proxy finished it (its access-log
//! line, the request body, the answer's chunks) and becomes a [`StoredRequest`] on the store's
//! thread: parsing, redaction and stream reassembly cost the request nothing.

use super::transcript::Transcript;
use crate::types::redact::{may_hold_secrets, redact};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

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

/// The API a stored request spoke, told by its route: what its request and answer look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// OpenAI's chat completions (`/v1/chat/completions`, the legacy `/v1/chatComplete`).
    Chat,
    /// OpenAI's Responses API (`/v1/responses`).
    Responses,
    /// Anthropic's Messages API (`/v1/messages`).
    Messages,
}

impl Api {
    /// The API of a conversation's route (the access-log line's `route`); `None` for routes
    /// that are not conversations (embeddings, rerank, passthrough, ...).
    pub(crate) fn of_route(route: &str) -> Option<Api> {
        match route {
            "chat_completions" | "chat_complete" => Some(Api::Chat),
            "responses" => Some(Api::Responses),
            "messages" => Some(Api::Messages),
            _ => None,
        }
    }
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
/// bodies (redacted) when kept. `D` is how its JSON documents are held: as text when the writer
/// writes them (`RequestRow`: the line as the proxy wrote it, the bodies as the client sent and
/// got them unless a credential-like field had to be redacted, so that storing a request never
/// builds its documents' trees), as trees when an export reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRequest<D = Value> {
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
    /// `x-portkey-metadata` (an object).
    pub metadata: D,
    /// The error's kind when the request failed, or failed after its answer started (cut).
    pub error: Option<String>,
    /// Whether a guardrail denied the request or its answer.
    pub denied: bool,
    pub line: D,
    pub request: Option<D>,
    pub answer: Option<D>,
}

/// A request as the writer writes it.
pub(crate) type RequestRow = StoredRequest<Box<RawValue>>;

/// The fields of an access-log line the columns are made of, borrowed from it.
#[derive(Deserialize)]
struct LineFields<'a> {
    #[serde(borrow, default)]
    trace_id: Cow<'a, str>,
    #[serde(borrow, default)]
    timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    route: Cow<'a, str>,
    #[serde(default)]
    status: u16,
    #[serde(borrow, default)]
    provider: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model_requested: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model_served: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    tokens: Option<Tokens>,
    #[serde(default)]
    cost_usd: Option<f64>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(default)]
    guardrails: Vec<Verdict>,
    #[serde(borrow, default)]
    error: Option<ErrorKind<'a>>,
}

#[derive(Deserialize)]
struct Tokens {
    #[serde(default)]
    input: Option<u64>,
    #[serde(default)]
    output: Option<u64>,
}

#[derive(Deserialize)]
struct Verdict {
    #[serde(default)]
    verdict: bool,
    #[serde(default)]
    deny: bool,
}

#[derive(Deserialize)]
struct ErrorKind<'a> {
    #[serde(borrow, default)]
    kind: Cow<'a, str>,
}

/// A JSON document as stored: as it is, or redacted when it may hold a credential-like field.
fn stored_json(json: Vec<u8>) -> Option<Box<RawValue>> {
    if may_hold_secrets(&json) {
        let mut v: Value = serde_json::from_slice(&json).ok()?;
        redact(&mut v);
        return serde_json::value::to_raw_value(&v).ok();
    }
    RawValue::from_string(String::from_utf8(json).ok()?).ok()
}

impl StoredRequest<Box<RawValue>> {
    /// Decodes a handed-over request; `None` when its line is not JSON (never the case for
    /// lines the proxy wrote).
    pub(crate) fn from_record(record: RequestRecord) -> Option<RequestRow> {
        let f: LineFields = serde_json::from_slice(&record.line).ok()?;
        let denied = f.status == 446 || f.guardrails.iter().any(|v| v.deny && !v.verdict);
        let request = record.request.and_then(|b| stored_json(b.to_vec()));
        // The other route that keeps its answer, text completions, is read as a chat stream.
        let api = Api::of_route(&f.route).unwrap_or(Api::Chat);
        let answer = record.answer.and_then(|t| {
            if record.sse {
                let mut v = t.answer(true, api)?;
                redact(&mut v);
                serde_json::value::to_raw_value(&v).ok()
            } else {
                stored_json(t.into_bytes()?)
            }
        });
        let metadata = match f.metadata {
            Some(m) => m.to_owned(),
            None => RawValue::from_string("{}".into()).ok()?,
        };
        let (trace_id, timestamp, route) = (
            f.trace_id.into_owned(),
            f.timestamp.into_owned(),
            f.route.into_owned(),
        );
        let (provider, model, model_served) = (
            f.provider.map(Cow::into_owned),
            f.model_requested.map(Cow::into_owned),
            f.model_served.map(Cow::into_owned),
        );
        let error = f.error.map(|e| e.kind.into_owned());
        let (input_tokens, output_tokens) = f.tokens.map_or((None, None), |t| (t.input, t.output));
        let (status, stream, cost_usd) = (f.status, f.stream, f.cost_usd);
        // The line as the proxy wrote it (the access log's own copies of the bodies, when it
        // keeps them, stay in it).
        let line = RawValue::from_string(String::from_utf8(record.line).ok()?).ok()?;
        Some(StoredRequest {
            trace_id,
            timestamp,
            route,
            status,
            provider,
            model,
            model_served,
            stream,
            input_tokens,
            output_tokens,
            cost_usd,
            metadata,
            error,
            denied,
            line,
            request,
            answer,
        })
    }
}
