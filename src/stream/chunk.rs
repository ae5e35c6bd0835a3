//! One event of an OpenAI chat stream (`chat.completion.chunk`), read into borrowed fields:
//! what every reader of a chat stream the gateway made or relayed looks at (the Responses and
//! Messages streams built from it, the log store's reassembly). Strings are borrowed from the
//! event unless they hold escapes.

use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

#[derive(Deserialize)]
pub(crate) struct ChatChunk<'a> {
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub created: Option<u64>,
    #[serde(borrow, default)]
    pub choices: Vec<ChunkChoice<'a>>,
    /// The usage object of the stream's usage chunk (`null` on the others).
    #[serde(default)]
    pub usage: Option<Value>,
    /// A failure reported inside the stream (a translated provider's error event).
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Deserialize)]
pub(crate) struct ChunkChoice<'a> {
    #[serde(default)]
    pub index: usize,
    #[serde(borrow, default)]
    pub delta: Option<ChunkDelta<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(crate) struct ChunkDelta<'a> {
    #[serde(borrow, default)]
    pub role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tool_calls: Vec<ToolCallDelta<'a>>,
}

/// A piece of one tool call; the calls of a turn are told apart by `index`, and their pieces
/// may interleave.
#[derive(Deserialize)]
pub(crate) struct ToolCallDelta<'a> {
    #[serde(default)]
    pub index: usize,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub arguments: Option<Cow<'a, str>>,
}

impl<'a> ChatChunk<'a> {
    /// The chunk of an event's data; `None` for `[DONE]` or anything that is not one.
    pub(crate) fn parse(data: &'a [u8]) -> Option<ChatChunk<'a>> {
        serde_json::from_slice(data).ok()
    }
}
