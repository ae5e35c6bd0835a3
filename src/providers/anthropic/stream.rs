//! Anthropic's stream events into OpenAI chunks as they arrive, and the meter of a
//! Messages API answer relayed as it is.

use super::*;

/// The event name and JSON payload of one SSE event.
pub(super) fn event_json(event: &Bytes) -> Option<Value> {
    let payload = data(event)?;
    serde_json::from_slice(&payload).ok()
}

/// A streamed chat answer: Anthropic's events become OpenAI `chat.completion.chunk`s as they
/// arrive — the role on the first, text and tool-call deltas with each tool call's own index,
/// the finish reason and usage on the last — then `[DONE]`. An `error` event ends the stream
/// with an error event the client can see.
pub(super) struct ChatStream {
    pub(super) opts: Opts,
    pub(super) splitter: SseSplitter,
    pub(super) id: String,
    pub(super) model: String,
    pub(super) counts: Counts,
    /// Anthropic content-block index → OpenAI tool-call index, for tool_use blocks.
    pub(super) tools: Vec<(u64, usize)>,
    pub(super) events: u32,
    pub(super) done: bool,
}

impl ChatStream {
    pub(super) fn new(opts: Opts) -> Self {
        ChatStream {
            opts,
            splitter: SseSplitter::default(),
            id: String::new(),
            model: String::new(),
            counts: Counts::default(),
            tools: Vec::new(),
            events: 0,
            done: false,
        }
    }

    pub(super) fn chunk(
        &self,
        delta: Value,
        finish: Option<String>,
        usage: Option<Value>,
    ) -> Bytes {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.opts.created,
            "model": self.model,
            "provider": SLUG,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        sse::json_event(&c)
    }

