//! OpenAI requests into Cohere's v2 chat and embed requests.

use super::*;

pub(super) fn bad(message: impl Into<String>) -> GatewayError {
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
pub(super) fn message(m: &Value) -> Result<Value, GatewayError> {
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
pub(super) fn text_content(content: &Value) -> Result<Value, GatewayError> {
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
pub(super) fn user_content(content: &Value) -> Result<Value, GatewayError> {
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
pub(super) fn tool_call(c: &Value) -> Result<Value, GatewayError> {
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
pub(super) fn tool(t: &Value) -> Result<Value, GatewayError> {
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
