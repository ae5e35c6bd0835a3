//! OpenAI chat requests into Bedrock's: the Converse API's body, or Anthropic's own body for
//! InvokeModel on Claude models; model ids encoded for the path.

use super::*;

/// A model id or ARN as one path segment (`anthropic.claude-3-5-sonnet-20240620-v1:0`,
/// `arn:aws:bedrock:...:inference-profile/...`): everything but unreserved characters is
/// percent-encoded, as AWS's SDKs do.
pub(crate) fn encode_model(model: &str) -> String {
    let mut out = String::with_capacity(model.len() + 8);
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Anthropic model ids on Bedrock, plain or through a cross-region inference profile
/// (`us.anthropic.…`) or its ARN.
pub(super) fn is_anthropic_model(model: &str) -> bool {
    model.starts_with("anthropic.")
        || model
            .split_once('.')
            .is_some_and(|(_, rest)| rest.starts_with("anthropic."))
        || (model.starts_with("arn:") && model.contains("anthropic."))
}

/// The Anthropic Messages body as Bedrock's InvokeModel takes it: the model goes in the path,
/// streaming in the action, and the API version in the body (`bedrock-2023-05-31` unless the
/// client gave one). Everything else (`cache_control` markers, tools, thinking) is untouched.
pub(super) fn invoke_body(body: &mut Map<String, Value>) -> Value {
    body.remove("model");
    body.remove("stream");
    // The gateway's own usage request is for OpenAI-format streams; Anthropic reports usage.
    body.remove("stream_options");
    body.entry("anthropic_version")
        .or_insert_with(|| json!("bedrock-2023-05-31"));
    Value::Object(std::mem::take(body))
}

/// OpenAI chat completion request → Converse request.
pub(crate) fn converse_request(body: &Map<String, Value>) -> Result<Value, GatewayError> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages must be an array"))?;
    let mut system = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.extend(text_blocks(m.get("content")));
                continue;
            }
            "user" => ("user", user_blocks(m.get("content"), i)?),
            "assistant" => ("assistant", assistant_blocks(m)?),
            "tool" | "function" => ("user", vec![tool_result(m)]),
            other => {
                return Err(bad(format!(
                    "messages[{i}].role {other:?} is not supported"
                )))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        // Converse wants turns that alternate: consecutive ones of a role (several tool results
        // after one assistant turn) become one turn.
        match turns.last_mut() {
            Some((last, content)) if last == role => content.extend(blocks),
            _ => turns.push((role.to_string(), blocks)),
        }
    }
    let mut out = Map::new();
    out.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    let inference = inference_config(body);
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(tools) = tool_config(body)? {
        out.insert("toolConfig".into(), tools);
    }
    Ok(Value::Object(out))
}

/// Text of a message's content (a string, or text parts) as Converse text blocks.
pub(super) fn text_blocks(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) if !s.is_empty() => vec![json!({"text": s})],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .filter(|t| !t.is_empty())
            .map(|t| json!({"text": t}))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn user_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, GatewayError> {
    let Some(Value::Array(parts)) = content else {
        return Ok(text_blocks(content));
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => out.extend(text_blocks(Some(&Value::Array(vec![p.clone()])))),
            Some("image_url") => {
                let url = p
                    .get("image_url")
                    .and_then(|u| u.get("url").or(Some(u)))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                out.push(image_block(url, i)?);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A data URL → a Converse image block (its base64 is passed as it is). Converse cannot fetch
/// an http(s) URL: that is refused with a clear message rather than fetched by the gateway.
pub(super) fn image_block(url: &str, i: usize) -> Result<Value, GatewayError> {
    let parsed = crate::providers::common::DataUrl::parse(url).filter(|d| d.base64);
    let Some(crate::providers::common::DataUrl {
        mime,
        payload: data,
        ..
    }) = parsed
    else {
        return Err(bad(format!(
            "messages[{i}]: bedrock takes images as base64 data URLs (data:image/png;base64,...)"
        )));
    };
    let format = match mime.strip_prefix("image/") {
        Some("jpg") | Some("jpeg") => "jpeg",
        Some(f @ ("png" | "gif" | "webp")) => f,
        _ => {
            return Err(bad(format!(
                "messages[{i}]: image type {mime:?} is not one bedrock takes (png, jpeg, gif, webp)"
            )))
        }
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

pub(super) fn assistant_blocks(m: &Value) -> Result<Vec<Value>, GatewayError> {
    let mut out = text_blocks(m.get("content"));
    if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
        for c in calls {
            let f = c.get("function");
            let args = f
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .unwrap_or("{}");
            let input: Value = if args.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(args)
                    .map_err(|_| bad("tool_calls[].function.arguments must be a JSON object"))?
            };
            out.push(json!({"toolUse": {
                "toolUseId": c.get("id").cloned().unwrap_or(Value::Null),
                "name": f.and_then(|f| f.get("name")).cloned().unwrap_or(Value::Null),
                "input": input,
            }}));
        }
    }
    Ok(out)
}

pub(super) fn tool_result(m: &Value) -> Value {
    let mut content = text_blocks(m.get("content"));
    if content.is_empty() {
        content.push(json!({"text": ""}));
    }
    json!({"toolResult": {
        "toolUseId": m.get("tool_call_id").cloned().unwrap_or(Value::Null),
        "content": content,
    }})
}

pub(super) fn inference_config(body: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(n) = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .filter(|v| v.is_u64())
    {
        out.insert("maxTokens".into(), n.clone());
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = body.get(from).filter(|v| v.is_number()) {
            out.insert(to.into(), v.clone());
        }
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(list)) if !list.is_empty() => {
            out.insert("stopSequences".into(), Value::Array(list.clone()));
        }
        _ => {}
    }
    out
}

pub(super) fn tool_config(body: &Map<String, Value>) -> Result<Option<Value>, GatewayError> {
    let Some(tools) = body.get("tools").and_then(Value::as_array) else {
        return Ok(None);
    };
    if tools.is_empty() {
        return Ok(None);
    }
    let specs: Vec<Value> = tools
        .iter()
        .filter_map(|t| t.get("function"))
        .map(|f| {
            let mut spec = Map::new();
            spec.insert("name".into(), f.get("name").cloned().unwrap_or(Value::Null));
            if let Some(d) = f.get("description").filter(|d| d.is_string()) {
                spec.insert("description".into(), d.clone());
            }
            let schema = f
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            spec.insert("inputSchema".into(), json!({ "json": schema }));
            json!({ "toolSpec": spec })
        })
        .collect();
    let mut config = json!({ "tools": specs });
    let choice = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => Some(json!({"any": {}})),
        Some(Value::String(s)) if s == "auto" => Some(json!({"auto": {}})),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|name| json!({"tool": {"name": name}})),
        // `none` has no Converse form: the tools stay declared (earlier turns may use them)
        // and the model chooses.
        _ => None,
    };
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}
