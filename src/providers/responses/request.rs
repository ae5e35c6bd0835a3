//! A Responses API request as an OpenAI chat request, for providers without the API: the
//! provider's chat adapter then makes its own request of it.

use crate::error::GatewayError;
use serde_json::{json, Map, Value};

fn invalid(why: impl Into<String>) -> GatewayError {
    GatewayError::InvalidBody(why.into())
}

/// Members that need state kept between requests: the gateway keeps none, so a translated
/// provider cannot honour them and says so rather than answer without the context.
const STATEFUL: &[(&str, &str)] = &[
    (
        "previous_response_id",
        "previous_response_id is not supported on this provider: the gateway keeps no \
         conversation state; send the whole conversation in input",
    ),
    (
        "conversation",
        "conversation is not supported on this provider: the gateway keeps no conversation \
         state; send the whole conversation in input",
    ),
    (
        "prompt",
        "prompt (a stored prompt template) is not supported on this provider",
    ),
];

/// Members copied to the chat request under the same name and meaning.
const SAME: &[&str] = &[
    "model",
    "stream",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "metadata",
    "service_tier",
    "top_logprobs",
];

/// The chat request (JSON text) for a Responses request body. `stream_usage`: the provider
/// reports a stream's usage when asked (`stream_options.include_usage`).
pub(crate) fn to_chat(body: &[u8], stream_usage: bool) -> Result<String, GatewayError> {
    let req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    for (key, why) in STATEFUL {
        if req.get(*key).is_some_and(|v| !v.is_null()) {
            return Err(invalid(*why));
        }
    }
    if req.get("store").and_then(Value::as_bool) == Some(true) {
        return Err(invalid(
            "store: true is not supported on this provider: the gateway keeps no response \
             state; send store: false or leave it out",
        ));
    }
    if req.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(invalid("background is not supported on this provider"));
    }
    let mut chat = Map::new();
    for key in SAME {
        if let Some(v) = req.get(*key).filter(|v| !v.is_null()) {
            chat.insert((*key).into(), v.clone());
        }
    }
    let mut messages = Vec::new();
    if let Some(instructions) = req.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match req.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for item in items {
                push_item(&mut messages, item)?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(invalid("input must be a string or a list of items")),
    }
    if messages.is_empty() {
        return Err(invalid("input is required"));
    }
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(max) = req.get("max_output_tokens").filter(|v| !v.is_null()) {
        chat.insert("max_tokens".into(), max.clone());
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        if !tools.is_empty() {
            let tools = tools.iter().map(tool).collect::<Result<Vec<_>, _>>()?;
            chat.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = req.get("tool_choice").filter(|v| !v.is_null()) {
        chat.insert("tool_choice".into(), tool_choice(choice)?);
    }
    if let Some(format) = req
        .get("text")
        .and_then(|t| t.get("format"))
        .filter(|v| !v.is_null())
    {
        if let Some(rf) = response_format(format)? {
            chat.insert("response_format".into(), rf);
        }
    }
    if let Some(effort) = req
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|v| !v.is_null())
    {
        chat.insert("reasoning_effort".into(), effort.clone());
    }
    if stream_usage && req.get("stream").and_then(Value::as_bool) == Some(true) {
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(chat).to_string())
}

