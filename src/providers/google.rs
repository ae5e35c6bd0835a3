//! Google Gemini (`google`): the Generative Language API, which is not OpenAI's format.
//!
//! Requests are rebuilt from the unified (OpenAI) body: chat becomes `generateContent` (or
//! `streamGenerateContent?alt=sse` for a stream, so the answer is SSE and not one long JSON
//! array), embeddings become `embedContent` / `batchEmbedContents`. Answers are translated back
//! to OpenAI's `chat.completion`, `chat.completion.chunk` and embedding-list shapes, and usage
//! is read from Gemini's `usageMetadata`. Error answers are not seen here: the relay wraps them
//! in Portkey's envelope (`providers::error_envelope`), which already reads Gemini's
//! `{"error":{"code","message","status"}}`.
//!
//! `/v1/completions` is answered with a 400: Gemini has no text-completion API, and a mapping
//! onto chat would need a `text_completion` answer shape nobody has asked for yet.
//!
//! Pure like every adapter: no sockets, clocks or globals (`ResponseOptions.created` is the
//! timestamp).

use super::{Operation, Prepare, Provider, ProviderRequest, ResponseOptions};
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::providers::error_envelope as provider_error;
use crate::stream::sse::{data, SseSplitter};
use crate::stream::Translator;
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// The Portkey slug.
pub const SLUG: &str = "google";
/// Where the Gemini API lives unless a custom host overrides it.
pub const BASE_URL: &str = "https://generativelanguage.googleapis.com";
/// The API version in the path; `v1beta` is the one that has system instructions, tools and
/// JSON output.
const VERSION: &str = "/v1beta";
/// Largest JSON answer translated; a larger one is relayed as Gemini sent it.
const MAX_JSON: usize = 16 * 1024 * 1024;
/// JSON-Schema keywords Gemini's OpenAPI-subset `Schema` rejects ("Unknown name ...: Cannot
/// find field"), removed from response schemas and function parameters.
const UNSUPPORTED_SCHEMA_KEYS: &[&str] = &["$schema", "$id", "$comment", "additionalProperties"];

/// The Gemini adapter.
pub struct Google {
    upstream: Upstream,
}

impl Google {
    pub fn new(base_url: &str) -> Result<Self, String> {
        Ok(Google {
            upstream: Upstream::parse(base_url)?,
        })
    }
}

fn invalid(msg: impl Into<String>) -> GatewayError {
    GatewayError::InvalidBody(msg.into())
}

impl Provider for Google {
    fn slug(&self) -> &str {
        SLUG
    }

    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// True so the walk computes `hide_usage` (a stream whose client did not ask for
    /// `stream_options.include_usage`): Gemini always reports usage, and the translator must
    /// know whether to pass it on as OpenAI's usage chunk. The `stream_options` the walk adds
    /// to the unified body never reach Gemini: the request is rebuilt from known fields only.
    fn stream_usage(&self) -> bool {
        true
    }

    /// The key goes in `x-goog-api-key`, never in the URL's `?key=`: URLs end up in logs.
    fn auth_headers(&self, api_key: &str) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        let mut value =
            HeaderValue::try_from(api_key).map_err(|_| GatewayError::InvalidHeader {
                name: "authorization",
                reason: "the API key contains characters not allowed in a header".into(),
            })?;
        value.set_sensitive(true);
        Ok(vec![(HeaderName::from_static("x-goog-api-key"), value)])
    }

    /// The client's query string is not passed on: it belongs to the OpenAI route, and the
    /// Gemini path owns its own (`alt=sse`).
    fn prepare(&self, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError> {
        let headers = match req.api_key {
            Some(key) if !key.is_empty() => self.auth_headers(key)?,
            _ => Vec::new(),
        };
        let body: Map<String, Value> = match serde_json::from_slice(&req.body) {
            Ok(Value::Object(o)) => o,
            _ => return Err(invalid("the body must be a JSON object")),
        };
        let model = model_name(&body)?;
        let (path, out) = match req.op {
            Operation::ChatCompletions => {
                let path = if req.stream {
                    format!("{VERSION}/models/{model}:streamGenerateContent?alt=sse")
                } else {
                    format!("{VERSION}/models/{model}:generateContent")
                };
                (path, chat_request(&body)?)
            }
            Operation::Embeddings => embed_request(&body, model)?,
            Operation::Completions => {
                return Err(invalid(
                    "google has no text-completion API: use /v1/chat/completions",
                ))
            }
            Operation::Messages => {
                return Err(GatewayError::Unsupported(req.op.fn_name(), SLUG.into()))
            }
        };
        let body = serde_json::to_vec(&out)
            .map_err(|e| GatewayError::Internal(format!("serialising the request: {e}")))?;
        Ok(ProviderRequest {
            path,
            headers,
            body: Bytes::from(body),
        })
    }

    fn response(
        &self,
        op: Operation,
        status: u16,
        content_type: &str,
        opts: &ResponseOptions,
    ) -> Box<dyn Translator> {
        Box::new(GeminiTranslator::new(op, status, content_type, opts))
    }
}

