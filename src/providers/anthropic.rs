//! Anthropic's Messages API (`anthropic`): OpenAI chat requests are translated to
//! `/v1/messages` and the answers back, streams included; the native `/v1/messages` route
//! passes the client's bytes through untouched and only reads usage.
//!
//! Pure translation: bytes in, bytes out; the only outside input is `ResponseOptions.created`.

use super::{Operation, Prepare, Provider, ProviderRequest, ResponseOptions};
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::stream::sse::{data, SseSplitter};
use crate::stream::Translator;
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

pub const SLUG: &str = "anthropic";
/// Sent when the client names no `anthropic-version`.
pub const DEFAULT_VERSION: &str = "2023-06-01";

pub struct Anthropic {
    upstream: Upstream,
    /// `max_tokens` sent when the client gives neither `max_tokens` nor
    /// `max_completion_tokens` (Anthropic requires one).
    default_max_tokens: u64,
}

impl Anthropic {
    pub fn new(base_url: &str, default_max_tokens: u64) -> Result<Self, String> {
        Ok(Anthropic {
            upstream: Upstream::parse(base_url)?,
            default_max_tokens,
        })
    }
}

fn invalid(why: impl Into<String>) -> GatewayError {
    GatewayError::InvalidBody(why.into())
}

/// A client header, plain or with Portkey's prefix (what the Portkey SDK sends).
fn client_header<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h HeaderValue> {
    headers
        .get(format!("x-portkey-{name}"))
        .or_else(|| headers.get(name))
}

impl Provider for Anthropic {
    fn slug(&self) -> &str {
        SLUG
    }

    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    fn auth_headers(&self, api_key: &str) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        let mut v = HeaderValue::try_from(api_key).map_err(|_| GatewayError::InvalidHeader {
            name: "authorization",
            reason: "the API key contains characters not allowed in a header".into(),
        })?;
        v.set_sensitive(true);
        Ok(vec![(HeaderName::from_static("x-api-key"), v)])
    }

    fn prepare(&self, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError> {
        let body = match req.op {
            // The native route: the client already speaks Anthropic.
            Operation::Messages => req.body,
            Operation::ChatCompletions => {
                let openai: Value = serde_json::from_slice(&req.body)
                    .map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
                let translated = to_messages(&openai, self.default_max_tokens)?;
                Bytes::from(translated.to_string())
            }
            other => return Err(GatewayError::Unsupported(other.fn_name(), SLUG.into())),
        };
        let mut headers = match req.api_key {
            Some(key) if !key.is_empty() => self.auth_headers(key)?,
            _ => Vec::new(),
        };
        let version = client_header(req.client_headers, "anthropic-version")
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_VERSION));
        headers.push((HeaderName::from_static("anthropic-version"), version));
        // Any beta, untouched: a new beta must not need a gateway release.
        if let Some(beta) = client_header(req.client_headers, "anthropic-beta") {
            headers.push((HeaderName::from_static("anthropic-beta"), beta.clone()));
        }
        Ok(ProviderRequest {
            path: "/messages".into(),
            headers,
            body,
        })
    }

    fn response(
        &self,
        op: Operation,
        _status: u16,
        content_type: &str,
        opts: &ResponseOptions,
    ) -> Box<dyn Translator> {
        let sse = content_type.starts_with("text/event-stream");
        match (op, sse) {
            (Operation::Messages, _) => Box::new(Native::new(sse)),
            (_, true) => Box::new(ChatStream::new(Opts::from(opts))),
            (_, false) => Box::new(ChatJson::new(Opts::from(opts))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request: OpenAI chat → Anthropic messages
// ---------------------------------------------------------------------------------------------

/// Translates an OpenAI chat request into an Anthropic Messages request.
pub fn to_messages(req: &Value, default_max_tokens: u64) -> Result<Value, GatewayError> {
    let obj = req
        .as_object()
        .ok_or_else(|| invalid("the body must be a JSON object"))?;
    let mut out = Map::new();
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("model is required for anthropic"))?;
    out.insert("model".into(), json!(model));
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("messages must be an array"))?;
    let (system, turns) = translate_messages(messages)?;
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(turns));
    let max_tokens = obj
        .get("max_tokens")
        .or_else(|| obj.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(default_max_tokens);
    out.insert("max_tokens".into(), json!(max_tokens));
    if let Some(t) = obj.get("temperature").and_then(Value::as_f64) {
        out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    for key in ["top_p", "top_k", "thinking", "stream"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            out.insert(key.into(), v.clone());
        }
    }
    match obj.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(user) = obj.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        out.insert(
            "tools".into(),
            Value::Array(tools.iter().map(translate_tool).collect()),
        );
    }
    let parallel_off = obj.get("parallel_tool_calls") == Some(&Value::Bool(false));
    if let Some(choice) = obj.get("tool_choice") {
        let mut c = match choice {
            Value::String(s) if s == "required" => json!({"type": "any"}),
            Value::String(s) if s == "none" => json!({"type": "none"}),
            Value::String(_) => json!({"type": "auto"}),
            Value::Object(o) => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .cloned()
                    .unwrap_or(Value::Null);
                json!({"type": "tool", "name": name})
            }
            _ => json!({"type": "auto"}),
        };
        if parallel_off {
            c["disable_parallel_tool_use"] = Value::Bool(true);
        }
        out.insert("tool_choice".into(), c);
    } else if parallel_off && out.contains_key("tools") {
        out.insert(
            "tool_choice".into(),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        );
    }
    Ok(Value::Object(out))
}

