//! Reading the client's request body, bounded. What the body says is read once, by
//! [`crate::request::RequestView`].

use crate::buffers::BufferLease;
use crate::error::GatewayError;
use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

/// Reads the whole request body, refusing more than `limit` bytes with 413 and answering 503
/// when the process-wide buffer budget is spent (the bytes are held in `lease`). A declared
/// `Content-Length` over the limit is refused before reading anything, and a declared length
/// is reserved at once.
pub(crate) async fn read_body(
    session: &mut Session,
    limit: usize,
    lease: &mut BufferLease,
) -> Result<Bytes, GatewayError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let mut held = declared.unwrap_or(0);
    lease.grow(held)?;
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .downstream_session
            .write_continue_response()
            .await
            .map_err(|e| GatewayError::ClientClosed(e.to_string()))?;
    }
    // The common case is one chunk: keep it without copying.
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| GatewayError::ClientClosed(e.to_string()))?
    {
        total += chunk.len();
        if total > limit {
            return Err(GatewayError::BodyTooLarge { limit });
        }
        if total > held {
            lease.grow(total - held)?;
            held = total;
        }
        match (&mut first, &mut buf) {
            (None, None) => first = Some(chunk),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity(declared.unwrap_or(total).max(total));
                b.extend_from_slice(f);
                b.extend_from_slice(&chunk);
                buf = Some(b);
            }
            (_, Some(b)) => b.extend_from_slice(&chunk),
        }
    }
    Ok(match buf {
        Some(b) => b.freeze(),
        None => first.unwrap_or_default(),
    })
}
