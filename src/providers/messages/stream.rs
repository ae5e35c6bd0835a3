//! OpenAI chat chunks (what every chat translator streams) into Anthropic's stream events, as
//! they arrive: `message_start` on the first chunk, a content block per text run and per tool
//! call (tool calls' argument deltas may interleave: each stays open under its own index),
//! `message_delta` with the stop reason and the final usage, then `message_stop`.
//!
//! The final usage comes after the finish reason in OpenAI streams (a chunk of its own), so
//! `message_delta` is written at `[DONE]` or at the end of the stream, whichever is first.

use super::response::{message_id, stop_reason, usage_json};
use crate::stream::chunk::{ChatChunk, ToolCallDelta};
use crate::stream::sse::{self, SseSplitter};
use crate::stream::Translator;
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

pub(crate) struct MessageStream {
    inner: Box<dyn Translator>,
    splitter: SseSplitter,
    /// The model the client asked for, until a chunk names one.
    asked_model: Option<String>,
    started: bool,
    /// Index of the next content block.
    next_block: usize,
    /// The open text block, if any.
    text_block: Option<usize>,
    /// OpenAI tool-call index → open content block.
    tools: Vec<(usize, usize)>,
    stop_reason: Option<&'static str>,
    events: u32,
    /// `message_stop` was written.
    ended: bool,
}

impl MessageStream {
    pub(crate) fn new(inner: Box<dyn Translator>, model: Option<&str>) -> Self {
        MessageStream {
            inner,
            splitter: SseSplitter::default(),
            asked_model: model.map(str::to_string),
            started: false,
            next_block: 0,
            text_block: None,
            tools: Vec::new(),
            stop_reason: None,
            events: 0,
            ended: false,
        }
    }

    fn event(out: &mut BytesMut, name: &str, v: &Value) {
        sse::write_json_event(out, Some(name), v);
    }

    fn start(&mut self, chunk: &ChatChunk<'_>, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let model = chunk
            .model
            .as_deref()
            .or(self.asked_model.as_deref())
            .unwrap_or("");
        // The input count when the provider gives it this early; the final usage goes in
        // `message_delta` either way.
        let usage = match chunk.usage.as_ref().filter(|u| u.is_object()) {
            Some(_) => self.inner.usage().map(|u| usage_json(&u)),
            None => None,
        }
        .unwrap_or_else(|| json!({"input_tokens": 0, "output_tokens": 0}));
        let message = json!({
            "id": message_id(chunk.id.as_deref()),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage,
        });
        Self::event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": message}),
        );
    }

    fn stop_block(out: &mut BytesMut, index: usize) {
        Self::event(
            out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
    }

    fn close_text(&mut self, out: &mut BytesMut) {
        if let Some(i) = self.text_block.take() {
            Self::stop_block(out, i);
        }
    }

    fn close_all(&mut self, out: &mut BytesMut) {
        self.close_text(out);
        for (_, block) in std::mem::take(&mut self.tools) {
            Self::stop_block(out, block);
        }
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        let index = match self.text_block {
            Some(i) => i,
            None => {
                let i = self.next_block;
                self.next_block += 1;
                self.text_block = Some(i);
                Self::event(
                    out,
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": i,
                            "content_block": {"type": "text", "text": ""}}),
                );
                i
            }
        };
        self.events += 1;
        Self::event(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": text}}),
        );
    }

    fn tool_call(&mut self, call: &ToolCallDelta<'_>, out: &mut BytesMut) {
        let at = call.index;
        let (name, args) = call.function.as_ref().map_or((None, None), |f| {
            (f.name.as_deref(), f.arguments.as_deref())
        });
        let index = match self.tools.iter().find(|(t, _)| *t == at) {
            Some((_, block)) => *block,
            None => {
                // A tool call after text: the text block ends, as Anthropic's own do.
                self.close_text(out);
                let block = self.next_block;
                self.next_block += 1;
                self.tools.push((at, block));
                Self::event(
                    out,
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": block,
                            "content_block": {"type": "tool_use",
                                "id": call.id.as_deref(),
                                "name": name,
                                "input": {}}}),
                );
                block
            }
        };
        let args = args.unwrap_or("");
        if !args.is_empty() {
            self.events += 1;
            Self::event(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": args}}),
            );
        }
    }

    /// One OpenAI chunk.
    fn chunk(&mut self, v: &ChatChunk<'_>, out: &mut BytesMut) {
        if let Some(error) = v.error.as_ref().filter(|e| e.is_object()) {
            // A failure the target's translator reported in the stream.
            let message = error.get("message").and_then(Value::as_str).unwrap_or("");
            Self::event(
                out,
                "error",
                &json!({"type": "error",
                        "error": {"type": "api_error", "message": message}}),
            );
            return;
        }
        // Azure leads with a chunk of its own (prompt filter results: no choices, an empty id
        // and model): the message starts with the first chunk that is the answer's, or its id
        // and model would be empty.
        if !self.started && v.choices.is_empty() && !v.usage.as_ref().is_some_and(Value::is_object)
        {
            return;
        }
        self.start(v, out);
        let Some(choice) = v.choices.first() else {
            return;
        };
        if let Some(delta) = &choice.delta {
            if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
                self.text(text, out);
            }
            for call in &delta.tool_calls {
                self.tool_call(call, out);
            }
        }
        if let Some(finish) = choice.finish_reason.as_deref() {
            self.stop_reason = Some(stop_reason(finish));
            self.close_all(out);
        }
    }

    /// `message_delta` (stop reason, final usage) and `message_stop`, once.
    fn end(&mut self, out: &mut BytesMut) {
        if self.ended || !self.started {
            return;
        }
        self.ended = true;
        self.close_all(out);
        let usage = self.inner.usage().unwrap_or_default();
        Self::event(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"),
                              "stop_sequence": null},
                    "usage": usage_json(&usage)}),
        );
        Self::event(out, "message_stop", &json!({"type": "message_stop"}));
    }

    fn translate(&mut self, openai: &[u8], out: &mut BytesMut) {
        // The splitter is taken out for the walk so each event is handled in place (no copy).
        let mut splitter = std::mem::take(&mut self.splitter);
        splitter.each(openai, |event| {
            let Some(payload) = sse::payload(event) else {
                return;
            };
            if payload.as_ref() == b"[DONE]" {
                self.end(out);
            } else if let Some(v) = ChatChunk::parse(&payload) {
                self.chunk(&v, out);
            }
        });
        self.splitter = splitter;
    }
}

impl Translator for MessageStream {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let openai = self.inner.push(chunk)?;
        let mut out = BytesMut::new();
        self.translate(&openai, &mut out);
        (!out.is_empty()).then(|| out.freeze())
    }

    fn finish(&mut self) -> Option<Bytes> {
        let mut out = BytesMut::new();
        if let Some(tail) = self.inner.finish() {
            self.translate(&tail, &mut out);
        }
        if let Some(rest) = self.splitter.finish() {
            // A last event without its blank line.
            let mut whole = rest.to_vec();
            whole.extend_from_slice(b"\n\n");
            self.translate(&whole, &mut out);
        }
        self.end(&mut out);
        (!out.is_empty()).then(|| out.freeze())
    }

    fn usage(&self) -> Option<Usage> {
        self.inner.usage()
    }

    fn model(&self) -> Option<&str> {
        self.inner.model()
    }

    fn events(&self) -> u32 {
        self.events
    }

    fn overflowed(&self) -> bool {
        self.inner.overflowed()
    }

    fn may_rewrite(&self) -> bool {
        true
    }

    fn content_type(&self) -> Option<&'static str> {
        Some("text/event-stream")
    }
}