/// An OpenAI function tool → an Anthropic tool (`cache_control` kept); other tool types are
/// Anthropic's server tools and pass as they are.
fn translate_tool(tool: &Value) -> Value {
    let Some(f) = tool.get("function").filter(|_| {
        tool.get("type")
            .and_then(Value::as_str)
            .unwrap_or("function")
            == "function"
    }) else {
        return tool.clone();
    };
    let mut t = Map::new();
    t.insert("name".into(), f.get("name").cloned().unwrap_or(json!("")));
    if let Some(d) = f.get("description") {
        t.insert("description".into(), d.clone());
    }
    let schema = f
        .get("parameters")
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    t.insert("input_schema".into(), schema);
    if let Some(cc) = tool.get("cache_control").or_else(|| f.get("cache_control")) {
        t.insert("cache_control".into(), cc.clone());
    }
    Value::Object(t)
}

/// Splits OpenAI messages into Anthropic's `system` blocks and turns.
fn translate_messages(messages: &[Value]) -> Result<(Vec<Value>, Vec<Value>), GatewayError> {
    let mut system = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("messages[{i}].role is required")))?;
        let cache = m.get("cache_control");
        match role {
            "system" | "developer" => system.extend(text_blocks(m.get("content"), cache)),
            "user" => turns.push(json!({"role": "user", "content": user_content(m, cache)})),
            "assistant" => turns.push(assistant_turn(m, cache)),
            "tool" => {
                let content = match m.get("content") {
                    Some(Value::String(s)) => json!(s),
                    Some(Value::Array(parts)) => Value::Array(
                        parts
                            .iter()
                            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                            .cloned()
                            .collect(),
                    ),
                    _ => json!(""),
                };
                let mut result = json!({
                    "type": "tool_result",
                    "tool_use_id": m.get("tool_call_id").cloned().unwrap_or(json!("")),
                    "content": content,
                });
                if let Some(cc) = cache {
                    result["cache_control"] = cc.clone();
                }
                // Results of parallel tool calls belong in one user turn.
                match turns.last_mut() {
                    Some(last) if is_tool_results(last) => {
                        if let Some(Value::Array(c)) = last.get_mut("content") {
                            c.push(result);
                        }
                    }
                    _ => turns.push(json!({"role": "user", "content": [result]})),
                }
            }
            other => return Err(invalid(format!("messages[{i}].role {other:?} is unknown"))),
        }
    }
    Ok((system, turns))
}

fn is_tool_results(turn: &Value) -> bool {
    turn.get("role").and_then(Value::as_str) == Some("user")
        && turn
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .all(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            })
}

/// Text blocks of a string or parts content; a message-level `cache_control` goes on its last
/// block.
fn text_blocks(content: Option<&Value>, cache: Option<&Value>) -> Vec<Value> {
    let mut blocks: Vec<Value> = match content {
        Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .map(|p| {
                let mut b =
                    json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))});
                if let Some(cc) = p.get("cache_control") {
                    b["cache_control"] = cc.clone();
                }
                b
            })
            .collect(),
        _ => Vec::new(),
    };
    if let (Some(cc), Some(last)) = (cache, blocks.last_mut()) {
        last["cache_control"] = cc.clone();
    }
    blocks
}

