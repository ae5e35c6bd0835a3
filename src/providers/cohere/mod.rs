//! Cohere (`cohere`): the v2 Chat and Embed APIs behind OpenAI's chat completions and
//! embeddings.
//!
//! Requests are rebuilt (OpenAI messages → Cohere v2 messages, parameter names renamed), so
//! this adapter parses the body; answers are translated back: a whole JSON answer at its end,
//! a stream event by event (`stream.rs`). Cohere never names the model in its answers, so the
//! translated answer carries the model the client asked for (`ResponseOptions::model`).
//!
//! Usage is read from `usage.billed_units` (what Cohere charges, so what cost is computed from)
//! and from `usage.tokens` when billed units are absent.

mod stream;

use super::{Operation, Prepare, Provider, ProviderRequest, ResponseOptions};
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::stream::{Meter, Translator};
use crate::types::usage::Usage;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

pub(crate) use stream::CohereStream;

/// Largest whole answer kept for translation; a larger one is relayed as Cohere sent it.
const MAX_JSON: usize = 8 * 1024 * 1024;

pub(crate) struct Cohere {
    upstream: Upstream,
}

impl Cohere {
    pub(crate) fn new() -> Self {
        Cohere {
            upstream: Upstream::new(true, "api.cohere.com".into(), 443, String::new()),
        }
    }
}

impl Default for Cohere {
    fn default() -> Self {
        Self::new()
    }
}

impl Provider for Cohere {
    fn slug(&self) -> &str {
        "cohere"
    }

    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Cohere always reports usage in `message-end`; saying yes here makes the gateway tell the
    /// translator (`hide_usage`) whether the client asked for a usage chunk. The
    /// `stream_options` the gateway adds is not part of Cohere's request and is dropped.
    fn stream_usage(&self) -> bool {
        true
    }

    fn auth_headers(&self, api_key: &str) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        let mut value = HeaderValue::try_from(format!("Bearer {api_key}")).map_err(|_| {
            GatewayError::InvalidHeader {
                name: "authorization",
                reason: "the API key contains characters not allowed in a header".into(),
            }
        })?;
        value.set_sensitive(true);
        Ok(vec![(http::header::AUTHORIZATION, value)])
    }

    fn prepare(&self, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError> {
        let headers = match req.api_key {
            Some(key) if !key.is_empty() => self.auth_headers(key)?,
            _ => Vec::new(),
        };
        let body: Value = serde_json::from_slice(&req.body)
            .map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
        let Value::Object(body) = body else {
            return Err(GatewayError::InvalidBody(
                "the body must be a JSON object".into(),
            ));
        };
        let (path, out) = match req.op {
            Operation::ChatCompletions => ("/v2/chat", chat_request(&body, req.stream)?),
            Operation::Embeddings => ("/v2/embed", embed_request(&body)?),
            Operation::Messages => {
                return Err(GatewayError::Unsupported(req.op.fn_name(), "cohere".into()))
            }
            Operation::Completions => {
                return Err(GatewayError::ProviderRequest(
                    "cohere does not serve /v1/completions through portgate; use \
                     /v1/chat/completions"
                        .into(),
                ))
            }
        };
        Ok(ProviderRequest {
            path: path.into(),
            headers,
            body: Bytes::from(out.to_string()),
        })
    }

    fn response(
        &self,
        op: Operation,
        status: u16,
        content_type: &str,
        opts: &ResponseOptions<'_>,
    ) -> Box<dyn Translator> {
        if !(200..300).contains(&status) {
            return Box::new(Meter::for_response(status, content_type, false));
        }
        if content_type.starts_with("text/event-stream") && op == Operation::ChatCompletions {
            return Box::new(CohereStream::new(opts));
        }
        if content_type.contains("json") {
            return Box::new(JsonAnswer::new(op, opts));
        }
        Box::new(Meter::for_response(status, content_type, false))
    }
}

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidBody(message.into())
}

