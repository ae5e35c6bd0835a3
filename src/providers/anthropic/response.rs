//! Anthropic's whole answers into OpenAI chat completions: content, tool calls, finish
//! reasons and usage, serialised straight from borrowed parts.

use super::*;

/// Anthropic's stop reason as the client's finish reason (see `common::finish_reason`).
pub(super) fn finish_reason(raw: &str, strict: bool) -> String {
    common::finish_reason(raw, strict, openai_finish).to_string()
}

fn openai_finish(raw: &str) -> &'static str {
    match raw {
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Token counts as Anthropic reports them.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    pub(super) input: u64,
    pub(super) output: u64,
    pub(super) cache_read: u64,
    pub(super) cache_creation: u64,
}

impl Counts {
    pub(super) fn read(&mut self, u: &Value) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        if let Some(v) = n("input_tokens") {
            self.input = v;
        }
        if let Some(v) = n("output_tokens") {
            self.output = v;
        }
        if let Some(v) = n("cache_read_input_tokens") {
            self.cache_read = v;
        }
        if let Some(v) = n("cache_creation_input_tokens") {
            self.cache_creation = v;
        }
    }

    /// Normalised: input includes the cached reads and writes (OpenAI and OpenTelemetry both
    /// count them as prompt tokens), which are also reported on their own.
    pub(super) fn usage(&self) -> Usage {
        Usage {
            input: self.input + self.cache_read + self.cache_creation,
            output: self.output,
            cached_input: self.cache_read,
            cache_write: self.cache_creation,
            reasoning: 0,
        }
    }

    pub(super) fn openai(&self) -> Value {
        let u = self.usage();
        serde_json::to_value(u.openai().with_cache_counts(&u)).unwrap_or_default()
    }
}

/// Translates a whole Anthropic message into a `chat.completion`; `None` for a body that is
/// not a message (relayed as it is).
/// What the translators keep of `ResponseOptions` (owned: a translator outlives the request's
/// borrowed fields).
#[derive(Debug, Clone, Copy)]
pub(super) struct Opts {
    pub(super) strict: bool,
    pub(super) created: u64,
}

impl From<&ResponseOptions<'_>> for Opts {
    fn from(o: &ResponseOptions<'_>) -> Self {
        Opts {
            strict: o.strict,
            created: o.created,
        }
    }
}

/// An Anthropic message as read for translation: strings borrowed from the body, tool inputs
/// and other blocks kept as raw JSON text (no document tree is built).
#[derive(Deserialize)]
pub(super) struct WireMessage<'a> {
    #[serde(borrow, default)]
    pub(super) id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) model: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) content: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub(super) input_tokens: u64,
    #[serde(default)]
    pub(super) output_tokens: u64,
    #[serde(default)]
    pub(super) cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub(super) cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct WireBlock<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) input: Option<&'a RawValue>,
}

#[derive(Serialize)]
pub(super) struct OutCompletion<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) provider: &'static str,
    pub(super) choices: [OutChoice<'a>; 1],
    pub(super) usage: crate::types::usage::OpenAiUsage,
}

#[derive(Serialize)]
pub(super) struct OutChoice<'a> {
    pub(super) index: u32,
    pub(super) message: OutMessage<'a>,
    pub(super) logprobs: Option<()>,
    pub(super) finish_reason: String,
}

#[derive(Serialize)]
pub(super) struct OutMessage<'a> {
    pub(super) role: &'static str,
    pub(super) content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tool_calls: Vec<OutToolCall<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) content_blocks: Vec<&'a RawValue>,
}

#[derive(Serialize)]
pub(super) struct OutToolCall<'a> {
    pub(super) id: Cow<'a, str>,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) function: OutFunction<'a>,
}

#[derive(Serialize)]
pub(super) struct OutFunction<'a> {
    pub(super) name: Cow<'a, str>,
    /// The tool input's JSON text, as a string.
    pub(super) arguments: &'a str,
}

/// Translates a whole Anthropic message (its JSON text) into a `chat.completion`, serialised
/// straight from borrowed parts; `None` for a body that is not a message (relayed as it is).
pub(super) fn to_chat_completion(body: &[u8], opts: &Opts) -> Option<(Vec<u8>, Counts, String)> {
    let msg: WireMessage<'_> = serde_json::from_slice(body).ok()?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut other_blocks = Vec::new();
    for raw in &msg.content {
        let Ok(block) = serde_json::from_str::<WireBlock<'_>>(raw.get()) else {
            continue;
        };
        match block.kind.as_ref() {
            "text" => {
                text.push_str(block.text.as_deref().unwrap_or(""));
                // Non-strict answers list every non-tool block, text included, as Portkey's do.
                other_blocks.push(*raw);
            }
            "tool_use" => tool_calls.push(OutToolCall {
                id: block.id.unwrap_or_default(),
                kind: "function",
                function: OutFunction {
                    name: block.name.unwrap_or_default(),
                    arguments: block.input.map_or("{}", RawValue::get),
                },
            }),
            _ => other_blocks.push(*raw),
        }
    }
    let u = msg.usage.unwrap_or_default();
    let counts = Counts {
        input: u.input_tokens,
        output: u.output_tokens,
        cache_read: u.cache_read_input_tokens.unwrap_or(0),
        cache_creation: u.cache_creation_input_tokens.unwrap_or(0),
    };
    let raw = msg.stop_reason.as_deref().unwrap_or("end_turn");
    let mut finish = finish_reason(raw, opts.strict);
    if opts.strict && !tool_calls.is_empty() && finish == "stop" {
        finish = "tool_calls".into();
    }
    if opts.strict {
        other_blocks.clear();
    }
    let usage = counts.usage();
    let out = OutCompletion {
        id: &msg.id,
        object: "chat.completion",
        created: opts.created,
        model: &msg.model,
        provider: SLUG,
        choices: [OutChoice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content: text,
                tool_calls,
                content_blocks: other_blocks,
            },
            logprobs: None,
            finish_reason: finish,
        }],
        usage: usage.openai().with_cache_counts(&usage),
    };
    let bytes = serde_json::to_vec(&out).ok()?;
    Some((bytes, counts, msg.model.into_owned()))
}

/// A whole Anthropic message as the chat completion the chat route answers for it (strict:
/// OpenAI's fields only), for readers off the request path (the log store's export).
pub(crate) fn message_as_chat(body: &[u8]) -> Option<Vec<u8>> {
    let opts = Opts {
        strict: true,
        created: 0,
    };
    to_chat_completion(body, &opts).map(|(out, _, _)| out)
}

/// The longest answer held for translation (larger ones are relayed as they are).
pub(super) const MAX_BODY: usize = 8 * 1024 * 1024;

/// A whole Messages answer as a chat completion, for [`WholeJson`].
pub(super) struct ChatJson(pub(super) Opts);

impl ChatJson {
    /// The translator of a non-streamed chat answer: held (up to `MAX_BODY`), converted at
    /// its end.
    pub(super) fn translator(opts: Opts) -> WholeJson<Self> {
        WholeJson::new(ChatJson(opts), MAX_BODY)
    }
}

impl Convert for ChatJson {
    fn convert(&mut self, body: &[u8]) -> Option<Converted> {
        let (out, counts, model) = to_chat_completion(body, &self.0)?;
        Some(Converted {
            body: Bytes::from(out),
            usage: Some(counts.usage()),
            model: Some(model),
        })
    }
}
