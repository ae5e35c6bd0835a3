//! Anthropic's Messages API (`anthropic`): OpenAI chat requests are translated to
//! `/v1/messages` and the answers back, streams included; the native `/v1/messages` route
//! passes the client's bytes through untouched and only reads usage.
//!
//! Pure translation: bytes in, bytes out; the only outside input is `ResponseOptions.created`.

use super::common::{self, DataUrl};
use super::{Operation, Prepare, Provider, ProviderRequest, ResponseOptions};
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::stream::sse::{self, data, SseSplitter};
use crate::stream::{Convert, Converted, Translator, WholeJson};
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

pub(crate) const SLUG: &str = "anthropic";
/// Sent when the client names no `anthropic-version`.
pub(crate) const DEFAULT_VERSION: &str = "2023-06-01";

pub(crate) struct Anthropic {
    upstream: Upstream,
    /// `max_tokens` sent when the client gives neither `max_tokens` nor
    /// `max_completion_tokens` (Anthropic requires one).
    default_max_tokens: u64,
}

impl Anthropic {
    pub(crate) fn new(base_url: &str, default_max_tokens: u64) -> Result<Self, String> {
        Ok(Anthropic {
            upstream: Upstream::parse(base_url)?,
            default_max_tokens,
        })
    }
}

fn invalid(why: impl Into<String>) -> GatewayError {
    GatewayError::InvalidBody(why.into())
}

/// A client header, plain or with Portkey's prefix (what the Portkey SDK sends).
fn client_header<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h HeaderValue> {
    headers
        .get(format!("x-portkey-{name}"))
        .or_else(|| headers.get(name))
}

impl Provider for Anthropic {
    fn slug(&self) -> &str {
        SLUG
    }

    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    fn auth_headers(&self, api_key: &str) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        let mut v = HeaderValue::try_from(api_key).map_err(|_| GatewayError::InvalidHeader {
            name: "authorization",
            reason: "the API key contains characters not allowed in a header".into(),
        })?;
        v.set_sensitive(true);
        Ok(vec![(HeaderName::from_static("x-api-key"), v)])
    }

    fn prepare(&self, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError> {
        let body = match req.op {
            // The native route: the client already speaks Anthropic.
            Operation::Messages => req.body,
            Operation::ChatCompletions => {
                let openai: Value = serde_json::from_slice(&req.body)
                    .map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
                let translated = to_messages(&openai, self.default_max_tokens)?;
                crate::types::json::to_bytes(&translated)
            }
            other => return Err(GatewayError::Unsupported(other.fn_name(), SLUG.into())),
        };
        let mut headers = match req.api_key {
            Some(key) if !key.is_empty() => self.auth_headers(key)?,
            _ => Vec::new(),
        };
        let version = client_header(req.client_headers, "anthropic-version")
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_VERSION));
        headers.push((HeaderName::from_static("anthropic-version"), version));
        // Any beta, untouched: a new beta must not need a gateway release.
        if let Some(beta) = client_header(req.client_headers, "anthropic-beta") {
            headers.push((HeaderName::from_static("anthropic-beta"), beta.clone()));
        }
        Ok(ProviderRequest {
            path: "/messages".into(),
            headers,
            body,
        })
    }

    fn response(
        &self,
        op: Operation,
        _status: u16,
        content_type: &str,
        opts: &ResponseOptions,
    ) -> Box<dyn Translator> {
        let sse = content_type.starts_with("text/event-stream");
        match (op, sse) {
            (Operation::Messages, _) => Box::new(Native::new(sse)),
            (_, true) => Box::new(ChatStream::new(Opts::from(opts))),
            (_, false) => Box::new(ChatJson::translator(Opts::from(opts))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request: OpenAI chat → Anthropic messages
// ---------------------------------------------------------------------------------------------

mod request;
mod response;
mod stream;

pub(crate) use request::to_messages;
pub(crate) use response::message_as_chat;
use response::*;
pub(crate) use stream::native_meter;
use stream::*;

#[cfg(test)]
mod tests;
