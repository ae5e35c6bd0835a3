//! Gemini's answers into OpenAI's: SSE events as they arrive into chunks, a whole JSON body at
//! its end.

use super::*;

/// Per-candidate state of a stream.
#[derive(Default)]
pub(super) struct Choice {
    pub(super) started: bool,
    pub(super) calls: u64,
    pub(super) has_calls: bool,
}

/// The translator of one Gemini answer: a whole JSON answer is held and converted at its end
/// ([`GeminiAnswer`]); SSE is rewritten event by event; anything else (an error, a type Gemini
/// does not send) is relayed as it is.
pub(crate) fn translator(
    op: Operation,
    status: u16,
    content_type: &str,
    opts: &ResponseOptions,
) -> Box<dyn Translator> {
    let ok = (200..300).contains(&status);
    let opts = ResponseOptions {
        hide_usage: opts.hide_usage,
        strict: opts.strict,
        created: opts.created,
        model: None,
    };
    if ok && content_type.starts_with("text/event-stream") {
        Box::new(GeminiStream::new(opts))
    } else if ok && content_type.contains("json") {
        Box::new(WholeJson::new(GeminiAnswer { op, opts }, MAX_JSON))
    } else {
        Box::new(Meter::new(crate::stream::meter::Kind::Other))
    }
}

/// A whole `GenerateContentResponse` (or embeddings answer) in OpenAI's form.
pub(crate) struct GeminiAnswer {
    op: Operation,
    /// Owned: the request's borrowed fields (`model`) are not kept.
    opts: ResponseOptions<'static>,
}

impl Convert for GeminiAnswer {
    fn convert(&mut self, body: &[u8]) -> Option<Converted> {
        let v = serde_json::from_slice::<Value>(body).ok()?;
        let (out, usage) = match self.op {
            Operation::Embeddings => (embedding_list(&v), None),
            _ => (
                chat_completion(&v, &self.opts),
                v.get("usageMetadata").map(usage_of),
            ),
        };
        let model = out
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        Some(Converted {
            body: crate::types::json::to_bytes(&out),
            usage,
            model,
        })
    }
}

/// Translates a Gemini SSE stream into OpenAI's chunks, event by event.
pub(crate) struct GeminiStream {
    /// Owned: the request's borrowed fields (`model`) are not kept.
    pub(super) opts: ResponseOptions<'static>,
    pub(super) splitter: SseSplitter,
    pub(super) usage: Option<Usage>,
    pub(super) model: Option<String>,
    pub(super) id: Option<String>,
    pub(super) events: u32,
    pub(super) choices: BTreeMap<u64, Choice>,
    pub(super) next_call: u64,
}

impl GeminiStream {
    fn new(opts: ResponseOptions<'static>) -> Self {
        GeminiStream {
            opts,
            splitter: SseSplitter::default(),
            usage: None,
            model: None,
            id: None,
            events: 0,
            choices: BTreeMap::new(),
            next_call: 0,
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
        sse::json_event(&c)
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
            sse::write_event(out, None, &wrapped);
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
        out.extend_from_slice(sse::DONE);
        Some(out.freeze())
    }
}

impl Translator for GeminiStream {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        self.push_sse(&chunk)
    }

    fn finish(&mut self) -> Option<Bytes> {
        self.finish_sse()
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
