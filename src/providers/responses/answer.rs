//! A whole OpenAI chat answer as a Responses object, and the parts of one the stream builds
//! too (output items, usage, status). Written with the gateway's own JSON writer, in the
//! order the API shows its members: a tree of maps built per answer (and serialised through
//! `Display`) cost as much as the rest of the translation.

use crate::stream::holder::{FromChat, OverChat};
use crate::stream::Translator;
use crate::types::json::{fragment, Object};
use crate::types::usage::Usage;
use serde::Deserialize;
use std::borrow::Cow;

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

    /// Writes the item as the API shows it, `status` being `in_progress` or `completed`.
    pub(super) fn write(&self, out: &mut Vec<u8>, status: &str) {
        let mut o = Object::new(out);
        match self {
            Item::Message { id, text, refusal } => {
                o.str("id", id);
                o.str("type", "message");
                o.str("status", status);
                let content = o.key("content");
                content.push(b'[');
                match (refusal, status) {
                    (Some(r), _) => write_part(content, Part::Refusal(r)),
                    (None, "in_progress") => {}
                    (None, _) => write_part(content, Part::Text(text)),
                }
                content.push(b']');
                o.str("role", "assistant");
            }
            Item::Call {
                id,
                call_id,
                name,
                arguments,
            } => {
                o.str("id", id);
                o.str("type", "function_call");
                o.str("status", status);
                o.str("arguments", arguments);
                o.str("call_id", call_id);
                o.str("name", name);
            }
        }
        o.end();
    }
}

/// A content part of a message item.
#[derive(Clone, Copy)]
pub(super) enum Part<'a> {
    Text(&'a str),
    Refusal(&'a str),
}

pub(super) fn write_part(out: &mut Vec<u8>, part: Part<'_>) {
    let mut o = Object::new(out);
    match part {
        Part::Text(text) => {
            o.str("type", "output_text");
            o.str("text", text);
            o.key("annotations").extend_from_slice(b"[]");
        }
        Part::Refusal(r) => {
            o.str("type", "refusal");
            o.str("refusal", r);
        }
    }
    o.end();
}

/// Responses usage of the chat answer's (normalised) usage; `null` while not known, never
/// zeros for counts nobody reported.
pub(super) fn write_usage(out: &mut Vec<u8>, usage: Option<Usage>) {
    let Some(u) = usage else {
        out.extend_from_slice(b"null");
        return;
    };
    let mut o = Object::new(out);
    o.uint("input_tokens", u.input);
    let mut d = o.object("input_tokens_details");
    d.uint("cached_tokens", u.cached_input);
    d.end();
    o.uint("output_tokens", u.output);
    let mut d = o.object("output_tokens_details");
    d.uint("reasoning_tokens", u.reasoning);
    d.end();
    o.uint("total_tokens", u.input.saturating_add(u.output));
    o.end();
}

/// The response's status and the reason of its `incomplete_details` for a chat finish reason.
pub(super) fn status(finish: Option<&str>) -> (&'static str, Option<&'static str>) {
    match finish {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// What a response object is made of.
pub(super) struct Parts<'a> {
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
    pub status: &'a str,
    /// The reason of `incomplete_details`.
    pub incomplete: Option<&'a str>,
    /// The message of a failed response's `error`.
    pub error: Option<&'a str>,
    pub items: &'a [Item],
    pub usage: Option<Usage>,
}

/// Writes the response object. Its `id` is the chat answer's: the gateway keeps no state, so
/// the id only names this answer.
pub(super) fn write_response(out: &mut Vec<u8>, p: &Parts<'_>) {
    let item_status = if p.status == "in_progress" {
        "in_progress"
    } else {
        "completed"
    };
    let mut o = Object::new(out);
    let id = o.key("id");
    id.extend_from_slice(b"\"resp_");
    fragment(id, p.id);
    id.push(b'"');
    o.str("object", "response");
    o.uint("created_at", p.created);
    o.str("status", p.status);
    match p.error {
        Some(message) => {
            let mut e = o.object("error");
            e.str("code", "server_error");
            e.str("message", message);
            e.end();
        }
        None => o.null("error"),
    }
    match p.incomplete {
        Some(reason) => {
            let mut d = o.object("incomplete_details");
            d.str("reason", reason);
            d.end();
        }
        None => o.null("incomplete_details"),
    }
    o.str("model", p.model);
    let output = o.key("output");
    output.push(b'[');
    for (i, item) in p.items.iter().enumerate() {
        if i > 0 {
            output.push(b',');
        }
        item.write(output, item_status);
    }
    output.push(b']');
    o.bool("parallel_tool_calls", true);
    o.bool("store", false);
    write_usage(o.key("usage"), p.usage);
    o.end();
}

/// The members of a chat completion the conversion reads, borrowed from its text.
#[derive(Deserialize)]
struct ChatAnswer<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    choices: Vec<AnswerChoice<'a>>,
}

#[derive(Deserialize)]
struct AnswerChoice<'a> {
    #[serde(borrow)]
    message: AnswerMessage<'a>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AnswerMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<AnswerCall<'a>>>,
}

#[derive(Deserialize)]
struct AnswerCall<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<AnswerFunction<'a>>,
}

#[derive(Deserialize)]
struct AnswerFunction<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// The Responses object for a chat completion's text; `None` when it is not one.
pub(super) fn convert(chat: &[u8], created: u64, usage: Option<Usage>) -> Option<Vec<u8>> {
    let chat: ChatAnswer<'_> = serde_json::from_slice(chat).ok()?;
    let id = chat.id.as_deref().unwrap_or("");
    let choice = chat.choices.into_iter().next()?;
    let message = choice.message;
    let mut items = Vec::new();
    let text = message.content.as_deref();
    if text.is_some_and(|t| !t.is_empty()) || message.refusal.is_some() {
        items.push(Item::Message {
            id: format!("msg_{id}"),
            text: text.unwrap_or("").to_string(),
            refusal: message.refusal.map(Cow::into_owned),
        });
    }
    for (i, call) in message.tool_calls.into_iter().flatten().enumerate() {
        let (name, arguments) = match call.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        items.push(Item::Call {
            id: format!("fc_{id}_{i}"),
            call_id: call.id.map(Cow::into_owned).unwrap_or_default(),
            name: name.map(Cow::into_owned).unwrap_or_default(),
            arguments: arguments.map(Cow::into_owned).unwrap_or_default(),
        });
    }
    let (status, incomplete) = status(choice.finish_reason.as_deref());
    let mut out = Vec::with_capacity(512);
    write_response(
        &mut out,
        &Parts {
            id,
            created: chat.created.unwrap_or(created),
            model: chat.model.as_deref().unwrap_or(""),
            status,
            incomplete,
            error: None,
            items: &items,
            usage,
        },
    );
    Some(out)
}

/// A non-streamed answer's conversion, at its end: the Responses object of the chat answer,
/// with the usage the chat translator metered.
pub(super) struct ToResponse {
    created: u64,
}

impl FromChat for ToResponse {
    fn convert(&mut self, chat: &[u8], usage: Option<Usage>, _: Option<&str>) -> Option<Vec<u8>> {
        convert(chat, self.created, usage)
    }
}

/// A non-streamed answer: the provider's chat translator makes the OpenAI chat answer (and
/// meters it), which is converted whole at its end.
pub(super) fn whole(chat: Box<dyn Translator>, created: u64) -> OverChat<ToResponse> {
    OverChat::new(chat, ToResponse { created }, MAX_BODY)
}
