//! Anthropic Messages requests into OpenAI chat requests, which the target's own chat
//! translator then takes as from any OpenAI client.

use crate::error::GatewayError;
use serde_json::{json, Map, Value};

fn invalid(why: impl Into<String>) -> GatewayError {
    GatewayError::InvalidBody(why.into())
}

/// What the translation needs to know about the target.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Target {
    /// The provider's chat API takes `reasoning_effort` (see [`effort`]).
    pub reasoning: bool,
    /// Ask the stream for its usage (`stream_options.include_usage`): the final
    /// `message_delta` carries it.
    pub stream_usage: bool,
}

/// `thinking.budget_tokens` as OpenAI's `reasoning_effort`. The thresholds split Anthropic's
/// usual budgets (1024 minimum, tens of thousands for hard tasks) into three bands, the
/// nearest of OpenAI's three levels: below 4096 is `low`, below 16384 `medium`, else `high`.
pub(crate) fn effort(budget_tokens: u64) -> &'static str {
    match budget_tokens {
        0..=4095 => "low",
        4096..=16383 => "medium",
        _ => "high",
    }
}

/// Translates a Messages request (already parsed) into an OpenAI chat request.
pub(crate) fn to_chat(body: &Map<String, Value>, target: Target) -> Result<Value, GatewayError> {
    let mut out = Map::new();
    if let Some(model) = body.get("model") {
        out.insert("model".into(), model.clone());
    }
    let mut messages = Vec::new();
    if let Some(system) = body.get("system") {
        let text = text_of(system, "system")?;
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let turns = match body.get("messages") {
        Some(Value::Array(turns)) => turns,
        _ => return Err(invalid("messages: must be a list")),
    };
    for (i, turn) in turns.iter().enumerate() {
        let role = turn.get("role").and_then(Value::as_str).unwrap_or("");
        let content = turn.get("content").unwrap_or(&Value::Null);
        match role {
            "user" => user_turn(content, i, &mut messages)?,
            "assistant" => messages.push(assistant_turn(content, i)?),
            other => return Err(invalid(format!("messages[{i}].role: unknown {other:?}"))),
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    let thinking = body
        .get("thinking")
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("enabled"))
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64);
    let reasoning = thinking.filter(|_| target.reasoning);
    if let Some(max) = body.get("max_tokens") {
        // Reasoning models take only `max_completion_tokens` (which counts their reasoning);
        // every other chat API still reads `max_tokens`.
        let key = if reasoning.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        out.insert(key.into(), max.clone());
    }
    if let Some(budget) = reasoning {
        out.insert("reasoning_effort".into(), Value::from(effort(budget)));
    }
    for key in ["temperature", "top_p", "stream"] {
        if let Some(v) = body.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(stop) = body.get("stop_sequences") {
        out.insert("stop".into(), stop.clone());
    }
    if let Some(user) = body
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .filter(|v| v.is_string())
    {
        out.insert("user".into(), user.clone());
    }
    let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
    if let Some(options) = body.get("stream_options") {
        // The gateway's own `include_usage`, spliced into the client's body.
        out.insert("stream_options".into(), options.clone());
    } else if streamed && target.stream_usage {
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(tools) = body.get("tools") {
        out.insert("tools".into(), tools_of(tools)?);
    }
    if let Some(choice) = body.get("tool_choice") {
        let (choice, parallel) = tool_choice(choice)?;
        if let Some(choice) = choice {
            out.insert("tool_choice".into(), choice);
        }
        if parallel == Some(false) {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    Ok(Value::Object(out))
}

/// A string, or a list of text blocks joined (the system prompt, a tool result's content).
fn text_of(v: &Value, what: &str) -> Result<String, GatewayError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut text = String::new();
            for b in blocks {
                if let Some(t) = b.get("text").and_then(Value::as_str) {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(t);
                }
            }
            Ok(text)
        }
        Value::Null => Ok(String::new()),
        _ => Err(invalid(format!(
            "{what}: must be a string or a list of blocks"
        ))),
    }
}

/// An `image` block as an OpenAI `image_url` part: base64 sources become data URLs.
fn image_part(block: &Value, at: &str) -> Result<Value, GatewayError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let s = |k: &str| source.get(k).and_then(Value::as_str);
    let url = match s("type") {
        Some("base64") => {
            let (Some(mime), Some(data)) = (s("media_type"), s("data")) else {
                return Err(invalid(format!("{at}.source: needs media_type and data")));
            };
            format!("data:{mime};base64,{data}")
        }
        Some("url") => s("url")
            .ok_or_else(|| invalid(format!("{at}.source.url: missing")))?
            .to_string(),
        other => {
            return Err(invalid(format!(
                "{at}.source.type: {other:?} is not supported here (base64 or url)"
            )))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// Text and image parts as an OpenAI `content`: a string when it is text only (every chat API
/// takes that; not all take a list), else a list of parts.
fn content_of(parts: Vec<Value>) -> Value {
    if parts.iter().all(|p| p["type"] == "text") {
        let mut text = String::new();
        for p in &parts {
            if let Some(t) = p["text"].as_str() {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(t);
            }
        }
        return Value::String(text);
    }
    Value::Array(parts)
}

/// A user turn: each `tool_result` becomes a `tool` message, in order, before the turn's
/// remaining text and images (OpenAI requires tool answers right after the assistant's calls).
fn user_turn(content: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(invalid(format!(
                "messages[{i}].content: must be a string or a list"
            )))
        }
    };
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                parts.push(json!({"type": "text", "text": text}));
            }
            Some("image") => parts.push(image_part(block, &at)?),
            Some("tool_result") => {
                let id = block
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let mut text = text_of(block.get("content").unwrap_or(&Value::Null), &at)?;
                // OpenAI's tool message has no error flag: the model reads it in the text.
                if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                    text.insert_str(0, "Error: ");
                }
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            // Earlier turns' reasoning has no place in an OpenAI request.
            Some("thinking") | Some("redacted_thinking") => {}
            other => {
                return Err(invalid(format!(
                    "{at}.type: {other:?} is not supported by this provider"
                )))
            }
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": content_of(parts)}));
    }
    Ok(())
}

