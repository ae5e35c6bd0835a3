//! OpenAI's Responses API (`POST /v1/responses`) on every provider.
//!
//! OpenAI and Azure OpenAI serve it natively: the client's body goes upstream unchanged and
//! the answer comes back unchanged, with usage read on the way ([`NativeMeter`]). Every other
//! provider gets it as a layer around its chat path: the Responses request becomes an OpenAI
//! chat request (`request`), which the provider's own adapter then translates as for
//! `/v1/chat/completions`; its OpenAI-format answer (whole or streamed) becomes a Responses
//! object or event sequence (`answer`, `stream`). The provider's chat translator stays the
//! meter, so tokens and cost are counted exactly as for a chat.
//!
//! The gateway keeps no conversation state: `previous_response_id`, `store: true` and other
//! references to stored objects are refused (400) on a translated provider rather than
//! silently answered without their context.

use super::{Operation, Prepare, Provider, ProviderRequest, ResponseOptions};
use crate::error::GatewayError;
use crate::stream::Translator;
use bytes::Bytes;

mod answer;
mod native;
mod request;
mod stream;
#[cfg(test)]
mod tests;

pub(crate) use native::NativeMeter;
pub(crate) use request::{items_as_messages, to_chat};

/// The `api-version` of Azure's Responses API when the target names none (the Responses API
/// needs a newer one than the chat routes' default).
const AZURE_API_VERSION: &str = "2025-04-01-preview";

/// Whether the provider serves the Responses API itself.
pub(crate) fn is_native(slug: &str) -> bool {
    matches!(slug, "openai" | "azure-openai")
}

/// The upstream request of a Responses body: the body itself where the provider serves the
/// API, else the chat request it amounts to (chosen in `providers::prepare`).
pub(crate) fn prepare(
    provider: &dyn Provider,
    req: Prepare<'_>,
) -> Result<ProviderRequest, GatewayError> {
    match provider.slug() {
        "openai" => provider.prepare(req),
        "azure-openai" => azure(provider, req),
        _ => {
            let stream_usage = req.stream && provider.stream_usage_for(req.options);
            let chat = request::to_chat(&req.body, stream_usage)?;
            provider.prepare(Prepare {
                op: Operation::ChatCompletions,
                body: Bytes::from(chat),
                ..req
            })
        }
    }
}

/// Azure serves the Responses API per resource, not per deployment (the deployment is the
/// body's `model`): the adapter's chat request gives the authentication, the path is
/// `/responses` with the target's `api-version` (or one that has the API).
fn azure(provider: &dyn Provider, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError> {
    let version = req
        .options
        .get("azure_api_version")
        .map_or(AZURE_API_VERSION, String::as_str);
    // Checked by the adapter for the chat path too; here it only goes into the query.
    if !version
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(GatewayError::ProviderRequest(
            "azure_api_version may hold only letters, digits, '-', '_' and '.'".into(),
        ));
    }
    let path = format!("/responses?api-version={version}");
    let chat = provider.prepare(Prepare {
        op: Operation::ChatCompletions,
        ..req
    })?;
    Ok(ProviderRequest { path, ..chat })
}

/// The translator of a Responses answer: relayed and metered (native), or made from the
/// provider's chat answer.
pub(crate) fn response(
    provider: &dyn Provider,
    status: u16,
    content_type: &str,
    opts: &ResponseOptions<'_>,
) -> Box<dyn Translator> {
    if is_native(provider.slug()) {
        return Box::new(NativeMeter::for_response(status, content_type));
    }
    let chat = provider.response(Operation::ChatCompletions, status, content_type, opts);
    if !(200..300).contains(&status) {
        return chat;
    }
    if super::chat_streams(content_type, chat.as_ref()) {
        Box::new(stream::ResponsesStream::new(chat, opts.created))
    } else {
        Box::new(answer::whole(chat, opts.created))
    }
}