/// The model from the body, without a leading `models/`. Only characters of Gemini model ids
/// are accepted: the name becomes part of the path, so `/`, `?` or `:` could re-aim it.
fn model_name(body: &Map<String, Value>) -> Result<&str, GatewayError> {
    let Some(Value::String(model)) = body.get("model") else {
        return Err(invalid(
            "model is required (a Gemini model id, e.g. gemini-2.0-flash)",
        ));
    };
    let model = model.strip_prefix("models/").unwrap_or(model);
    let ok = !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        Ok(model)
    } else {
        Err(invalid(format!("{model:?} is not a Gemini model id")))
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// `contents` under construction: consecutive messages of one role are merged into one content,
/// because Gemini wants the answers to one turn's function calls in a single content.
#[derive(Default)]
struct Contents {
    list: Vec<Value>,
    last_role: Option<&'static str>,
}

impl Contents {
    fn push(&mut self, role: &'static str, parts: Vec<Value>) {
        if parts.is_empty() {
            return;
        }
        if self.last_role == Some(role) {
            if let Some(Value::Array(prev)) = self.list.last_mut().and_then(|c| c.get_mut("parts"))
            {
                prev.extend(parts);
                return;
            }
        }
        self.list.push(json!({"role": role, "parts": parts}));
        self.last_role = Some(role);
    }
}

/// An OpenAI chat request as a Gemini `GenerateContentRequest`. Unknown OpenAI fields are
/// dropped.
fn chat_request(body: &Map<String, Value>) -> Result<Value, GatewayError> {
    let messages = match body.get("messages") {
        Some(Value::Array(m)) => m.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => return Err(invalid("messages must be an array")),
    };
    let mut contents = Contents::default();
    let mut system: Vec<Value> = Vec::new();
    // tool_call_id → function name: Gemini answers a call by name, OpenAI by id.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(invalid(format!("messages[{i}] must be an object")));
        };
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.extend(content_parts(content)),
            "assistant" | "model" => {
                let mut parts = content_parts(content);
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let f = call.get("function").unwrap_or(&Value::Null);
                    let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        call_names.insert(id.to_string(), name.to_string());
                    }
                    parts.push(json!({"functionCall": {"name": name, "args": call_args(f)}}));
                }
                contents.push("model", parts);
            }
            "tool" | "function" => {
                let by_id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .and_then(|id| call_names.get(id));
                let name = by_id
                    .map(String::as_str)
                    .or_else(|| m.get("name").and_then(Value::as_str))
                    .unwrap_or_default();
                let part =
                    json!({"functionResponse": {"name": name, "response": tool_response(content)}});
                contents.push("user", vec![part]);
            }
            _ => contents.push("user", content_parts(content)),
        }
    }
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents.list));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    let config = generation_config(body);
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    let declarations = function_declarations(body);
    if !declarations.is_empty() {
        out.insert(
            "tools".into(),
            json!([{ "functionDeclarations": declarations }]),
        );
    }
    if let Some(tc) = tool_config(body.get("tool_choice")) {
        out.insert("toolConfig".into(), tc);
    }
    Ok(Value::Object(out))
}

/// A tool call's `arguments` (a JSON string) as the object Gemini's `args` must be; anything
/// that is not a JSON object becomes `{}`.
fn call_args(f: &Value) -> Value {
    match f.get("arguments") {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({}),
        },
        Some(v @ Value::Object(_)) => v.clone(),
        _ => json!({}),
    }
}

/// A tool result as Gemini's `functionResponse.response`, which must be an object: a result
/// that is itself a JSON object is passed as is, anything else as `{"content": <text>}`.
fn tool_response(content: &Value) -> Value {
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(_) => content_parts(content)
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "content": text }),
    }
}

/// OpenAI message content (a string or an array of parts) as Gemini parts. Empty text is
/// skipped (Gemini refuses empty text parts); unknown part types are dropped.
fn content_parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if !s.is_empty() => vec![json!({ "text": s })],
        Value::Array(items) => items.iter().filter_map(part).collect(),
        _ => Vec::new(),
    }
}

fn part(item: &Value) -> Option<Value> {
    match item.get("type").and_then(Value::as_str) {
        Some("text") | Some("input_text") => {
            let text = item.get("text").and_then(Value::as_str)?;
            (!text.is_empty()).then(|| json!({ "text": text }))
        }
        Some("image_url") => {
            let url = match item.get("image_url") {
                Some(Value::String(u)) => u.as_str(),
                Some(obj) => obj.get("url").and_then(Value::as_str)?,
                None => return None,
            };
            Some(media_part(url))
        }
        Some("input_audio") => {
            let audio = item.get("input_audio")?;
            let data = audio.get("data").and_then(Value::as_str)?;
            let format = audio.get("format").and_then(Value::as_str).unwrap_or("wav");
            Some(json!({"inlineData": {"mimeType": format!("audio/{format}"), "data": data}}))
        }
        _ => None,
    }
}

/// A data URL → `inlineData` (its base64 as is); any other URL → `fileData` with a MIME type
/// guessed from the extension (Gemini requires one).
fn media_part(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, payload)) = rest.split_once(',') {
            let mime = meta.split(';').next().filter(|m| !m.is_empty());
            return json!({"inlineData": {"mimeType": mime.unwrap_or("image/jpeg"), "data": payload}});
        }
    }
    json!({"fileData": {"mimeType": guess_mime(url), "fileUri": url}})
}

fn guess_mime(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "txt" => "text/plain",
        _ => "image/jpeg",
    }
}

/// Sampling and output fields → `generationConfig`. `null` values are skipped.
fn generation_config(body: &Map<String, Value>) -> Map<String, Value> {
    let mut c = Map::new();
    let get = |k: &str| body.get(k).filter(|v| !v.is_null());
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = get(from) {
            c.insert(to.into(), v.clone());
        }
    }
    if let Some(v) = get("max_completion_tokens").or_else(|| get("max_tokens")) {
        c.insert("maxOutputTokens".into(), v.clone());
    }
    match get("stop") {
        Some(Value::String(s)) => {
            c.insert("stopSequences".into(), json!([s]));
        }
        Some(v @ Value::Array(_)) => {
            c.insert("stopSequences".into(), v.clone());
        }
        _ => {}
    }
    if let Some(rf) = get("response_format") {
        match rf.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                c.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                c.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = rf.get("json_schema").and_then(|s| s.get("schema")) {
                    c.insert("responseSchema".into(), clean_schema(schema));
                }
            }
            _ => {}
        }
    }
    c
}

