//! Reading the client's request body (bounded) and peeking at the few JSON fields the gateway
//! needs without building a document tree.

use crate::error::GatewayError;
use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use serde::Deserialize;
use std::borrow::Cow;

/// Reads the whole request body, refusing more than `limit` bytes with 413. A declared
/// `Content-Length` over the limit is refused before reading anything.
pub async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, GatewayError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .downstream_session
            .write_continue_response()
            .await
            .map_err(|e| GatewayError::ClientClosed(e.to_string()))?;
    }
    // The common case is one chunk: keep it without copying.
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| GatewayError::ClientClosed(e.to_string()))?
    {
        total += chunk.len();
        if total > limit {
            return Err(GatewayError::BodyTooLarge { limit });
        }
        match (&mut first, &mut buf) {
            (None, None) => first = Some(chunk),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity(declared.unwrap_or(total).max(total));
                b.extend_from_slice(f);
                b.extend_from_slice(&chunk);
                buf = Some(b);
            }
            (_, Some(b)) => b.extend_from_slice(&chunk),
        }
    }
    Ok(match buf {
        Some(b) => b.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// The fields of a unified-API body the gateway itself reads. Every other field is skipped by
/// the parser (still validated as JSON) and forwarded byte-for-byte.
#[derive(Debug, Deserialize, Default)]
pub struct Peek<'a> {
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub stream: Option<bool>,
}

/// Validates that the body is one JSON object and returns the fields above.
pub fn peek(body: &[u8]) -> Result<Peek<'_>, GatewayError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(if first.is_none() {
            GatewayError::InvalidJson("the body is empty".into())
        } else {
            GatewayError::InvalidJson("the body must be a JSON object".into())
        });
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            GatewayError::InvalidBody(e.to_string())
        } else {
            GatewayError::InvalidJson(e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks_model_and_stream() {
        let p = peek(
            br#" {"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        )
        .unwrap();
        assert_eq!(p.model.as_deref(), Some("gpt-4o"));
        assert_eq!(p.stream, Some(true));
        let p = peek(br#"{"messages":[],"stream":null}"#).unwrap();
        assert!(p.model.is_none() && p.stream.is_none());
    }

    #[test]
    fn refuses_what_is_not_a_json_object() {
        for (bad, status) in [
            (&b""[..], 400),
            (b"[1,2]", 400),
            (b"{\"model\":", 400),
            (b"{\"model\":\"m\"} trailing", 400),
            (b"{\"stream\":\"yes\"}", 400),
        ] {
            assert_eq!(peek(bad).unwrap_err().status(), status);
        }
    }
}
