//! A provider's error on the Messages route, in Anthropic's error envelope
//! (`{"type":"error","error":{"type","message"}}`), which the Anthropic SDKs read.

use crate::types::json::Object;
use serde_json::Value;

/// Anthropic's error types, kept when a provider already gives one.
const TYPES: &[&str] = &[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
    "timeout_error",
];

/// Anthropic's error type for a status.
pub(crate) fn kind_of(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 | 504 => "timeout_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// The envelope for an error body of `provider` answered with `status`: the message as
/// Portkey's envelope words it (`<provider> error: <message>`), the provider's type when it
/// is one of Anthropic's, else the status's. Public for the provider matrix.
pub fn envelope(provider: &str, status: u16, body: &[u8]) -> Vec<u8> {
    let portkey = crate::providers::error_envelope::envelope(provider, status, body);
    let parsed: Value = serde_json::from_slice(&portkey).unwrap_or_default();
    let message = parsed
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = parsed
        .pointer("/error/type")
        .and_then(Value::as_str)
        .filter(|t| TYPES.contains(t))
        .unwrap_or_else(|| kind_of(status));
    // Written in Anthropic's member order (a `json!` map would sort "error" before "type").
    let mut out = Vec::with_capacity(64 + message.len());
    let mut o = Object::new(&mut out);
    o.str("type", "error");
    let mut e = o.object("error");
    e.str("type", kind);
    e.str("message", message);
    e.end();
    o.end();
    out
}
