//! An answer the gateway holds whole — a guardrail's 446, an answer with `hook_results`, a
//! provider's error in Portkey's envelope, a cache hit — relayed through the same writer and
//! meter as a live one.

use super::usage::Usage;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue};

#[derive(Debug, Clone)]
pub struct HeldAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Usage and model when already known (read from the provider's answer before hooks ran,
    /// or stored with a cache entry): the relay does not read the body again to find them.
    pub usage: Option<Usage>,
    pub model: Option<String>,
}

impl HeldAnswer {
    /// A JSON answer: the provider's framing headers dropped, its type and length set.
    pub fn json(status: u16, mut headers: HeaderMap, body: Bytes) -> HeldAnswer {
        for h in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONTENT_ENCODING,
        ] {
            headers.remove(h);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        HeldAnswer {
            status,
            headers,
            body,
            usage: None,
            model: None,
        }
    }

    /// The answer with the usage and model it is known to carry.
    pub fn metered(mut self, usage: Option<Usage>, model: Option<String>) -> HeldAnswer {
        self.usage = usage;
        self.model = model;
        self
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body, once: an empty body, or one already taken, is `None`.
    pub fn take_body(&mut self) -> Option<Bytes> {
        (!self.body.is_empty()).then(|| std::mem::take(&mut self.body))
    }

    pub fn is_sse(&self) -> bool {
        self.content_type().starts_with("text/event-stream")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_answer_drops_the_provider_framing_and_states_its_length() {
        let mut h = HeaderMap::new();
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        h.insert("x-request-id", HeaderValue::from_static("r1"));
        let a = HeldAnswer::json(446, h, Bytes::from_static(b"{}"));
        assert_eq!(a.content_type(), "application/json");
        assert_eq!(a.headers.get(header::CONTENT_LENGTH).unwrap(), "2");
        assert!(a.headers.get(header::TRANSFER_ENCODING).is_none());
        assert!(a.headers.get(header::CONTENT_ENCODING).is_none());
        assert_eq!(a.headers.get("x-request-id").unwrap(), "r1");
        assert!(!a.is_sse());
    }
}