fn user_content(m: &Value, cache: Option<&Value>) -> Value {
    match m.get("content") {
        Some(Value::String(s)) if cache.is_none() => json!(s),
        Some(Value::Array(parts)) => {
            let mut blocks: Vec<Value> = parts.iter().filter_map(user_part).collect();
            if let (Some(cc), Some(last)) = (cache, blocks.last_mut()) {
                last["cache_control"] = cc.clone();
            }
            Value::Array(blocks)
        }
        other => Value::Array(text_blocks(other, cache)),
    }
}

/// One OpenAI user content part → one Anthropic block.
fn user_part(p: &Value) -> Option<Value> {
    let mut block = match p.get("type").and_then(Value::as_str)? {
        "text" => json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))}),
        "image_url" => {
            let url = p
                .get("image_url")
                .and_then(|u| u.get("url").or(Some(u)))
                .and_then(Value::as_str)?;
            media_block(url, None)
        }
        "file" => {
            let f = p.get("file")?;
            match (
                f.get("file_data"),
                f.get("file_url").or_else(|| f.get("url")),
            ) {
                (Some(Value::String(d)), _) => media_block(d, Some("document")),
                (_, Some(Value::String(u))) => media_block(u, Some("document")),
                _ => return None,
            }
        }
        "document" | "image" | "tool_result" | "tool_use" => p.clone(),
        _ => return None,
    };
    if let Some(cc) = p.get("cache_control") {
        block["cache_control"] = cc.clone();
    }
    Some(block)
}

/// A data URL becomes a base64 source, any other URL a url source; PDFs are documents.
fn media_block(url: &str, kind: Option<&str>) -> Value {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, payload)) = rest.split_once(',') {
            let media_type = meta.split(';').next().unwrap_or("application/octet-stream");
            let kind = kind.unwrap_or(if media_type == "application/pdf" {
                "document"
            } else {
                "image"
            });
            if media_type == "text/plain" && !meta.contains("base64") {
                return json!({"type": kind, "source": {"type": "text", "media_type": media_type, "data": payload}});
            }
            return json!({"type": kind, "source": {"type": "base64", "media_type": media_type, "data": payload}});
        }
    }
    let pdf = url
        .split(['?', '#'])
        .next()
        .is_some_and(|u| u.to_ascii_lowercase().ends_with(".pdf"));
    let kind = kind.unwrap_or(if pdf { "document" } else { "image" });
    json!({"type": kind, "source": {"type": "url", "url": url}})
}

fn assistant_turn(m: &Value, cache: Option<&Value>) -> Value {
    let mut blocks: Vec<Value> = match m.get("content") {
        Some(Value::String(s)) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(_)) => text_blocks(m.get("content"), None),
        _ => Vec::new(),
    };
    for call in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function");
        let input = f
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        blocks.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(json!("")),
            "name": f.and_then(|f| f.get("name")).cloned().unwrap_or(json!("")),
            "input": input,
        }));
    }
    if let (Some(cc), Some(last)) = (cache, blocks.last_mut()) {
        last["cache_control"] = cc.clone();
    }
    json!({"role": "assistant", "content": blocks})
}

// ---------------------------------------------------------------------------------------------
// Response: Anthropic → OpenAI
// ---------------------------------------------------------------------------------------------

/// Anthropic's stop reason as an OpenAI finish reason (strict mode), or as it is.
fn finish_reason(raw: &str, strict: bool) -> String {
    if !strict {
        return raw.to_string();
    }
    match raw {
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        "refusal" => "content_filter",
        _ => "stop",
    }
    .to_string()
}

/// Token counts as Anthropic reports them.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
}

impl Counts {
    fn read(&mut self, u: &Value) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        if let Some(v) = n("input_tokens") {
            self.input = v;
        }
        if let Some(v) = n("output_tokens") {
            self.output = v;
        }
        if let Some(v) = n("cache_read_input_tokens") {
            self.cache_read = v;
        }
        if let Some(v) = n("cache_creation_input_tokens") {
            self.cache_creation = v;
        }
    }

    /// Normalised: input includes the cached reads and writes (OpenAI and OpenTelemetry both
    /// count them as prompt tokens), which are also reported on their own.
    fn usage(&self) -> Usage {
        Usage {
            input: self.input + self.cache_read + self.cache_creation,
            output: self.output,
            cached_input: self.cache_read,
            cache_write: self.cache_creation,
            reasoning: 0,
        }
    }

    fn openai(&self) -> Value {
        let u = self.usage();
        serde_json::to_value(u.openai().with_cache_counts(&u)).unwrap_or_default()
    }
}