/// An assistant turn: its text as `content`, its `tool_use` blocks as `tool_calls`.
fn assistant_turn(content: &Value, i: usize) -> Result<Value, GatewayError> {
    let blocks = match content {
        Value::String(s) => return Ok(json!({"role": "assistant", "content": s})),
        Value::Array(blocks) => blocks,
        _ => {
            return Err(invalid(format!(
                "messages[{i}].content: must be a string or a list"
            )))
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": block.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": block.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": input.to_string(),
                    },
                }));
            }
            Some("thinking") | Some("redacted_thinking") => {}
            other => {
                return Err(invalid(format!(
                    "messages[{i}].content[{j}].type: {other:?} is not supported by this provider"
                )))
            }
        }
    }
    let mut m = json!({"role": "assistant"});
    m["content"] = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    Ok(m)
}

/// Client tools as function tools. Anthropic's server tools (web search, code execution...)
/// run on Anthropic's side and have no equivalent here.
fn tools_of(tools: &Value) -> Result<Value, GatewayError> {
    let Value::Array(tools) = tools else {
        return Err(invalid("tools: must be a list"));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("custom");
        let Some(schema) = t.get("input_schema").filter(|_| kind == "custom") else {
            return Err(invalid(format!(
                "tools[{i}]: {kind:?} is a server tool, not supported by this provider"
            )));
        };
        let mut function = json!({
            "name": t.get("name").cloned().unwrap_or(Value::Null),
            "parameters": schema,
        });
        if let Some(d) = t.get("description") {
            function["description"] = d.clone();
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(Value::Array(out))
}

/// `tool_choice` as OpenAI's, and `disable_parallel_tool_use` as `parallel_tool_calls`.
fn tool_choice(choice: &Value) -> Result<(Option<Value>, Option<bool>), GatewayError> {
    let parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|d| !d);
    let mapped = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => Value::from("auto"),
        Some("any") => Value::from("required"),
        Some("none") => Value::from("none"),
        Some("tool") => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("tool_choice.name: missing"))?;
            json!({"type": "function", "function": {"name": name}})
        }
        other => return Err(invalid(format!("tool_choice.type: unknown {other:?}"))),
    };
    Ok((Some(mapped), parallel))
}
