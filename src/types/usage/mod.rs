//! Token usage read from provider answers: the `usage` object of an OpenAI-format response, or
//! of the last chunk of a stream that asked for it (`stream_options.include_usage`).

use super::json::equal_bytes;
use bytes::Bytes;
use serde::Deserialize;
use std::borrow::Cow;

mod scan;

use scan::*;

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

/// OpenAI's `usage` object of a chat answer, the one shape every translated answer carries
/// whatever the provider: both detail objects always (zeros where the provider reports
/// nothing) and `total_tokens` = prompt + completion. Anthropic answers also carry the
/// prompt-cache counts under Anthropic's names when not zero, as Portkey's do
/// ([`OpenAiUsage::with_cache_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct OpenAiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedDetails,
    completion_tokens_details: ReasoningDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
struct CachedDetails {
    cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
struct ReasoningDetails {
    reasoning_tokens: u64,
}

impl OpenAiUsage {
    /// Adds `cache_read_input_tokens` and `cache_creation_input_tokens` where not zero.
    pub(crate) fn with_cache_counts(mut self, usage: &Usage) -> OpenAiUsage {
        self.cache_read_input_tokens = (usage.cached_input > 0).then_some(usage.cached_input);
        self.cache_creation_input_tokens = (usage.cache_write > 0).then_some(usage.cache_write);
        self
    }
}

impl Usage {
    /// The answer's `usage` object ([`OpenAiUsage`]).
    pub(crate) fn openai(&self) -> OpenAiUsage {
        OpenAiUsage {
            prompt_tokens: self.input,
            completion_tokens: self.output,
            total_tokens: self.input.saturating_add(self.output),
            prompt_tokens_details: CachedDetails {
                cached_tokens: self.cached_input,
            },
            completion_tokens_details: ReasoningDetails {
                reasoning_tokens: self.reasoning,
            },
            cache_read_input_tokens: None,
            cache_creation_input_tokens: None,
        }
    }

    /// [`Usage::openai`] as a JSON value, for answers built as documents.
    pub(crate) fn openai_json(&self) -> serde_json::Value {
        serde_json::to_value(self.openai()).unwrap_or_default()
    }
}

#[derive(Deserialize, Default)]
struct WireDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
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

/// The fields of a response (or stream chunk) the meter reads: `usage`, `model`, and whether
/// `choices` is an empty list. `model` is borrowed from the text unless it holds escapes.
#[derive(Default)]
pub(crate) struct Metered<'a> {
    usage: Option<WireUsage>,
    pub model: Option<Cow<'a, str>>,
    choices_empty: bool,
}

/// The same three fields as serde_json reads them: the reference [`scan`] must agree with,
/// and what decides when the scan cannot.
#[derive(Deserialize)]
struct WireMetered<'a> {
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

impl<'a> From<WireMetered<'a>> for Metered<'a> {
    fn from(w: WireMetered<'a>) -> Self {
        Metered {
            usage: w.usage,
            model: w.model,
            choices_empty: w.choices.as_ref().is_some_and(Vec::is_empty),
        }
    }
}

