//! Writing responses downstream: local answers (errors, health) and relaying an upstream
//! response as it arrives.

use super::ctx::RequestCtx;
use crate::dispatch::{Dispatcher, Inbound};
use crate::error::GatewayError;
use crate::portkey::{provider_error, response};
use crate::stream::Meter;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// Response headers that describe one connection and are never copied from upstream.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// Adds the headers every gateway response carries.
pub fn add_gateway_headers(h: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    h.insert_header(response::TRACE_ID, &ctx.trace_id)?;
    if let Some(p) = &ctx.provider {
        h.insert_header(response::PROVIDER, p)?;
    }
    if let Some(path) = &ctx.last_used {
        h.insert_header(response::LAST_USED_OPTION_INDEX, path)?;
    }
    if let Some(n) = ctx.retry_count {
        h.insert_header(response::RETRY_ATTEMPT_COUNT, n.to_string())?;
    }
    if let Some(status) = ctx.cache_status {
        h.insert_header(response::CACHE_STATUS, status)?;
    }
    if ctx.budget_exhausted {
        h.insert_header(response::RETRY_BUDGET, "exhausted")?;
    }
    Ok(())
}

/// Answers locally with a complete body.
pub async fn send_local(
    session: &mut Session,
    ctx: &RequestCtx,
    status: u16,
    content_type: &str,
    body: Bytes,
) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(status, Some(4))?;
    h.insert_header(http::header::CONTENT_TYPE, content_type)?;
    h.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    add_gateway_headers(&mut h, ctx)?;
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await
}

/// The largest unread request body read and thrown away so that an early error answer can keep
/// the connection; a larger or unsized one closes it (`Connection: close`).
const DISCARD_LIMIT: usize = 64 * 1024;

/// Reads and drops the rest of a request body that an early error left unread (the next
/// request on a kept-alive connection starts after it). `false` when the connection cannot be
/// reused: the body is too large, has no declared length, waits for `100 Continue`, or does not
/// arrive within a second.
async fn discard_body(session: &mut Session) -> bool {
    if session.downstream_session.is_body_done() {
        return true;
    }
    let headers = &session.req_header().headers;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let expects_continue = headers.contains_key(http::header::EXPECT);
    if expects_continue || !declared.is_some_and(|n| n <= DISCARD_LIMIT) {
        return false;
    }
    let drained = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        session.downstream_session.drain_request_body(),
    )
    .await;
    matches!(drained, Ok(Ok(())))
}

