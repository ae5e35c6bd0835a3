//! `POST /v1/messages/count_tokens`: Anthropic counts natively (the request is passed through
//! to it like any other `/v1/*` route); for every other provider the gateway answers an
//! estimate itself (`providers::messages::estimate`), marked with `x-portgate-token-count`.

use super::body::read_body;
use super::ctx::RequestCtx;
use super::passthrough::below_v1;
use super::respond;
use crate::buffers::BufferLease;
use crate::error::GatewayError;
use crate::providers::messages;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// Whether the gateway answers this passthrough request itself: a `count_tokens` call for a
/// provider without a count API of the Anthropic kind.
pub(crate) fn estimated(provider: &str, path: &str) -> bool {
    let below = below_v1(path.split('?').next().unwrap_or(path));
    below.trim_end_matches('/') == "/messages/count_tokens"
        && provider != crate::providers::anthropic::SLUG
}

/// Reads the body, estimates its input tokens off the async workers, answers
/// `{"input_tokens": N}`.
pub(crate) async fn answer(
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let state = ctx.state.clone();
    let lease = ctx
        .lease
        .get_or_insert_with(|| BufferLease::new(&state.buffers));
    let limit = state.settings.limits.max_request_body_bytes;
    let body = read_body(session, limit, lease).await?;
    let (n, method) = tokio::task::spawn_blocking(move || messages::estimate(&body))
        .await
        .map_err(|e| GatewayError::Internal(format!("counting tokens: {e}")))??;
    let body = Bytes::from(format!("{{\"input_tokens\":{n}}}"));
    let written = write(session, ctx, method.header(), body).await;
    written.map_err(|e| GatewayError::ClientClosed(e.to_string()))
}

async fn write(
    session: &mut Session,
    ctx: &RequestCtx,
    method: &'static str,
    body: Bytes,
) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(200, Some(4))?;
    h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    h.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    h.insert_header("x-portgate-token-count", method)?;
    respond::add_gateway_headers(&mut h, ctx)?;
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await
}
