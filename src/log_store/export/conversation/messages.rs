//! A Messages request and its answer in chat's terms, through the translators the gateway
//! already has: the request as the chat request `/v1/messages` sends a chat provider (`system`
//! and text the system and user messages, `tool_use` blocks tool calls, `tool_result` blocks
//! tool messages, tools as functions), the answer as the chat completion Anthropic's adapter
//! makes of an Anthropic message.

use super::Chat;
use crate::providers::anthropic::message_as_chat;
use crate::providers::messages::{to_chat, Target};
use serde_json::Value;
use std::borrow::Cow;

pub(super) fn chat(request: &Value, answer: &Value) -> Result<Chat<'static>, &'static str> {
    let bytes = serde_json::to_vec(answer).map_err(|_| "no_answer")?;
    let completion = message_as_chat(&bytes).ok_or("no_answer")?;
    let mut completion: Value = serde_json::from_slice(&completion).map_err(|_| "no_answer")?;
    let reply = completion
        .pointer_mut("/choices/0/message")
        .map(Value::take)
        .ok_or("no_answer")?;
    let Some(body) = request.as_object().filter(|b| b.contains_key("messages")) else {
        return Err("no_messages");
    };
    // Any chat provider's target: reasoning budgets and stream options are settings of the
    // request, not part of the conversation. What it refuses (server tools, document blocks)
    // would leave the conversation incomplete, and the conversation is left out.
    let mut chat = to_chat(body, Target::default()).map_err(|_| "unsupported")?;
    let Some(Value::Array(messages)) = chat.get_mut("messages").map(Value::take) else {
        return Err("no_messages");
    };
    Ok(Chat {
        messages: Cow::Owned(messages),
        tools: chat.get_mut("tools").map(Value::take).map(Cow::Owned),
        reply: Cow::Owned(reply),
    })
}
