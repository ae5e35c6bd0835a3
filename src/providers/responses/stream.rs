//! A streamed OpenAI chat answer as the Responses API's event sequence, translated chunk by
//! chunk as the provider's chat translator hands them out: nothing is held back but the text
//! and arguments the closing events and `response.completed` must repeat.

use super::answer::{output_text, response_json, status, usage_json, Item, Parts};
use crate::stream::chunk::{ChatChunk, ToolCallDelta};
use crate::stream::sse::{self, SseSplitter};
use crate::stream::Translator;
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

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
        }
    }

    /// Writes one event; its payload gets `type` and the next `sequence_number`.
    fn emit(&mut self, out: &mut BytesMut, kind: &str, mut payload: Value) {
        if let Some(o) = payload.as_object_mut() {
            o.insert("type".into(), Value::from(kind));
            o.insert("sequence_number".into(), Value::from(self.seq));
        }
        self.seq += 1;
        sse::write_event(out, Some(kind), payload.to_string().as_bytes());
    }

    fn response(&self, state: &str, incomplete: Value, usage: Option<Usage>) -> Value {
        response_json(Parts {
            id: &self.id,
            created: self.created,
            model: &self.model,
            status: state,
            incomplete,
            items: &self.items,
            usage: usage_json(usage),
        })
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
            let r = self.response("in_progress", Value::Null, None);
            self.emit(out, "response.created", json!({"response": r}));
            let r = self.response("in_progress", Value::Null, None);
            self.emit(out, "response.in_progress", json!({"response": r}));
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
                let item = self.items[at].json("in_progress");
                let item_id = self.items[at].id().to_string();
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": at, "item": item}),
                );
                let part = if refusal {
                    json!({"type": "refusal", "refusal": ""})
                } else {
                    output_text("")
                };
                self.emit(
                    out,
                    "response.content_part.added",
                    json!({"item_id": item_id, "output_index": at, "content_index": 0, "part": part}),
                );
                at
            }
        };
        let Some(Item::Message {
            id,
            text: all,
            refusal: refused,
        }) = self.items.get_mut(at)
        else {
            return;
        };
        let item_id = id.clone();
        let kind = if refusal {
            refused.get_or_insert_with(String::new).push_str(text);
            "response.refusal.delta"
        } else {
            all.push_str(text);
            "response.output_text.delta"
        };
        self.emit(
            out,
            kind,
            json!({"item_id": item_id, "output_index": at, "content_index": 0, "delta": text}),
        );
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
                let item = self.items[at].json("in_progress");
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": at, "item": item}),
                );
                at
            }
        };
        let Some(Item::Call {
            id, arguments: all, ..
        }) = self.items.get_mut(at)
        else {
            return;
        };
        let Some(delta) = arguments.filter(|a| !a.is_empty()) else {
            return;
        };
        all.push_str(&delta);
        let item_id = id.clone();
        self.emit(
            out,
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": at, "delta": delta}),
        );
    }

    fn close_message(&mut self, out: &mut BytesMut) {
        let Some(at) = self.message.take() else {
            return;
        };
        let Some(Item::Message { id, text, refusal }) = self.items.get(at) else {
            return;
        };
        let (id, done, part) = match refusal {
            Some(r) => (
                id.clone(),
                ("response.refusal.done", json!({"refusal": r})),
                json!({"type": "refusal", "refusal": r}),
            ),
            None => (
                id.clone(),
                ("response.output_text.done", json!({"text": text})),
                output_text(text),
            ),
        };
        let item = self.items[at].json("completed");
        let (kind, mut payload) = done;
        if let Some(o) = payload.as_object_mut() {
            o.insert("item_id".into(), Value::from(id.as_str()));
            o.insert("output_index".into(), Value::from(at));
            o.insert("content_index".into(), Value::from(0));
        }
        self.emit(out, kind, payload);
        self.emit(
            out,
            "response.content_part.done",
            json!({"item_id": id, "output_index": at, "content_index": 0, "part": part}),
        );
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
        );
    }

    fn close_calls(&mut self, out: &mut BytesMut) {
        for (_, at) in std::mem::take(&mut self.calls) {
            let Some(Item::Call {
                id,
                name,
                arguments,
                ..
            }) = self.items.get(at)
            else {
                continue;
            };
            let payload = json!({
                "item_id": id,
                "output_index": at,
                "name": name,
                "arguments": arguments,
            });
            let item = self.items[at].json("completed");
            self.emit(out, "response.function_call_arguments.done", payload);
            self.emit(
                out,
                "response.output_item.done",
                json!({"output_index": at, "item": item}),
            );
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
        let r = self.response(state, incomplete, self.chat.usage());
        let kind = if state == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(out, kind, json!({"response": r}));
    }

    /// An error in the chat stream: an `error` event, then `response.failed`.
    fn fail(&mut self, out: &mut BytesMut, error: Value) {
        self.done = true;
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the provider ended the stream with an error")
            .to_string();
        let code = error.get("code").cloned().unwrap_or(Value::Null);
        self.emit(
            out,
            "error",
            json!({"code": code, "message": message, "param": null}),
        );
        let mut r = self.response("failed", Value::Null, self.chat.usage());
        r["error"] = json!({"code": "server_error", "message": message});
        self.emit(out, "response.failed", json!({"response": r}));
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