/// A JSON Schema without the keywords Gemini's `Schema` rejects, at every level where a schema
/// can sit. Property *names* are never touched (a property may be called `additionalProperties`).
fn clean_schema(schema: &Value) -> Value {
    let Value::Object(obj) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if UNSUPPORTED_SCHEMA_KEYS.contains(&k.as_str()) {
            continue;
        }
        let v = match (k.as_str(), v) {
            ("properties" | "$defs" | "definitions", Value::Object(props)) => Value::Object(
                props
                    .iter()
                    .map(|(name, s)| (name.clone(), clean_schema(s)))
                    .collect(),
            ),
            ("items" | "not", s) => match s {
                Value::Array(list) => Value::Array(list.iter().map(clean_schema).collect()),
                s => clean_schema(s),
            },
            ("anyOf" | "oneOf" | "allOf" | "prefixItems", Value::Array(list)) => {
                Value::Array(list.iter().map(clean_schema).collect())
            }
            (_, v) => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

/// Function tools → `functionDeclarations`; other tool types are dropped. An object schema
/// with no properties is left out: Gemini refuses `properties` that is empty for an object.
fn function_declarations(body: &Map<String, Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for tool in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        let Some(f) = tool.get("function").filter(|_| kind == "function") else {
            continue;
        };
        let Some(name) = f.get("name").and_then(Value::as_str) else {
            continue;
        };
        let mut d = Map::new();
        d.insert("name".into(), json!(name));
        if let Some(desc) = f.get("description").and_then(Value::as_str) {
            d.insert("description".into(), json!(desc));
        }
        if let Some(params) = f.get("parameters").filter(|p| p.is_object()) {
            let empty = params
                .get("properties")
                .and_then(Value::as_object)
                .map_or(true, Map::is_empty);
            if !empty {
                d.insert("parameters".into(), clean_schema(params));
            }
        }
        out.push(Value::Object(d));
    }
    out
}

/// `tool_choice` → `toolConfig.functionCallingConfig`.
fn tool_config(choice: Option<&Value>) -> Option<Value> {
    let config = match choice? {
        Value::String(s) => match s.as_str() {
            "none" => json!({"mode": "NONE"}),
            "auto" => json!({"mode": "AUTO"}),
            "required" => json!({"mode": "ANY"}),
            _ => return None,
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
        _ => return None,
    };
    Some(json!({ "functionCallingConfig": config }))
}

/// Embeddings: one string → `embedContent`; an array of strings → `batchEmbedContents`.
/// `dimensions` becomes `outputDimensionality`. Token arrays are refused (Gemini takes text).
fn embed_request(body: &Map<String, Value>, model: &str) -> Result<(String, Value), GatewayError> {
    let dims = body.get("dimensions").filter(|v| v.is_number());
    let request = |text: &str, with_model: bool| {
        let mut r = Map::new();
        if with_model {
            r.insert("model".into(), json!(format!("models/{model}")));
        }
        r.insert("content".into(), json!({"parts": [{"text": text}]}));
        if let Some(d) = dims {
            r.insert("outputDimensionality".into(), d.clone());
        }
        Value::Object(r)
    };
    match body.get("input") {
        Some(Value::String(s)) => Ok((
            format!("{VERSION}/models/{model}:embedContent"),
            request(s, false),
        )),
        Some(Value::Array(items)) => {
            let mut requests = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(s) = item else {
                    return Err(invalid(
                        "google embeddings take input as a string or an array of strings",
                    ));
                };
                requests.push(request(s, true));
            }
            Ok((
                format!("{VERSION}/models/{model}:batchEmbedContents"),
                json!({ "requests": requests }),
            ))
        }
        _ => Err(invalid("input must be a string or an array of strings")),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------

/// Gemini's `finishReason` as OpenAI's; with strict compliance off the raw value is kept.
fn finish_reason(raw: &str, has_tool_calls: bool, strict: bool) -> Value {
    if !strict {
        return json!(raw);
    }
    let mapped = match raw {
        "STOP" if has_tool_calls => "tool_calls",
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ => "stop",
    };
    json!(mapped)
}

fn count(meta: &Value, key: &str) -> u64 {
    meta.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// `usageMetadata` → the normalised usage (input includes cached tokens, output includes
/// thinking tokens, as `completion_tokens` does in the answer).
fn usage_of(meta: &Value) -> Usage {
    let thoughts = count(meta, "thoughtsTokenCount");
    Usage {
        input: count(meta, "promptTokenCount"),
        output: count(meta, "candidatesTokenCount") + thoughts,
        cached_input: count(meta, "cachedContentTokenCount"),
        cache_write: 0,
        reasoning: thoughts,
    }
}

/// `usageMetadata` → OpenAI's `usage` object.
fn usage_json(meta: &Value) -> Value {
    usage_of(meta).openai_json()
}

/// What one candidate's parts say: visible text (thought summaries are not the answer) and
/// function calls, numbered from `next_call` so ids are deterministic across a response.
struct Said {
    text: Option<String>,
    calls: Vec<Value>,
}

fn read_parts(candidate: &Value, next_call: &mut u64) -> Said {
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    let parts = candidate
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array);
    for p in parts.into_iter().flatten() {
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            text.get_or_insert_with(String::new).push_str(t);
        }
        if let Some(fc) = p.get("functionCall") {
            let name = fc.get("name").and_then(Value::as_str).unwrap_or_default();
            let args = fc.get("args").cloned().unwrap_or_else(|| json!({}));
            calls.push(json!({
                "id": format!("call_{next_call}"),
                "type": "function",
                "function": {"name": name, "arguments": args.to_string()},
            }));
            *next_call += 1;
        }
    }
    Said { text, calls }
}

/// The candidates of an answer; a prompt Gemini blocked outright has none, only
/// `promptFeedback.blockReason`: it becomes one empty candidate stopped by the content filter.
fn candidates(v: &Value) -> Cow<'_, [Value]> {
    match v.get("candidates").and_then(Value::as_array) {
        Some(c) if !c.is_empty() => Cow::Borrowed(c.as_slice()),
        _ => match v
            .get("promptFeedback")
            .and_then(|f| f.get("blockReason"))
            .and_then(Value::as_str)
        {
            Some(reason) => {
                let raw = if reason == "OTHER" { "OTHER" } else { "SAFETY" };
                Cow::Owned(vec![json!({"index": 0, "finishReason": raw})])
            }
            None => Cow::Borrowed(&[]),
        },
    }
}

fn candidate_index(c: &Value, position: usize) -> u64 {
    c.get("index")
        .and_then(Value::as_u64)
        .unwrap_or(position as u64)
}

fn answer_id(v: &Value, created: u64) -> String {
    match v.get("responseId").and_then(Value::as_str) {
        Some(id) => format!("gemini-{id}"),
        None => format!("gemini-{created}"),
    }
}

/// A whole `GenerateContentResponse` as an OpenAI `chat.completion`.
fn chat_completion(v: &Value, opts: &ResponseOptions) -> Value {
    let mut next_call = 0;
    let choices: Vec<Value> = candidates(v)
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let said = read_parts(c, &mut next_call);
            let has_calls = !said.calls.is_empty();
            let content = match said.text {
                Some(t) => json!(t),
                None if has_calls => Value::Null,
                None => json!(""),
            };
            let mut message = json!({"role": "assistant", "content": content});
            if has_calls {
                message["tool_calls"] = Value::Array(said.calls);
            }
            let raw = c
                .get("finishReason")
                .and_then(Value::as_str)
                .unwrap_or("STOP");
            json!({
                "index": candidate_index(c, i),
                "message": message,
                "logprobs": null,
                "finish_reason": finish_reason(raw, has_calls, opts.strict),
            })
        })
        .collect();
    let mut out = json!({
        "id": answer_id(v, opts.created),
        "object": "chat.completion",
        "created": opts.created,
        "model": v.get("modelVersion").and_then(Value::as_str).unwrap_or_default(),
        "choices": choices,
    });
    if let Some(meta) = v.get("usageMetadata") {
        out["usage"] = usage_json(meta);
    }
    out
}