    /// Translates one Anthropic event; appends what the client gets to `out`.
    pub(super) fn on_event(&mut self, event: &Value, out: &mut BytesMut) {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "message_start" => {
                let msg = event.get("message").cloned().unwrap_or(Value::Null);
                self.id = msg
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                self.model = msg
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if let Some(u) = msg.get("usage") {
                    self.counts.read(u);
                }
                out.extend_from_slice(&self.chunk(
                    json!({"role": "assistant", "content": ""}),
                    None,
                    None,
                ));
            }
            "content_block_start" => {
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = event.get("content_block").cloned().unwrap_or(Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let k = self.tools.len();
                        self.tools.push((index, k));
                        self.events += 1;
                        out.extend_from_slice(&self.chunk(
                            json!({"tool_calls": [{
                                "index": k,
                                "id": block.get("id").cloned().unwrap_or(json!("")),
                                "type": "function",
                                "function": {"name": block.get("name").cloned().unwrap_or(json!("")), "arguments": ""},
                            }]}),
                            None,
                            None,
                        ));
                    }
                    Some("text") => {
                        let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            self.events += 1;
                            out.extend_from_slice(&self.chunk(
                                json!({"content": text}),
                                None,
                                None,
                            ));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = event.get("delta").cloned().unwrap_or(Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        self.events += 1;
                        let text = delta.get("text").cloned().unwrap_or(json!(""));
                        out.extend_from_slice(&self.chunk(json!({"content": text}), None, None));
                    }
                    Some("input_json_delta") => {
                        let Some(&(_, k)) = self.tools.iter().find(|(i, _)| *i == index) else {
                            return;
                        };
                        self.events += 1;
                        let partial = delta.get("partial_json").cloned().unwrap_or(json!(""));
                        out.extend_from_slice(&self.chunk(
                            json!({"tool_calls": [{"index": k, "function": {"arguments": partial}}]}),
                            None,
                            None,
                        ));
                    }
                    Some(_) if !self.opts.strict => {
                        // Thinking and other deltas, for clients that accept provider fields.
                        out.extend_from_slice(&self.chunk(
                            json!({"content_blocks": [{"index": index, "delta": delta}]}),
                            None,
                            None,
                        ));
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = event.get("usage") {
                    self.counts.read(u);
                }
                let raw = event
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                let mut finish = finish_reason(raw, self.opts.strict);
                if self.opts.strict && !self.tools.is_empty() && finish == "stop" {
                    finish = "tool_calls".into();
                }
                out.extend_from_slice(&self.chunk(
                    json!({}),
                    Some(finish),
                    Some(self.counts.openai()),
                ));
            }
            "message_stop" => {
                self.done = true;
                out.extend_from_slice(sse::DONE);
            }
            "error" => {
                self.done = true;
                // The event's JSON is Anthropic's error body: the shared envelope reads it.
                let body = crate::providers::error_envelope::envelope(
                    SLUG,
                    500,
                    event.to_string().as_bytes(),
                );
                sse::write_event(out, Some("error"), &body);
            }
            _ => {}
        }
    }
}

impl Translator for ChatStream {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let mut out = BytesMut::new();
        for event in self.splitter.push(&chunk) {
            if self.done {
                break;
            }
            if let Some(v) = event_json(&event) {
                self.on_event(&v, &mut out);
            }
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    fn finish(&mut self) -> Option<Bytes> {
        let mut out = BytesMut::new();
        if let Some(rest) = self.splitter.finish() {
            if let Some(v) = event_json(&rest) {
                self.on_event(&v, &mut out);
            }
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    fn usage(&self) -> Option<Usage> {
        (!self.id.is_empty()).then(|| self.counts.usage())
    }

    fn model(&self) -> Option<&str> {
        (!self.model.is_empty()).then_some(self.model.as_str())
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

/// The meter of a native `/v1/messages` answer (JSON or Anthropic SSE), passed through as it
/// is; Bedrock's Anthropic models feed it the events they unwrap.
pub(crate) fn native_meter(sse: bool) -> Box<dyn Translator> {
    Box::new(Native::new(sse))
}

/// The native `/v1/messages` route: the answer goes to the client byte for byte; usage and
/// model are read on the way (from the message, or from `message_start` / `message_delta`).
pub(super) struct Native {
    pub(super) sse: bool,
    pub(super) splitter: SseSplitter,
    pub(super) body: BytesMut,
    pub(super) counts: Option<Counts>,
    pub(super) model: Option<String>,
    pub(super) events: u32,
}

impl Native {
    pub(super) fn new(sse: bool) -> Self {
        Native {
            sse,
            splitter: SseSplitter::default(),
            body: BytesMut::new(),
            counts: None,
            model: None,
            events: 0,
        }
    }

    pub(super) fn read(&mut self, v: &Value) {
        let msg = v.get("message").unwrap_or(v);
        if self.model.is_none() {
            self.model = msg.get("model").and_then(Value::as_str).map(String::from);
        }
        if let Some(u) = msg.get("usage").or_else(|| v.get("usage")) {
            self.counts.get_or_insert_with(Counts::default).read(u);
        }
    }
}

impl Translator for Native {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.sse {
            for event in self.splitter.push(&chunk) {
                if let Some(v) = event_json(&event) {
                    if v.get("type").and_then(Value::as_str) == Some("content_block_delta") {
                        self.events += 1;
                    }
                    self.read(&v);
                }
            }
        } else if self.body.len() + chunk.len() <= MAX_BODY {
            self.body.extend_from_slice(&chunk);
        }
        Some(chunk)
    }

    fn finish(&mut self) -> Option<Bytes> {
        if !self.sse {
            if let Ok(v) = serde_json::from_slice::<Value>(&self.body) {
                self.read(&v);
            }
        }
        None
    }

    fn usage(&self) -> Option<Usage> {
        self.counts.map(|c| c.usage())
    }

    fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    fn events(&self) -> u32 {
        self.events
    }

    fn may_rewrite(&self) -> bool {
        false
    }
}