/// One input item as chat messages: appended, or merged into the last one (a function call
/// joins the assistant message before it, as chat keeps text and tool calls in one message).
fn push_item(messages: &mut Vec<Value>, item: &Value) -> Result<(), GatewayError> {
    let kind = item.get("type").and_then(Value::as_str);
    match kind {
        None | Some("message") => {
            let role = item
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("an input message needs a role"))?;
            let content = match item.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) if role == "assistant" => Value::String(
                    parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect(),
                ),
                Some(Value::Array(parts)) => Value::Array(
                    parts
                        .iter()
                        .map(content_part)
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                _ => return Err(invalid("an input message needs content")),
            };
            messages.push(json!({"role": role, "content": content}));
        }
        Some("function_call") => {
            let field = |name: &str| {
                item.get(name)
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(format!("a function_call item needs {name}")))
            };
            let call = json!({
                "id": field("call_id")?,
                "type": "function",
                "function": {"name": field("name")?, "arguments": field("arguments")?},
            });
            let last = messages.last_mut().filter(|m| m["role"] == "assistant");
            match last.and_then(Value::as_object_mut) {
                Some(m) => match m.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    Some(calls) => calls.push(call),
                    None => {
                        m.insert("tool_calls".into(), json!([call]));
                    }
                },
                None => messages.push(json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [call],
                })),
            }
        }
        Some("function_call_output") => {
            let id = item
                .get("call_id")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("a function_call_output item needs call_id"))?;
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            messages.push(json!({"role": "tool", "tool_call_id": id, "content": output}));
        }
        // The model's own reasoning from an earlier turn: chat has no place for it.
        Some("reasoning") => {}
        Some("item_reference") => {
            return Err(invalid(
                "item_reference is not supported on this provider: the gateway keeps no \
                 conversation state",
            ))
        }
        Some(other) => {
            return Err(invalid(format!(
                "input items of type {other} are not supported on this provider"
            )))
        }
    }
    Ok(())
}

/// One content part of a user (or system) message as a chat content part.
fn content_part(part: &Value) -> Result<Value, GatewayError> {
    let text = || part.get("text").and_then(Value::as_str).unwrap_or("");
    match part.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => Ok(json!({"type": "text", "text": text()})),
        Some("input_image") => {
            let url = part
                .get("image_url")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(
                        "input_image needs image_url (a URL or a data URL); file_id is not \
                         supported on this provider",
                    )
                })?;
            let mut image = json!({"url": url});
            if let Some(detail) = part.get("detail").filter(|v| !v.is_null()) {
                image["detail"] = detail.clone();
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        Some("input_file") => {
            let data = part.get("file_data").and_then(Value::as_str).ok_or_else(|| {
                invalid("input_file needs file_data; file_id and file_url are not supported on this provider")
            })?;
            let mut file = json!({"file_data": data});
            if let Some(name) = part.get("filename").filter(|v| !v.is_null()) {
                file["filename"] = name.clone();
            }
            Ok(json!({"type": "file", "file": file}))
        }
        other => Err(invalid(format!(
            "content parts of type {} are not supported on this provider",
            other.unwrap_or("(none)")
        ))),
    }
}

/// A function tool as a chat tool; other tool types (hosted search, code interpreter, ...)
/// exist only on OpenAI.
fn tool(t: &Value) -> Result<Value, GatewayError> {
    match t.get("type").and_then(Value::as_str) {
        Some("function") => {
            let mut function = Map::new();
            for key in ["name", "description", "parameters", "strict"] {
                if let Some(v) = t.get(key).filter(|v| !v.is_null()) {
                    function.insert(key.into(), v.clone());
                }
            }
            if !function.contains_key("name") {
                return Err(invalid("a function tool needs a name"));
            }
            Ok(json!({"type": "function", "function": function}))
        }
        other => Err(invalid(format!(
            "tools of type {} are not supported on this provider",
            other.unwrap_or("(none)")
        ))),
    }
}

fn tool_choice(choice: &Value) -> Result<Value, GatewayError> {
    match choice {
        Value::String(_) => Ok(choice.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("name")
                .ok_or_else(|| invalid("tool_choice of type function needs a name"))?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(invalid(
            "tool_choice must be none, auto, required or a function",
        )),
    }
}

/// `text.format` as `response_format` (`None` for plain text, chat's default).
fn response_format(format: &Value) -> Result<Option<Value>, GatewayError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "description", "schema", "strict"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(invalid(
            "text.format must be of type text, json_object or json_schema",
        )),
    }
}
