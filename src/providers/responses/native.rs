//! The meter of a native Responses answer (OpenAI, Azure): the bytes go to the client as they
//! came; usage and model are read on the way, from the response object or from the stream's
//! closing `response.completed` (or `.incomplete` / `.failed`) event.

use crate::stream::sse::{self, SseSplitter};
use crate::stream::Translator;
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;

/// The largest whole answer read for usage; a larger one is relayed unmetered.
const MAX_BODY: usize = 8 * 1024 * 1024;

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<Details>,
    #[serde(default)]
    output_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// A stream event, as far as the response it carries.
#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    response: Option<Object>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Sse,
    Other,
}

pub(crate) struct NativeMeter {
    kind: Kind,
    splitter: SseSplitter,
    body: BytesMut,
    usage: Option<Usage>,
    model: Option<String>,
    events: u32,
}

impl NativeMeter {
    pub(crate) fn for_response(status: u16, content_type: &str) -> Self {
        let kind = if !(200..300).contains(&status) {
            Kind::Other
        } else if content_type.starts_with("text/event-stream") {
            Kind::Sse
        } else if content_type.contains("json") {
            Kind::Json
        } else {
            Kind::Other
        };
        NativeMeter {
            kind,
            splitter: SseSplitter::default(),
            body: BytesMut::new(),
            usage: None,
            model: None,
            events: 0,
        }
    }

    fn read(&mut self, object: Object) {
        if object.model.is_some() {
            self.model = object.model;
        }
        if let Some(u) = object.usage {
            let details = u.input_tokens_details.unwrap_or_default();
            let output = u.output_tokens_details.unwrap_or_default();
            self.usage = Some(Usage {
                input: u.input_tokens,
                output: u.output_tokens,
                cached_input: details.cached_tokens.unwrap_or(0),
                cache_write: 0,
                reasoning: output.reasoning_tokens.unwrap_or(0),
            });
        }
    }

    fn on_event(&mut self, event: &[u8]) {
        // Only the closing events carry usage: the deltas are counted, not parsed.
        if event.starts_with(b"event: response.output_text.delta") {
            self.events += 1;
            return;
        }
        let closing = [
            &b"event: response.completed"[..],
            b"event: response.incomplete",
            b"event: response.failed",
        ];
        if !closing.iter().any(|c| event.starts_with(c)) {
            return;
        }
        if let Some(data) = sse::payload(event) {
            if let Ok(Event {
                response: Some(object),
            }) = serde_json::from_slice(&data)
            {
                self.read(object);
            }
        }
    }
}

impl Translator for NativeMeter {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        match self.kind {
            Kind::Sse => {
                let mut splitter = std::mem::take(&mut self.splitter);
                splitter.each(&chunk, |event| self.on_event(event));
                self.splitter = splitter;
            }
            Kind::Json if self.body.len() + chunk.len() <= MAX_BODY => {
                self.body.extend_from_slice(&chunk);
            }
            Kind::Json => {
                self.body.clear();
                self.kind = Kind::Other;
            }
            Kind::Other => {}
        }
        Some(chunk)
    }

    fn finish(&mut self) -> Option<Bytes> {
        if self.kind == Kind::Json {
            if let Ok(object) = serde_json::from_slice::<Object>(&self.body) {
                self.read(object);
            }
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

    fn may_rewrite(&self) -> bool {
        false
    }
}
