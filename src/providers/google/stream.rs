//! Gemini's answers as they arrive (SSE events, or a whole JSON body) into OpenAI's chunks.

use super::*;

pub(super) enum Shape {
    /// A whole JSON answer, held until the end and rewritten.
    Json,
    /// Gemini SSE, rewritten event by event.
    Sse,
    /// Anything else (not expected from Gemini): relayed as it is.
    Other,
}

/// Per-candidate state of a stream.
#[derive(Default)]
pub(super) struct Choice {
    pub(super) started: bool,
    pub(super) calls: u64,
    pub(super) has_calls: bool,
}

/// Translates one Gemini answer to OpenAI's format (see the module doc).
pub(crate) struct GeminiTranslator {
    pub(super) op: Operation,
    pub(super) shape: Shape,
    /// Owned: the request's borrowed fields (`model`) are not kept.
    pub(super) opts: ResponseOptions<'static>,
    pub(super) body: BytesMut,
    pub(super) splitter: SseSplitter,
    pub(super) usage: Option<Usage>,
    pub(super) model: Option<String>,
    pub(super) id: Option<String>,
    pub(super) events: u32,
    pub(super) choices: BTreeMap<u64, Choice>,
    pub(super) next_call: u64,
    pub(super) json_out: Option<Value>,
}

impl GeminiTranslator {
    pub(crate) fn new(
        op: Operation,
        status: u16,
        content_type: &str,
        opts: &ResponseOptions,
    ) -> Self {
        let shape = if !(200..300).contains(&status) {
            Shape::Other
        } else if content_type.starts_with("text/event-stream") {
            Shape::Sse
        } else if content_type.contains("json") {
            Shape::Json
        } else {
            Shape::Other
        };
        GeminiTranslator {
            op,
            shape,
            opts: ResponseOptions {
                hide_usage: opts.hide_usage,
                strict: opts.strict,
                created: opts.created,
                model: None,
            },
            body: BytesMut::new(),
            splitter: SseSplitter::default(),
            usage: None,
            model: None,
            id: None,
            events: 0,
            choices: BTreeMap::new(),
            next_call: 0,
            json_out: None,
        }
    }

    fn chunk(&self, choices: Vec<Value>, usage: Option<Value>) -> Bytes {
        let mut c = json!({
            "id": self.id.clone().unwrap_or_else(|| format!("gemini-{}", self.opts.created)),
            "object": "chat.completion.chunk",
            "created": self.opts.created,
            "model": self.model.clone().unwrap_or_default(),
            "choices": choices,
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        Bytes::from(format!("data: {c}\n\n"))
    }

    /// One Gemini stream event → at most one OpenAI chunk.
    fn event(&mut self, event: &Bytes, out: &mut BytesMut) {
        let Some(payload) = data(event) else {
            return;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&payload) else {
            return;
        };
        if v.get("error").is_some() {
            let wrapped = provider_error::envelope(SLUG, 500, &payload);
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&wrapped);
            out.extend_from_slice(b"\n\n");
            return;
        }
        if self.id.is_none() {
            self.id = Some(answer_id(&v, self.opts.created));
        }
        if self.model.is_none() {
            self.model = v
                .get("modelVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(meta) = v.get("usageMetadata") {
            self.usage = Some(usage_of(meta));
        }
        let mut choices = Vec::new();
        for (i, c) in candidates(&v).iter().enumerate() {
            let index = candidate_index(c, i);
            let said = read_parts(c, &mut self.next_call);
            let state = self.choices.entry(index).or_default();
            let mut delta = Map::new();
            if !state.started {
                state.started = true;
                delta.insert("role".into(), json!("assistant"));
            }
            if let Some(t) = said.text.filter(|t| !t.is_empty()) {
                delta.insert("content".into(), json!(t));
            }
            if !said.calls.is_empty() {
                state.has_calls = true;
                let calls: Vec<Value> = said
                    .calls
                    .into_iter()
                    .map(|mut call| {
                        call["index"] = json!(state.calls);
                        state.calls += 1;
                        call
                    })
                    .collect();
                delta.insert("tool_calls".into(), Value::Array(calls));
            }
            let finish = c
                .get("finishReason")
                .and_then(Value::as_str)
                .map(|raw| finish_reason(raw, state.has_calls, self.opts.strict));
            if delta.is_empty() && finish.is_none() {
                continue;
            }
            choices.push(json!({
                "index": index,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish.unwrap_or(Value::Null),
            }));
        }
        if !choices.is_empty() {
            self.events += 1;
            out.extend_from_slice(&self.chunk(choices, None));
        }
    }

    fn push_sse(&mut self, chunk: &Bytes) -> Option<Bytes> {
        let mut out = BytesMut::new();
        for event in self.splitter.push(chunk) {
            self.event(&event, &mut out);
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    fn finish_sse(&mut self) -> Option<Bytes> {
        let mut out = BytesMut::new();
        if let Some(rest) = self.splitter.finish() {
            self.event(&rest, &mut out);
        }
        if !self.opts.hide_usage {
            if let Some(u) = self.usage.map(|u| u.openai_json()) {
                out.extend_from_slice(&self.chunk(Vec::new(), Some(u)));
            }
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Some(out.freeze())
    }

    fn finish_json(&mut self) -> Option<Bytes> {
        let raw = self.body.split().freeze();
        let Ok(v) = serde_json::from_slice::<Value>(&raw) else {
            // Not JSON after all: the client gets what Gemini said.
            return (!raw.is_empty()).then_some(raw);
        };
        let out = match self.op {
            Operation::Embeddings => embedding_list(&v),
            _ => {
                if let Some(meta) = v.get("usageMetadata") {
                    self.usage = Some(usage_of(meta));
                }
                chat_completion(&v, &self.opts)
            }
        };
        self.model = out
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        let bytes = Bytes::from(out.to_string());
        self.json_out = Some(out);
        Some(bytes)
    }
}

impl Translator for GeminiTranslator {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        match self.shape {
            Shape::Other => Some(chunk),
            Shape::Sse => self.push_sse(&chunk),
            Shape::Json => {
                if self.body.len() + chunk.len() > MAX_JSON {
                    // Give up translating: what is held, then every chunk, go out as they
                    // came (Gemini's own JSON, in order, under the JSON header already sent).
                    self.shape = Shape::Other;
                    let mut held = self.body.split();
                    held.extend_from_slice(&chunk);
                    return Some(held.freeze());
                }
                self.body.extend_from_slice(&chunk);
                None
            }
        }
    }

    fn finish(&mut self) -> Option<Bytes> {
        match self.shape {
            Shape::Other => None,
            Shape::Sse => self.finish_sse(),
            Shape::Json => self.finish_json(),
        }
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
        matches!(self.shape, Shape::Sse) && self.splitter.overflowed()
    }

    fn may_rewrite(&self) -> bool {
        !matches!(self.shape, Shape::Other)
    }

    fn content_type(&self) -> Option<&'static str> {
        match self.shape {
            Shape::Sse => Some("text/event-stream"),
            Shape::Json => Some("application/json"),
            Shape::Other => None,
        }
    }

    fn json_body(&self) -> Option<Value> {
        self.json_out.clone()
    }
}
