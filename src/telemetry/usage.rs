//! Token usage read from provider answers: the `usage` object of an OpenAI-format response, or
//! of the last chunk of a stream that asked for it (`stream_options.include_usage`).

use bytes::Bytes;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    /// Prompt tokens served from the provider's cache (part of `input`).
    pub cached_input: u64,
    /// Prompt tokens written to the provider's cache (part of `input`; Anthropic bills them at
    /// their own rate).
    #[serde(default)]
    pub cache_write: u64,
    /// Reasoning tokens (part of `output`).
    pub reasoning: u64,
}

#[derive(Deserialize)]
struct WireDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<WireDetails>,
    #[serde(default)]
    completion_tokens_details: Option<WireDetails>,
}

/// The two fields of a response (or stream chunk) the meter reads; everything else is skipped.
#[derive(Deserialize)]
pub struct Metered {
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

impl Metered {
    /// Whether `choices` is present and empty (OpenAI's usage-only stream chunk).
    pub fn choices_empty(&self) -> bool {
        self.choices.as_ref().is_some_and(Vec::is_empty)
    }

    pub fn usage(&self) -> Option<Usage> {
        let u = self.usage.as_ref()?;
        Some(Usage {
            input: u.prompt_tokens.unwrap_or(0),
            output: u.completion_tokens.unwrap_or(0),
            cached_input: u
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write: 0,
            reasoning: u
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        })
    }
}

/// Reads `usage` and `model` from a JSON document given as chunks.
pub fn from_chunks(chunks: &[Bytes]) -> Option<Metered> {
    with_contiguous(chunks, |json| serde_json::from_slice(json).ok())
}

/// Parses a whole JSON document given as chunks.
pub fn value_from_chunks(chunks: &[Bytes]) -> Option<serde_json::Value> {
    with_contiguous(chunks, |json| serde_json::from_slice(json).ok())
}

/// Reads `usage` and `model` from one JSON text.
pub fn from_slice(json: &[u8]) -> Option<Metered> {
    serde_json::from_slice(json).ok()
}

/// Runs `f` on the document as one slice: the chunk itself when there is one (the usual case for
/// a small answer), else one copy of the chunks (bounded by the meter's size cap). A copy costs
/// far less than `serde_json::from_reader`, which reads byte by byte and tracks line and column.
fn with_contiguous<T>(chunks: &[Bytes], f: impl FnOnce(&[u8]) -> T) -> T {
    match chunks {
        [one] => f(one),
        _ => {
            let mut joined = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
            for c in chunks {
                joined.extend_from_slice(c);
            }
            f(&joined)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage_across_chunk_boundaries() {
        let body = br#"{"id":"x","model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        let chunks: Vec<Bytes> = body.chunks(7).map(Bytes::copy_from_slice).collect();
        let m = from_chunks(&chunks).unwrap();
        assert_eq!(m.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(
            m.usage(),
            Some(Usage {
                input: 12,
                output: 5,
                cached_input: 4,
                cache_write: 0,
                reasoning: 2
            })
        );
        assert!(from_slice(br#"{"usage":null}"#).unwrap().usage().is_none());
        assert!(from_chunks(&[Bytes::from_static(b"not json")]).is_none());
    }
}