/// Translates a whole Anthropic message into a `chat.completion`; `None` for a body that is
/// not a message (relayed as it is).
/// What the translators keep of `ResponseOptions` (owned: a translator outlives the request's
/// borrowed fields).
#[derive(Debug, Clone, Copy)]
struct Opts {
    strict: bool,
    created: u64,
}

impl From<&ResponseOptions<'_>> for Opts {
    fn from(o: &ResponseOptions<'_>) -> Self {
        Opts {
            strict: o.strict,
            created: o.created,
        }
    }
}

/// An Anthropic message as read for translation: strings borrowed from the body, tool inputs
/// and other blocks kept as raw JSON text (no document tree is built).
#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(borrow, default)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    model: Cow<'a, str>,
    #[serde(borrow)]
    content: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct OutCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    provider: &'static str,
    choices: [OutChoice<'a>; 1],
    usage: crate::types::usage::OpenAiUsage,
}

#[derive(Serialize)]
struct OutChoice<'a> {
    index: u32,
    message: OutMessage<'a>,
    logprobs: Option<()>,
    finish_reason: String,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    content_blocks: Vec<&'a RawValue>,
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: Cow<'a, str>,
    /// The tool input's JSON text, as a string.
    arguments: &'a str,
}

/// Translates a whole Anthropic message (its JSON text) into a `chat.completion`, serialised
/// straight from borrowed parts; `None` for a body that is not a message (relayed as it is).
fn to_chat_completion(body: &[u8], opts: &Opts) -> Option<(Vec<u8>, Counts, String)> {
    let msg: WireMessage<'_> = serde_json::from_slice(body).ok()?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut other_blocks = Vec::new();
    for raw in &msg.content {
        let Ok(block) = serde_json::from_str::<WireBlock<'_>>(raw.get()) else {
            continue;
        };
        match block.kind.as_ref() {
            "text" => {
                text.push_str(block.text.as_deref().unwrap_or(""));
                // Non-strict answers list every non-tool block, text included, as Portkey's do.
                other_blocks.push(*raw);
            }
            "tool_use" => tool_calls.push(OutToolCall {
                id: block.id.unwrap_or_default(),
                kind: "function",
                function: OutFunction {
                    name: block.name.unwrap_or_default(),
                    arguments: block.input.map_or("{}", RawValue::get),
                },
            }),
            _ => other_blocks.push(*raw),
        }
    }
    let u = msg.usage.unwrap_or_default();
    let counts = Counts {
        input: u.input_tokens,
        output: u.output_tokens,
        cache_read: u.cache_read_input_tokens.unwrap_or(0),
        cache_creation: u.cache_creation_input_tokens.unwrap_or(0),
    };
    let raw = msg.stop_reason.as_deref().unwrap_or("end_turn");
    let mut finish = finish_reason(raw, opts.strict);
    if opts.strict && !tool_calls.is_empty() && finish == "stop" {
        finish = "tool_calls".into();
    }
    if opts.strict {
        other_blocks.clear();
    }
    let usage = counts.usage();
    let out = OutCompletion {
        id: &msg.id,
        object: "chat.completion",
        created: opts.created,
        model: &msg.model,
        provider: SLUG,
        choices: [OutChoice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content: text,
                tool_calls,
                content_blocks: other_blocks,
            },
            logprobs: None,
            finish_reason: finish,
        }],
        usage: usage.openai().with_cache_counts(&usage),
    };
    let bytes = serde_json::to_vec(&out).ok()?;
    Some((bytes, counts, msg.model.into_owned()))
}

/// A non-streamed chat answer: held until complete, then translated whole.
struct ChatJson {
    opts: Opts,
    body: BytesMut,
    /// Too large to translate: relayed as it came, in order.
    raw: bool,
    /// The translated answer, for access logs with bodies.
    out: Option<Bytes>,
    counts: Option<Counts>,
    model: Option<String>,
}

/// The longest answer held for translation (larger ones are relayed as they are).
const MAX_BODY: usize = 8 * 1024 * 1024;

impl ChatJson {
    fn new(opts: Opts) -> Self {
        ChatJson {
            opts,
            body: BytesMut::new(),
            raw: false,
            out: None,
            counts: None,
            model: None,
        }
    }
}

