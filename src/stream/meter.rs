//! Reading usage from a response while it is relayed, chunk by chunk.
//!
//! - JSON responses pass through untouched; their chunks (reference-counted, not copied) are
//!   kept and `usage` is read at the end.
//! - Event streams pass through untouched and their events are parsed for `usage` and `model`,
//!   unless the gateway itself added `stream_options.include_usage` (the client did not ask for
//!   usage): then the usage-only chunk is dropped and the `"usage":null` OpenAI adds to every
//!   other chunk is removed, so the client sees exactly the stream it would have seen.

use super::sse::{payload, SseSplitter};
use crate::types::usage::{self, Usage};
use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;
use once_cell::sync::Lazy;

/// Largest JSON body kept for reading usage; larger bodies are relayed unmetered.
const MAX_JSON: usize = 8 * 1024 * 1024;
const USAGE_NULL: &[u8] = b",\"usage\":null";
// Built once: building a searcher costs more than running it over one event.
static FIND_USAGE_KEY: Lazy<Finder<'static>> = Lazy::new(|| Finder::new(b"\"usage\":"));

/// What an event says under `"usage"`, found with one search per event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UsageField {
    Absent,
    /// `"usage":null`; the index where `,"usage":null` starts, when written that way.
    Null(Option<usize>),
    Object,
}

fn usage_field(event: &[u8]) -> UsageField {
    let Some(at) = FIND_USAGE_KEY.find(event) else {
        return UsageField::Absent;
    };
    let value = &event[at + b"\"usage\":".len()..];
    let value = value
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .map_or(&[][..], |i| &value[i..]);
    match value.first() {
        Some(b'{') => UsageField::Object,
        Some(b'n') => {
            let comma = at.checked_sub(1).filter(|&c| event[c] == b',');
            let exact = comma.filter(|&c| event[c..].starts_with(USAGE_NULL));
            UsageField::Null(exact)
        }
        _ => UsageField::Absent,
    }
}

pub(crate) enum Kind {
    Json,
    Sse { hide_usage: bool },
    Other,
}

pub(crate) struct Meter {
    kind: Kind,
    chunks: Vec<Bytes>,
    size: usize,
    splitter: SseSplitter,
    /// Apart from the splitter, so that the splitter's callback can write to it.
    seen: Seen,
}

/// What the meter read from the answer.
#[derive(Default)]
struct Seen {
    usage: Option<Usage>,
    model: Option<String>,
    /// Content events of a stream (not the usage chunk, not `[DONE]`).
    events: u32,
}

impl Meter {
    pub(crate) fn new(kind: Kind) -> Meter {
        Meter {
            kind,
            chunks: Vec::new(),
            size: 0,
            splitter: SseSplitter::default(),
            seen: Seen::default(),
        }
    }

    /// Chooses the meter for a response from its status and content type.
    pub(crate) fn for_response(status: u16, content_type: &str, hide_usage: bool) -> Meter {
        let kind = if !(200..300).contains(&status) {
            Kind::Other
        } else if content_type.starts_with("text/event-stream") {
            Kind::Sse { hide_usage }
        } else if content_type.contains("json") {
            Kind::Json
        } else {
            Kind::Other
        };
        Meter::new(kind)
    }

    /// Takes one upstream chunk and returns what to send to the client.
    pub(crate) fn on_chunk(&mut self, chunk: Bytes) -> Option<Bytes> {
        match self.kind {
            Kind::Other => Some(chunk),
            Kind::Json => {
                if self.size + chunk.len() <= MAX_JSON {
                    self.size += chunk.len();
                    self.chunks.push(chunk.clone());
                } else {
                    self.chunks.clear();
                    self.kind = Kind::Other;
                }
                Some(chunk)
            }
            // Events are read where they lie: none is allocated or reference-counted.
            Kind::Sse { hide_usage: false } => {
                let seen = &mut self.seen;
                self.splitter.each(&chunk, |event| {
                    seen.inspect(event, usage_field(event));
                });
                Some(chunk)
            }
            Kind::Sse { hide_usage: true } => {
                let mut out = BytesMut::with_capacity(chunk.len());
                let seen = &mut self.seen;
                self.splitter
                    .each(&chunk, |event| seen.filter(event, &mut out));
                (!out.is_empty()).then(|| out.freeze())
            }
        }
    }

    /// The end of the body: anything still held back, and the usage read from a JSON body.
    pub(crate) fn finish(&mut self) -> Option<Bytes> {
        if let Kind::Json = self.kind {
            if let Some((usage, model)) = usage::from_chunks(&self.chunks) {
                self.seen.usage = usage;
                self.seen.model = model;
            }
        }
        match self.kind {
            Kind::Sse { hide_usage: true } => self.splitter.finish(),
            _ => None,
        }
    }

    /// Whether an SSE event grew past `sse::MAX_EVENT`: the stream cannot be split (nor usage
    /// hidden) any more, and is ended with an error event rather than relayed corrupted.
    pub(crate) fn overflowed(&self) -> bool {
        matches!(self.kind, Kind::Sse { .. }) && self.splitter.overflowed()
    }

    /// Whether the meter may change the bytes (so a declared length cannot be kept).
    pub(crate) fn may_rewrite(&self) -> bool {
        matches!(self.kind, Kind::Sse { hide_usage: true })
    }

    /// The whole JSON body, after `finish` (for access logs with bodies on).
    pub(crate) fn json_body(&self) -> Option<serde_json::Value> {
        match self.kind {
            Kind::Json => usage::value_from_chunks(&self.chunks),
            _ => None,
        }
    }

    pub(crate) fn usage(&self) -> Option<Usage> {
        self.seen.usage
    }

    /// The model the provider says served the request.
    pub(crate) fn model(&self) -> Option<&str> {
        self.seen.model.as_deref()
    }

