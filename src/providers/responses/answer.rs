//! A whole OpenAI chat answer as a Responses object, and the parts of one the stream builds
//! too (output items, usage, status).

use crate::stream::holder::Holder;
use crate::stream::Translator;
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

/// The largest chat answer converted; past it the answer goes out as the provider's chat
/// answer (bounded memory), as every whole-answer translator does.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// One output item of a response.
#[derive(Debug)]
pub(super) enum Item {
    Message {
        id: String,
        text: String,
        /// A refusal instead of text.
        refusal: Option<String>,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

impl Item {
    pub(super) fn id(&self) -> &str {
        match self {
            Item::Message { id, .. } | Item::Call { id, .. } => id,
        }
    }

    /// The item as the API shows it, `status` being `in_progress` or `completed`.
    pub(super) fn json(&self, status: &str) -> Value {
        match self {
            Item::Message { id, text, refusal } => {
                let content = match (refusal, status) {
                    (Some(r), _) => json!([{"type": "refusal", "refusal": r}]),
                    (None, "in_progress") => json!([]),
                    (None, _) => json!([output_text(text)]),
                };
                json!({
                    "type": "message",
                    "id": id,
                    "status": status,
                    "role": "assistant",
                    "content": content,
                })
            }
            Item::Call {
                id,
                call_id,
                name,
                arguments,
            } => json!({
                "type": "function_call",
                "id": id,
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
                "status": status,
            }),
        }
    }
}

pub(super) fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

/// Responses usage of the chat answer's (normalised) usage; `null` while not known, never
/// zeros for counts nobody reported.
pub(super) fn usage_json(usage: Option<Usage>) -> Value {
    match usage {
        Some(u) => json!({
            "input_tokens": u.input,
            "input_tokens_details": {"cached_tokens": u.cached_input},
            "output_tokens": u.output,
            "output_tokens_details": {"reasoning_tokens": u.reasoning},
            "total_tokens": u.input.saturating_add(u.output),
        }),
        None => Value::Null,
    }
}

/// The response's status and `incomplete_details` for a chat finish reason.
pub(super) fn status(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// What a response object is made of.
pub(super) struct Parts<'a> {
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
    pub status: &'a str,
    pub incomplete: Value,
    pub items: &'a [Item],
    pub usage: Value,
}

/// The response object. `id` is the chat answer's: the gateway keeps no state, so the id
/// only names this answer.
pub(super) fn response_json(p: Parts<'_>) -> Value {
    let item_status = if p.status == "in_progress" {
        "in_progress"
    } else {
        "completed"
    };
    json!({
        "id": format!("resp_{}", p.id),
        "object": "response",
        "created_at": p.created,
        "status": p.status,
        "error": null,
        "incomplete_details": p.incomplete,
        "model": p.model,
        "output": p.items.iter().map(|i| i.json(item_status)).collect::<Vec<_>>(),
        "parallel_tool_calls": true,
        "store": false,
        "usage": p.usage,
    })
}

/// The Responses object for a chat completion document; `None` when it is not one.
pub(super) fn convert(chat: &Value, created: u64, usage: Option<Usage>) -> Option<Value> {
    let id = chat.get("id").and_then(Value::as_str).unwrap_or("");
    let choice = chat.get("choices")?.get(0)?;
    let message = choice.get("message")?;
    let mut items = Vec::new();
    let text = message.get("content").and_then(Value::as_str);
    let refusal = message.get("refusal").and_then(Value::as_str);
    if text.is_some_and(|t| !t.is_empty()) || refusal.is_some() {
        items.push(Item::Message {
            id: format!("msg_{id}"),
            text: text.unwrap_or("").to_string(),
            refusal: refusal.map(String::from),
        });
    }
    let calls = message.get("tool_calls").and_then(Value::as_array);
    for (i, call) in calls.into_iter().flatten().enumerate() {
        let field = |p: &str| call.pointer(p).and_then(Value::as_str).unwrap_or("");
        items.push(Item::Call {
            id: format!("fc_{id}_{i}"),
            call_id: field("/id").to_string(),
            name: field("/function/name").to_string(),
            arguments: field("/function/arguments").to_string(),
        });
    }
    let (status, incomplete) = status(choice.get("finish_reason").and_then(Value::as_str));
    Some(response_json(Parts {
        id,
        created: chat
            .get("created")
            .and_then(Value::as_u64)
            .unwrap_or(created),
        model: chat.get("model").and_then(Value::as_str).unwrap_or(""),
        status,
        incomplete,
        items: &items,
        usage: usage_json(usage),
    }))
}

/// A non-streamed answer: the provider's chat translator makes the OpenAI chat answer (and
/// meters it), which is converted whole at its end.
pub(super) struct ResponsesJson {
    chat: Box<dyn Translator>,
    created: u64,
    holder: Holder,
    out: Option<Value>,
}

impl ResponsesJson {
    pub(super) fn new(chat: Box<dyn Translator>, created: u64) -> Self {
        ResponsesJson {
            chat,
            created,
            holder: Holder::default(),
            out: None,
        }
    }
}

impl Translator for ResponsesJson {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let out = self.chat.push(chunk)?;
        self.holder.push(out, MAX_BODY)
    }

    fn finish(&mut self) -> Option<Bytes> {
        let tail = self.chat.finish();
        if let Some(tail) = tail {
            if let Some(raw) = self.holder.push(tail, MAX_BODY) {
                return Some(raw);
            }
        }
        let whole: BytesMut = self.holder.take()?;
        let converted = serde_json::from_slice::<Value>(&whole)
            .ok()
            .and_then(|chat| convert(&chat, self.created, self.chat.usage()));
        match converted {
            Some(v) => {
                let body = Bytes::from(v.to_string());
                self.out = Some(v);
                Some(body)
            }
            None => self.holder.relay(whole),
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.chat.usage()
    }

    fn model(&self) -> Option<&str> {
        self.chat.model()
    }

    fn may_rewrite(&self) -> bool {
        true
    }

    fn content_type(&self) -> Option<&'static str> {
        if self.holder.is_raw() {
            self.chat.content_type()
        } else {
            Some("application/json")
        }
    }

    fn buffers_whole(&self) -> bool {
        true
    }

    fn json_body(&self) -> Option<Value> {
        self.out.clone()
    }
}
