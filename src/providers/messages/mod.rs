//! Anthropic's Messages API (`POST /v1/messages`) on providers that do not speak it: the
//! request is translated into an OpenAI chat request, which the provider's own chat translator
//! then takes as from any client; its answer (OpenAI's format, metered there as on the chat
//! route) is translated into an Anthropic message, or a stream of Anthropic events as chunks
//! arrive. `anthropic` and `bedrock` keep serving the route natively.
//!
//! The translation is a layer around the provider's adapter (chosen in `providers::prepare`
//! and `providers::response`, as the Responses API's is), so no adapter changes.

mod count;
mod error;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;

pub(crate) use count::estimate;
pub use error::envelope;
pub(crate) use request::{to_chat, Target};

use super::{Operation, Prepare, Provider, ProviderRequest, ResponseOptions};
use crate::error::GatewayError;
use crate::stream::Translator;
use bytes::Bytes;
use serde_json::{Map, Value};

/// Providers that serve the Messages API natively.
const NATIVE: &[&str] = &[super::anthropic::SLUG, super::bedrock::SLUG];

/// Providers whose chat API takes `reasoning_effort`: Anthropic's `thinking` maps to it there
/// (see `request::effort`) and is ignored elsewhere.
const REASONING: &[&str] = &["openai", "azure-openai"];

/// Whether the provider serves Messages through its chat path (not natively).
pub(crate) fn through_chat(slug: &str) -> bool {
    !NATIVE.contains(&slug)
}

/// The upstream request of a Messages body: the chat request it amounts to, as the provider's
/// own adapter builds it.
pub(crate) fn prepare(
    provider: &dyn Provider,
    req: Prepare<'_>,
) -> Result<ProviderRequest, GatewayError> {
    let body: Map<String, Value> =
        serde_json::from_slice(&req.body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let target = request::Target {
        reasoning: REASONING.contains(&provider.slug()),
        stream_usage: provider.stream_usage_for(req.options),
    };
    let chat = request::to_chat(&body, target)?;
    let body = serde_json::to_vec(&chat)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(format!("serialising the request: {e}")))?;
    provider.prepare(Prepare {
        op: Operation::ChatCompletions,
        body,
        ..req
    })
}

/// The translator of a Messages answer: the provider's chat translator, its answer made an
/// Anthropic message or event stream.
pub(crate) fn response(
    provider: &dyn Provider,
    status: u16,
    content_type: &str,
    opts: &ResponseOptions<'_>,
) -> Box<dyn Translator> {
    // The chat translator in OpenAI's words (strict), with the usage chunk kept: it is read
    // here for `message_delta`, and never reaches the client as a chunk.
    let chat_opts = ResponseOptions {
        hide_usage: false,
        strict: true,
        ..*opts
    };
    let inner = provider.response(Operation::ChatCompletions, status, content_type, &chat_opts);
    if !(200..300).contains(&status) {
        return inner;
    }
    if super::chat_streams(content_type, inner.as_ref()) {
        Box::new(stream::MessageStream::new(inner, opts.model))
    } else {
        Box::new(response::whole(inner, opts.model))
    }
}
