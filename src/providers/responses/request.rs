//! A Responses API request as an OpenAI chat request, for providers without the API: the
//! provider's chat adapter then makes its own request of it.

use crate::error::GatewayError;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

fn invalid(why: impl Into<String>) -> GatewayError {
    GatewayError::InvalidBody(why.into())
}

/// The members of a Responses request the translation reads. Members passed on unchanged are
/// kept as their raw text (no tree is built of them); `null` reads as absent.
#[derive(Deserialize)]
#[serde(expecting = "a JSON object")]
struct ResponsesRequest<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default)]
    temperature: Option<&'a RawValue>,
    #[serde(borrow, default)]
    top_p: Option<&'a RawValue>,
    #[serde(borrow, default)]
    parallel_tool_calls: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    service_tier: Option<&'a RawValue>,
    #[serde(borrow, default)]
    top_logprobs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    text: Option<Value>,
    #[serde(default)]
    reasoning: Option<Value>,
    #[serde(borrow, default)]
    store: Option<&'a RawValue>,
    #[serde(borrow, default)]
    background: Option<&'a RawValue>,
    #[serde(borrow, default)]
    previous_response_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    conversation: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
}

/// The chat request made of it: members of the same name and meaning copied as they came,
/// the others translated.
#[derive(Serialize)]
struct ChatRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<&'a RawValue>,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

/// A chat message: a text turn borrowed from the request (`instructions`, a string `input`),
/// or one built from an input item.
#[derive(Serialize)]
#[serde(untagged)]
enum Message<'a> {
    Text {
        role: &'static str,
        content: Cow<'a, str>,
    },
    Built(Value),
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// Whether a raw member is the JSON `true`.
fn is_true(v: Option<&RawValue>) -> bool {
    v.is_some_and(|v| v.get() == "true")
}

/// A raw member's string; `None` when it is not a string.
fn raw_str(v: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str(v.get()).ok()
}

/// The chat request (JSON text) for a Responses request body. `stream_usage`: the provider
/// reports a stream's usage when asked (`stream_options.include_usage`).
pub(crate) fn to_chat(body: &[u8], stream_usage: bool) -> Result<Vec<u8>, GatewayError> {
    let req: ResponsesRequest<'_> =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    // Members that need state kept between requests: the gateway keeps none, so a translated
    // provider cannot honour them and says so rather than answer without the context.
    let stateful = [
        (
            req.previous_response_id,
            "previous_response_id is not supported on this provider: the gateway keeps no \
             conversation state; send the whole conversation in input",
        ),
        (
            req.conversation,
            "conversation is not supported on this provider: the gateway keeps no conversation \
             state; send the whole conversation in input",
        ),
        (
            req.prompt,
            "prompt (a stored prompt template) is not supported on this provider",
        ),
    ];
    if let Some((_, why)) = stateful.iter().find(|(v, _)| v.is_some()) {
        return Err(invalid(*why));
    }
    if is_true(req.store) {
        return Err(invalid(
            "store: true is not supported on this provider: the gateway keeps no response \
             state; send store: false or leave it out",
        ));
    }
    if is_true(req.background) {
        return Err(invalid("background is not supported on this provider"));
    }
    let mut messages = Vec::new();
    if let Some(instructions) = req.instructions.and_then(raw_str) {
        messages.push(Message::Text {
            role: "system",
            content: instructions,
        });
    }
    if let Some(input) = req.input {
        match input.get().as_bytes().first() {
            Some(b'"') => messages.push(Message::Text {
                role: "user",
                content: raw_str(input).unwrap_or_default(),
            }),
            Some(b'[') => {
                let items: Vec<Value> = serde_json::from_str(input.get())
                    .map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
                messages.extend(items_as_messages(&items)?.into_iter().map(Message::Built));
            }
            _ => return Err(invalid("input must be a string or a list of items")),
        }
    }
    if messages.is_empty() {
        return Err(invalid("input is required"));
    }
    let tools = match req.tools.as_ref().and_then(Value::as_array) {
        Some(tools) if !tools.is_empty() => {
            Some(tools.iter().map(tool).collect::<Result<Vec<_>, _>>()?)
        }
        _ => None,
    };
    let tool_choice = match req.tool_choice.as_ref().filter(|v| !v.is_null()) {
        Some(choice) => Some(tool_choice(choice)?),
        None => None,
    };
    let response_format = match req
        .text
        .as_ref()
        .and_then(|t| t.get("format"))
        .filter(|v| !v.is_null())
    {
        Some(format) => response_format(format)?,
        None => None,
    };
    let reasoning_effort = req
        .reasoning
        .as_ref()
        .and_then(|r| r.get("effort"))
        .filter(|v| !v.is_null())
        .cloned();
    let stream_options = (stream_usage && is_true(req.stream)).then_some(StreamOptions {
        include_usage: true,
    });
    let chat = ChatRequest {
        model: req.model,
        stream: req.stream,
        temperature: req.temperature,
        top_p: req.top_p,
        parallel_tool_calls: req.parallel_tool_calls,
        user: req.user,
        metadata: req.metadata,
        service_tier: req.service_tier,
        top_logprobs: req.top_logprobs,
        messages,
        max_tokens: req.max_output_tokens,
        tools,
        tool_choice,
        response_format,
        reasoning_effort,
        stream_options,
    };
    serde_json::to_vec(&chat).map_err(|e| GatewayError::InvalidJson(e.to_string()))
}

/// Input items as chat messages. A response's `output` items have the same shapes (assistant
/// messages, function calls), so the log store's export reads an answer with this too.
pub(crate) fn items_as_messages(items: &[Value]) -> Result<Vec<Value>, GatewayError> {
    let mut built = Vec::new();
    for item in items {
        push_item(&mut built, item)?;
    }
    Ok(built)
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
