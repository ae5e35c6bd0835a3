//! Gemini's whole answers into OpenAI's: chat completions, embeddings, usage, finish reasons.

use super::*;

/// Gemini's `finishReason` as the client sees it (see `common::finish_reason`).
pub(super) fn finish_reason(raw: &str, has_tool_calls: bool, strict: bool) -> Value {
    json!(common::finish_reason(raw, strict, |raw| openai_finish(
        raw,
        has_tool_calls
    )))
}

/// Gemini's `finishReason` in OpenAI's words.
fn openai_finish(raw: &str, has_tool_calls: bool) -> &'static str {
    match raw {
        "STOP" if has_tool_calls => "tool_calls",
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ => "stop",
    }
}

pub(super) fn count(meta: &Value, key: &str) -> u64 {
    meta.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// `usageMetadata` → the normalised usage (input includes cached tokens, output includes
/// thinking tokens, as `completion_tokens` does in the answer).
pub(super) fn usage_of(meta: &Value) -> Usage {
    let thoughts = count(meta, "thoughtsTokenCount");
    Usage {
        input: count(meta, "promptTokenCount"),
        output: count(meta, "candidatesTokenCount") + thoughts,
        cached_input: count(meta, "cachedContentTokenCount"),
        cache_write: 0,
        reasoning: thoughts,
    }
}

/// What one candidate's parts say: visible text (thought summaries are not the answer) and
/// function calls, numbered from `next_call` so ids are deterministic across a response.
pub(super) struct Parts {
    pub(super) text: Option<String>,
    pub(super) calls: Vec<Value>,
}

pub(super) fn read_parts(candidate: &Value, next_call: &mut u64) -> Parts {
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    let parts = candidate
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array);
    for p in parts.into_iter().flatten() {
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            text.get_or_insert_with(String::new).push_str(t);
        }
        if let Some(fc) = p.get("functionCall") {
            let name = fc.get("name").and_then(Value::as_str).unwrap_or_default();
            let args = fc.get("args").cloned().unwrap_or_else(|| json!({}));
            calls.push(json!({
                "id": format!("call_{next_call}"),
                "type": "function",
                "function": {"name": name, "arguments": args.to_string()},
            }));
            *next_call += 1;
        }
    }
    Parts { text, calls }
}

/// The candidates of an answer; a prompt Gemini blocked outright has none, only
/// `promptFeedback.blockReason`: it becomes one empty candidate stopped by the content filter.
pub(super) fn candidates(v: &Value) -> Cow<'_, [Value]> {
    match v.get("candidates").and_then(Value::as_array) {
        Some(c) if !c.is_empty() => Cow::Borrowed(c.as_slice()),
        _ => match v
            .get("promptFeedback")
            .and_then(|f| f.get("blockReason"))
            .and_then(Value::as_str)
        {
            Some(reason) => {
                let raw = if reason == "OTHER" { "OTHER" } else { "SAFETY" };
                Cow::Owned(vec![json!({"index": 0, "finishReason": raw})])
            }
            None => Cow::Borrowed(&[]),
        },
    }
}

pub(super) fn candidate_index(c: &Value, position: usize) -> u64 {
    c.get("index")
        .and_then(Value::as_u64)
        .unwrap_or(position as u64)
}

pub(super) fn answer_id(v: &Value, created: u64) -> String {
    match v.get("responseId").and_then(Value::as_str) {
        Some(id) => format!("gemini-{id}"),
        None => format!("gemini-{created}"),
    }
}

/// A whole `GenerateContentResponse` as an OpenAI `chat.completion`.
pub(super) fn chat_completion(v: &Value, opts: &ResponseOptions) -> Value {
    let mut next_call = 0;
    let choices: Vec<Value> = candidates(v)
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let said = read_parts(c, &mut next_call);
            let has_calls = !said.calls.is_empty();
            let content = match said.text {
                Some(t) => json!(t),
                None if has_calls => Value::Null,
                None => json!(""),
            };
            let mut message = json!({"role": "assistant", "content": content});
            if has_calls {
                message["tool_calls"] = Value::Array(said.calls);
            }
            let raw = c
                .get("finishReason")
                .and_then(Value::as_str)
                .unwrap_or("STOP");
            json!({
                "index": candidate_index(c, i),
                "message": message,
                "logprobs": null,
                "finish_reason": finish_reason(raw, has_calls, opts.strict),
            })
        })
        .collect();
    let mut out = json!({
        "id": answer_id(v, opts.created),
        "object": "chat.completion",
        "created": opts.created,
        "model": v.get("modelVersion").and_then(Value::as_str).unwrap_or_default(),
        "choices": choices,
    });
    if let Some(meta) = v.get("usageMetadata") {
        out["usage"] = usage_of(meta).openai_json();
    }
    out
}

/// `embedContent` (`{embedding:{values}}`) or `batchEmbedContents` (`{embeddings:[{values}]}`)
/// as OpenAI's embedding list. Gemini reports no token counts for embeddings: usage is zero.
pub(super) fn embedding_list(v: &Value) -> Value {
    let vectors: Vec<&Value> = match (v.get("embedding"), v.get("embeddings")) {
        (Some(one), _) => vec![one],
        (None, Some(Value::Array(many))) => many.iter().collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "object": "embedding",
                "index": i,
                "embedding": e.get("values").cloned().unwrap_or_else(|| json!([])),
            })
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": v.get("modelVersion").and_then(Value::as_str).unwrap_or_default(),
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    })
}