impl Translator for ChatJson {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.raw {
            return Some(chunk);
        }
        if self.body.len() + chunk.len() > MAX_BODY {
            // Give up translating: what is held, then this chunk, go out as they came.
            self.raw = true;
            let mut held = std::mem::take(&mut self.body);
            held.extend_from_slice(&chunk);
            return Some(held.freeze());
        }
        self.body.extend_from_slice(&chunk);
        None
    }

    fn finish(&mut self) -> Option<Bytes> {
        if self.raw {
            return None;
        }
        let body = std::mem::take(&mut self.body);
        match to_chat_completion(&body, &self.opts) {
            Some((out, counts, model)) => {
                self.model = Some(model);
                self.counts = Some(counts);
                let bytes = Bytes::from(out);
                self.out = Some(bytes.clone());
                Some(bytes)
            }
            None => (!body.is_empty()).then(|| body.freeze()),
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.counts.map(|c| c.usage())
    }

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn may_rewrite(&self) -> bool {
        true
    }

    fn buffers_whole(&self) -> bool {
        true
    }

    fn content_type(&self) -> Option<&'static str> {
        (!self.raw).then_some("application/json")
    }

    fn json_body(&self) -> Option<Value> {
        self.out
            .as_ref()
            .and_then(|b| serde_json::from_slice(b).ok())
    }
}

/// The event name and JSON payload of one SSE event.
fn event_json(event: &Bytes) -> Option<Value> {
    let payload = data(event)?;
    serde_json::from_slice(&payload).ok()
}

/// A streamed chat answer: Anthropic's events become OpenAI `chat.completion.chunk`s as they
/// arrive — the role on the first, text and tool-call deltas with each tool call's own index,
/// the finish reason and usage on the last — then `[DONE]`. An `error` event ends the stream
/// with an error event the client can see.
struct ChatStream {
    opts: Opts,
    splitter: SseSplitter,
    id: String,
    model: String,
    counts: Counts,
    /// Anthropic content-block index → OpenAI tool-call index, for tool_use blocks.
    tools: Vec<(u64, usize)>,
    events: u32,
    done: bool,
}

