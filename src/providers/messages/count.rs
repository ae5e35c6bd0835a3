//! `count_tokens` for providers without such an API: an estimate of a Messages request's input
//! tokens. OpenAI model families are counted with OpenAI's own tokenizer (tiktoken's BPE
//! tables) over the texts the request sends, plus a fixed overhead per message as OpenAI's
//! chat format adds; any other model is estimated at one token per four characters of those
//! texts, the usual average for English with BPE tokenizers. Images are counted at a flat
//! rate (their real cost depends on size and provider). The answer is marked as an estimate.

use crate::error::GatewayError;
use serde_json::Value;
use tiktoken_rs::tokenizer::{get_tokenizer, Tokenizer};
use tiktoken_rs::CoreBPE;

/// Tokens OpenAI's chat format adds around each message (role and separators).
const PER_MESSAGE: usize = 4;
/// A flat count for an image block (a mid-sized image in OpenAI's tile accounting).
const PER_IMAGE: usize = 765;

/// How a count was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// With the model family's own tokenizer.
    Tokenizer,
    /// Characters / 4.
    Heuristic,
}

impl Method {
    /// The value of the `x-portgate-token-count` response header.
    pub(crate) fn header(self) -> &'static str {
        match self {
            Method::Tokenizer => "estimate; tokenizer",
            Method::Heuristic => "estimate; chars/4",
        }
    }
}

/// The BPE of an OpenAI model name, when it is one (also with a provider prefix, `openai/...`).
fn bpe_of(model: &str) -> Option<&'static CoreBPE> {
    let name = model.rsplit('/').next().unwrap_or(model);
    match get_tokenizer(name)? {
        Tokenizer::O200kBase => Some(tiktoken_rs::o200k_base_singleton()),
        Tokenizer::Cl100kBase => Some(tiktoken_rs::cl100k_base_singleton()),
        _ => None,
    }
}

/// The texts of a request that reach the model, and its count of messages and images.
#[derive(Default)]
struct Texts<'a> {
    texts: Vec<&'a str>,
    /// JSON of tool schemas and tool inputs, which the model also reads.
    json: Vec<String>,
    messages: usize,
    images: usize,
}

impl<'a> Texts<'a> {
    fn block(&mut self, b: &'a Value) {
        match b {
            Value::String(s) => self.texts.push(s),
            Value::Array(blocks) => blocks.iter().for_each(|b| self.block(b)),
            Value::Object(o) => {
                match o.get("type").and_then(Value::as_str) {
                    Some("image") => self.images += 1,
                    Some("tool_use") => {
                        if let Some(input) = o.get("input") {
                            self.json.push(input.to_string());
                        }
                    }
                    _ => {}
                }
                for key in ["text", "name", "thinking"] {
                    if let Some(t) = o.get(key).and_then(Value::as_str) {
                        self.texts.push(t);
                    }
                }
                if let Some(inner) = o.get("content") {
                    self.block(inner);
                }
            }
            _ => {}
        }
    }

    fn of(body: &'a Value) -> Self {
        let mut t = Texts::default();
        if let Some(system) = body.get("system") {
            t.messages += 1;
            t.block(system);
        }
        for m in body
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            t.messages += 1;
            if let Some(c) = m.get("content") {
                t.block(c);
            }
        }
        for tool in body
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            t.json.push(tool.to_string());
        }
        t
    }
}

/// The estimated input tokens of a Messages request (`count_tokens`' body: `model`, `system`,
/// `messages`, `tools`). CPU-bound (a tokenizer pass, and the tokenizer's one-time load): run
/// it off the async workers.
pub(crate) fn estimate(body: &[u8]) -> Result<(u64, Method), GatewayError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    if !v.get("messages").is_some_and(Value::is_array) {
        return Err(GatewayError::InvalidBody("messages: must be a list".into()));
    }
    let model = v.get("model").and_then(Value::as_str).unwrap_or("");
    let t = Texts::of(&v);
    let fixed = t.messages * PER_MESSAGE + t.images * PER_IMAGE;
    let texts = t
        .texts
        .iter()
        .copied()
        .chain(t.json.iter().map(String::as_str));
    let (n, method) = match bpe_of(model) {
        Some(bpe) => (
            texts.map(|s| bpe.encode_ordinary(s).len()).sum::<usize>(),
            Method::Tokenizer,
        ),
        None => (
            texts.map(|s| s.chars().count().div_ceil(4)).sum::<usize>(),
            Method::Heuristic,
        ),
    };
    Ok(((n + fixed) as u64, method))
}
