//! The one builder of a request to a provider: the provider's own preparation (path, headers,
//! body), the headers every provider request carries (content type, accept, OpenAI's
//! organisation headers, forwarded headers, the trace context, the loop-detection hop), and
//! the provider's signature over the result (SigV4 for Bedrock). The attempt loop, the
//! semantic cache's embedding call and a provider's token count all build theirs here, so none
//! can leave one out.

use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::providers::{Operation, Prepare, Provider, ProviderOptions, ProviderRequest, Signing};
use crate::routing::target::Target;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// What a provider request carries from the request that caused it.
pub(crate) struct Carried<'a> {
    pub op: Operation,
    pub query: Option<&'a str>,
    pub stream: bool,
    /// The client's headers: `accept`, OpenAI's organisation headers, the forwarded ones and
    /// `tracestate` are taken from them.
    pub client_headers: &'a HeaderMap,
    /// Names of the client's headers to forward.
    pub forward: &'a [String],
    /// `traceparent` to send (the client's trace, the gateway's span).
    pub traceparent: Option<&'a str>,
    /// `x-portgate-hop` to send.
    pub hop: &'a str,
}

/// A provider request ready for the dispatcher.
pub(crate) struct Built {
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

pub(crate) fn provider_request(
    target: &Target,
    body: Bytes,
    c: &Carried<'_>,
) -> Result<Built, GatewayError> {
    let prepared = crate::providers::prepare(
        &*target.provider,
        Prepare {
            op: c.op,
            body,
            api_key: target.api_key.as_ref().map(|k| k.expose()),
            query: c.query,
            stream: c.stream,
            client_headers: c.client_headers,
            options: &target.options,
        },
    )?;
    finish(
        &*target.provider,
        &target.upstream,
        &target.options,
        prepared,
        c,
    )
}

/// The headers every provider request carries, around what the provider prepared, and its
/// signature: for a request the provider prepared itself (`provider_request`) or one the
/// gateway asks of it on its own (a provider's token count API).
pub(crate) fn finish(
    provider: &dyn Provider,
    upstream: &Upstream,
    options: &ProviderOptions,
    prepared: ProviderRequest,
    c: &Carried<'_>,
) -> Result<Built, GatewayError> {
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(8);
    headers.push((
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    let accept = c
        .client_headers
        .get(http::header::ACCEPT)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    headers.push((http::header::ACCEPT, accept));
    if provider.slug() == "openai" {
        crate::portkey::headers::openai_headers(c.client_headers, &mut headers);
    }
    for name in c.forward {
        if let (Ok(n), Some(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            c.client_headers.get(name),
        ) {
            headers.push((n, v.clone()));
        }
    }
    if let Some(tp) = c.traceparent {
        if let Ok(v) = HeaderValue::from_str(tp) {
            headers.push((HeaderName::from_static("traceparent"), v));
        }
        if let Some(ts) = c.client_headers.get("tracestate") {
            headers.push((HeaderName::from_static("tracestate"), ts.clone()));
        }
    }
    if let Ok(v) = HeaderValue::from_str(c.hop) {
        headers.push((HeaderName::from_static(crate::portkey::hop::HEADER), v));
    }
    headers.extend(prepared.headers);
    let path = format!("{}{}", upstream.base_path, prepared.path);
    headers.extend(provider.sign(&Signing {
        upstream,
        path: &path,
        body: &prepared.body,
        options,
        now: std::time::SystemTime::now(),
    })?);
    Ok(Built {
        path,
        headers,
        body: prepared.body,
    })
}
