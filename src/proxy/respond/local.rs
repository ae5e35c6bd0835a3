//! Answers the gateway writes itself: errors and other local answers, after discarding what
//! is left of the request body.

use super::*;

/// Answers locally with a complete body.
pub(crate) async fn send_local(
    session: &mut Session,
    ctx: &RequestCtx,
    status: u16,
    content_type: &str,
    body: Bytes,
) -> pingora::Result<()> {
    let mut map = HeaderMap::with_capacity(8);
    map.insert(http::header::CONTENT_TYPE, text_value(content_type)?);
    map.insert(http::header::CONTENT_LENGTH, body.len().into());
    let h = own_header(status, map, ctx)?;
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await
}

/// The largest unread request body read and thrown away so that an early error answer can keep
/// the connection; a larger or unsized one closes it (`Connection: close`).
pub(super) const DISCARD_LIMIT: usize = 64 * 1024;

/// Reads and drops the rest of a request body that an early error left unread (the next
/// request on a kept-alive connection starts after it). `false` when the connection cannot be
/// reused: the body is too large, has no declared length, waits for `100 Continue`, or does not
/// arrive within a second.
pub(super) async fn discard_body(session: &mut Session) -> bool {
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
pub(crate) async fn send_error(
    session: &mut Session,
    ctx: &RequestCtx,
    err: &GatewayError,
) -> pingora::Result<()> {
    if matches!(err, GatewayError::BodyTooLarge { .. }) || !discard_body(session).await {
        session.set_keepalive(None);
    }
    let mut map = HeaderMap::with_capacity(10);
    let json = HeaderValue::from_static("application/json");
    map.insert(http::header::CONTENT_TYPE, json);
    let body = err.body();
    map.insert(http::header::CONTENT_LENGTH, body.len().into());
    if let Some(seconds) = err.retry_after() {
        map.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if err.is_gateway_exception() {
        map.insert(
            response::GATEWAY_EXCEPTION,
            HeaderValue::from_static("true"),
        );
    }
    let h = own_header(err.status(), map, ctx)?;
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await
}

/// The response header could not be built: nothing is written yet, so the client gets the
/// error as an answer (one place, so every path labels it alike).
pub(super) fn header_failed(e: Box<pingora::Error>) -> RelayError {
    RelayError::BeforeResponse(GatewayError::Internal(format!("response header: {e}")))
}