/// Answers with the error's status and JSON body. Body-size errors also close the connection
/// so the unread remainder of the body is not drained.
pub async fn send_error(
    session: &mut Session,
    ctx: &RequestCtx,
    err: &GatewayError,
) -> pingora::Result<()> {
    if matches!(err, GatewayError::BodyTooLarge { .. }) || !discard_body(session).await {
        session.set_keepalive(None);
    }
    let mut h = ResponseHeader::build(err.status(), Some(5))?;
    h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    let body = err.body();
    h.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    if matches!(err, GatewayError::Overloaded) {
        h.insert_header(http::header::RETRY_AFTER, "1")?;
    }
    if err.is_gateway_exception() {
        h.insert_header(response::GATEWAY_EXCEPTION, "true")?;
    }
    add_gateway_headers(&mut h, ctx)?;
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Why relaying stopped before the end of the upstream body.
#[derive(Debug)]
pub enum RelayError {
    /// Nothing was written yet: the client gets this error as a normal answer.
    BeforeResponse(GatewayError),
    /// The client went away; the upstream exchange was aborted.
    ClientGone,
    /// The upstream failed after the response had started; the client was told in-band when
    /// the stream format allows it, and the connection is then closed without a clean end.
    Upstream(GatewayError),
}

/// Copies the upstream status and headers (minus hop-by-hop ones) and adds the gateway's.
/// A body whose length the upstream declared keeps its `Content-Length`; any other body is sent
/// chunked, so the client can always tell a complete body from a cut one.
fn downstream_header(
    inbound: &Inbound,
    ctx: &RequestCtx,
    rewrite: bool,
) -> pingora::Result<ResponseHeader> {
    let Some(up) = inbound.header() else {
        return pingora::Error::e_explain(
            pingora::ErrorType::InternalError,
            "upstream header missing",
        );
    };
    let mut h = ResponseHeader::build(up.status, Some(up.headers.len() + 3))?;
    for (name, value) in up.headers.iter() {
        if HOP_BY_HOP.contains(&name.as_str()) || (rewrite && name == http::header::CONTENT_LENGTH)
        {
            continue;
        }
        h.append_header(name.clone(), value.clone())?;
    }
    if h.headers.get(http::header::CONTENT_LENGTH).is_none() {
        h.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    add_gateway_headers(&mut h, ctx)?;
    Ok(h)
}

/// The largest provider error body read whole to be wrapped in Portkey's envelope.
const ERROR_BODY_LIMIT: usize = 256 * 1024;

/// Answers a provider's error (non-2xx) in Portkey's envelope (`portkey::provider_error`):
/// status and headers kept (`retry-after`, rate-limit headers), the body read whole and
/// rewritten as JSON. Also for a `stream: true` request, whose failure is JSON, not SSE.
pub async fn relay_provider_error(
    session: &mut Session,
    mut inbound: Inbound,
    ctx: &mut RequestCtx,
    dispatcher: &Dispatcher,
    keep_body: bool,
) -> Result<(), RelayError> {
    let started = std::time::Instant::now();
    let read = inbound.read_to_end(ERROR_BODY_LIMIT).await;
    ctx.upstream_time += started.elapsed();
    let raw = match read {
        Ok(raw) => raw,
        Err(e) => {
            inbound.abort().await;
            return Err(RelayError::BeforeResponse(e));
        }
    };
    let provider = ctx.provider.as_deref().unwrap_or("unknown");
    let body = Bytes::from(provider_error::envelope(provider, inbound.status(), &raw));
    let mut header = downstream_header(&inbound, ctx, true).map_err(|e| {
        RelayError::BeforeResponse(GatewayError::Internal(format!("response header: {e}")))
    })?;
    if inbound.is_done() {
        dispatcher.release(inbound).await;
    } else {
        inbound.abort().await;
    }
    let _ = header.remove_header(&http::header::TRANSFER_ENCODING);
    let _ = header.remove_header(&http::header::CONTENT_ENCODING);
    let written = header
        .insert_header(http::header::CONTENT_TYPE, "application/json")
        .and_then(|()| header.insert_header(http::header::CONTENT_LENGTH, body.len()));
    if let Err(e) = written {
        return Err(RelayError::BeforeResponse(GatewayError::Internal(format!(
            "response header: {e}"
        ))));
    }
    if keep_body {
        ctx.metered.body = serde_json::from_slice(&body).ok();
    }
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
    {
        return Err(RelayError::ClientGone);
    }
    if session.write_response_body(Some(body), true).await.is_err() {
        return Err(RelayError::ClientGone);
    }
    Ok(())
}

fn content_type(inbound: &Inbound) -> &str {
    inbound
        .header()
        .and_then(|h| h.headers.get(http::header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Streams the upstream response to the client chunk by chunk, as it arrives (SSE events are
/// never held back), while watching for the client going away, and meters it on the way: what
/// the body says about usage and model lands in `ctx.metered`.
pub async fn relay(
    session: &mut Session,
    mut inbound: Inbound,
    ctx: &mut RequestCtx,
    dispatcher: &Dispatcher,
    hide_usage: bool,
    keep_body: bool,
) -> Result<(), RelayError> {
    let started = std::time::Instant::now();
    let mut meter = Meter::for_response(inbound.status(), content_type(&inbound), hide_usage);
    let sse = content_type(&inbound).starts_with("text/event-stream");
    let result = pump(session, &mut inbound, ctx, &mut meter, sse).await;
    ctx.upstream_time += started.elapsed();
    let m = &mut ctx.metered;
    m.usage = meter.usage();
    m.model = meter.model().map(str::to_string);
    m.first_chunk_at = meter.first_chunk_at;
    m.last_chunk_at = meter.last_chunk_at;
    m.events = meter.events;
    if keep_body {
        m.body = meter.json_body();
    }
    match result {
        Ok(()) => {
            if inbound.is_done() {
                dispatcher.release(inbound).await;
            }
            Ok(())
        }
        Err(e) => {
            inbound.abort().await;
            Err(e)
        }
    }
}

/// Whether an idle read on the client connection means the client went away (FIN or reset),
/// as opposed to anything else, which must not abort a response the client is waiting for.
fn client_left(e: &pingora::Error) -> bool {
    matches!(
        e.etype(),
        pingora::ErrorType::ConnectionClosed | pingora::ErrorType::ReadError
    )
}

async fn pump(
    session: &mut Session,
    inbound: &mut Inbound,
    ctx: &RequestCtx,
    meter: &mut Meter,
    sse: bool,
) -> Result<(), RelayError> {
    let header = downstream_header(inbound, ctx, meter.may_rewrite()).map_err(|e| {
        RelayError::Upstream(GatewayError::Internal(format!("response header: {e}")))
    })?;
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
    {
        return Err(RelayError::ClientGone);
    }
    let mut client_watch = true;
    loop {
        // `biased`: the upstream branch is polled first, so a finished upstream body always
        // ends the loop before the downstream is read. The downstream branch only watches for
        // the client leaving; with pipelining enabled on the session (see `request_filter`),
        // bytes of the client's next request that arrive meanwhile are kept for it by Pingora
        // and the branch just stays pending.
        let next = tokio::select! {
            biased;
            chunk = inbound.next_chunk() => chunk,
            gone = session.downstream_session.read_body_or_idle(true), if client_watch => {
                match gone {
                    Ok(_) => { client_watch = false; continue; }
                    Err(e) if client_left(&e) => return Err(RelayError::ClientGone),
                    Err(_) => {
                        // Not a close: the connection state is unknown, so finish this
                        // response and close afterwards rather than guess.
                        client_watch = false;
                        session.set_keepalive(None);
                        continue;
                    }
                }
            }
        };
        match next {
            Ok(Some(chunk)) => {
                let out = meter.on_chunk(chunk);
                if meter.overflowed() {
                    let err = GatewayError::UpstreamIo {
                        provider: ctx.provider.clone().unwrap_or_default(),
                        detail: format!(
                            "an SSE event is larger than {} bytes",
                            crate::stream::sse::MAX_EVENT
                        ),
                    };
                    // End the event cut short, then say why the stream ends.
                    let mut end = bytes::BytesMut::from(&b"\n\n"[..]);
                    end.extend_from_slice(&err.sse_event());
                    let _ = session.write_response_body(Some(end.freeze()), false).await;
                    return Err(RelayError::Upstream(err));
                }
                if let Some(out) = out {
                    if session.write_response_body(Some(out), false).await.is_err() {
                        return Err(RelayError::ClientGone);
                    }
                }
            }
            Ok(None) => break,
            Err(err) => {
                if sse {
                    // Best effort: the client may already be gone too.
                    let _ = session
                        .write_response_body(Some(err.sse_event()), false)
                        .await;
                }
                return Err(RelayError::Upstream(err));
            }
        }
    }
    let rest = meter.finish();
    if session.write_response_body(rest, true).await.is_err() {
        return Err(RelayError::ClientGone);
    }
    Ok(())
}
