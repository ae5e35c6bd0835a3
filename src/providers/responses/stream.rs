//! A streamed OpenAI chat answer as the Responses API's event sequence, translated chunk by
//! chunk as the provider's chat translator hands them out: nothing is held back but the text
//! and arguments the closing events and `response.completed` must repeat.

use super::answer::{status, write_part, write_response, Item, Part, Parts};
use crate::stream::chunk::{ChatChunk, ToolCallDelta};
use crate::stream::sse::{self, SseSplitter};
use crate::stream::Translator;
use crate::types::json::Object;
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};
use serde_json::Value;

/// The Responses event stream of a chat stream. Output items get their `output_index` in the
/// order they start; tool calls are found by their chat index, so argument deltas of several
/// calls may interleave.
pub(super) struct ResponsesStream {
    chat: Box<dyn Translator>,
    created: u64,
    splitter: SseSplitter,
    seq: u64,
    started: bool,
    done: bool,
    id: String,
    model: String,
    items: Vec<Item>,
    /// The output index of the message item being written, if one is open.
    message: Option<usize>,
    /// Chat tool-call index → output index, for the calls still open.
    calls: Vec<(usize, usize)>,
    finish: Option<String>,
    /// Where an event's payload is written (kept: one allocation per stream, not per event).
    scratch: Vec<u8>,
}

impl ResponsesStream {
    pub(super) fn new(chat: Box<dyn Translator>, created: u64) -> Self {
        ResponsesStream {
            chat,
            created,
            splitter: SseSplitter::default(),
            seq: 0,
            started: false,
            done: false,
            id: String::new(),
            model: String::new(),
            items: Vec::new(),
            message: None,
            calls: Vec::new(),
            finish: None,
            scratch: Vec::new(),
        }
    }

    /// Writes one event: its payload is `type`, the members `fields` writes, then the next
    /// `sequence_number`.
    fn emit(
        &mut self,
        out: &mut BytesMut,
        kind: &'static str,
        fields: impl FnOnce(&mut Object<'_>, &Self),
    ) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let mut o = Object::new(&mut buf);
        o.str("type", kind);
        fields(&mut o, self);
        o.uint("sequence_number", self.seq);
        o.end();
        self.seq += 1;
        sse::write_event(out, Some(kind), &buf);
        self.scratch = buf;
    }

    /// Writes the response object under `key`.
    fn response(
        &self,
        o: &mut Object<'_>,
        state: &str,
        incomplete: Option<&str>,
        error: Option<&str>,
        usage: Option<Usage>,
    ) {
        write_response(
            o.key("response"),
            &Parts {
                id: &self.id,
                created: self.created,
                model: &self.model,
                status: state,
                incomplete,
                error,
                items: &self.items,
                usage,
            },
        );
    }

    /// The `output_item.added` / `output_item.done` event of the item at `at`.
    fn item_event(
        &mut self,
        out: &mut BytesMut,
        kind: &'static str,
        at: usize,
        status: &'static str,
    ) {
        self.emit(out, kind, |o, s| {
            o.uint("output_index", at as u64);
            if let Some(item) = s.items.get(at) {
                item.write(o.key("item"), status);
            } else {
                o.null("item");
            }
        });
    }

