//! `/v1/messages/count_tokens` on Bedrock, through its CountTokens API
//! (`POST /model/{modelId}/count-tokens`, SigV4-signed like every Bedrock request). The
//! request counts an InvokeModel body: Anthropic's Messages body as `invoke` sends it,
//! base64-encoded in `{"input":{"invokeModel":{"body":...}}}`; the answer is
//! `{"inputTokens": N}`. Only Anthropic models are counted this way (their body is the one the
//! client sent); the gateway estimates for any other.

use super::request::{encode_model, invoke_body, is_anthropic_model};
use crate::error::GatewayError;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The foundation model Bedrock counts for `model`, when it counts for it: an Anthropic model
/// id, or the one a cross-region inference profile (`us.anthropic.…`) routes to, whose
/// tokenizer is the same. `None` for any other model, and for an ARN (a provisioned or
/// custom model whose foundation model the id does not name).
pub(super) fn counted_model(model: &str) -> Option<&str> {
    if !is_anthropic_model(model) || model.starts_with("arn:") {
        return None;
    }
    if model.starts_with("anthropic.") {
        return Some(model);
    }
    model.split_once('.').map(|(_, foundation)| foundation)
}

/// The path and body of the CountTokens request for a `count_tokens` body; `None` when its
/// model is not one Bedrock counts for.
pub(super) fn request(body: &[u8]) -> Result<Option<(String, Value)>, GatewayError> {
    let body: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let Value::Object(mut body) = body else {
        return Err(GatewayError::InvalidBody(
            "the body must be a JSON object".into(),
        ));
    };
    let Some(model) = body
        .get("model")
        .and_then(Value::as_str)
        .and_then(counted_model)
        .map(str::to_string)
    else {
        return Ok(None);
    };
    if !body.get("messages").is_some_and(Value::is_array) {
        return Err(GatewayError::InvalidBody("messages: must be a list".into()));
    }
    with_max_tokens(&mut body);
    let invoke = invoke_body(&mut body).to_string();
    let out = json!({"input": {"invokeModel": {"body": aws_smithy_types::base64::encode(invoke)}}});
    Ok(Some((
        format!("/model/{}/count-tokens", encode_model(&model)),
        out,
    )))
}

/// InvokeModel's Anthropic body requires `max_tokens`, which Anthropic's `count_tokens` body
/// has not; it bounds the output only, so any value counts the same input.
fn with_max_tokens(body: &mut Map<String, Value>) {
    body.entry("max_tokens").or_insert_with(|| json!(1));
}

/// The input tokens of a CountTokens answer.
pub(super) fn input_tokens(answer: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "inputTokens")]
        input_tokens: u64,
    }
    serde_json::from_slice::<Answer>(answer)
        .ok()
        .map(|a| a.input_tokens)
}