    /// Content events of a stream relayed so far (not the usage chunk, not `[DONE]`).
    pub(crate) fn events(&self) -> u32 {
        self.seen.events
    }
}

impl Seen {
    /// Reads usage and model from one event; returns whether it is the usage-only chunk.
    fn inspect(&mut self, event: &[u8], field: UsageField) -> bool {
        let Some(payload) = payload(event) else {
            return false;
        };
        if payload.as_ref() == b"[DONE]" {
            return false;
        }
        let parsed = if field == UsageField::Object || self.model.is_none() {
            usage::from_slice(&payload)
        } else {
            None
        };
        if let Some(m) = parsed {
            // Azure opens a stream with a content-filter chunk whose `model` is "": the model
            // is taken from the first chunk that names one.
            if self.model.is_none() {
                self.model = m
                    .model
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned);
            }
            if let Some(u) = m.usage() {
                self.usage = Some(u);
                if m.choices_empty() {
                    return true;
                }
            }
        }
        self.events += 1;
        false
    }

    /// Hide mode: drops the usage-only chunk and strips `"usage":null` from the others, writing
    /// what is kept straight into the chunk for the client.
    fn filter(&mut self, event: &[u8], out: &mut BytesMut) {
        let field = usage_field(event);
        if self.inspect(event, field) {
            return;
        }
        match field {
            UsageField::Absent | UsageField::Object | UsageField::Null(None) => {
                out.extend_from_slice(event)
            }
            UsageField::Null(Some(at)) => {
                out.extend_from_slice(&event[..at]);
                out.extend_from_slice(&event[at + USAGE_NULL.len()..]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    const STREAM_WITH_USAGE: &str = concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
        "data: [DONE]\n\n"
    );

    #[test]
    fn hidden_usage_chunk_is_read_and_removed() {
        let mut m = Meter::new(Kind::Sse { hide_usage: true });
        let mut out = Vec::new();
        // Cut the stream at awkward places.
        let s = STREAM_WITH_USAGE.as_bytes();
        for piece in s.chunks(37) {
            out.extend(m.on_chunk(Bytes::copy_from_slice(piece)));
        }
        out.extend(m.finish());
        let text = String::from_utf8(out.concat()).unwrap();
        assert!(!text.contains("usage"), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert_eq!(text.matches("data: ").count(), 3);
        assert_eq!(m.usage().unwrap().input, 9);
        assert_eq!(m.usage().unwrap().output, 2);
        assert_eq!(m.model(), Some("gpt-4o-2024-08-06"));
        assert_eq!(m.events(), 2);
    }

    #[test]
    fn an_empty_model_in_azures_first_chunk_is_not_the_model() {
        let stream = include_str!("../../tests/fixtures/azure-openai/chat_stream.sse").as_bytes();
        let mut first: Option<Vec<u8>> = None;
        // Cut at every byte boundary: the same client stream, model and usage each time.
        for cut in 0..=stream.len() {
            let mut m = Meter::new(Kind::Sse { hide_usage: true });
            let mut out = Vec::new();
            for piece in [&stream[..cut], &stream[cut..]] {
                out.extend(m.on_chunk(Bytes::copy_from_slice(piece)));
            }
            out.extend(m.finish());
            let out = out.concat();
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(!text.contains("usage"), "{text}");
            assert!(
                text.contains("prompt_filter_results"),
                "Azure's own chunk is kept"
            );
            assert!(text.ends_with("data: [DONE]\n\n"));
            assert_eq!(m.model(), Some("gpt-4o-2024-08-06"));
            assert_eq!(m.usage().unwrap().input, 14);
            assert_eq!(m.usage().unwrap().output, 1);
            assert_eq!(
                &out,
                first.get_or_insert_with(|| out.clone()),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn client_requested_usage_passes_through_untouched() {
        let mut m = Meter::new(Kind::Sse { hide_usage: false });
        let out: Vec<Bytes> = [chunk(STREAM_WITH_USAGE)]
            .into_iter()
            .filter_map(|c| m.on_chunk(c))
            .collect();
        assert_eq!(out.concat(), STREAM_WITH_USAGE.as_bytes());
        assert_eq!(m.usage().unwrap().output, 2);
    }

    #[test]
    fn one_search_tells_usage_objects_from_nulls() {
        assert!(usage_field(b"data: {\"usage\": {\"a\":1}}") == UsageField::Object);
        assert!(usage_field(b"data: {\"usage\":{\"a\":1}}") == UsageField::Object);
        assert!(usage_field(b"data: {\"a\":1,\"usage\":null}") == UsageField::Null(Some(12)));
        assert!(usage_field(b"data: {\"usage\": null}") == UsageField::Null(None));
        assert!(usage_field(b"data: {\"a\":1, \"usage\":null}") == UsageField::Null(None));
        // Quoted text is escaped in JSON, so it is never taken for the key.
        assert!(usage_field(br#"data: {"c":"\"usage\":{"}"#) == UsageField::Absent);
        assert!(usage_field(b"data: [DONE]") == UsageField::Absent);
    }

    #[test]
    fn json_usage_is_read_at_the_end() {
        let mut m = Meter::for_response(200, "application/json", false);
        let body = r#"{"model":"m1","usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        for piece in body.as_bytes().chunks(5) {
            assert!(m.on_chunk(Bytes::copy_from_slice(piece)).is_some());
        }
        assert!(m.finish().is_none());
        assert_eq!(m.usage().unwrap().output, 4);
        assert_eq!(m.model(), Some("m1"));
        let mut err = Meter::for_response(500, "application/json", false);
        err.on_chunk(chunk(body));
        err.finish();
        assert!(err.usage().is_none(), "error bodies are not metered");
    }
}