/// OpenAI chat completion request → Cohere v2 chat request.
pub(crate) fn chat_request(body: &Map<String, Value>, stream: bool) -> Result<Value, GatewayError> {
    let mut out = Map::new();
    if let Some(model) = body.get("model") {
        out.insert("model".into(), model.clone());
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages must be an array"))?;
    let messages = messages
        .iter()
        .map(message)
        .collect::<Result<Vec<_>, _>>()?;
    out.insert("messages".into(), Value::Array(messages));
    for (from, to) in [
        ("temperature", "temperature"),
        ("seed", "seed"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
        ("top_p", "p"),
        ("top_k", "k"),
        ("max_tokens", "max_tokens"),
        ("max_completion_tokens", "max_tokens"),
    ] {
        if let Some(v) = body.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        Some(Value::Null) | None => {}
        Some(_) => return Err(bad("stop must be a string or an array of strings")),
    }
    if let Some(tools) = body.get("tools").filter(|v| !v.is_null()) {
        let tools = tools
            .as_array()
            .ok_or_else(|| bad("tools must be an array"))?
            .iter()
            .map(tool)
            .collect::<Result<Vec<_>, _>>()?;
        out.insert("tools".into(), Value::Array(tools));
    }
    // Cohere knows REQUIRED and NONE; `auto` is its default. A named function cannot be
    // forced, so it becomes REQUIRED (some tool must be called).
    match body.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => {
            out.insert("tool_choice".into(), json!("NONE"));
        }
        Some(Value::String(s)) if s == "required" => {
            out.insert("tool_choice".into(), json!("REQUIRED"));
        }
        Some(Value::Object(_)) => {
            out.insert("tool_choice".into(), json!("REQUIRED"));
        }
        _ => {}
    }
    if let Some(Value::Object(rf)) = body.get("response_format") {
        match rf.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                out.insert("response_format".into(), json!({"type": "json_object"}));
            }
            Some("json_schema") => {
                let schema = rf
                    .get("json_schema")
                    .and_then(|s| s.get("schema"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let mut f = Map::new();
                f.insert("type".into(), json!("json_object"));
                if !schema.is_null() {
                    f.insert("json_schema".into(), schema);
                }
                out.insert("response_format".into(), Value::Object(f));
            }
            _ => {}
        }
    }
    if stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok(Value::Object(out))
}

/// One OpenAI message → one Cohere v2 message.
fn message(m: &Value) -> Result<Value, GatewayError> {
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("every message needs a role"))?;
    let content = m.get("content").unwrap_or(&Value::Null);
    Ok(match role {
        "system" | "developer" => json!({"role": "system", "content": text_content(content)?}),
        "user" => json!({"role": "user", "content": user_content(content)?}),
        "assistant" => {
            let mut out = Map::new();
            out.insert("role".into(), json!("assistant"));
            let calls = m.get("tool_calls").and_then(Value::as_array);
            match text_content(content)? {
                Value::String(s) if s.is_empty() && calls.is_some() => {}
                Value::Array(a) if a.is_empty() && calls.is_some() => {}
                c => {
                    out.insert("content".into(), c);
                }
            }
            if let Some(calls) = calls {
                let calls = calls.iter().map(tool_call).collect::<Result<Vec<_>, _>>()?;
                out.insert("tool_calls".into(), Value::Array(calls));
            }
            Value::Object(out)
        }
        "tool" => {
            let id = m
                .get("tool_call_id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a tool message needs a tool_call_id"))?;
            json!({"role": "tool", "tool_call_id": id, "content": text_content(content)?})
        }
        other => return Err(bad(format!("cohere has no {other:?} role"))),
    })
}

/// A string stays a string; an array of parts keeps its text parts (as Cohere text parts).
fn text_content(content: &Value) -> Result<Value, GatewayError> {
    match content {
        Value::Null => Ok(json!("")),
        Value::String(_) => Ok(content.clone()),
        Value::Array(parts) => Ok(Value::Array(
            parts
                .iter()
                .filter_map(|p| {
                    let text = p.get("text").and_then(Value::as_str)?;
                    Some(json!({"type": "text", "text": text}))
                })
                .collect(),
        )),
        _ => Err(bad("content must be a string or an array of parts")),
    }
}

/// User content: text parts and image parts (`image_url`, which Cohere's vision models take
/// in OpenAI's shape).
fn user_content(content: &Value) -> Result<Value, GatewayError> {
    let Value::Array(parts) = content else {
        return text_content(content);
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = p
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("a text part needs text"))?;
                out.push(json!({"type": "text", "text": text}));
            }
            Some("image_url") => {
                let image = p
                    .get("image_url")
                    .filter(|i| i.is_object())
                    .ok_or_else(|| bad("an image_url part needs image_url"))?;
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            _ => return Err(bad("cohere takes text and image_url content parts")),
        }
    }
    Ok(Value::Array(out))
}

