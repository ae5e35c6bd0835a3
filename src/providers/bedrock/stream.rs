//! AWS's binary event stream (`application/vnd.amazon.eventstream`) into OpenAI chunks:
//! Converse streams translated event by event, and Messages streams (Claude's own format)
//! unwrapped and metered.

use super::response::*;
use crate::providers::error_envelope as provider_error;
use crate::providers::ResponseOptions;
use crate::stream::{sse, Translator};
use crate::types::usage::Usage;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Largest partial frame buffered (AWS's own limit on one event-stream message is 16 MiB).
pub(super) const MAX_FRAME: usize = 16 * 1024 * 1024;

/// AWS event-stream frames from arbitrary chunks: whole messages as they complete. A corrupt
/// frame (bad CRC or length) ends the reading; a partial frame over `MAX_FRAME` overflows.
#[derive(Default)]
pub(super) struct Frames {
    pub(super) decoder: MessageFrameDecoder,
    pub(super) buf: BytesMut,
    pub(super) overflowed: bool,
    pub(super) broken: bool,
}

impl Frames {
    /// Feeds a chunk; hands each complete message, or the reason the stream cannot be read
    /// further, to `on`.
    pub(super) fn feed(&mut self, chunk: &[u8], mut on: impl FnMut(Result<Message, String>)) {
        if self.overflowed || self.broken {
            return;
        }
        self.buf.extend_from_slice(chunk);
        loop {
            match self.decoder.decode_frame(&mut self.buf) {
                Ok(DecodedFrame::Complete(message)) => on(Ok(message)),
                Ok(DecodedFrame::Incomplete) => break,
                Err(e) => {
                    self.broken = true;
                    self.buf.clear();
                    on(Err(format!("unreadable event-stream frame: {e}")));
                    break;
                }
            }
        }
        if self.buf.len() > MAX_FRAME {
            self.overflowed = true;
            self.buf.clear();
        }
    }
}

/// A `converse-stream` answer → OpenAI chunks. Each decoded frame is one event
/// (`:event-type` header; JSON payload): `messageStart` gives the role chunk, text and tool
/// input deltas become content and `tool_calls` chunks (tools numbered from 0 in the order
/// their blocks start, whatever Bedrock's block index), `messageStop` the finish reason, and
/// `metadata` the usage chunk (when the client asked for it) and `[DONE]`. An exception frame
/// ends the stream with an error event in Portkey's envelope; a stream cut before its end gets
/// no `[DONE]`, so the client can tell.
pub(crate) struct ConverseStream {
    frames: Frames,
    created: u64,
    strict: bool,
    hide_usage: bool,
    model: Option<String>,
    role_sent: bool,
    /// Bedrock's content block index → OpenAI tool call index.
    tools: HashMap<u64, u32>,
    usage: Option<Usage>,
    events: u32,
    stopped: bool,
    done: bool,
}

impl ConverseStream {
    pub(crate) fn new(opts: &ResponseOptions<'_>) -> Self {
        ConverseStream {
            frames: Frames::default(),
            created: opts.created,
            strict: opts.strict,
            hide_usage: opts.hide_usage,
            model: opts.model.map(str::to_string),
            role_sent: false,
            tools: HashMap::new(),
            usage: None,
            events: 0,
            stopped: false,
            done: false,
        }
    }

    pub(super) fn write(out: &mut BytesMut, v: &Value) {
        sse::write_json_event(out, None, v);
    }

    pub(super) fn chunk(&mut self, mut delta: Value, finish: Value, out: &mut BytesMut) {
        if !self.role_sent {
            self.role_sent = true;
            if let Value::Object(d) = &mut delta {
                d.insert("role".into(), json!("assistant"));
            }
        }
        let c = json!({
            "id": answer_id(self.created),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model.as_deref().unwrap_or(""),
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        Self::write(out, &c);
    }

    pub(super) fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
        message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str())
    }

    pub(super) fn frame(&mut self, message: &Message, out: &mut BytesMut) {
        if self.done {
            return;
        }
        let payload: Value = serde_json::from_slice(message.payload()).unwrap_or(Value::Null);
        if Self::header(message, ":message-type") == Some("exception") {
            let kind = Self::header(message, ":exception-type").unwrap_or("exception");
            let status = match kind {
                "throttlingException" => 429,
                "validationException" => 400,
                "serviceUnavailableException" => 503,
                _ => 500,
            };
            let body = provider_error::envelope(super::SLUG, status, message.payload());
            sse::write_event(out, None, &body);
            self.done = true;
            return;
        }
        match Self::header(message, ":event-type").unwrap_or("") {
            "messageStart" => {
                self.events += 1;
                self.chunk(json!({"content": ""}), Value::Null, out);
            }
            "contentBlockStart" => {
                let index = payload
                    .get("contentBlockIndex")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if let Some(tool) = payload.get("start").and_then(|s| s.get("toolUse")) {
                    let n = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                    self.tools.insert(index, n);
                    self.events += 1;
                    let delta = json!({"tool_calls": [{
                        "index": n,
                        "id": tool.get("toolUseId").cloned().unwrap_or(Value::Null),
                        "type": "function",
                        "function": {
                            "name": tool.get("name").cloned().unwrap_or(json!("")),
                            "arguments": "",
                        },
                    }]});
                    self.chunk(delta, Value::Null, out);
                }
            }
            "contentBlockDelta" => {
                let index = payload
                    .get("contentBlockIndex")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let delta = payload.get("delta");
                if let Some(text) = delta.and_then(|d| d.get("text")).and_then(Value::as_str) {
                    if !text.is_empty() {
                        self.events += 1;
                        self.chunk(json!({"content": text}), Value::Null, out);
                    }
                } else if let Some(args) = delta
                    .and_then(|d| d.get("toolUse"))
                    .and_then(|t| t.get("input"))
                    .and_then(Value::as_str)
                {
                    if let Some(&n) = self.tools.get(&index) {
                        self.events += 1;
                        let delta = json!({"tool_calls": [{
                            "index": n,
                            "function": {"arguments": args},
                        }]});
                        self.chunk(delta, Value::Null, out);
                    }
                }
            }
            "messageStop" => {
                let raw = payload
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                let finish = finish_reason(raw, self.strict);
                self.chunk(json!({}), finish, out);
                self.stopped = true;
            }
            "metadata" => {
                self.usage = usage(payload.get("usage"));
                self.end(out);
            }
            _ => {}
        }
    }

    /// The usage chunk (when asked for) and `[DONE]`.
    pub(super) fn end(&mut self, out: &mut BytesMut) {
        if let (false, Some(u)) = (self.hide_usage, &self.usage) {
            let c = json!({
                "id": answer_id(self.created),
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model.as_deref().unwrap_or(""),
                "choices": [],
                "usage": u.openai_json(),
            });
            Self::write(out, &c);
        }
        out.extend_from_slice(sse::DONE);
        self.done = true;
    }
}

impl Translator for ConverseStream {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let mut out = BytesMut::new();
        let mut frames = std::mem::take(&mut self.frames);
        frames.feed(&chunk, |frame| match frame {
            Ok(message) => self.frame(&message, &mut out),
            Err(why) if !self.done => {
                let body = provider_error::envelope(super::SLUG, 502, why.as_bytes());
                sse::write_event(&mut out, None, &body);
                self.done = true;
            }
            Err(_) => {}
        });
        self.frames = frames;
        (!out.is_empty()).then(|| out.freeze())
    }

    fn finish(&mut self) -> Option<Bytes> {
        // A stream that stopped but lost its metadata frame still ends cleanly.
        if self.stopped && !self.done {
            let mut out = BytesMut::new();
            self.end(&mut out);
            return Some(out.freeze());
        }
        None
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
        self.frames.overflowed
    }

    fn may_rewrite(&self) -> bool {
        true
    }

    fn content_type(&self) -> Option<&'static str> {
        Some("text/event-stream")
    }
}

