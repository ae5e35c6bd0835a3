//! Cohere (`cohere`): the v2 Chat, Embed and Rerank APIs behind OpenAI's chat completions and
//! embeddings and the unified rerank route.
//!
//! Requests are rebuilt (OpenAI messages → Cohere v2 messages, parameter names renamed), so
//! this adapter parses the body; answers are translated back: a whole JSON answer at its end,
//! a stream event by event (`stream.rs`). Cohere never names the model in its answers, so the
//! translated answer carries the model the client asked for (`ResponseOptions::model`).
//!
//! Usage is read from `usage.billed_units` (what Cohere charges, so what cost is computed from)
//! and from `usage.tokens` when billed units are absent.

mod stream;

use super::rerank::{Dialect, RerankAnswer};
use super::{Operation, Prepare, Provider, ProviderRequest, ResponseOptions};
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::stream::{Convert, Converted, Meter, Translator, WholeJson};
use crate::types::usage::Usage;
use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

mod request;
mod response;

use request::*;
use response::*;

pub(crate) use stream::CohereStream;

/// Largest whole answer kept for translation; a larger one is relayed as Cohere sent it.
const MAX_JSON: usize = 8 * 1024 * 1024;

pub(crate) struct Cohere {
    upstream: Upstream,
}

impl Cohere {
    pub(crate) fn new() -> Self {
        Cohere {
            upstream: Upstream::new(true, "api.cohere.com".into(), 443, String::new()),
        }
    }
}

impl Default for Cohere {
    fn default() -> Self {
        Self::new()
    }
}

impl Provider for Cohere {
    fn slug(&self) -> &str {
        "cohere"
    }

    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Cohere always reports usage in `message-end`; saying yes here makes the gateway tell the
    /// translator (`hide_usage`) whether the client asked for a usage chunk. The
    /// `stream_options` the gateway adds is not part of Cohere's request and is dropped.
    fn stream_usage(&self) -> bool {
        true
    }

    fn auth_headers(&self, api_key: &str) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        let mut value = HeaderValue::try_from(format!("Bearer {api_key}")).map_err(|_| {
            GatewayError::InvalidHeader {
                name: "authorization",
                reason: "the API key contains characters not allowed in a header".into(),
            }
        })?;
        value.set_sensitive(true);
        Ok(vec![(http::header::AUTHORIZATION, value)])
    }

    fn prepare(&self, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError> {
        let headers = match req.api_key {
            Some(key) if !key.is_empty() => self.auth_headers(key)?,
            _ => Vec::new(),
        };
        if req.op == Operation::Rerank {
            return Ok(ProviderRequest {
                path: "/v2/rerank".into(),
                headers,
                body: super::rerank::request(&req.body, Dialect::Cohere)?,
            });
        }
        let body: Value = serde_json::from_slice(&req.body)
            .map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
        let Value::Object(body) = body else {
            return Err(GatewayError::InvalidBody(
                "the body must be a JSON object".into(),
            ));
        };
        let (path, out) = match req.op {
            Operation::ChatCompletions => ("/v2/chat", chat_request(&body, req.stream)?),
            // Made a chat request by its layer before it gets here (`providers::prepare`).
            Operation::Responses => {
                return Err(GatewayError::Unsupported(req.op.fn_name(), "cohere".into()))
            }
            Operation::Embeddings => ("/v2/embed", embed_request(&body)?),
            Operation::Messages | Operation::Rerank => {
                return Err(GatewayError::Unsupported(req.op.fn_name(), "cohere".into()))
            }
            Operation::Completions => {
                return Err(GatewayError::ProviderRequest(
                    "cohere does not serve /v1/completions through portgate; use \
                     /v1/chat/completions"
                        .into(),
                ))
            }
        };
        Ok(ProviderRequest {
            path: path.into(),
            headers,
            body: crate::types::json::to_bytes(&out),
        })
    }

    fn response(
        &self,
        op: Operation,
        status: u16,
        content_type: &str,
        opts: &ResponseOptions<'_>,
    ) -> Box<dyn Translator> {
        if !(200..300).contains(&status) {
            return Box::new(Meter::for_response(status, content_type, false));
        }
        if content_type.starts_with("text/event-stream") && op == Operation::ChatCompletions {
            return Box::new(CohereStream::new(opts));
        }
        if content_type.contains("json") && op == Operation::Rerank {
            return Box::new(RerankAnswer::translator("cohere", Dialect::Cohere, opts));
        }
        if content_type.contains("json") {
            return Box::new(CohereAnswer::translator(op, opts));
        }
        Box::new(Meter::for_response(status, content_type, false))
    }
}

#[cfg(test)]
mod tests;