/// OpenAI and Cohere v2 tool calls have the same shape; only the known fields are kept.
fn tool_call(c: &Value) -> Result<Value, GatewayError> {
    let f = c
        .get("function")
        .ok_or_else(|| bad("a tool call needs a function"))?;
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a tool call needs a function name"))?;
    let arguments = match f.get("arguments") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "{}".into(),
        Some(other) => other.to_string(),
    };
    let mut out = json!({"type": "function", "function": {"name": name, "arguments": arguments}});
    if let (Some(id), Value::Object(o)) = (c.get("id").filter(|v| v.is_string()), &mut out) {
        o.insert("id".into(), id.clone());
    }
    Ok(out)
}

/// OpenAI function tools map 1:1 to Cohere v2 tools.
fn tool(t: &Value) -> Result<Value, GatewayError> {
    if t.get("type").and_then(Value::as_str) != Some("function") {
        return Err(bad("cohere takes only function tools"));
    }
    let f = t
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("a function tool needs a function"))?;
    let mut out = Map::new();
    for k in ["name", "description", "parameters"] {
        if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if !out.contains_key("name") {
        return Err(bad("a function tool needs a name"));
    }
    Ok(json!({"type": "function", "function": out}))
}

/// OpenAI embeddings request → Cohere v2 embed request. Cohere needs an `input_type`; a
/// client may pass Cohere's own field, else documents are embedded (`search_document`).
pub(crate) fn embed_request(body: &Map<String, Value>) -> Result<Value, GatewayError> {
    let texts = match body.get("input") {
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.clone(),
        _ => {
            return Err(bad(
                "cohere embeds text: input must be a string or an array of strings",
            ))
        }
    };
    let input_type = body
        .get("input_type")
        .and_then(Value::as_str)
        .unwrap_or("search_document");
    let mut out = json!({
        "texts": texts,
        "input_type": input_type,
        "embedding_types": ["float"],
    });
    if let (Some(model), Value::Object(o)) = (body.get("model"), &mut out) {
        o.insert("model".into(), model.clone());
    }
    Ok(out)
}

/// Cohere's finish reason in OpenAI's words (the raw value when not strict).
pub(crate) fn finish_reason(reason: &str, strict: bool) -> Value {
    if !strict {
        return json!(reason);
    }
    json!(match reason {
        "MAX_TOKENS" => "length",
        "TOOL_CALL" => "tool_calls",
        // COMPLETE, STOP_SEQUENCE, ERROR and anything new.
        _ => "stop",
    })
}

/// `usage` of a Cohere answer (or of `message-end`): billed units, else tokens.
pub(crate) fn usage(u: Option<&Value>) -> Option<Usage> {
    let u = u?;
    let pick = |k: &str| {
        let n = |o: Option<&Value>| o.and_then(|o| o.get(k)).and_then(Value::as_f64);
        n(u.get("billed_units")).or_else(|| n(u.get("tokens")))
    };
    let input = pick("input_tokens");
    let output = pick("output_tokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    // Counts are whole numbers (Cohere writes them as floats at times: 12.0).
    let whole = |n: Option<f64>| n.map_or(0, |n| n.max(0.0) as u64);
    Some(Usage {
        input: whole(input),
        output: whole(output),
        ..Usage::default()
    })
}

fn usage_json(u: &Usage) -> Value {
    u.openai_json()
}

/// A whole Cohere chat answer → an OpenAI `chat.completion`.
pub(crate) fn chat_response(v: &Value, opts: &ResponseOptions<'_>) -> Value {
    let msg = v.get("message");
    let text: String = msg
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let calls: Vec<Value> = msg
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    let f = c.get("function");
                    json!({
                        "id": c.get("id").cloned().unwrap_or(Value::Null),
                        "type": "function",
                        "function": {
                            "name": f.and_then(|f| f.get("name")).cloned().unwrap_or(json!("")),
                            "arguments": f
                                .and_then(|f| f.get("arguments"))
                                .cloned()
                                .unwrap_or(json!("{}")),
                        }
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        },
    );
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    let reason = v
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("COMPLETE");
    let mut out = json!({
        "id": v.get("id").cloned().unwrap_or(json!("")),
        "object": "chat.completion",
        "created": opts.created,
        "model": opts.model.unwrap_or(""),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(reason, opts.strict),
        }],
    });
    if let (Some(u), Value::Object(o)) = (usage(v.get("usage")), &mut out) {
        o.insert("usage".into(), usage_json(&u));
    }
    if let (false, Value::Object(o)) = (opts.strict, &mut out) {
        o.insert("provider".into(), json!("cohere"));
    }
    out
}