    /// One chat event's payload (a chunk, `[DONE]`, or something to drop).
    fn on_data(&mut self, data: &[u8], out: &mut BytesMut) {
        if self.done {
            return;
        }
        if data == b"[DONE]" {
            self.complete(out);
            return;
        }
        let Some(chunk) = ChatChunk::parse(data) else {
            return;
        };
        if !self.started {
            self.started = true;
            self.id = chunk.id.as_deref().unwrap_or("").to_string();
            self.model = chunk.model.as_deref().unwrap_or("").to_string();
            for kind in ["response.created", "response.in_progress"] {
                self.emit(out, kind, |o, s| {
                    s.response(o, "in_progress", None, None, None)
                });
            }
        }
        if let Some(error) = chunk.error {
            self.fail(out, error);
            return;
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            return;
        };
        if let Some(delta) = choice.delta {
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.text(out, &text, false);
            }
            if let Some(text) = delta.refusal.filter(|t| !t.is_empty()) {
                self.text(out, &text, true);
            }
            for call in delta.tool_calls {
                self.tool_delta(out, call);
            }
        }
        if let Some(reason) = choice.finish_reason {
            self.finish = Some(reason.into_owned());
        }
    }

    /// A text (or refusal) delta: into the open message item, opened first when none is.
    fn text(&mut self, out: &mut BytesMut, text: &str, refusal: bool) {
        let at = match self.message {
            Some(at) => at,
            None => {
                let at = self.items.len();
                self.items.push(Item::Message {
                    id: format!("msg_{}_{at}", self.id),
                    text: String::new(),
                    refusal: None,
                });
                self.message = Some(at);
                self.item_event(out, "response.output_item.added", at, "in_progress");
                let part = if refusal {
                    Part::Refusal("")
                } else {
                    Part::Text("")
                };
                self.emit(out, "response.content_part.added", |o, s| {
                    o.str("item_id", s.items.get(at).map_or("", Item::id));
                    o.uint("output_index", at as u64);
                    o.uint("content_index", 0);
                    write_part(o.key("part"), part);
                });
                at
            }
        };
        let Some(Item::Message {
            text: all,
            refusal: refused,
            ..
        }) = self.items.get_mut(at)
        else {
            return;
        };
        let kind = if refusal {
            refused.get_or_insert_with(String::new).push_str(text);
            "response.refusal.delta"
        } else {
            all.push_str(text);
            "response.output_text.delta"
        };
        self.emit(out, kind, |o, s| {
            o.str("item_id", s.items.get(at).map_or("", Item::id));
            o.uint("output_index", at as u64);
            o.uint("content_index", 0);
            o.str("delta", text);
        });
    }

    fn tool_delta(&mut self, out: &mut BytesMut, call: ToolCallDelta<'_>) {
        let (name, arguments) = match call.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let at = match self.calls.iter().find(|(i, _)| *i == call.index) {
            Some((_, at)) => *at,
            None => {
                // A new item: the text before it is complete.
                self.close_message(out);
                let at = self.items.len();
                self.items.push(Item::Call {
                    id: format!("fc_{}_{at}", self.id),
                    call_id: call.id.as_deref().unwrap_or("").to_string(),
                    name: name.as_deref().unwrap_or("").to_string(),
                    arguments: String::new(),
                });
                self.calls.push((call.index, at));
                self.item_event(out, "response.output_item.added", at, "in_progress");
                at
            }
        };
        let Some(Item::Call { arguments: all, .. }) = self.items.get_mut(at) else {
            return;
        };
        let Some(delta) = arguments.filter(|a| !a.is_empty()) else {
            return;
        };
        all.push_str(&delta);
        self.emit(out, "response.function_call_arguments.delta", |o, s| {
            o.str("item_id", s.items.get(at).map_or("", Item::id));
            o.uint("output_index", at as u64);
            o.str("delta", &delta);
        });
    }

    fn close_message(&mut self, out: &mut BytesMut) {
        let Some(at) = self.message.take() else {
            return;
        };
        let refused = matches!(
            self.items.get(at),
            Some(Item::Message {
                refusal: Some(_),
                ..
            })
        );
        let header = |o: &mut Object<'_>, s: &Self| {
            o.str("item_id", s.items.get(at).map_or("", Item::id));
            o.uint("output_index", at as u64);
            o.uint("content_index", 0);
        };
        let kind = if refused {
            "response.refusal.done"
        } else {
            "response.output_text.done"
        };
        self.emit(out, kind, |o, s| {
            header(o, s);
            match message_part(&s.items, at) {
                Part::Refusal(r) => o.str("refusal", r),
                Part::Text(t) => o.str("text", t),
            }
        });
        self.emit(out, "response.content_part.done", |o, s| {
            header(o, s);
            write_part(o.key("part"), message_part(&s.items, at));
        });
        self.item_event(out, "response.output_item.done", at, "completed");
    }

    fn close_calls(&mut self, out: &mut BytesMut) {
        for (_, at) in std::mem::take(&mut self.calls) {
            self.emit(out, "response.function_call_arguments.done", |o, s| {
                if let Some(Item::Call {
                    id,
                    name,
                    arguments,
                    ..
                }) = s.items.get(at)
                {
                    o.str("item_id", id);
                    o.uint("output_index", at as u64);
                    o.str("name", name);
                    o.str("arguments", arguments);
                }
            });
            self.item_event(out, "response.output_item.done", at, "completed");
        }
    }

    /// The end of the chat stream: open items are closed, then the whole response with the
    /// usage the chat translator metered (`null` when the provider reported none).
    fn complete(&mut self, out: &mut BytesMut) {
        if self.done || !self.started {
            return;
        }
        self.close_message(out);
        self.close_calls(out);
        self.done = true;
        let (state, incomplete) = status(self.finish.as_deref());
        let usage = self.chat.usage();
        let kind = if state == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(out, kind, |o, s| {
            s.response(o, state, incomplete, None, usage)
        });
    }

    /// An error in the chat stream: an `error` event, then `response.failed`.
    fn fail(&mut self, out: &mut BytesMut, error: Value) {
        self.done = true;
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the provider ended the stream with an error");
        let code = error.get("code").unwrap_or(&Value::Null);
        self.emit(out, "error", |o, _| {
            o.value("code", code);
            o.str("message", message);
            o.null("param");
        });
        let usage = self.chat.usage();
        self.emit(out, "response.failed", |o, s| {
            s.response(o, "failed", None, Some(message), usage)
        });
    }

    fn translate(&mut self, chat: Option<Bytes>, out: &mut BytesMut) {
        let Some(chat) = chat else { return };
        // Taken out for the call (no copy): its events borrow it while `self` handles them.
        let mut splitter = std::mem::take(&mut self.splitter);
        splitter.each(&chat, |event| {
            if let Some(data) = sse::payload(event) {
                self.on_data(&data, out);
            }
        });
        self.splitter = splitter;
    }
}

