//! An Anthropic Messages stream made into the message it amounts to: `message_start` gives the
//! message, each `content_block_start` a block that its deltas complete (text joined, a tool
//! call's input JSON joined and parsed, thinking and its signature joined), `message_delta` the
//! stop reason and the final usage. A stream that reported an `error`, or never started, has no
//! answer: the client did not get a whole message.

use super::{payload, slot, Reassemble};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The members of an event read here; the frequent ones (deltas) borrow their text.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: usize,
    #[serde(default)]
    message: Option<Map<String, Value>>,
    #[serde(default)]
    content_block: Option<Map<String, Value>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    usage: Option<Map<String, Value>>,
}

/// A `content_block_delta`'s or `message_delta`'s `delta`.
#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    signature: Option<Cow<'a, str>>,
    #[serde(default)]
    stop_reason: Option<Value>,
    #[serde(default)]
    stop_sequence: Option<Value>,
}

/// A content block as started, and what its deltas added.
#[derive(Default)]
struct Block {
    start: Map<String, Value>,
    text: String,
    input_json: String,
    thinking: String,
    signature: String,
}

impl Block {
    fn into_value(self) -> Value {
        let mut b = self.start;
        let append = |b: &mut Map<String, Value>, key: &str, more: String| {
            if more.is_empty() {
                return;
            }
            let mut joined = b
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            joined.push_str(&more);
            b.insert(key.into(), Value::String(joined));
        };
        append(&mut b, "text", self.text);
        append(&mut b, "thinking", self.thinking);
        append(&mut b, "signature", self.signature);
        if !self.input_json.is_empty() {
            // Input that is not JSON (never the case in a whole stream) is kept as its text
            // rather than lost.
            let input =
                serde_json::from_str(&self.input_json).unwrap_or(Value::String(self.input_json));
            b.insert("input".into(), input);
        }
        Value::Object(b)
    }
}

#[derive(Default)]
pub(super) struct MessageReassembly {
    message: Option<Map<String, Value>>,
    /// By the stream's own block `index`, in the order they first appeared.
    blocks: Vec<(usize, Block)>,
    stop_reason: Option<Value>,
    stop_sequence: Option<Value>,
    /// `message_delta`'s usage: its counts replace `message_start`'s.
    usage: Map<String, Value>,
    failed: bool,
}

impl Reassemble for MessageReassembly {
    fn event(&mut self, event: &[u8]) {
        let Some(data) = payload(event) else {
            return;
        };
        let Ok(e) = serde_json::from_slice::<Event<'_>>(&data) else {
            return;
        };
        match e.kind.as_ref() {
            "message_start" => self.message = e.message,
            "content_block_start" => {
                slot(&mut self.blocks, e.index).start = e.content_block.unwrap_or_default();
            }
            "content_block_delta" => {
                let Some(d) = e.delta else { return };
                let block = slot(&mut self.blocks, e.index);
                for (part, to) in [
                    (d.text, &mut block.text),
                    (d.partial_json, &mut block.input_json),
                    (d.thinking, &mut block.thinking),
                    (d.signature, &mut block.signature),
                ] {
                    if let Some(part) = part {
                        to.push_str(&part);
                    }
                }
            }
            "message_delta" => {
                if let Some(d) = e.delta {
                    self.stop_reason = d.stop_reason.or(self.stop_reason.take());
                    self.stop_sequence = d.stop_sequence.or(self.stop_sequence.take());
                }
                self.usage.extend(e.usage.unwrap_or_default());
            }
            "error" => self.failed = true,
            _ => {}
        }
    }

    fn into_answer(mut self) -> Option<Value> {
        if self.failed {
            return None;
        }
        let mut message = self.message?;
        self.blocks.sort_by_key(|(i, _)| *i);
        let content = self.blocks.into_iter().map(|(_, b)| b.into_value());
        message.insert("content".into(), Value::Array(content.collect()));
        if let Some(r) = self.stop_reason {
            message.insert("stop_reason".into(), r);
        }
        if let Some(s) = self.stop_sequence {
            message.insert("stop_sequence".into(), s);
        }
        if !self.usage.is_empty() {
            let mut usage = match message.remove("usage") {
                Some(Value::Object(u)) => u,
                _ => Map::new(),
            };
            usage.extend(self.usage);
            message.insert("usage".into(), Value::Object(usage));
        }
        Some(Value::Object(message))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Api, Transcript};
    use serde_json::json;

    const STREAM: &str = include_str!("../../../tests/fixtures/anthropic/stream_tools.sse");

    fn answer(parts: &[&str]) -> Option<serde_json::Value> {
        let mut t = Transcript::default();
        for p in parts {
            t.push(p.as_bytes());
        }
        t.answer(true, Api::Messages)
    }

    #[test]
    fn a_stream_becomes_the_message_it_amounts_to() {
        // Cut at awkward places: the events are whole again once split.
        let (a, b) = STREAM.split_at(STREAM.len() / 3);
        let (b, c) = b.split_at(b.len() / 2);
        assert_eq!(
            answer(&[a, b, c]),
            Some(json!({
                "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
                "model": "claude-3-5-sonnet-20241022",
                "content": [
                    {"type": "text", "text": "Checking ü both."},
                    {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
                     "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Rome"}},
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 472, "output_tokens": 89,
                          "cache_creation_input_tokens": 100, "cache_read_input_tokens": 300},
            }))
        );
    }

    #[test]
    fn thinking_is_joined_and_an_error_leaves_no_answer() {
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"stop_reason\":null}}\n\n";
        let thinking = "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n\
            data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me \"}}\n\n\
            data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"see.\"}}\n\n\
            data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig\"}}\n\n\
            data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":3}}\n\n";
        let got = answer(&[start, thinking]).unwrap();
        assert_eq!(
            got["content"],
            json!([{"type": "thinking", "thinking": "Let me see.", "signature": "sig"}])
        );
        assert_eq!(got["stop_reason"], "max_tokens");
        let error = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        assert_eq!(answer(&[start, error]), None);
        // Not a Messages stream at all.
        assert_eq!(answer(&["data: {\"choices\":[]}\n\n"]), None);
    }
}
