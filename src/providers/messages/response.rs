//! OpenAI chat answers (what every chat translator gives) into Anthropic messages.

use crate::stream::holder::{FromChat, OverChat};
use crate::stream::Translator;
use crate::types::usage::Usage;
use serde_json::{json, Map, Value};

/// A whole answer is held up to this size, as the providers' own whole-answer translators do;
/// past it, it goes out as it came.
const LIMIT: usize = 64 * 1024 * 1024;

/// An OpenAI finish reason (or a provider's own, relayed when strict compliance is off) as
/// Anthropic's `stop_reason`. OpenAI does not say whether a stop sequence ended the turn, so
/// `stop` is `end_turn` unless the provider itself says `stop_sequence`.
pub(crate) fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" | "max_tokens" | "MAX_TOKENS" => "max_tokens",
        "tool_calls" | "function_call" | "tool_use" | "TOOL_CALL" => "tool_use",
        "stop_sequence" | "STOP_SEQUENCE" => "stop_sequence",
        "content_filter" | "refusal" | "SAFETY" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's usage object from normalised usage: Anthropic's `input_tokens` excludes the
/// tokens read from or written to the prompt cache, which it reports on their own.
pub(crate) fn usage_json(u: &Usage) -> Value {
    let mut v = json!({
        "input_tokens": u.input.saturating_sub(u.cached_input).saturating_sub(u.cache_write),
        "output_tokens": u.output,
    });
    if u.cached_input > 0 {
        v["cache_read_input_tokens"] = Value::from(u.cached_input);
    }
    if u.cache_write > 0 {
        v["cache_creation_input_tokens"] = Value::from(u.cache_write);
    }
    v
}

/// The message id: the provider's completion id under Anthropic's `msg_` prefix.
pub(crate) fn message_id(id: Option<&str>) -> String {
    match id {
        Some(id) if id.starts_with("msg_") => id.to_string(),
        Some(id) if !id.is_empty() => format!("msg_{id}"),
        _ => "msg_portgate".to_string(),
    }
}

/// A tool call's arguments as the `input` object; text that is not a JSON object (a model's
/// malformed arguments) is kept under `arguments` rather than lost.
pub(crate) fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"arguments": arguments}),
    }
}

/// An OpenAI chat completion as an Anthropic message; `None` when it is not one.
pub(crate) fn to_message(body: &[u8], usage: Option<Usage>, model: Option<&str>) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let choice = v.get("choices")?.get(0)?;
    let message = choice.get("message")?;
    let mut content = Vec::new();
    if let Some(text) = message.get("content").and_then(Value::as_str) {
        if !text.is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function").unwrap_or(&Value::Null);
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or(Value::Null),
            "name": f.get("name").cloned().unwrap_or(Value::Null),
            "input": tool_input(args),
        }));
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let usage = usage.unwrap_or_default();
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .or(model)
        .unwrap_or("");
    let mut out = Map::new();
    out.insert(
        "id".into(),
        Value::from(message_id(v.get("id").and_then(Value::as_str))),
    );
    out.insert("type".into(), Value::from("message"));
    out.insert("role".into(), Value::from("assistant"));
    out.insert("model".into(), Value::from(model));
    out.insert("content".into(), Value::Array(content));
    out.insert(
        "stop_reason".into(),
        finish.map_or(Value::Null, |f| Value::from(stop_reason(f))),
    );
    out.insert("stop_sequence".into(), Value::Null);
    out.insert("usage".into(), usage_json(&usage));
    Some(Value::Object(out))
}

/// A whole answer's conversion, at its end: the Anthropic message of the chat answer, naming
/// the model the chat translator read (or the one requested).
pub(crate) struct ToMessage {
    requested: Option<String>,
}

impl FromChat for ToMessage {
    fn convert(
        &mut self,
        chat: &[u8],
        usage: Option<Usage>,
        model: Option<&str>,
    ) -> Option<Vec<u8>> {
        let message = to_message(chat, usage, model.or(self.requested.as_deref()))?;
        serde_json::to_vec(&message).ok()
    }
}

/// A whole answer: the target's translator gives OpenAI's format (and meters it), this holds
/// it and converts it at the end.
pub(crate) fn whole(inner: Box<dyn Translator>, requested: Option<&str>) -> OverChat<ToMessage> {
    let requested = requested.map(str::to_string);
    OverChat::new(inner, ToMessage { requested }, LIMIT)
}
