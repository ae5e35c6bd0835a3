//! Cohere's whole answers into OpenAI's: chat completions, embeddings, usage (billed units
//! first), finish reasons.

use super::*;

/// Cohere's finish reason as the client sees it (see `common::finish_reason`).
pub(crate) fn finish_reason(reason: &str, strict: bool) -> Value {
    json!(crate::providers::common::finish_reason(
        reason,
        strict,
        openai_finish
    ))
}

fn openai_finish(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "TOOL_CALL" => "tool_calls",
        // COMPLETE, STOP_SEQUENCE, ERROR and anything new.
        _ => "stop",
    }
}

/// `usage` of a Cohere answer (or of `message-end`): billed units, else tokens.
pub(crate) fn usage(u: Option<&Value>) -> Option<Usage> {
    let u = u?;
    let pick = |k: &str| {
        let n = |o: Option<&Value>| o.and_then(|o| o.get(k)).and_then(Value::as_f64);
        n(u.get("billed_units")).or_else(|| n(u.get("tokens")))
    };
    let input = pick("input_tokens");
    let output = pick("output_tokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    // Counts are whole numbers (Cohere writes them as floats at times: 12.0).
    let whole = |n: Option<f64>| n.map_or(0, |n| n.max(0.0) as u64);
    Some(Usage {
        input: whole(input),
        output: whole(output),
        ..Usage::default()
    })
}

/// A whole Cohere chat answer → an OpenAI `chat.completion`.
pub(crate) fn chat_response(v: &Value, opts: &ResponseOptions<'_>) -> Value {
    let msg = v.get("message");
    let text: String = msg
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let calls: Vec<Value> = msg
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    let f = c.get("function");
                    json!({
                        "id": c.get("id").cloned().unwrap_or(Value::Null),
                        "type": "function",
                        "function": {
                            "name": f.and_then(|f| f.get("name")).cloned().unwrap_or(json!("")),
                            "arguments": f
                                .and_then(|f| f.get("arguments"))
                                .cloned()
                                .unwrap_or(json!("{}")),
                        }
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        },
    );
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    let reason = v
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("COMPLETE");
    let mut out = json!({
        "id": v.get("id").cloned().unwrap_or(json!("")),
        "object": "chat.completion",
        "created": opts.created,
        "model": opts.model.unwrap_or(""),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(reason, opts.strict),
        }],
    });
    if let (Some(u), Value::Object(o)) = (usage(v.get("usage")), &mut out) {
        o.insert("usage".into(), u.openai_json());
    }
    if let (false, Value::Object(o)) = (opts.strict, &mut out) {
        o.insert("provider".into(), json!("cohere"));
    }
    out
}

/// A whole Cohere embed answer → an OpenAI embedding list.
pub(crate) fn embed_response(v: &Value, opts: &ResponseOptions<'_>) -> Value {
    let vectors = match v.get("embeddings") {
        Some(Value::Object(by_type)) => by_type.get("float").and_then(Value::as_array),
        Some(Value::Array(a)) => Some(a),
        _ => None,
    };
    let data: Vec<Value> = vectors
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, e)| json!({"object": "embedding", "embedding": e, "index": i}))
        .collect();
    let input = v
        .get("meta")
        .and_then(|m| m.get("billed_units"))
        .and_then(|b| b.get("input_tokens"))
        .and_then(Value::as_f64)
        .map_or(0, |n| n.max(0.0) as u64);
    json!({
        "object": "list",
        "data": data,
        "model": opts.model.unwrap_or(""),
        "usage": {"prompt_tokens": input, "total_tokens": input},
    })
}

/// A whole Cohere answer (chat or embeddings) in OpenAI's form, for [`WholeJson`].
pub(crate) struct CohereAnswer {
    op: Operation,
    created: u64,
    strict: bool,
    model: Option<String>,
}

impl CohereAnswer {
    /// The translator of a non-streamed answer: held (up to `MAX_JSON`), converted at its end.
    pub(crate) fn translator(op: Operation, opts: &ResponseOptions<'_>) -> WholeJson<Self> {
        let answer = CohereAnswer {
            op,
            created: opts.created,
            strict: opts.strict,
            model: opts.model.map(str::to_string),
        };
        WholeJson::new(answer, MAX_JSON)
    }
}

impl Convert for CohereAnswer {
    fn convert(&mut self, body: &[u8]) -> Option<Converted> {
        let v = serde_json::from_slice::<Value>(body).ok()?;
        let opts = ResponseOptions {
            hide_usage: false,
            strict: self.strict,
            created: self.created,
            model: self.model.as_deref(),
        };
        let out = match self.op {
            Operation::Embeddings => embed_response(&v, &opts),
            _ => chat_response(&v, &opts),
        };
        let usage = match self.op {
            Operation::Embeddings => v
                .get("meta")
                .and_then(|m| m.get("billed_units"))
                .and_then(|b| usage(Some(&json!({ "billed_units": b })))),
            _ => usage(v.get("usage")),
        };
        Some(Converted {
            body: crate::types::json::to_bytes(&out),
            usage,
            model: self.model.clone(),
        })
    }
}