/// A whole Cohere embed answer → an OpenAI embedding list.
pub(crate) fn embed_response(v: &Value, opts: &ResponseOptions<'_>) -> Value {
    let vectors = match v.get("embeddings") {
        Some(Value::Object(by_type)) => by_type.get("float").and_then(Value::as_array),
        Some(Value::Array(a)) => Some(a),
        _ => None,
    };
    let data: Vec<Value> = vectors
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, e)| json!({"object": "embedding", "embedding": e, "index": i}))
        .collect();
    let input = v
        .get("meta")
        .and_then(|m| m.get("billed_units"))
        .and_then(|b| b.get("input_tokens"))
        .and_then(Value::as_f64)
        .map_or(0, |n| n.max(0.0) as u64);
    json!({
        "object": "list",
        "data": data,
        "model": opts.model.unwrap_or(""),
        "usage": {"prompt_tokens": input, "total_tokens": input},
    })
}

/// Translates a whole JSON answer at its end: it is held back (bounded by `MAX_JSON`), then
/// sent as one OpenAI-format body.
pub(crate) struct JsonAnswer {
    op: Operation,
    created: u64,
    strict: bool,
    model: Option<String>,
    chunks: Vec<Bytes>,
    size: usize,
    /// Too large, or not a Cohere answer: relayed as it came.
    raw: bool,
    usage: Option<Usage>,
    body: Option<Value>,
}

impl JsonAnswer {
    pub(crate) fn new(op: Operation, opts: &ResponseOptions<'_>) -> Self {
        JsonAnswer {
            op,
            created: opts.created,
            strict: opts.strict,
            model: opts.model.map(str::to_string),
            chunks: Vec::new(),
            size: 0,
            raw: false,
            usage: None,
            body: None,
        }
    }

    fn opts(&self) -> ResponseOptions<'_> {
        ResponseOptions {
            hide_usage: false,
            strict: self.strict,
            created: self.created,
            model: self.model.as_deref(),
        }
    }
}

impl Translator for JsonAnswer {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.raw {
            return Some(chunk);
        }
        self.size += chunk.len();
        self.chunks.push(chunk);
        if self.size > MAX_JSON {
            // Give up translating; what is held goes out as it came.
            self.raw = true;
            return Some(Bytes::from(std::mem::take(&mut self.chunks).concat()));
        }
        None
    }

    fn finish(&mut self) -> Option<Bytes> {
        if self.raw {
            return None;
        }
        let whole = std::mem::take(&mut self.chunks).concat();
        let Ok(v) = serde_json::from_slice::<Value>(&whole) else {
            self.raw = true;
            return (!whole.is_empty()).then(|| Bytes::from(whole));
        };
        let out = match self.op {
            Operation::Embeddings => embed_response(&v, &self.opts()),
            _ => chat_response(&v, &self.opts()),
        };
        self.usage = match self.op {
            Operation::Embeddings => v
                .get("meta")
                .and_then(|m| m.get("billed_units"))
                .and_then(|b| usage(Some(&json!({ "billed_units": b })))),
            _ => usage(v.get("usage")),
        };
        let bytes = Bytes::from(out.to_string());
        self.body = Some(out);
        Some(bytes)
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn may_rewrite(&self) -> bool {
        true
    }

    /// JSON when translated; relayed as it came, the upstream's own type says what it is.
    fn content_type(&self) -> Option<&'static str> {
        (!self.raw).then_some("application/json")
    }

    fn json_body(&self) -> Option<Value> {
        self.body.clone()
    }
}

#[cfg(test)]
mod tests;
