//! Converse answers → OpenAI: a whole JSON answer at its end (`ConverseAnswer`, in a
//! `WholeJson`), and a `converse-stream` answer — AWS event-stream binary frames — into `chat.completion.chunk`
//! SSE events as the frames complete (`ConverseStream`). Frames are decoded by
//! `aws-smithy-eventstream` (prelude and message CRCs checked), fed arbitrary chunks.

use crate::providers::ResponseOptions;
use crate::stream::{Convert, Converted, WholeJson};
use crate::types::usage::Usage;
use serde_json::{json, Value};

/// Largest whole answer kept for translation; a larger one is relayed as Bedrock sent it.
const MAX_JSON: usize = 8 * 1024 * 1024;

/// Bedrock's token counts. `inputTokens` excludes cached ones (as Anthropic's do); normalised,
/// input includes the cache reads and writes, which are also reported on their own.
pub(crate) fn usage(u: Option<&Value>) -> Option<Usage> {
    let u = u?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (read, write) = (n("cacheReadInputTokens"), n("cacheWriteInputTokens"));
    Some(Usage {
        input: n("inputTokens") + read + write,
        output: n("outputTokens"),
        cached_input: read,
        cache_write: write,
        reasoning: 0,
    })
}

/// Converse `stopReason` as the client's `finish_reason` (see `common::finish_reason`).
pub(crate) fn finish_reason(raw: &str, strict: bool) -> Value {
    json!(crate::providers::common::finish_reason(
        raw,
        strict,
        openai_finish
    ))
}

fn openai_finish(raw: &str) -> &'static str {
    match raw {
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        "content_filtered" | "guardrail_intervened" => "content_filter",
        _ => "stop",
    }
}

pub(super) fn answer_id(created: u64) -> String {
    format!("chatcmpl-bedrock-{created}")
}

/// A whole Converse answer → a `chat.completion`.
pub(crate) fn chat_completion(v: &Value, opts: &ResponseOptions<'_>) -> Value {
    let content = v
        .get("output")
        .and_then(|o| o.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array);
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in content.into_iter().flatten() {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tool) = block.get("toolUse") {
            calls.push(json!({
                "id": tool.get("toolUseId").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": tool.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": tool.get("input").map_or_else(|| "{}".to_string(), Value::to_string),
                },
            }));
        }
    }
    let raw = v
        .get("stopReason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let mut out = json!({
        "id": answer_id(opts.created),
        "object": "chat.completion",
        "created": opts.created,
        "model": opts.model.unwrap_or(""),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(raw, opts.strict),
        }],
    });
    if let Some(u) = usage(v.get("usage")) {
        out["usage"] = u.openai_json();
    }
    out
}

/// A whole Converse answer in OpenAI's form, for [`WholeJson`].
pub(crate) struct ConverseAnswer {
    created: u64,
    strict: bool,
    model: Option<String>,
}

impl ConverseAnswer {
    /// The translator of a non-streamed answer: held (up to `MAX_JSON`), converted at its end.
    pub(crate) fn translator(opts: &ResponseOptions<'_>) -> WholeJson<Self> {
        let answer = ConverseAnswer {
            created: opts.created,
            strict: opts.strict,
            model: opts.model.map(str::to_string),
        };
        WholeJson::new(answer, MAX_JSON)
    }
}

impl Convert for ConverseAnswer {
    fn convert(&mut self, body: &[u8]) -> Option<Converted> {
        let v = serde_json::from_slice::<Value>(body)
            .ok()
            .filter(|v| v.get("output").is_some())?;
        let opts = ResponseOptions {
            hide_usage: false,
            strict: self.strict,
            created: self.created,
            model: self.model.as_deref(),
        };
        Some(Converted {
            body: crate::types::json::to_bytes(&chat_completion(&v, &opts)),
            usage: usage(v.get("usage")),
            model: self.model.clone(),
        })
    }
}