/// `embedContent` (`{embedding:{values}}`) or `batchEmbedContents` (`{embeddings:[{values}]}`)
/// as OpenAI's embedding list. Gemini reports no token counts for embeddings: usage is zero.
fn embedding_list(v: &Value) -> Value {
    let vectors: Vec<&Value> = match (v.get("embedding"), v.get("embeddings")) {
        (Some(one), _) => vec![one],
        (None, Some(Value::Array(many))) => many.iter().collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "object": "embedding",
                "index": i,
                "embedding": e.get("values").cloned().unwrap_or_else(|| json!([])),
            })
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": v.get("modelVersion").and_then(Value::as_str).unwrap_or_default(),
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    })
}

enum Mode {
    /// A whole JSON answer, held until the end and rewritten.
    Json,
    /// Gemini SSE, rewritten event by event.
    Sse,
    /// Anything else (not expected from Gemini): relayed as it is.
    Other,
}

/// Per-candidate state of a stream.
#[derive(Default)]
struct Choice {
    started: bool,
    calls: u64,
    has_calls: bool,
}

/// Translates one Gemini answer to OpenAI's format (see the module doc).
pub struct GeminiTranslator {
    op: Operation,
    mode: Mode,
    /// Owned: the request's borrowed fields (`model`) are not kept.
    opts: ResponseOptions<'static>,
    body: BytesMut,
    splitter: SseSplitter,
    usage: Option<Usage>,
    usage_json: Option<Value>,
    model: Option<String>,
    id: Option<String>,
    events: u32,
    choices: BTreeMap<u64, Choice>,
    next_call: u64,
    json_out: Option<Value>,
}

impl GeminiTranslator {
    pub fn new(op: Operation, status: u16, content_type: &str, opts: &ResponseOptions) -> Self {
        let mode = if !(200..300).contains(&status) {
            Mode::Other
        } else if content_type.starts_with("text/event-stream") {
            Mode::Sse
        } else if content_type.contains("json") {
            Mode::Json
        } else {
            Mode::Other
        };
        GeminiTranslator {
            op,
            mode,
            opts: ResponseOptions {
                hide_usage: opts.hide_usage,
                strict: opts.strict,
                created: opts.created,
                model: None,
            },
            body: BytesMut::new(),
            splitter: SseSplitter::default(),
            usage: None,
            usage_json: None,
            model: None,
            id: None,
            events: 0,
            choices: BTreeMap::new(),
            next_call: 0,
            json_out: None,
        }
    }

