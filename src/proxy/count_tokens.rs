//! `POST /v1/messages/count_tokens`. Anthropic counts natively: the request is passed through
//! to it like any other `/v1/*` route. A provider with a count API of another shape (Bedrock's
//! CountTokens, see `Provider::count_tokens`) is asked by the gateway itself, which builds and
//! signs the request and answers Anthropic's `{"input_tokens": N}`. For every other provider,
//! and for a model such an API does not count, the gateway answers an estimate
//! (`providers::messages::estimate`), marked with `x-portgate-token-count`.

use super::body::read_body;
use super::ctx::{PassthroughTarget, RequestCtx};
use super::passthrough::below_v1;
use super::respond;
use crate::buffers::BufferLease;
use crate::dispatch::Outbound;
use crate::error::GatewayError;
use crate::pipeline::request::Carried;
use crate::providers::{messages, Operation, ProviderRequest};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// The largest count API answer read (a count is a few bytes; an error a few hundred).
const ANSWER_LIMIT: usize = 64 * 1024;

/// Whether the gateway answers this passthrough request itself: a `count_tokens` call for a
/// provider other than Anthropic.
pub(crate) fn answered_here(provider: &str, path: &str) -> bool {
    let below = below_v1(path.split('?').next().unwrap_or(path));
    below.trim_end_matches('/') == "/messages/count_tokens"
        && provider != crate::providers::anthropic::SLUG
}

/// What the provider's count API said.
enum Asked {
    Counted(u64),
    /// It does not count this request (a model it has no count for, in this region or at
    /// all): the gateway estimates instead.
    NotCounted,
    /// Any other failure, relayed in Anthropic's error envelope.
    Failed(u16, Bytes),
}

/// Reads the body and answers `{"input_tokens": N}`: the provider's count where it has a count
/// API for the model, else an estimate made off the async workers.
pub(crate) async fn answer(
    session: &mut Session,
    ctx: &mut RequestCtx,
    target: &PassthroughTarget,
) -> Result<(), GatewayError> {
    let state = ctx.state.clone();
    let lease = ctx
        .lease
        .get_or_insert_with(|| BufferLease::new(&state.buffers));
    let limit = state.settings.limits.max_request_body_bytes;
    let body = read_body(session, limit, lease).await?;
    let api_key = target.api_key.as_ref().map(|k| k.expose());
    if let Some(req) = target
        .adapter
        .count_tokens(&body, api_key, &target.options)?
    {
        match ask(ctx, target, &session.req_header().headers, req).await? {
            Asked::Counted(n) => return write(session, ctx, 200, None, count(n)).await,
            Asked::Failed(status, raw) => {
                let envelope = messages::envelope(&target.provider, status, &raw);
                return write(session, ctx, status, None, Bytes::from(envelope)).await;
            }
            Asked::NotCounted => {}
        }
    }
    let (n, method) = tokio::task::spawn_blocking(move || messages::estimate(&body))
        .await
        .map_err(|e| GatewayError::Internal(format!("counting tokens: {e}")))??;
    write(session, ctx, 200, Some(method.header()), count(n)).await
}

fn count(n: u64) -> Bytes {
    Bytes::from(format!("{{\"input_tokens\":{n}}}"))
}

/// Sends the provider's count request (signed where the provider signs) and reads its answer.
async fn ask(
    ctx: &mut RequestCtx,
    target: &PassthroughTarget,
    client_headers: &http::HeaderMap,
    req: ProviderRequest,
) -> Result<Asked, GatewayError> {
    let traceparent = ctx.trace.as_ref().map(|t| t.outgoing());
    let built = crate::pipeline::request::finish(
        &*target.adapter,
        &target.upstream,
        &target.options,
        req,
        &Carried {
            op: Operation::Messages,
            query: None,
            stream: false,
            client_headers,
            forward: &[],
            traceparent: traceparent.as_deref(),
            hop: &ctx.hop,
        },
    )?;
    // One send, as on every passthrough route: no retries.
    let no_resend = || false;
    let out = Outbound {
        provider: &target.provider,
        upstream: &target.upstream,
        public_only: target.public_only,
        method: "POST",
        path: &built.path,
        headers: &built.headers,
        body: built.body,
        may_resend: &no_resend,
    };
    let dispatcher = &ctx.state.dispatcher;
    let started = std::time::Instant::now();
    let mut inbound = dispatcher.send(&out).await?;
    let status = inbound.status();
    let raw = inbound.read_to_end(ANSWER_LIMIT).await;
    ctx.upstream_time += started.elapsed();
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            inbound.abort();
            return Err(e);
        }
    };
    dispatcher.finish(inbound);
    Ok(match status {
        // An answer without a count is not one the gateway can relay as a count.
        200..=299 => target
            .adapter
            .counted_tokens(&raw)
            .map_or(Asked::NotCounted, Asked::Counted),
        // Bedrock's answer for a model it does not count (ValidationException) or does not
        // know in this region (ResourceNotFoundException): an estimate is still an answer.
        400 | 404 => Asked::NotCounted,
        _ => Asked::Failed(status, raw),
    })
}

async fn write(
    session: &mut Session,
    ctx: &RequestCtx,
    status: u16,
    method: Option<&'static str>,
    body: Bytes,
) -> Result<(), GatewayError> {
    let written = async {
        let mut h = ResponseHeader::build(status, Some(4))?;
        h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        h.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        if let Some(m) = method {
            h.insert_header("x-portgate-token-count", m)?;
        }
        respond::add_gateway_headers(&mut h, ctx)?;
        session.write_response_header(Box::new(h), false).await?;
        session.write_response_body(Some(body), true).await
    };
    written
        .await
        .map_err(|e: Box<pingora::Error>| GatewayError::ClientClosed(e.to_string()))
}
