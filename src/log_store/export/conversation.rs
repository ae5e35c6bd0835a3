//! A stored request and its answer as one fine-tuning line, in OpenAI's chat format
//! (`{"messages": [...], "tools": [...]}`) whatever API the client spoke. A chat request is
//! read as it is; a Responses or Messages request is translated into the chat request the
//! gateway sends a chat provider for it, by the providers' own translators, and its answer into
//! the assistant message. This happens when the export reads the store, never on the request
//! path (which only copies bytes).

use super::super::record::{Api, StoredRequest};
use serde_json::{Map, Value};
use std::borrow::Cow;

mod messages;
mod responses;
#[cfg(test)]
mod tests;

/// A conversation in chat's terms, before it is checked and written. Borrowed from the stored
/// bodies when they are chat already.
struct Chat<'a> {
    /// The request's messages.
    messages: Cow<'a, [Value]>,
    tools: Option<Cow<'a, Value>>,
    /// The answer's assistant message.
    reply: Cow<'a, Value>,
}

/// The fields of a message OpenAI's fine-tuning format has.
const MESSAGE_FIELDS: &[&str] = &["role", "content", "name", "tool_calls", "tool_call_id"];

fn message(m: &Value) -> Option<Value> {
    let m = m.as_object()?;
    let mut out = Map::new();
    for k in MESSAGE_FIELDS {
        if let Some(v) = m.get(*k) {
            out.insert((*k).to_string(), v.clone());
        }
    }
    // The fine-tuning format has no `developer` role: it is the system prompt.
    if out.get("role").and_then(Value::as_str) == Some("developer") {
        out.insert("role".into(), Value::String("system".into()));
    }
    out.get("role")?.as_str()?;
    Some(Value::Object(out))
}

/// The fine-tuning line of a stored request of `api`, or why it has none.
pub(super) fn conversation(api: Api, r: &StoredRequest) -> Result<Value, &'static str> {
    let (Some(request), Some(answer)) = (&r.request, &r.answer) else {
        return Err("no_bodies");
    };
    let chat = match api {
        Api::Chat => chat(request, answer)?,
        Api::Responses => responses::chat(request, answer)?,
        Api::Messages => messages::chat(request, answer)?,
    };
    line(&chat)
}

/// A chat request and its chat completion.
fn chat<'a>(request: &'a Value, answer: &'a Value) -> Result<Chat<'a>, &'static str> {
    // The legacy route carries the request under `params`.
    let params = request.get("params").unwrap_or(request);
    let Some(messages) = params.get("messages").and_then(Value::as_array) else {
        return Err("no_messages");
    };
    let Some(reply) = answer
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("message"))
    else {
        return Err("no_answer");
    };
    Ok(Chat {
        messages: Cow::Borrowed(messages),
        tools: params.get("tools").map(Cow::Borrowed),
        reply: Cow::Borrowed(reply),
    })
}

fn line(chat: &Chat<'_>) -> Result<Value, &'static str> {
    let Some(mut reply) = message(&chat.reply) else {
        return Err("no_answer");
    };
    let mut messages: Vec<Value> = chat.messages.iter().filter_map(message).collect();
    if messages.len() != chat.messages.len() {
        return Err("no_messages");
    }
    if let Some(m) = reply.as_object_mut() {
        m.insert("role".into(), Value::String("assistant".into()));
        // An answer with tool calls and no text keeps the calls only (some translators write
        // the missing text as null, others as "").
        let no_text = m
            .get("content")
            .is_some_and(|c| c.is_null() || c.as_str() == Some(""));
        if no_text && m.contains_key("tool_calls") {
            m.remove("content");
        }
    }
    messages.push(reply);
    let mut line = Map::new();
    line.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = chat.tools.as_deref().filter(|t| t.is_array()) {
        line.insert("tools".into(), tools.clone());
    }
    Ok(Value::Object(line))
}