/// An InvokeModel stream of an Anthropic model (`/v1/messages`): each `chunk` frame carries one
/// Anthropic event, base64-encoded, which goes to the client as Anthropic's own SSE event
/// (`event: <type>` and `data: <json>`), metered by the native Anthropic meter. An exception
/// frame becomes Anthropic's `error` event.
pub(crate) struct MessagesStream {
    frames: Frames,
    meter: Box<dyn Translator>,
    done: bool,
}

impl MessagesStream {
    pub(crate) fn new() -> Self {
        MessagesStream {
            frames: Frames::default(),
            meter: crate::providers::anthropic::native_meter(true),
            done: false,
        }
    }

    pub(super) fn error_event(kind: &str, message: &str, out: &mut BytesMut) {
        let v = json!({"type": "error", "error": {"type": kind, "message": message}});
        sse::write_json_event(out, Some("error"), &v);
    }

    pub(super) fn frame(&mut self, message: &Message, out: &mut BytesMut) {
        if self.done {
            return;
        }
        let payload: Value = serde_json::from_slice(message.payload()).unwrap_or(Value::Null);
        if ConverseStream::header(message, ":message-type") == Some("exception") {
            let kind = ConverseStream::header(message, ":exception-type").unwrap_or("api_error");
            let text = payload
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("bedrock stream failed");
            Self::error_event(kind, text, out);
            self.done = true;
            return;
        }
        let event = payload
            .get("bytes")
            .and_then(Value::as_str)
            .and_then(|b| aws_smithy_types::base64::decode(b).ok())
            .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok());
        let Some(event) = event else {
            return;
        };
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        // Bedrock adds its own invocation metrics to the last event: not Anthropic's.
        let mut event = event.clone();
        if let Some(o) = event.as_object_mut() {
            o.remove("amazon-bedrock-invocationMetrics");
        }
        let start = out.len();
        sse::write_json_event(out, Some(kind), &event);
        let written = Bytes::copy_from_slice(&out[start..]);
        let _ = self.meter.push(written);
        if kind == "message_stop" {
            self.done = true;
        }
    }
}

impl Default for MessagesStream {
    fn default() -> Self {
        Self::new()
    }
}

impl Translator for MessagesStream {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let mut out = BytesMut::new();
        let mut frames = std::mem::take(&mut self.frames);
        frames.feed(&chunk, |frame| match frame {
            Ok(message) => self.frame(&message, &mut out),
            Err(why) if !self.done => {
                Self::error_event("api_error", &why, &mut out);
                self.done = true;
            }
            Err(_) => {}
        });
        self.frames = frames;
        (!out.is_empty()).then(|| out.freeze())
    }

    fn finish(&mut self) -> Option<Bytes> {
        let _ = self.meter.finish();
        None
    }

    fn usage(&self) -> Option<Usage> {
        self.meter.usage()
    }

    fn model(&self) -> Option<&str> {
        self.meter.model()
    }

    fn events(&self) -> u32 {
        self.meter.events()
    }

    fn overflowed(&self) -> bool {
        self.frames.overflowed
    }

    fn may_rewrite(&self) -> bool {
        true
    }

    fn content_type(&self) -> Option<&'static str> {
        Some("text/event-stream")
    }
}
