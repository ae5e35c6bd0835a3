//! Response headers: the gateway's own (trace id, provider, retry and cache status), and an
//! upstream header copied downstream without the hop-by-hop ones.

use super::*;

/// Response headers that describe one connection and are never copied from upstream.
pub(super) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// The header of an answer the gateway writes itself: `headers` filled directly, plus the
/// headers every gateway response carries. Pingora's own `insert_header` parses each name
/// again and, on a header built with its case map, copies the name and inserts twice, for
/// each of the 6-10 headers of an answer. A header without a case
/// map sends the same bytes (Pingora title-cases the standard names and writes the others as
/// stored; every name here is a lower-case `HeaderName`).
pub(super) fn own_header(
    status: u16,
    mut headers: HeaderMap,
    ctx: &RequestCtx,
) -> pingora::Result<ResponseHeader> {
    gateway_headers(ctx, |name, value| {
        headers.insert(name, value);
        Ok(())
    })?;
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = http::StatusCode::from_u16(status).map_err(|_| {
        pingora::Error::explain(pingora::ErrorType::InvalidHTTPHeader, "invalid status")
    })?;
    parts.headers = headers;
    Ok(ResponseHeader::from(parts))
}

/// A header value from text the gateway holds (a trace id, a provider slug, an option path).
pub(super) fn text_value(s: &str) -> pingora::Result<HeaderValue> {
    HeaderValue::from_str(s).map_err(|_| {
        pingora::Error::explain(
            pingora::ErrorType::InvalidHTTPHeader,
            "a response header value is not visible ASCII",
        )
    })
}

/// The headers every gateway response carries, each handed to `put`.
pub(super) fn gateway_headers(
    ctx: &RequestCtx,
    mut put: impl FnMut(HeaderName, HeaderValue) -> pingora::Result<()>,
) -> pingora::Result<()> {
    put(response::TRACE_ID, text_value(&ctx.trace_id)?)?;
    if let Some(p) = &ctx.provider {
        put(response::PROVIDER, text_value(p)?)?;
    }
    if let Some(path) = &ctx.last_used {
        put(response::LAST_USED_OPTION_INDEX, text_value(path)?)?;
    }
    if let Some(n) = ctx.retry_count {
        put(
            response::RETRY_ATTEMPT_COUNT,
            HeaderValue::from(n.header_value()),
        )?;
    }
    if let Some(status) = ctx.cache_status {
        put(response::CACHE_STATUS, HeaderValue::from_static(status))?;
    }
    if ctx.budget_exhausted {
        put(
            response::RETRY_BUDGET,
            HeaderValue::from_static("exhausted"),
        )?;
    }
    Ok(())
}

/// Adds the gateway's headers to a response Pingora parsed from upstream (a passthrough),
/// through its case-keeping insert (the gateway's own answers get them in [`own_header`]).
pub(crate) fn add_gateway_headers(h: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    gateway_headers(ctx, |name, value| h.insert_header(name, value))
}

/// Copies the answer's status and headers (minus hop-by-hop ones) and adds the gateway's. A
/// body whose length is declared and not rewritten keeps its `Content-Length`; any other body
/// is sent chunked, so the client can always tell a complete body from a cut one.
pub(super) fn downstream_header(
    source: &Source,
    ctx: &RequestCtx,
    translator: &dyn Translator,
) -> pingora::Result<ResponseHeader> {
    let Some(up) = source.headers() else {
        return pingora::Error::e_explain(
            pingora::ErrorType::InternalError,
            "upstream header missing",
        );
    };
    let rewrite = translator.may_rewrite();
    let mut map = HeaderMap::with_capacity(up.len() + 8);
    for (name, value) in up.iter() {
        if HOP_BY_HOP.contains(&name.as_str()) || (rewrite && name == http::header::CONTENT_LENGTH)
        {
            continue;
        }
        map.append(name.clone(), value.clone());
    }
    if let Some(ct) = translator.content_type() {
        map.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    if !map.contains_key(http::header::CONTENT_LENGTH) {
        let chunked = HeaderValue::from_static("chunked");
        map.insert(http::header::TRANSFER_ENCODING, chunked);
    }
    own_header(source.status_code(), map, ctx)
}