/// The text (or refusal) of the message item at `at`, as its closing events repeat it.
fn message_part(items: &[Item], at: usize) -> Part<'_> {
    match items.get(at) {
        Some(Item::Message {
            refusal: Some(r), ..
        }) => Part::Refusal(r),
        Some(Item::Message { text, .. }) => Part::Text(text),
        _ => Part::Text(""),
    }
}

impl Translator for ResponsesStream {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let chat = self.chat.push(chunk);
        let mut out = BytesMut::new();
        self.translate(chat, &mut out);
        (!out.is_empty()).then(|| out.freeze())
    }

    fn finish(&mut self) -> Option<Bytes> {
        let chat = self.chat.finish();
        let mut out = BytesMut::new();
        self.translate(chat, &mut out);
        if let Some(rest) = self.splitter.finish() {
            if let Some(data) = sse::payload(&rest) {
                self.on_data(&data, &mut out);
            }
        }
        self.complete(&mut out);
        (!out.is_empty()).then(|| out.freeze())
    }

    fn usage(&self) -> Option<Usage> {
        self.chat.usage()
    }

    fn model(&self) -> Option<&str> {
        self.chat.model()
    }

    fn events(&self) -> u32 {
        self.chat.events()
    }

    fn overflowed(&self) -> bool {
        self.chat.overflowed() || self.splitter.overflowed()
    }

    fn may_rewrite(&self) -> bool {
        true
    }

    fn content_type(&self) -> Option<&'static str> {
        Some("text/event-stream")
    }

    fn stopped(&self) -> bool {
        self.chat.stopped()
    }
}
