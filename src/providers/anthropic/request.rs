//! OpenAI chat requests into Anthropic's Messages API.

use super::*;

/// Translates an OpenAI chat request into an Anthropic Messages request.
pub(crate) fn to_messages(req: &Value, default_max_tokens: u64) -> Result<Value, GatewayError> {
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
pub(super) fn translate_tool(tool: &Value) -> Value {
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
pub(super) fn translate_messages(
    messages: &[Value],
) -> Result<(Vec<Value>, Vec<Value>), GatewayError> {
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

pub(super) fn is_tool_results(turn: &Value) -> bool {
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
pub(super) fn text_blocks(content: Option<&Value>, cache: Option<&Value>) -> Vec<Value> {
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

pub(super) fn user_content(m: &Value, cache: Option<&Value>) -> Value {
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
pub(super) fn user_part(p: &Value) -> Option<Value> {
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
pub(super) fn media_block(url: &str, kind: Option<&str>) -> Value {
    if let Some(d) = DataUrl::parse(url) {
        let kind = kind.unwrap_or(if d.mime == "application/pdf" {
            "document"
        } else {
            "image"
        });
        let source = if d.mime == "text/plain" && !d.base64 {
            "text"
        } else {
            "base64"
        };
        return json!({"type": kind, "source": {"type": source, "media_type": d.mime, "data": d.payload}});
    }
    let pdf = url
        .split(['?', '#'])
        .next()
        .is_some_and(|u| u.to_ascii_lowercase().ends_with(".pdf"));
    let kind = kind.unwrap_or(if pdf { "document" } else { "image" });
    json!({"type": kind, "source": {"type": "url", "url": url}})
}

pub(super) fn assistant_turn(m: &Value, cache: Option<&Value>) -> Value {
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
