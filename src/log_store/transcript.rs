//! The answer as the client got it, kept for the log store: its bytes copied while the request
//! runs, and the answer made of them on the store's own thread. Copied, not kept by reference:
//! a chunk is often a slice of a larger read buffer, and holding it until the writer's next
//! turn would keep the whole buffer from being reused. A stream is reassembled from its events
//! into the whole answer its API gives without streaming: a chat stream into the one chat
//! completion it amounts to (the text, the tool calls with their arguments joined, the finish
//! reason and the usage), a Responses stream into the response object of its last event
//! (`responses`), a Messages stream into the Anthropic message it amounts to (`messages`).

use super::record::Api;
use crate::stream::chunk::ChatChunk;
use crate::stream::sse::{payload, SseSplitter};
use serde_json::{json, Map, Value};
use std::borrow::Cow;

mod messages;
mod responses;

/// Largest answer kept; a larger one is stored without its body.
pub(crate) const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// The bytes sent to the client.
#[derive(Default)]
pub struct Transcript {
    bytes: Vec<u8>,
    overflow: bool,
}

impl Transcript {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        if self.overflow || chunk.is_empty() {
            return;
        }
        if self.bytes.len() + chunk.len() > MAX_ANSWER {
            self.overflow = true;
            self.bytes = Vec::new();
            return;
        }
        self.bytes.extend_from_slice(chunk);
    }

    /// The answer's bytes, for a JSON answer kept as it is; `None` for an answer too large or
    /// empty.
    pub(crate) fn into_bytes(self) -> Option<Vec<u8>> {
        (!self.overflow && !self.bytes.is_empty()).then_some(self.bytes)
    }

    /// The answer: the JSON body as it is, or a stream's events made into the whole answer of
    /// `api`. `None` for an answer too large, empty, or neither JSON nor a stream of `api`.
    pub(crate) fn answer(&self, sse: bool, api: Api) -> Option<Value> {
        if self.overflow || self.bytes.is_empty() {
            return None;
        }
        if !sse {
            return serde_json::from_slice(&self.bytes).ok();
        }
        match api {
            Api::Chat => reassemble::<Reassembly>(&self.bytes),
            Api::Responses => reassemble::<responses::LastResponse>(&self.bytes),
            Api::Messages => reassemble::<messages::MessageReassembly>(&self.bytes),
        }
    }
}

/// What a stream's events add up to, one API's way.
trait Reassemble: Default {
    fn event(&mut self, event: &[u8]);
    fn into_answer(self) -> Option<Value>;
}

fn reassemble<R: Reassemble>(bytes: &[u8]) -> Option<Value> {
    let mut stream = R::default();
    let mut splitter = SseSplitter::default();
    splitter.each(bytes, |event| stream.event(event));
    if let Some(rest) = splitter.finish() {
        stream.event(&rest);
    }
    stream.into_answer()
}

#[derive(Default)]
struct ToolCall {
    id: String,
    kind: String,
    name: String,
    arguments: String,
}

#[derive(Default)]
struct Choice {
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    /// By the stream's own `index` of each call, in the order they first appeared.
    tool_calls: Vec<(usize, ToolCall)>,
    finish_reason: Option<String>,
}

/// The entry of a stream's `index` (a choice, a tool call), made when it first appears: kept
/// in the order of first appearance, as the stream's own indexes may skip.
fn slot<T: Default>(entries: &mut Vec<(usize, T)>, index: usize) -> &mut T {
    let at = match entries.iter().position(|(i, _)| *i == index) {
        Some(at) => at,
        None => {
            entries.push((index, T::default()));
            entries.len() - 1
        }
    };
    &mut entries[at].1
}

/// What a stream's events add up to so far.
#[derive(Default)]
struct Reassembly {
    id: Option<String>,
    model: Option<String>,
    created: Option<u64>,
    choices: Vec<(usize, Choice)>,
    usage: Option<Value>,
    /// Whether any event was a chat completion chunk.
    seen: bool,
}

