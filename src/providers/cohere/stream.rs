//! Cohere v2 chat stream → OpenAI `chat.completion.chunk` stream, event by event.
//!
//! Cohere sends typed events (`message-start`, `content-delta`, `tool-call-start`,
//! `tool-call-delta`, `message-end`, and some with nothing for OpenAI: `content-start`,
//! `content-end`, `tool-plan-delta`, `tool-call-end`, `citation-*`). Each whole event (the SSE
//! splitter makes chunk boundaries irrelevant) becomes zero or one OpenAI chunk: the role on
//! the first, text deltas, tool calls numbered from 0 in the order they start, the finish
//! reason at `message-end`, then the usage chunk when the client asked for it
//! (`stream_options.include_usage`) and `[DONE]`. A stream that ends without `message-end`
//! (cut upstream) gets no `[DONE]`: the client sees it was cut rather than a clean end.

use super::{finish_reason, usage};
use crate::providers::ResponseOptions;
use crate::stream::sse::{self, data, SseSplitter};
use crate::stream::Translator;
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

pub(crate) struct CohereStream {
    splitter: SseSplitter,
    created: u64,
    strict: bool,
    /// The client did not ask for usage: no usage chunk.
    hide_usage: bool,
    model: Option<String>,
    id: String,
    role_sent: bool,
    /// Tool calls started so far; the current one is `tool_calls - 1`.
    tool_calls: u32,
    usage: Option<Usage>,
    events: u32,
    done: bool,
}

impl CohereStream {
    pub(crate) fn new(opts: &ResponseOptions<'_>) -> Self {
        CohereStream {
            splitter: SseSplitter::default(),
            created: opts.created,
            strict: opts.strict,
            hide_usage: opts.hide_usage,
            model: opts.model.map(str::to_string),
            id: String::new(),
            role_sent: false,
            tool_calls: 0,
            usage: None,
            events: 0,
            done: false,
        }
    }

    /// One OpenAI chunk with `delta` (the role added to the first) and `finish_reason`.
    fn chunk(&mut self, mut delta: Value, finish: Value, out: &mut BytesMut) {
        if !self.role_sent {
            self.role_sent = true;
            if let Value::Object(d) = &mut delta {
                d.insert("role".into(), json!("assistant"));
            }
        }
        let c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model.as_deref().unwrap_or(""),
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        write(out, &c);
    }

    fn event(&mut self, event: &Bytes, out: &mut BytesMut) {
        if self.done {
            return;
        }
        let Some(payload) = data(event) else {
            return;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&payload) else {
            return;
        };
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        let msg = v.get("delta").and_then(|d| d.get("message"));
        match kind {
            "message-start" => {
                if let Some(id) = v.get("id").and_then(Value::as_str) {
                    self.id = id.to_string();
                }
                self.events += 1;
                self.chunk(json!({"content": ""}), Value::Null, out);
            }
            "content-start" | "content-delta" => {
                let text = msg
                    .and_then(|m| m.get("content"))
                    .and_then(|c| c.get("text"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !text.is_empty() {
                    self.events += 1;
                    self.chunk(json!({"content": text}), Value::Null, out);
                }
            }
            "tool-call-start" => {
                let call = msg.and_then(|m| m.get("tool_calls"));
                let f = call.and_then(|c| c.get("function"));
                let index = self.tool_calls;
                self.tool_calls += 1;
                self.events += 1;
                let delta = json!({"tool_calls": [{
                    "index": index,
                    "id": call.and_then(|c| c.get("id")).cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": f.and_then(|f| f.get("name")).cloned().unwrap_or(json!("")),
                        "arguments": f
                            .and_then(|f| f.get("arguments"))
                            .cloned()
                            .unwrap_or(json!("")),
                    },
                }]});
                self.chunk(delta, Value::Null, out);
            }
            "tool-call-delta" => {
                let args = msg
                    .and_then(|m| m.get("tool_calls"))
                    .and_then(|c| c.get("function"))
                    .and_then(|f| f.get("arguments"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !args.is_empty() && self.tool_calls > 0 {
                    self.events += 1;
                    let delta = json!({"tool_calls": [{
                        "index": self.tool_calls - 1,
                        "function": {"arguments": args},
                    }]});
                    self.chunk(delta, Value::Null, out);
                }
            }
            "message-end" => {
                let d = v.get("delta");
                let reason = d
                    .and_then(|d| d.get("finish_reason"))
                    .and_then(Value::as_str)
                    .unwrap_or("COMPLETE");
                self.usage = usage(d.and_then(|d| d.get("usage")));
                let finish = finish_reason(reason, self.strict);
                self.chunk(json!({}), finish, out);
                if let (false, Some(u)) = (self.hide_usage, &self.usage) {
                    let c = json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model.as_deref().unwrap_or(""),
                        "choices": [],
                        "usage": u.openai_json(),
                    });
                    write(out, &c);
                }
                out.extend_from_slice(sse::DONE);
                self.done = true;
            }
            _ => {}
        }
    }
}

fn write(out: &mut BytesMut, v: &Value) {
    sse::write_json_event(out, None, v);
}

impl Translator for CohereStream {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let mut out = BytesMut::new();
        for event in self.splitter.push(&chunk) {
            self.event(&event, &mut out);
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    fn finish(&mut self) -> Option<Bytes> {
        let mut out = BytesMut::new();
        // An unterminated last event is still an event.
        if let Some(rest) = self.splitter.finish() {
            self.event(&rest, &mut out);
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn events(&self) -> u32 {
        self.events
    }

    fn overflowed(&self) -> bool {
        self.splitter.overflowed()
    }

    fn may_rewrite(&self) -> bool {
        true
    }

    fn content_type(&self) -> Option<&'static str> {
        Some("text/event-stream")
    }
}
