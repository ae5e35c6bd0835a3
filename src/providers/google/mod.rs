//! Google Gemini (`google`): the Generative Language API, which is not OpenAI's format.
//!
//! Requests are rebuilt from the unified (OpenAI) body: chat becomes `generateContent` (or
//! `streamGenerateContent?alt=sse` for a stream, so the answer is SSE and not one long JSON
//! array), embeddings become `embedContent` / `batchEmbedContents`. Answers are translated back
//! to OpenAI's `chat.completion`, `chat.completion.chunk` and embedding-list shapes, and usage
//! is read from Gemini's `usageMetadata`. Error answers are not seen here: the relay wraps them
//! in Portkey's envelope (`providers::error_envelope`), which already reads Gemini's
//! `{"error":{"code","message","status"}}`.
//!
//! `/v1/completions` is answered with a 400: Gemini has no text-completion API, and a mapping
//! onto chat would need a `text_completion` answer shape nobody has asked for yet.
//!
//! Pure like every adapter: no sockets, clocks or globals (`ResponseOptions.created` is the
//! timestamp).

use super::common::{self, DataUrl};
use super::{Operation, Prepare, Provider, ProviderRequest, ResponseOptions};
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::providers::error_envelope as provider_error;
use crate::stream::sse::{self, data, SseSplitter};
use crate::stream::{Convert, Converted, Meter, Translator, WholeJson};
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// The Portkey slug.
pub(crate) const SLUG: &str = "google";
/// Where the Gemini API lives unless a custom host overrides it.
pub(crate) const BASE_URL: &str = "https://generativelanguage.googleapis.com";
/// The API version in the path; `v1beta` is the one that has system instructions, tools and
/// JSON output.
const VERSION: &str = "/v1beta";
/// Largest JSON answer translated; a larger one is relayed as Gemini sent it.
const MAX_JSON: usize = 16 * 1024 * 1024;
/// JSON-Schema keywords Gemini's OpenAPI-subset `Schema` rejects ("Unknown name ...: Cannot
/// find field"), removed from response schemas and function parameters.
const UNSUPPORTED_SCHEMA_KEYS: &[&str] = &["$schema", "$id", "$comment", "additionalProperties"];

/// The Gemini adapter.
pub(crate) struct Google {
    upstream: Upstream,
}

impl Google {
    pub(crate) fn new(base_url: &str) -> Result<Self, String> {
        Ok(Google {
            upstream: Upstream::parse(base_url)?,
        })
    }
}

fn invalid(msg: impl Into<String>) -> GatewayError {
    GatewayError::InvalidBody(msg.into())
}

impl Provider for Google {
    fn slug(&self) -> &str {
        SLUG
    }

    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// True so the walk computes `hide_usage` (a stream whose client did not ask for
    /// `stream_options.include_usage`): Gemini always reports usage, and the translator must
    /// know whether to pass it on as OpenAI's usage chunk. The `stream_options` the walk adds
    /// to the unified body never reach Gemini: the request is rebuilt from known fields only.
    fn stream_usage(&self) -> bool {
        true
    }

    /// The key goes in `x-goog-api-key`, never in the URL's `?key=`: URLs end up in logs.
    fn auth_headers(&self, api_key: &str) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        let mut value =
            HeaderValue::try_from(api_key).map_err(|_| GatewayError::InvalidHeader {
                name: "authorization",
                reason: "the API key contains characters not allowed in a header".into(),
            })?;
        value.set_sensitive(true);
        Ok(vec![(HeaderName::from_static("x-goog-api-key"), value)])
    }

    /// The client's query string is not passed on: it belongs to the OpenAI route, and the
    /// Gemini path owns its own (`alt=sse`).
    fn prepare(&self, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError> {
        let headers = match req.api_key {
            Some(key) if !key.is_empty() => self.auth_headers(key)?,
            _ => Vec::new(),
        };
        let body: Map<String, Value> = match serde_json::from_slice(&req.body) {
            Ok(Value::Object(o)) => o,
            _ => return Err(invalid("the body must be a JSON object")),
        };
        let model = model_name(&body)?;
        let (path, out) = match req.op {
            Operation::ChatCompletions => {
                let path = if req.stream {
                    format!("{VERSION}/models/{model}:streamGenerateContent?alt=sse")
                } else {
                    format!("{VERSION}/models/{model}:generateContent")
                };
                (path, chat_request(&body)?)
            }
            // Made a chat request by its layer before it gets here (`providers::prepare`).
            Operation::Responses => {
                return Err(GatewayError::Unsupported(req.op.fn_name(), SLUG.into()))
            }
            Operation::Embeddings => embed_request(&body, model)?,
            Operation::Completions => {
                return Err(invalid(
                    "google has no text-completion API: use /v1/chat/completions",
                ))
            }
            Operation::Messages | Operation::Rerank => {
                return Err(GatewayError::Unsupported(req.op.fn_name(), SLUG.into()))
            }
        };
        let body = serde_json::to_vec(&out)
            .map_err(|e| GatewayError::Internal(format!("serialising the request: {e}")))?;
        Ok(ProviderRequest {
            path,
            headers,
            body: Bytes::from(body),
        })
    }

    fn response(
        &self,
        op: Operation,
        status: u16,
        content_type: &str,
        opts: &ResponseOptions,
    ) -> Box<dyn Translator> {
        stream::translator(op, status, content_type, opts)
    }
}

/// The model from the body, without a leading `models/`. Only characters of Gemini model ids
/// are accepted: the name becomes part of the path, so `/`, `?` or `:` could re-aim it.
fn model_name(body: &Map<String, Value>) -> Result<&str, GatewayError> {
    let Some(Value::String(model)) = body.get("model") else {
        return Err(invalid(
            "model is required (a Gemini model id, e.g. gemini-2.0-flash)",
        ));
    };
    let model = model.strip_prefix("models/").unwrap_or(model);
    let ok = !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        Ok(model)
    } else {
        Err(invalid(format!("{model:?} is not a Gemini model id")))
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

use request::*;
use response::*;
