//! A Responses request and its answer in chat's terms, through the translator that serves the
//! Responses API on chat providers: `instructions` and `input` become the chat messages,
//! function tools chat tools, and the response's `output` items (which have the input items'
//! shapes) the assistant message.

use super::Chat;
use crate::providers::responses::{items_as_messages, to_chat};
use serde_json::{Map, Value};
use std::borrow::Cow;

pub(super) fn chat(request: &Value, answer: &Value) -> Result<Chat<'static>, &'static str> {
    // A stream that fails after it started still answered 200: its response says so.
    if matches!(
        answer.get("status").and_then(Value::as_str),
        Some("failed" | "cancelled")
    ) {
        return Err("failed");
    }
    let Some(output) = answer.get("output").and_then(Value::as_array) else {
        return Err("no_answer");
    };
    let items = items_as_messages(output).map_err(|_| "unsupported")?;
    let reply = one_reply(items).ok_or("no_answer")?;
    let Some(body) = request.as_object().filter(|b| b.contains_key("input")) else {
        return Err("no_messages");
    };
    // `store` and `background` say how OpenAI keeps or runs a response, not what was said; the
    // translator refuses them (a chat provider cannot honour them), the export does not need
    // them. Everything else it refuses (earlier turns held by OpenAI, hosted tools) would
    // leave the conversation incomplete, and the conversation is left out.
    let mut body = body.clone();
    body.remove("store");
    body.remove("background");
    let bytes = serde_json::to_vec(&body).map_err(|_| "no_messages")?;
    let translated = to_chat(&bytes, false).map_err(|_| "unsupported")?;
    let mut chat: Map<String, Value> =
        serde_json::from_slice(&translated).map_err(|_| "unsupported")?;
    let Some(Value::Array(messages)) = chat.remove("messages") else {
        return Err("no_messages");
    };
    Ok(Chat {
        messages: Cow::Owned(messages),
        tools: chat.remove("tools").map(Cow::Owned),
        reply: Cow::Owned(reply),
    })
}

/// The assistant messages of an answer's output as one, as a chat answer has it: the text
/// joined, the tool calls in order. `None` when the output says nothing.
fn one_reply(messages: Vec<Value>) -> Option<Value> {
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    for m in messages {
        let Value::Object(mut m) = m else { continue };
        if let Some(Value::String(t)) = m.remove("content") {
            text.get_or_insert_with(String::new).push_str(&t);
        }
        if let Some(Value::Array(c)) = m.remove("tool_calls") {
            calls.extend(c);
        }
    }
    if text.is_none() && calls.is_empty() {
        return None;
    }
    let mut reply = Map::new();
    reply.insert("role".into(), Value::String("assistant".into()));
    reply.insert("content".into(), text.map_or(Value::Null, Value::String));
    if !calls.is_empty() {
        reply.insert("tool_calls".into(), Value::Array(calls));
    }
    Some(Value::Object(reply))
}