impl ChatStream {
    fn new(opts: Opts) -> Self {
        ChatStream {
            opts,
            splitter: SseSplitter::default(),
            id: String::new(),
            model: String::new(),
            counts: Counts::default(),
            tools: Vec::new(),
            events: 0,
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<String>, usage: Option<Value>) -> Bytes {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.opts.created,
            "model": self.model,
            "provider": SLUG,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        Bytes::from(format!("data: {c}\n\n"))
    }

    /// Translates one Anthropic event; appends what the client gets to `out`.
    fn on_event(&mut self, event: &Value, out: &mut BytesMut) {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "message_start" => {
                let msg = event.get("message").cloned().unwrap_or(Value::Null);
                self.id = msg
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                self.model = msg
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if let Some(u) = msg.get("usage") {
                    self.counts.read(u);
                }
                out.extend_from_slice(&self.chunk(
                    json!({"role": "assistant", "content": ""}),
                    None,
                    None,
                ));
            }
            "content_block_start" => {
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = event.get("content_block").cloned().unwrap_or(Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let k = self.tools.len();
                        self.tools.push((index, k));
                        self.events += 1;
                        out.extend_from_slice(&self.chunk(
                            json!({"tool_calls": [{
                                "index": k,
                                "id": block.get("id").cloned().unwrap_or(json!("")),
                                "type": "function",
                                "function": {"name": block.get("name").cloned().unwrap_or(json!("")), "arguments": ""},
                            }]}),
                            None,
                            None,
                        ));
                    }
                    Some("text") => {
                        let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            self.events += 1;
                            out.extend_from_slice(&self.chunk(
                                json!({"content": text}),
                                None,
                                None,
                            ));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = event.get("delta").cloned().unwrap_or(Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        self.events += 1;
                        let text = delta.get("text").cloned().unwrap_or(json!(""));
                        out.extend_from_slice(&self.chunk(json!({"content": text}), None, None));
                    }
                    Some("input_json_delta") => {
                        let Some(&(_, k)) = self.tools.iter().find(|(i, _)| *i == index) else {
                            return;
                        };
                        self.events += 1;
                        let partial = delta.get("partial_json").cloned().unwrap_or(json!(""));
                        out.extend_from_slice(&self.chunk(
                            json!({"tool_calls": [{"index": k, "function": {"arguments": partial}}]}),
                            None,
                            None,
                        ));
                    }
                    Some(_) if !self.opts.strict => {
                        // Thinking and other deltas, for clients that accept provider fields.
                        out.extend_from_slice(&self.chunk(
                            json!({"content_blocks": [{"index": index, "delta": delta}]}),
                            None,
                            None,
                        ));
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = event.get("usage") {
                    self.counts.read(u);
                }
                let raw = event
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                let mut finish = finish_reason(raw, self.opts.strict);
                if self.opts.strict && !self.tools.is_empty() && finish == "stop" {
                    finish = "tool_calls".into();
                }
                out.extend_from_slice(&self.chunk(
                    json!({}),
                    Some(finish),
                    Some(self.counts.openai()),
                ));
            }
            "message_stop" => {
                self.done = true;
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            "error" => {
                self.done = true;
                // The event's JSON is Anthropic's error body: the shared envelope reads it.
                let body = crate::providers::error_envelope::envelope(
                    SLUG,
                    500,
                    event.to_string().as_bytes(),
                );
                out.extend_from_slice(b"event: error\ndata: ");
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\n\n");
            }
            _ => {}
        }
    }
}

impl Translator for ChatStream {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let mut out = BytesMut::new();
        for event in self.splitter.push(&chunk) {
            if self.done {
                break;
            }
            if let Some(v) = event_json(&event) {
                self.on_event(&v, &mut out);
            }
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    fn finish(&mut self) -> Option<Bytes> {
        let mut out = BytesMut::new();
        if let Some(rest) = self.splitter.finish() {
            if let Some(v) = event_json(&rest) {
                self.on_event(&v, &mut out);
            }
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    fn usage(&self) -> Option<Usage> {
        (!self.id.is_empty()).then(|| self.counts.usage())
    }

    fn model(&self) -> Option<&str> {
        (!self.model.is_empty()).then_some(self.model.as_str())
    }

    fn events(&self) -> u32 {
        self.events
    }

    fn overflowed(&self) -> bool {
        self.splitter.overflowed()
    }

    fn may_rewrite(&self) -> bool {
        true
    }

    fn content_type(&self) -> Option<&'static str> {
        Some("text/event-stream")
    }
}

/// The meter of a native `/v1/messages` answer (JSON or Anthropic SSE), passed through as it
/// is; Bedrock's Anthropic models feed it the events they unwrap.
pub fn native_meter(sse: bool) -> Box<dyn Translator> {
    Box::new(Native::new(sse))
}

/// The native `/v1/messages` route: the answer goes to the client byte for byte; usage and
/// model are read on the way (from the message, or from `message_start` / `message_delta`).
struct Native {
    sse: bool,
    splitter: SseSplitter,
    body: BytesMut,
    counts: Option<Counts>,
    model: Option<String>,
    events: u32,
}

impl Native {
    fn new(sse: bool) -> Self {
        Native {
            sse,
            splitter: SseSplitter::default(),
            body: BytesMut::new(),
            counts: None,
            model: None,
            events: 0,
        }
    }

    fn read(&mut self, v: &Value) {
        let msg = v.get("message").unwrap_or(v);
        if self.model.is_none() {
            self.model = msg.get("model").and_then(Value::as_str).map(String::from);
        }
        if let Some(u) = msg.get("usage").or_else(|| v.get("usage")) {
            self.counts.get_or_insert_with(Counts::default).read(u);
        }
    }
}

impl Translator for Native {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.sse {
            for event in self.splitter.push(&chunk) {
                if let Some(v) = event_json(&event) {
                    if v.get("type").and_then(Value::as_str) == Some("content_block_delta") {
                        self.events += 1;
                    }
                    self.read(&v);
                }
            }
        } else if self.body.len() + chunk.len() <= MAX_BODY {
            self.body.extend_from_slice(&chunk);
        }
        Some(chunk)
    }

    fn finish(&mut self) -> Option<Bytes> {
        if !self.sse {
            if let Ok(v) = serde_json::from_slice::<Value>(&self.body) {
                self.read(&v);
            }
        }
        None
    }

    fn usage(&self) -> Option<Usage> {
        self.counts.map(|c| c.usage())
    }

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn events(&self) -> u32 {
        self.events
    }

    fn may_rewrite(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