impl Reassemble for Reassembly {
    fn event(&mut self, event: &[u8]) {
        let Some(data) = payload(event) else {
            return;
        };
        if data.as_ref() == b"[DONE]" {
            return;
        }
        let Some(chunk) = ChatChunk::parse(&data) else {
            return;
        };
        self.seen = true;
        if self.id.is_none() {
            self.id = chunk.id.map(Cow::into_owned);
        }
        if self.model.is_none() {
            self.model = chunk.model.filter(|m| !m.is_empty()).map(Cow::into_owned);
        }
        self.created = self.created.or(chunk.created);
        if let Some(u) = chunk.usage.filter(Value::is_object) {
            self.usage = Some(u);
        }
        for c in chunk.choices {
            let choice = slot(&mut self.choices, c.index);
            if let Some(r) = c.finish_reason {
                choice.finish_reason = Some(r.into_owned());
            }
            let Some(d) = c.delta else { continue };
            if let Some(role) = d.role {
                choice.role = Some(role.into_owned());
            }
            if let Some(text) = d.content {
                choice
                    .content
                    .get_or_insert_with(String::new)
                    .push_str(&text);
            }
            if let Some(text) = d.refusal {
                choice
                    .refusal
                    .get_or_insert_with(String::new)
                    .push_str(&text);
            }
            for t in d.tool_calls {
                let call = slot(&mut choice.tool_calls, t.index);
                if let Some(id) = t.id {
                    call.id = id.into_owned();
                }
                if let Some(k) = t.kind {
                    call.kind = k.into_owned();
                }
                if let Some(f) = t.function {
                    if let Some(n) = f.name {
                        call.name.push_str(&n);
                    }
                    if let Some(a) = f.arguments {
                        call.arguments.push_str(&a);
                    }
                }
            }
        }
    }

    fn into_answer(mut self) -> Option<Value> {
        if !self.seen {
            return None;
        }
        self.choices.sort_by_key(|(i, _)| *i);
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .map(|(index, c)| {
                let mut message = Map::new();
                message.insert(
                    "role".into(),
                    Value::String(c.role.unwrap_or_else(|| "assistant".into())),
                );
                message.insert("content".into(), c.content.map_or(Value::Null, Value::String));
                if let Some(r) = c.refusal {
                    message.insert("refusal".into(), Value::String(r));
                }
                if !c.tool_calls.is_empty() {
                    let calls: Vec<Value> = c
                        .tool_calls
                        .into_iter()
                        .map(|(_, t)| {
                            json!({
                                "id": t.id,
                                "type": if t.kind.is_empty() { "function".to_string() } else { t.kind },
                                "function": {"name": t.name, "arguments": t.arguments},
                            })
                        })
                        .collect();
                    message.insert("tool_calls".into(), Value::Array(calls));
                }
                json!({"index": index, "message": message, "finish_reason": c.finish_reason})
            })
            .collect();
        let mut answer = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let (Some(u), Some(map)) = (self.usage, answer.as_object_mut()) {
            map.insert("usage".into(), u);
        }
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn transcript(parts: &[&str]) -> Transcript {
        let mut t = Transcript::default();
        for p in parts {
            t.push(&Bytes::from(p.to_string()));
        }
        t
    }

    #[test]
    fn a_stream_becomes_the_completion_it_amounts_to() {
        // Events split across chunks at awkward places, two tool calls interleaved.
        let t = transcript(&[
            "data: {\"id\":\"c1\",\"model\":\"gpt-4o\",\"created\":7,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel",
            "lo\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"q\\\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"put\",\"arguments\":\"{}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n",
            "data: [DONE]\n\n",
        ]);
        let a = t.answer(true, Api::Chat).unwrap();
        assert_eq!(
            a,
            json!({
                "id": "c1", "object": "chat.completion", "created": 7, "model": "gpt-4o",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": "Hello",
                    "tool_calls": [
                        {"id": "call_a", "type": "function", "function": {"name": "get", "arguments": "{\"q\":1}"}},
                        {"id": "call_b", "type": "function", "function": {"name": "put", "arguments": "{}"}},
                    ]}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
            })
        );
    }

    #[test]
    fn a_json_answer_is_kept_as_it_is_and_a_large_one_not_at_all() {
        let t = transcript(&["{\"a\":", "1}"]);
        assert_eq!(t.answer(false, Api::Chat), Some(json!({"a": 1})));
        let mut big = Transcript::default();
        let chunk = Bytes::from(vec![b' '; 1024 * 1024]);
        for _ in 0..5 {
            big.push(&chunk);
        }
        assert_eq!(big.answer(false, Api::Chat), None);
        assert!(big.bytes.capacity() == 0, "nothing is held past the limit");
        // Not a chat stream (an error event only): no answer.
        assert_eq!(
            transcript(&["event: x\ndata: [DONE]\n\n"]).answer(true, Api::Chat),
            None
        );
    }
}
