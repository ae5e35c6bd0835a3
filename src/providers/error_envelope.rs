//! Portkey's envelope for a provider's error answer: whatever the provider said,
//! the client gets `{"error":{"message":"<slug> error: <message>","type","param","code"},
//! "provider":"<slug>"}` with the provider's status, so one error handler serves every provider.
//!
//! Pure: bytes in, bytes out. The providers issue's translators reuse it for their own shapes.

use crate::error::{ErrorEnvelope, ErrorObject};
use serde_json::{Map, Value};

/// Statuses Portkey passes through untouched instead of wrapping: its own request-timeout and
/// budget answers (408, 412) must reach the client as the provider or a nested gateway wrote
/// them.
pub(crate) fn wraps_status(status: u16) -> bool {
    !(200..300).contains(&status) && status != 408 && status != 412
}

/// The envelope for an error body of `provider` answered with `status`.
pub fn envelope(provider: &str, status: u16, body: &[u8]) -> Vec<u8> {
    let (message, kind, param, code) = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => from_object(&obj, body),
        _ => (
            text_message(status, body),
            Value::Null,
            Value::Null,
            Value::Null,
        ),
    };
    let envelope = ErrorEnvelope {
        error: ErrorObject {
            message: format!("{provider} error: {message}"),
            kind,
            param,
            code,
        },
        provider: Some(provider.to_string()),
    };
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// OpenAI's `{"error":{"message","type","param","code"}}`, a bare `{"error":"..."}`, or a
/// top-level `{"message":...}`; any other object keeps its JSON text as the message.
fn from_object(obj: &Map<String, Value>, raw: &[u8]) -> (String, Value, Value, Value) {
    let field = |o: &Map<String, Value>, k: &str| o.get(k).cloned().unwrap_or(Value::Null);
    match obj.get("error") {
        Some(Value::Object(e)) => {
            let message = match e.get("message") {
                Some(Value::String(m)) => m.clone(),
                _ => Value::Object(e.clone()).to_string(),
            };
            (
                message,
                field(e, "type"),
                field(e, "param"),
                field(e, "code"),
            )
        }
        Some(Value::String(m)) => (m.clone(), Value::Null, Value::Null, Value::Null),
        _ => match obj.get("message") {
            Some(Value::String(m)) => (
                m.clone(),
                field(obj, "type"),
                field(obj, "param"),
                field(obj, "code"),
            ),
            _ => (
                String::from_utf8_lossy(raw).trim().to_string(),
                Value::Null,
                Value::Null,
                Value::Null,
            ),
        },
    }
}

/// A body that is not JSON keeps its text; an empty one says the status's reason.
fn text_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body).trim().to_string();
    if !text.is_empty() {
        return text;
    }
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("no response body")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wrap(status: u16, body: &str) -> Value {
        serde_json::from_slice(&envelope("openai", status, body.as_bytes())).unwrap()
    }

    #[test]
    fn openai_errors_are_prefixed_and_keep_their_fields() {
        let v = wrap(
            429,
            r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(
            v,
            json!({"error":{"message":"openai error: Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"},"provider":"openai"})
        );
    }

    #[test]
    fn other_shapes_keep_their_text() {
        assert_eq!(
            wrap(500, "upstream exploded")["error"]["message"],
            "openai error: upstream exploded"
        );
        assert_eq!(
            wrap(502, "")["error"]["message"],
            "openai error: Bad Gateway"
        );
        assert_eq!(
            wrap(400, r#"{"error":"bad model"}"#)["error"]["message"],
            "openai error: bad model"
        );
        let v = wrap(
            404,
            r#"{"message":"no such model","code":"model_not_found"}"#,
        );
        assert_eq!(v["error"]["message"], "openai error: no such model");
        assert_eq!(v["error"]["code"], "model_not_found");
        let v = wrap(422, r#"{"detail":[{"loc":["body"]}]}"#);
        assert_eq!(
            v["error"]["message"],
            r#"openai error: {"detail":[{"loc":["body"]}]}"#
        );
        assert_eq!(v["error"]["type"], Value::Null);
        assert_eq!(v["provider"], "openai");
    }

    /// Gemini's `{"error":{"code","message","status"}}`: the message is read, the numeric
    /// code kept; `status` (e.g. `INVALID_ARGUMENT`) is not an OpenAI field and is dropped.
    #[test]
    fn gemini_errors_are_wrapped() {
        let body = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
        let v: Value = serde_json::from_slice(&envelope("google", 400, body.as_bytes())).unwrap();
        assert_eq!(
            v,
            json!({"error":{"message":"google error: API key not valid. Please pass a valid API key.","type":null,"param":null,"code":400},"provider":"google"})
        );
    }

    #[test]
    fn portkeys_own_statuses_pass_through() {
        assert!(wraps_status(400) && wraps_status(429) && wraps_status(503));
        assert!(
            !wraps_status(200) && !wraps_status(204) && !wraps_status(408) && !wraps_status(412)
        );
    }

    #[test]
    fn the_envelope_keeps_portkeys_field_order() {
        let out = envelope(
            "openai",
            429,
            br#"{"error":{"message":"m","type":"t","param":null,"code":"c"}}"#,
        );
        assert_eq!(
            out,
            br#"{"error":{"message":"openai error: m","type":"t","param":null,"code":"c"},"provider":"openai"}"#
        );
    }
}