    fn chunk(&self, choices: Vec<Value>, usage: Option<Value>) -> Bytes {
        let mut c = json!({
            "id": self.id.clone().unwrap_or_else(|| format!("gemini-{}", self.opts.created)),
            "object": "chat.completion.chunk",
            "created": self.opts.created,
            "model": self.model.clone().unwrap_or_default(),
            "choices": choices,
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        Bytes::from(format!("data: {c}\n\n"))
    }

    /// One Gemini stream event → at most one OpenAI chunk.
    fn event(&mut self, event: &Bytes, out: &mut BytesMut) {
        let Some(payload) = data(event) else {
            return;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&payload) else {
            return;
        };
        if v.get("error").is_some() {
            let wrapped = provider_error::envelope(SLUG, 500, &payload);
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&wrapped);
            out.extend_from_slice(b"\n\n");
            return;
        }
        if self.id.is_none() {
            self.id = Some(answer_id(&v, self.opts.created));
        }
        if self.model.is_none() {
            self.model = v
                .get("modelVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(meta) = v.get("usageMetadata") {
            self.usage = Some(usage_of(meta));
            self.usage_json = Some(usage_json(meta));
        }
        let mut choices = Vec::new();
        for (i, c) in candidates(&v).iter().enumerate() {
            let index = candidate_index(c, i);
            let said = read_parts(c, &mut self.next_call);
            let state = self.choices.entry(index).or_default();
            let mut delta = Map::new();
            if !state.started {
                state.started = true;
                delta.insert("role".into(), json!("assistant"));
            }
            if let Some(t) = said.text.filter(|t| !t.is_empty()) {
                delta.insert("content".into(), json!(t));
            }
            if !said.calls.is_empty() {
                state.has_calls = true;
                let calls: Vec<Value> = said
                    .calls
                    .into_iter()
                    .map(|mut call| {
                        call["index"] = json!(state.calls);
                        state.calls += 1;
                        call
                    })
                    .collect();
                delta.insert("tool_calls".into(), Value::Array(calls));
            }
            let finish = c
                .get("finishReason")
                .and_then(Value::as_str)
                .map(|raw| finish_reason(raw, state.has_calls, self.opts.strict));
            if delta.is_empty() && finish.is_none() {
                continue;
            }
            choices.push(json!({
                "index": index,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish.unwrap_or(Value::Null),
            }));
        }
        if !choices.is_empty() {
            self.events += 1;
            out.extend_from_slice(&self.chunk(choices, None));
        }
    }

    fn push_sse(&mut self, chunk: &Bytes) -> Option<Bytes> {
        let mut out = BytesMut::new();
        for event in self.splitter.push(chunk) {
            self.event(&event, &mut out);
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    fn finish_sse(&mut self) -> Option<Bytes> {
        let mut out = BytesMut::new();
        if let Some(rest) = self.splitter.finish() {
            self.event(&rest, &mut out);
        }
        if !self.opts.hide_usage {
            if let Some(u) = self.usage_json.clone() {
                out.extend_from_slice(&self.chunk(Vec::new(), Some(u)));
            }
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Some(out.freeze())
    }

    fn finish_json(&mut self) -> Option<Bytes> {
        let raw = self.body.split().freeze();
        let Ok(v) = serde_json::from_slice::<Value>(&raw) else {
            // Not JSON after all: the client gets what Gemini said.
            return (!raw.is_empty()).then_some(raw);
        };
        let out = match self.op {
            Operation::Embeddings => embedding_list(&v),
            _ => {
                if let Some(meta) = v.get("usageMetadata") {
                    self.usage = Some(usage_of(meta));
                }
                chat_completion(&v, &self.opts)
            }
        };
        self.model = out
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        let bytes = Bytes::from(out.to_string());
        self.json_out = Some(out);
        Some(bytes)
    }
}

impl Translator for GeminiTranslator {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        match self.mode {
            Mode::Other => Some(chunk),
            Mode::Sse => self.push_sse(&chunk),
            Mode::Json => {
                if self.body.len() + chunk.len() > MAX_JSON {
                    // Give up translating: what is held, then every chunk, go out as they
                    // came (Gemini's own JSON, in order, under the JSON header already sent).
                    self.mode = Mode::Other;
                    let mut held = self.body.split();
                    held.extend_from_slice(&chunk);
                    return Some(held.freeze());
                }
                self.body.extend_from_slice(&chunk);
                None
            }
        }
    }

    fn finish(&mut self) -> Option<Bytes> {
        match self.mode {
            Mode::Other => None,
            Mode::Sse => self.finish_sse(),
            Mode::Json => self.finish_json(),
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn events(&self) -> u32 {
        self.events
    }

    fn overflowed(&self) -> bool {
        matches!(self.mode, Mode::Sse) && self.splitter.overflowed()
    }

    fn may_rewrite(&self) -> bool {
        !matches!(self.mode, Mode::Other)
    }

    fn content_type(&self) -> Option<&'static str> {
        match self.mode {
            Mode::Sse => Some("text/event-stream"),
            Mode::Json => Some("application/json"),
            Mode::Other => None,
        }
    }

    fn json_body(&self) -> Option<Value> {
        self.json_out.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHAT_REQUEST: &str = include_str!("../../tests/fixtures/google/chat_request.openai.json");
    const CHAT_REQUEST_GEMINI: &str =
        include_str!("../../tests/fixtures/google/chat_request.gemini.json");
    const CHAT_RESPONSE: &str =
        include_str!("../../tests/fixtures/google/chat_response.gemini.json");
    const CHAT_RESPONSE_OPENAI: &str =
        include_str!("../../tests/fixtures/google/chat_response.openai.json");
    const STREAM: &str = include_str!("../../tests/fixtures/google/stream.gemini.sse");
    const STREAM_OPENAI: &str = include_str!("../../tests/fixtures/google/stream.openai.sse");
    const EMBED_BATCH: &str = include_str!("../../tests/fixtures/google/embed_batch.gemini.json");
    const EMBED_BATCH_OPENAI: &str =
        include_str!("../../tests/fixtures/google/embed_batch.openai.json");

    const OPTS: ResponseOptions<'static> = ResponseOptions {
        hide_usage: false,
        strict: true,
        created: 1_700_000_000,
        model: None,
    };

    fn google() -> Google {
        Google::new(BASE_URL).unwrap()
    }

    fn prepare(op: Operation, body: &str, stream: bool) -> Result<ProviderRequest, GatewayError> {
        let headers = http::HeaderMap::new();
        google().prepare(Prepare {
            op,
            body: Bytes::from(body.to_string()),
            api_key: Some("AIza-test"),
            query: Some("api-version=1"),
            stream,
            client_headers: &headers,
            options: &Default::default(),
        })
    }

    fn chat(body: Value) -> Value {
        let req = prepare(Operation::ChatCompletions, &body.to_string(), false).unwrap();
        serde_json::from_slice(&req.body).unwrap()
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    /// Runs a whole answer through a translator fed in the given pieces.
    fn run(t: &mut GeminiTranslator, pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces {
            out.extend(t.push(Bytes::copy_from_slice(p)).unwrap_or_default());
        }
        out.extend(t.finish().unwrap_or_default());
        out
    }

    fn translate(
        op: Operation,
        ct: &str,
        opts: &ResponseOptions,
        body: &str,
    ) -> (Vec<u8>, GeminiTranslator) {
        let mut t = GeminiTranslator::new(op, 200, ct, opts);
        let out = run(&mut t, &[body.as_bytes()]);
        (out, t)
    }

    /// The `data:` payloads of an SSE text, parsed (`[DONE]` as a string).
    fn events(sse: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(sse).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let d = e.strip_prefix("data: ").unwrap();
                serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string()))
            })
            .collect()
    }

    #[test]
    fn chat_request_matches_the_recorded_gemini_body() {
        let req = prepare(Operation::ChatCompletions, CHAT_REQUEST, false).unwrap();
        assert_eq!(req.path, "/v1beta/models/gemini-2.5-flash:generateContent");
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body, parse(CHAT_REQUEST_GEMINI));
        assert_eq!(req.headers.len(), 1);
        assert_eq!(req.headers[0].0, "x-goog-api-key");
        assert_eq!(req.headers[0].1, "AIza-test");
        assert!(req.headers[0].1.is_sensitive());
        assert!(!req.path.contains("key="), "the key never goes in the URL");
    }

    #[test]
    fn stream_path_asks_for_sse_and_models_prefix_is_stripped() {
        let body = r#"{"model":"models/gemini-2.0-flash","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let req = prepare(Operation::ChatCompletions, body, true).unwrap();
        assert_eq!(
            req.path,
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        );
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            v,
            json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}]})
        );
    }

    #[test]
    fn no_key_no_header() {
        let headers = http::HeaderMap::new();
        let req = google()
            .prepare(Prepare {
                op: Operation::ChatCompletions,
                body: Bytes::from_static(br#"{"model":"gemini-pro"}"#),
                api_key: None,
                query: None,
                stream: false,
                client_headers: &headers,
                options: &Default::default(),
            })
            .unwrap();
        assert!(req.headers.is_empty());
        assert!(google().auth_headers("bad\nkey").is_err());
    }

    #[test]
    fn bad_requests_are_400s() {
        for (op, body) in [
            (Operation::ChatCompletions, r#"{"messages":[]}"#),
            (
                Operation::ChatCompletions,
                r#"{"model":"../../v1/files","messages":[]}"#,
            ),
            (Operation::ChatCompletions, r#"{"model":"gemini:x?key=1"}"#),
            (Operation::ChatCompletions, r#"{"model":""}"#),
            (Operation::ChatCompletions, r#"[1,2]"#),
            (
                Operation::ChatCompletions,
                r#"{"model":"g","messages":"hi"}"#,
            ),
            (
                Operation::ChatCompletions,
                r#"{"model":"g","messages":["hi"]}"#,
            ),
            (
                Operation::Completions,
                r#"{"model":"gemini-pro","prompt":"hi"}"#,
            ),
            (
                Operation::Embeddings,
                r#"{"model":"text-embedding-004","input":[[1,2]]}"#,
            ),
            (Operation::Embeddings, r#"{"model":"text-embedding-004"}"#),
        ] {
            let e = prepare(op, body, false).unwrap_err();
            assert_eq!(e.status(), 400, "{body}: {e}");
        }
    }

    #[test]
    fn generation_config_variants() {
        let v = chat(
            json!({"model":"g","messages":[],"stop":["a","b"],"max_tokens":5,
            "max_completion_tokens":9,"response_format":{"type":"json_object"},"temperature":null,
            "n":2}),
        );
        assert_eq!(
            v["generationConfig"],
            json!({"stopSequences":["a","b"],"maxOutputTokens":9,
                   "responseMimeType":"application/json","candidateCount":2})
        );
        let v = chat(json!({"model":"g","messages":[],"response_format":{"type":"text"}}));
        assert!(v.get("generationConfig").is_none());
    }

    #[test]
    fn tool_choice_modes() {
        for (choice, expected) in [
            (json!("none"), Some(json!({"mode":"NONE"}))),
            (json!("auto"), Some(json!({"mode":"AUTO"}))),
            (json!("required"), Some(json!({"mode":"ANY"}))),
            (
                json!({"type":"function","function":{"name":"f"}}),
                Some(json!({"mode":"ANY","allowedFunctionNames":["f"]})),
            ),
            (json!("sometimes"), None),
            (json!(3), None),
        ] {
            let v = chat(json!({"model":"g","messages":[],"tool_choice":choice}));
            assert_eq!(
                v.get("toolConfig").cloned(),
                expected.map(|c| json!({"functionCallingConfig": c}))
            );
        }
    }

    #[test]
    fn message_mapping_edge_cases() {
        let v = chat(json!({"model":"g","messages":[
            {"role":"user","content":""},
            {"content":"no role is a user"},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"input_audio","input_audio":{"data":"UklG","format":"mp3"}},
                                       {"type":"image_url","image_url":"http://x/y"},{"type":"refusal"}]},
            {"role":"assistant","content":null},
            {"role":"assistant","content":"sure","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"not json"}}]},
            {"role":"tool","tool_call_id":"unknown","name":"g","content":[{"type":"text","text":"[1,2]"}]},
            {"role":"function","name":"h","content":null}
        ]}));
        assert_eq!(
            v["contents"],
            json!([
                {"role":"user","parts":[{"text":"no role is a user"},{"text":"a"},
                    {"inlineData":{"mimeType":"audio/mp3","data":"UklG"}},
                    {"fileData":{"mimeType":"image/jpeg","fileUri":"http://x/y"}}]},
                {"role":"model","parts":[{"text":"sure"},{"functionCall":{"name":"f","args":{}}}]},
                {"role":"user","parts":[
                    {"functionResponse":{"name":"g","response":{"content":"[1,2]"}}},
                    {"functionResponse":{"name":"h","response":{"content":""}}}]}
            ])
        );
    }

    #[test]
    fn mime_types_are_guessed_from_the_extension() {
        assert_eq!(guess_mime("https://x/a.PNG"), "image/png");
        assert_eq!(guess_mime("https://x/a.pdf#p=2"), "application/pdf");
        assert_eq!(guess_mime("https://x/a.gif?x=1.webp"), "image/gif");
        assert_eq!(guess_mime("https://x/photo"), "image/jpeg");
        assert_eq!(
            media_part("data:;base64,AAA="),
            json!({"inlineData":{"mimeType":"image/jpeg","data":"AAA="}})
        );
    }

    #[test]
    fn embeddings_requests() {
        let req = prepare(
            Operation::Embeddings,
            r#"{"model":"text-embedding-004","input":"hello","dimensions":256,"encoding_format":"float"}"#,
            false,
        )
        .unwrap();
        assert_eq!(req.path, "/v1beta/models/text-embedding-004:embedContent");
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            v,
            json!({"content":{"parts":[{"text":"hello"}]},"outputDimensionality":256})
        );
        let req = prepare(
            Operation::Embeddings,
            r#"{"model":"models/text-embedding-004","input":["a","b"]}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            req.path,
            "/v1beta/models/text-embedding-004:batchEmbedContents"
        );
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            v,
            json!({"requests":[
                {"model":"models/text-embedding-004","content":{"parts":[{"text":"a"}]}},
                {"model":"models/text-embedding-004","content":{"parts":[{"text":"b"}]}}
            ]})
        );
    }

    #[test]
    fn chat_response_matches_the_recorded_openai_body() {
        let (out, t) = translate(
            Operation::ChatCompletions,
            "application/json; charset=UTF-8",
            &OPTS,
            CHAT_RESPONSE,
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, parse(CHAT_RESPONSE_OPENAI));
        assert_eq!(t.json_body(), Some(v));
        assert_eq!(
            t.usage(),
            Some(Usage {
                input: 120,
                output: 55,
                cached_input: 64,
                cache_write: 0,
                reasoning: 25
            })
        );
        assert_eq!(t.model(), Some("gemini-2.5-flash"));
        assert_eq!(t.content_type(), Some("application/json"));
        assert!(t.may_rewrite());
        assert!(!t.overflowed());
    }

    #[test]
    fn json_answer_split_anywhere_gives_the_same_body() {
        let whole = translate(
            Operation::ChatCompletions,
            "application/json",
            &OPTS,
            CHAT_RESPONSE,
        )
        .0;
        let b = CHAT_RESPONSE.as_bytes();
        for at in 0..=b.len() {
            let mut t =
                GeminiTranslator::new(Operation::ChatCompletions, 200, "application/json", &OPTS);
            assert_eq!(run(&mut t, &[&b[..at], &b[at..]]), whole, "split at {at}");
        }
    }

    #[test]
    fn finish_reasons() {
        for (raw, calls, strict, expected) in [
            ("STOP", false, true, "stop"),
            ("STOP", true, true, "tool_calls"),
            ("MAX_TOKENS", false, true, "length"),
            ("SAFETY", false, true, "content_filter"),
            ("RECITATION", false, true, "content_filter"),
            ("BLOCKLIST", false, true, "content_filter"),
            ("PROHIBITED_CONTENT", false, true, "content_filter"),
            ("SPII", false, true, "content_filter"),
            ("MALFORMED_FUNCTION_CALL", false, true, "stop"),
            ("OTHER", false, true, "stop"),
            ("MAX_TOKENS", false, false, "MAX_TOKENS"),
            ("STOP", true, false, "STOP"),
        ] {
            assert_eq!(finish_reason(raw, calls, strict), json!(expected), "{raw}");
        }
    }

    #[test]
    fn answers_without_text_blocked_prompts_and_non_strict_mode() {
        let body = r#"{"candidates":[{"content":{"parts":[],"role":"model"},"finishReason":"MAX_TOKENS"},
                       {"content":{"parts":[{"text":"b"}]},"finishReason":"STOP","index":1}]}"#;
        let lax = ResponseOptions {
            strict: false,
            ..OPTS
        };
        let (out, t) = translate(Operation::ChatCompletions, "application/json", &lax, body);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], "gemini-1700000000");
        assert_eq!(v["model"], "");
        assert_eq!(v["choices"][0]["message"]["content"], "");
        assert_eq!(v["choices"][0]["finish_reason"], "MAX_TOKENS");
        assert_eq!(v["choices"][1]["index"], 1);
        assert_eq!(v["choices"][1]["message"]["content"], "b");
        assert!(v.get("usage").is_none());
        assert!(t.usage().is_none());
        assert!(t.model().is_none());

        let blocked = r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8}}"#;
        let (out, t) = translate(
            Operation::ChatCompletions,
            "application/json",
            &OPTS,
            blocked,
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(v["choices"][0]["message"]["content"], "");
        assert_eq!(v["usage"]["total_tokens"], 8);
        assert_eq!(t.usage().unwrap().input, 8);
    }

    #[test]
    fn a_body_that_is_not_json_is_relayed_as_is() {
        let (out, t) = translate(
            Operation::ChatCompletions,
            "application/json",
            &OPTS,
            "oops",
        );
        assert_eq!(out, b"oops");
        assert!(t.json_body().is_none());
        let (out, t) = translate(Operation::ChatCompletions, "text/plain", &OPTS, "plain");
        assert_eq!(out, b"plain");
        assert!(!t.may_rewrite());
        assert!(t.content_type().is_none());
        let mut err =
            GeminiTranslator::new(Operation::ChatCompletions, 500, "application/json", &OPTS);
        assert_eq!(run(&mut err, &[b"{}"]), b"{}");
    }

    #[test]
    fn embeddings_answers() {
        let (out, _) = translate(
            Operation::Embeddings,
            "application/json",
            &OPTS,
            EMBED_BATCH,
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, parse(EMBED_BATCH_OPENAI));
        let (out, t) = translate(
            Operation::Embeddings,
            "application/json",
            &OPTS,
            r#"{"embedding":{"values":[1.5,2]}}"#,
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["data"],
            json!([{"object":"embedding","index":0,"embedding":[1.5,2]}])
        );
        assert!(t.usage().is_none());
    }

    #[test]
    fn stream_matches_the_recorded_openai_events() {
        let mut t =
            GeminiTranslator::new(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
        let out = run(&mut t, &[STREAM.as_bytes()]);
        assert_eq!(events(&out), events(STREAM_OPENAI.as_bytes()));
        assert_eq!(
            t.usage(),
            Some(Usage {
                input: 12,
                output: 28,
                cached_input: 8,
                cache_write: 0,
                reasoning: 8
            })
        );
        assert_eq!(t.model(), Some("gemini-2.0-flash"));
        assert_eq!(t.events(), 4);
        assert_eq!(t.content_type(), Some("text/event-stream"));
        assert!(t.may_rewrite());
    }

    #[test]
    fn stream_split_at_every_byte_gives_identical_output() {
        let b = STREAM.as_bytes();
        let mut whole =
            GeminiTranslator::new(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
        let expected = run(&mut whole, &[b]);
        for at in 0..=b.len() {
            let mut t =
                GeminiTranslator::new(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
            assert_eq!(
                run(&mut t, &[&b[..at], &b[at..]]),
                expected,
                "split at {at}"
            );
            assert_eq!(t.usage(), whole.usage());
        }
        // And one byte at a time.
        let pieces: Vec<&[u8]> = b.chunks(1).collect();
        let mut t =
            GeminiTranslator::new(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
        assert_eq!(run(&mut t, &pieces), expected);
    }

    #[test]
    fn crlf_events_and_an_unterminated_last_event() {
        let crlf = STREAM.replace("\n\n", "\r\n\r\n");
        let cut = STREAM.trim_end();
        let mut t =
            GeminiTranslator::new(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
        let expected = run(&mut t, &[STREAM.as_bytes()]);
        for s in [crlf.as_str(), cut] {
            let mut t =
                GeminiTranslator::new(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
            assert_eq!(run(&mut t, &[s.as_bytes()]), expected);
        }
    }

    #[test]
    fn hidden_usage_is_read_but_not_sent() {
        let opts = ResponseOptions {
            hide_usage: true,
            ..OPTS
        };
        let mut t =
            GeminiTranslator::new(Operation::ChatCompletions, 200, "text/event-stream", &opts);
        let out = run(&mut t, &[STREAM.as_bytes()]);
        let got = events(&out);
        let mut expected = events(STREAM_OPENAI.as_bytes());
        expected.remove(expected.len() - 2);
        assert_eq!(got, expected);
        assert!(!String::from_utf8(out).unwrap().contains("usage"));
        assert_eq!(t.usage().unwrap().output, 28);
    }

    #[test]
    fn stream_with_two_candidates_an_error_and_raw_finish_reasons() {
        let s = concat!(
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]},\"index\":0},{\"content\":{\"parts\":[{\"text\":\"b\"}]},\"index\":1}]}\n\n",
            ": keep-alive comment\n\n",
            "data: not json\n\n",
            "data: {\"candidates\":[{\"finishReason\":\"MAX_TOKENS\",\"index\":1}]}\n\n",
            "data: {\"error\":{\"code\":503,\"message\":\"overloaded\",\"status\":\"UNAVAILABLE\"}}\n\n",
        );
        let lax = ResponseOptions {
            strict: false,
            hide_usage: true,
            ..OPTS
        };
        let mut t =
            GeminiTranslator::new(Operation::ChatCompletions, 200, "text/event-stream", &lax);
        let got = events(&run(&mut t, &[s.as_bytes()]));
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[0]["choices"][0]["delta"],
            json!({"role":"assistant","content":"a"})
        );
        assert_eq!(
            got[0]["choices"][1]["delta"],
            json!({"role":"assistant","content":"b"})
        );
        assert_eq!(got[0]["id"], "gemini-1700000000");
        assert_eq!(
            got[1]["choices"],
            json!([{"index":1,"delta":{},"logprobs":null,"finish_reason":"MAX_TOKENS"}])
        );
        assert_eq!(got[2]["error"]["message"], "google error: overloaded");
        assert_eq!(got[2]["provider"], "google");
        assert_eq!(got[3], json!("[DONE]"));
        assert!(t.usage().is_none());
    }

    #[test]
    fn a_json_answer_too_large_to_translate_is_relayed_as_it_came() {
        let mut t =
            GeminiTranslator::new(Operation::ChatCompletions, 200, "application/json", &OPTS);
        assert!(t.push(Bytes::from(vec![b' '; MAX_JSON])).is_none());
        // Past the limit: what was held, then this chunk, in order; no SSE error in a JSON
        // body, and every later chunk as it comes.
        let out = t.push(Bytes::from_static(b"{}")).unwrap();
        assert_eq!(out.len(), MAX_JSON + 2);
        assert_eq!(out.get(MAX_JSON..), Some(&b"{}"[..]));
        assert!(!t.overflowed());
        assert_eq!(t.push(Bytes::from_static(b"x")).as_deref(), Some(&b"x"[..]));
        assert!(t.finish().is_none());
    }

    #[test]
    fn registered_as_a_built_in_and_replaced_by_a_settings_row() {
        use crate::providers::{is_built_in, Providers};
        use crate::settings::Settings;
        let p = Providers::from_settings(&Settings::default()).unwrap();
        let g = p.get("google").unwrap();
        assert_eq!(g.upstream().host, "generativelanguage.googleapis.com");
        assert!(g.upstream().tls);
        assert_eq!(g.upstream().base_path, "");
        assert!(g.stream_usage());
        assert!(is_built_in("google") && is_built_in("groq") && !is_built_in("nope"));
        let s = Settings::from_yaml(
            "providers:\n  google:\n    base_url: https://generativelanguage.googleapis.com/v1beta/openai\n",
        )
        .unwrap();
        let p = Providers::from_settings(&s).unwrap();
        assert_eq!(
            p.get("google").unwrap().upstream().base_path,
            "/v1beta/openai"
        );
    }

    #[test]
    fn an_empty_stream_still_ends_with_done() {
        let mut t =
            GeminiTranslator::new(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
        assert_eq!(run(&mut t, &[]), b"data: [DONE]\n\n");
    }

    #[test]
    fn schemas_keep_property_names() {
        let s = json!({"type":"object","additionalProperties":{"type":"string"},
            "properties":{"$schema":{"type":"string","$id":"x"}},
            "anyOf":[{"additionalProperties":true}],"items":[{"$comment":"c"}]});
        assert_eq!(
            clean_schema(&s),
            json!({"type":"object","properties":{"$schema":{"type":"string"}},"anyOf":[{}],"items":[{}]})
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            prop::sample::select(vec![
                "user",
                "assistant",
                "tool",
                "system",
                "developer",
                "function",
                "text",
                "image_url",
                "input_audio",
                "none",
                "auto",
                "required",
                "json_schema",
                "json_object",
                "data:image/png;base64,AA",
                "http://x/a.png",
                "{\"a\":1}",
                "",
                "gemini-pro",
                "models/gemini-pro",
                "call_1",
            ])
            .prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "model",
                        "messages",
                        "role",
                        "content",
                        "tool_calls",
                        "tool_call_id",
                        "function",
                        "name",
                        "arguments",
                        "type",
                        "text",
                        "image_url",
                        "url",
                        "tools",
                        "tool_choice",
                        "stop",
                        "response_format",
                        "json_schema",
                        "schema",
                        "properties",
                        "items",
                        "input",
                        "max_tokens",
                        "parameters",
                        "input_audio",
                        "data",
                        "format",
                        "dimensions",
                    ]),
                    inner,
                    0..6,
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        /// Whatever OpenAI-ish JSON a client sends, `prepare` answers a request or an error,
        /// never a panic.
        #[test]
        fn prepare_never_panics(mut body in arb_json(), stream in any::<bool>(), model in any::<bool>()) {
            if model {
                if let Value::Object(o) = &mut body {
                    o.insert("model".into(), json!("gemini-pro"));
                }
            }
            for op in [Operation::ChatCompletions, Operation::Embeddings, Operation::Completions] {
                let _ = prepare(op, &body.to_string(), stream);
            }
        }
    }
}