impl Metered<'_> {
    /// Whether `choices` is present and empty (OpenAI's usage-only stream chunk).
    pub(crate) fn choices_empty(&self) -> bool {
        self.choices_empty
    }

    pub(crate) fn usage(&self) -> Option<Usage> {
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

/// Reads `usage` and `model` from a JSON document given as chunks; the model is owned, as the
/// chunks may have been joined into a copy.
pub(crate) fn from_chunks(chunks: &[Bytes]) -> Option<(Option<Usage>, Option<String>)> {
    with_contiguous(chunks, |json| {
        from_slice(json).map(|m| (m.usage(), m.model.map(Cow::into_owned)))
    })
}

/// Parses a whole JSON document given as chunks.
pub(crate) fn value_from_chunks(chunks: &[Bytes]) -> Option<serde_json::Value> {
    with_contiguous(chunks, |json| serde_json::from_slice(json).ok())
}

/// Reads `usage`, `model` and `choices` from one JSON text: by [`scan`] when it can, else by
/// serde_json.
pub(crate) fn from_slice(json: &[u8]) -> Option<Metered<'_>> {
    scan(json).or_else(|| {
        serde_json::from_slice::<WireMetered>(json)
            .ok()
            .map(Metered::from)
    })
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
        let (usage, model) = from_chunks(&chunks).unwrap();
        assert_eq!(model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(
            usage,
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

    /// What a reading found, to compare the scan with serde_json.
    fn seen(m: &Metered) -> (Option<Usage>, Option<String>, bool) {
        (
            m.usage(),
            m.model.as_deref().map(str::to_owned),
            m.choices_empty(),
        )
    }

    fn serde(json: &str) -> Option<(Option<Usage>, Option<String>, bool)> {
        serde_json::from_slice::<WireMetered>(json.as_bytes())
            .ok()
            .map(|w| seen(&Metered::from(w)))
    }

    #[test]
    fn scan_reads_what_serde_json_reads() {
        // Each document is read by the scan itself (not left to serde_json) and agrees with it.
        let scanned = [
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Mixing red and yellow gives orange."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":17,"completion_tokens":8,"total_tokens":25}}"#,
            // Decoys: "usage" and "model" nested, in strings, after escaped quotes and backslashes.
            r#" { "choices" : [ { "message" : { "content" : "say \"usage\":{\"prompt_tokens\":99} [{]} \\", "usage" : { "prompt_tokens" : 1 } , "model" : "inner" } } ] , "model" : null , "x" : [ [ ] , { } , "]" , -1.5e3 , true , false ] , "usage" : { "prompt_tokens" : 3 , "completion_tokens" : 4 , "prompt_tokens_details" : { "cached_tokens" : 2 } , "completion_tokens_details" : null } }
"#,
            "{\n\t\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2},\r\n\"choices\":[ \n ],\"model\":\"m\u{e9}\"}",
            r#"{"choices":null,"usage":null,"model":"gpt-4o"}"#,
            r#"{}"#,
            r#"{"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens_details":{"reasoning_tokens":7}}}"#,
            r#"{"usage":{"prompt_tokens":0,"completion_tokens":18446744073709551615,"total_tokens":null,"prompt_tokens_details":{"cached_tokens":null,"audio_tokens":0},"completion_tokens_details":{"audio_tokens":0,"reasoning_tokens":3,"accepted_prediction_tokens":0,"cached_tokens":1}}}"#,
            r#"{"usage":{"prompt_tokens":null,"prompt_tokens_details":null,"extra":{"a":[1,{"b":"}"}]}}}"#,
        ];
        for doc in scanned {
            let by_scan = scan(doc.as_bytes()).map(|m| seen(&m));
            assert!(by_scan.is_some(), "not scanned: {doc}");
            assert_eq!(by_scan, serde(doc), "{doc}");
        }
        assert_eq!(
            scan(scanned[1].as_bytes()).and_then(|m| m.usage()),
            Some(Usage {
                input: 3,
                output: 4,
                cached_input: 2,
                ..Usage::default()
            })
        );
        // Left to serde_json, which decides: the answer is still the same.
        let deferred = [
            r#"{"model":"a\"b","usage":{"prompt_tokens":1}}"#,
            r#"{"us\u0061ge":{"prompt_tokens":5}}"#,
            r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
            r#"{"model":5,"usage":{"prompt_tokens":1}}"#,
            r#"{"choices":{},"usage":{"prompt_tokens":1}}"#,
            r#"{"usage":{"prompt_tokens":"1"}}"#,
            r#"{"usage":{"prompt_tokens":1.0}}"#,
            r#"{"usage":{"prompt_tokens":1e2}}"#,
            r#"{"usage":{"prompt_tokens":-1}}"#,
            r#"{"usage":{"prompt_tokens":01}}"#,
            r#"{"usage":{"prompt_tokens":18446744073709551616}}"#,
            r#"{"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#,
            r#"{"usage":{"prompt_tokens_details":{"cached_tokens":2,"cached_tokens":3}}}"#,
            r#"{"usage":{"completion_tokens_details":{"cached_tokens":"x"}}}"#,
            r#"{"usage":{"prompt_tokens_details":[]}}"#,
            r#"{"usage":5}"#,
            r#"{"usage":{"prompt_tokens":1}} x"#,
            r#"{"usage":{"prompt_tokens":1}"#,
            r#"{"usage""#,
            r#"[1]"#,
            "",
            "not json",
        ];
        for doc in deferred {
            assert!(scan(doc.as_bytes()).is_none(), "scanned: {doc}");
            assert_eq!(
                from_slice(doc.as_bytes()).map(|m| seen(&m)),
                serde(doc),
                "{doc}"
            );
        }
        assert_eq!(
            from_slice(deferred[1].as_bytes()).and_then(|m| m.usage()),
            Some(Usage {
                input: 5,
                ..Usage::default()
            })
        );
        assert_eq!(
            from_slice(deferred[0].as_bytes()).and_then(|m| m.model.map(Cow::into_owned)),
            Some("a\"b".to_owned())
        );
    }

    /// The string scan stops at the first quote or backslash wherever it lies: in each word
    /// of the first 32 bytes or past them, after non-ASCII and quote-like bytes.
    #[test]
    fn strings_end_at_their_first_quote_or_backslash() {
        for len in 0..80 {
            for stop in [b'"', b'\\'] {
                let mut text = vec![b'x'; len];
                text.push(stop);
                text.extend_from_slice(b"\"\\\"");
                let s = Scanner { b: &text, i: 0 };
                assert_eq!(s.string_stop(), Some(len), "{len} {stop}");
                let mut text = vec![0xa2, b'#', b']', 0x7f];
                text.extend(std::iter::repeat_n(0xe2, len));
                text.push(stop);
                let s = Scanner { b: &text, i: 1 };
                assert_eq!(s.string_stop(), Some(len + 4), "{len} {stop}");
            }
            let plain = vec![b'x'; len];
            assert_eq!(Scanner { b: &plain, i: 0 }.string_stop(), None);
        }
        assert_eq!(Scanner { b: b"ab", i: 3 }.string_stop(), None);
    }
}
