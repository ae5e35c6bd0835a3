//! Anthropic's Messages API (`POST /v1/messages`) on providers that do not speak it: the
//! request is translated into an OpenAI chat request, which the provider's own chat translator
//! then takes as from any client; its answer (OpenAI's format, metered there as on the chat
//! route) is translated into an Anthropic message, or a stream of Anthropic events as chunks
//! arrive. `anthropic` and `bedrock` keep serving the route natively.
//!
//! The translation is a wrapper around the provider's adapter, so no adapter changes: every
//! operation but Messages goes to the adapter untouched.

mod count;
mod error;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

pub(crate) use count::estimate;
pub(crate) use error::envelope;

use super::Signing;
use super::{Operation, Prepare, Provider, ProviderOptions, ProviderRequest, ResponseOptions};
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::stream::Translator;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Providers that serve the Messages API natively.
const NATIVE: &[&str] = &[super::anthropic::SLUG, super::bedrock::SLUG];

/// Providers whose chat API takes `reasoning_effort`: Anthropic's `thinking` maps to it there
/// (see `request::effort`) and is ignored elsewhere.
const REASONING: &[&str] = &["openai", "azure-openai"];

/// Wraps every adapter that does not serve Messages natively.
pub(crate) fn wrap_all(by_slug: &mut HashMap<String, Arc<dyn Provider>>) {
    for (slug, adapter) in by_slug.iter_mut() {
        if !NATIVE.contains(&slug.as_str()) {
            *adapter = Arc::new(ViaChat {
                inner: adapter.clone(),
                reasoning: REASONING.contains(&slug.as_str()),
            });
        }
    }
}

/// An adapter that serves Messages through its chat path.
pub(crate) struct ViaChat {
    inner: Arc<dyn Provider>,
    reasoning: bool,
}

impl ViaChat {
    /// The chat request for a Messages body.
    fn chat_body(&self, req: &Prepare<'_>) -> Result<Bytes, GatewayError> {
        let body: Map<String, Value> = serde_json::from_slice(&req.body)
            .map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
        let target = request::Target {
            reasoning: self.reasoning,
            stream_usage: self.inner.stream_usage_for(req.options),
        };
        let chat = request::to_chat(&body, target)?;
        serde_json::to_vec(&chat)
            .map(Bytes::from)
            .map_err(|e| GatewayError::Internal(format!("serialising the request: {e}")))
    }
}

impl Provider for ViaChat {
    fn slug(&self) -> &str {
        self.inner.slug()
    }
    fn upstream(&self) -> &Upstream {
        self.inner.upstream()
    }
    fn stream_usage(&self) -> bool {
        self.inner.stream_usage()
    }
    fn stream_usage_for(&self, options: &ProviderOptions) -> bool {
        self.inner.stream_usage_for(options)
    }
    fn upstream_for(&self, options: &ProviderOptions) -> Result<Upstream, GatewayError> {
        self.inner.upstream_for(options)
    }
    fn auth_headers(&self, api_key: &str) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        self.inner.auth_headers(api_key)
    }
    fn sign(&self, req: &Signing<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        self.inner.sign(req)
    }

    fn prepare(&self, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError> {
        if req.op != Operation::Messages {
            return self.inner.prepare(req);
        }
        let body = self.chat_body(&req)?;
        self.inner.prepare(Prepare {
            op: Operation::ChatCompletions,
            body,
            ..req
        })
    }

    fn response(
        &self,
        op: Operation,
        status: u16,
        content_type: &str,
        opts: &ResponseOptions<'_>,
    ) -> Box<dyn Translator> {
        if op != Operation::Messages {
            return self.inner.response(op, status, content_type, opts);
        }
        // The chat translator in OpenAI's words (strict), with the usage chunk kept: it is
        // read here for `message_delta`, and never reaches the client as a chunk.
        let chat_opts = ResponseOptions {
            hide_usage: false,
            strict: true,
            ..*opts
        };
        let inner =
            self.inner
                .response(Operation::ChatCompletions, status, content_type, &chat_opts);
        if !(200..300).contains(&status) {
            return inner;
        }
        if content_type.starts_with("text/event-stream") {
            Box::new(stream::MessageStream::new(inner, opts.model))
        } else {
            Box::new(response::WholeMessage::new(inner, opts.model))
        }
    }
}
