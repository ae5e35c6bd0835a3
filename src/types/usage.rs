//! Token usage read from provider answers: the `usage` object of an OpenAI-format response, or
//! of the last chunk of a stream that asked for it (`stream_options.include_usage`).

use super::json::equal_bytes;
use bytes::Bytes;
use serde::Deserialize;
use std::borrow::Cow;

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
pub struct OpenAiUsage {
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
    pub fn with_cache_counts(mut self, usage: &Usage) -> OpenAiUsage {
        self.cache_read_input_tokens = (usage.cached_input > 0).then_some(usage.cached_input);
        self.cache_creation_input_tokens = (usage.cache_write > 0).then_some(usage.cache_write);
        self
    }
}

impl Usage {
    /// The answer's `usage` object ([`OpenAiUsage`]).
    pub fn openai(&self) -> OpenAiUsage {
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
    pub fn openai_json(&self) -> serde_json::Value {
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
pub struct Metered<'a> {
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
    pub fn choices_empty(&self) -> bool {
        self.choices_empty
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

/// Reads `usage` and `model` from a JSON document given as chunks; the model is owned, as the
/// chunks may have been joined into a copy.
pub fn from_chunks(chunks: &[Bytes]) -> Option<(Option<Usage>, Option<String>)> {
    with_contiguous(chunks, |json| {
        from_slice(json).map(|m| (m.usage(), m.model.map(Cow::into_owned)))
    })
}

/// Parses a whole JSON document given as chunks.
pub fn value_from_chunks(chunks: &[Bytes]) -> Option<serde_json::Value> {
    with_contiguous(chunks, |json| serde_json::from_slice(json).ok())
}

/// Reads `usage`, `model` and `choices` from one JSON text: by [`scan`] when it can, else by
/// serde_json.
pub fn from_slice(json: &[u8]) -> Option<Metered<'_>> {
    scan(json).or_else(|| {
        serde_json::from_slice::<WireMetered>(json)
            .ok()
            .map(Metered::from)
    })
}

/// Reads the three fields from the top level of a JSON object by scanning it, without
/// deserialising the values it skips (serde_json spent ~6k instructions on a 300-byte chat
/// answer, most of them walking `choices` and building `usage` through its derive).
///
/// On a well-formed document it reads what serde_json reads (the tests compare the two). It
/// answers `None` whenever the text is not plainly what it expects, and the caller asks
/// serde_json, which decides: a key or model with an escape, a field given twice, a field of
/// another type, a count that is not a plain integer, anything but whitespace after the
/// object. It does not check the syntax of the values it skips, so a body malformed inside
/// `choices` may still have its usage counted, where serde_json would count none; the client
/// receives that body as it came either way.
fn scan(json: &[u8]) -> Option<Metered<'_>> {
    let mut s = Scanner { b: json, i: 0 };
    let mut m = Metered::default();
    let mut seen = [false; 3];
    s.ws();
    s.object(|s, key| {
        match key {
            b"usage" => {
                once(&mut seen[0])?;
                m.usage = s.usage()?;
            }
            b"model" => {
                once(&mut seen[1])?;
                m.model = match s.peek()? {
                    b'"' => Some(Cow::Borrowed(std::str::from_utf8(s.plain_string()?).ok()?)),
                    _ => s.null()?,
                };
            }
            b"choices" => {
                once(&mut seen[2])?;
                let first = s.peek()?;
                let v = s.value()?;
                m.choices_empty = match first {
                    b'[' => v[1..v.len() - 1].iter().all(u8::is_ascii_whitespace),
                    _ if v == b"null" => false,
                    _ => return None,
                };
            }
            _ => {
                s.value()?;
            }
        }
        Some(())
    })?;
    s.ws();
    (s.i == json.len()).then_some(m)
}

/// `Some` the first time, for a field that serde_json refuses to see twice.
fn once(seen: &mut bool) -> Option<()> {
    (!std::mem::replace(seen, true)).then_some(())
}

/// The bytes that matter when skipping over an object or array.
static STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// A cursor over JSON text for [`scan`]; every step answers `None` at the end of the text or
/// on a byte it does not expect.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// Skips JSON whitespace (space, tab, line feed, carriage return).
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// An object's members: each key (without escapes) is handed to `member` with the cursor
    /// on its value, which `member` moves past.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.plain_string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            member(self, key)?;
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// `null`, read as an absent optional value.
    fn null<T>(&mut self) -> Option<Option<T>> {
        (self.value()? == b"null").then_some(None)
    }

    /// The index of the next `"` or `\` from `self.i`: looked for eight bytes at a time in
    /// the first 32 (keys and short values, where a vectorised search costs more to start
    /// than it saves, and a byte loop ~12 instructions a byte), then by `memchr2` (long
    /// content).
    fn string_stop(&self) -> Option<usize> {
        let rest = self.b.get(self.i..)?;
        let mut at = 0;
        while at < rest.len().min(32) {
            let x = match rest
                .get(at..at + 8)
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
            {
                Some(word) => u64::from_le_bytes(word),
                None => {
                    // The last few bytes, padded with a byte that is neither.
                    let mut word = [b'a'; 8];
                    word[..rest.len() - at].copy_from_slice(&rest[at..]);
                    u64::from_le_bytes(word)
                }
            };
            let found = equal_bytes(x, b'"') | equal_bytes(x, b'\\');
            if found != 0 {
                return Some(self.i + at + (found.trailing_zeros() / 8) as usize);
            }
            at += 8;
        }
        let tail = rest.get(32..)?;
        memchr::memchr2(b'"', b'\\', tail).map(|at| self.i + 32 + at)
    }

    /// A string without escapes: its contents. `None` if it holds a backslash.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let end = self.string_stop()?;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        Some(&self.b[start..end])
    }

    /// Moves past a string whose opening quote is at `self.i`, escapes included.
    fn skip_string(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            let at = self.string_stop()?;
            if self.b[at] == b'"' {
                self.i = at + 1;
                return Some(());
            }
            // A backslash and the byte it escapes (a `\uXXXX` escape's digits need no care).
            self.i = at + 2;
        }
    }

    /// One value, skipped: its text. Objects and arrays are skipped by counting brackets
    /// outside strings, numbers and literals up to the next delimiter.
    fn value(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        match self.peek()? {
            b'"' => self.skip_string()?,
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    let rest = self.b.get(self.i..)?;
                    self.i += rest.iter().position(|&c| STRUCTURAL[usize::from(c)])?;
                    match self.b[self.i] {
                        b'"' => {
                            self.skip_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        _ => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                break;
                            }
                        }
                    }
                    self.i += 1;
                }
            }
            _ => {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    return None;
                }
            }
        }
        Some(&self.b[start..self.i])
    }

    /// A token count: a plain unsigned integer (no sign, fraction or exponent, no leading
    /// zero), or `null`. Anything else is left to serde_json.
    fn count(&mut self) -> Option<Option<u64>> {
        if self.peek()? == b'n' {
            return self.null();
        }
        let start = self.i;
        let mut n = 0u64;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        let leading_zero = digits > 1 && self.b[start] == b'0';
        let ends = matches!(
            self.peek(),
            Some(b',' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
        );
        (digits > 0 && !leading_zero && ends).then_some(Some(n))
    }

    /// `usage`: the counts and the two detail objects, or `null`.
    fn usage(&mut self) -> Option<Option<WireUsage>> {
        let mut u = WireUsage::default();
        let names: [&[u8]; 4] = [
            b"prompt_tokens",
            b"completion_tokens",
            b"prompt_tokens_details",
            b"completion_tokens_details",
        ];
        let present = self.fields(names, |s, field| {
            match field {
                0 => u.prompt_tokens = s.count()?,
                1 => u.completion_tokens = s.count()?,
                2 => u.prompt_tokens_details = s.details()?,
                _ => u.completion_tokens_details = s.details()?,
            }
            Some(())
        })?;
        Some(present.map(|()| u))
    }

    /// `prompt_tokens_details` or `completion_tokens_details`, or `null`.
    fn details(&mut self) -> Option<Option<WireDetails>> {
        let mut d = WireDetails::default();
        let names: [&[u8]; 2] = [b"cached_tokens", b"reasoning_tokens"];
        let present = self.fields(names, |s, field| {
            match field {
                0 => d.cached_tokens = s.count()?,
                _ => d.reasoning_tokens = s.count()?,
            }
            Some(())
        })?;
        Some(present.map(|()| d))
    }

    /// An object of known fields, or `null` (`Some(None)`): `read` is called with the index
    /// in `names` of each field present (at most once each, as serde_json's derive insists);
    /// other members are skipped.
    fn fields<const N: usize>(
        &mut self,
        names: [&[u8]; N],
        mut read: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<Option<()>> {
        if self.peek()? == b'n' {
            return self.null();
        }
        let mut seen = [false; N];
        self.object(|s, key| match names.iter().position(|&n| n == key) {
            Some(field) => {
                once(&mut seen[field])?;
                read(s, field)
            }
            None => s.value().map(|_| ()),
        })?;
        Some(Some(()))
    }
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
