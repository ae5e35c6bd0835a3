//! The LLM routes (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`): read and check
//! the body, resolve the target, let the provider adapter build the upstream request, send it
//! with the Connector and relay the answer as it arrives.

use super::body::{peek, read_body};
use super::ctx::RequestCtx;
use super::respond::{relay, RelayError};
use super::target::Target;
use super::Gateway;
use crate::dispatch::Outbound;
use crate::error::GatewayError;
use crate::portkey::PortkeyHeaders;
use crate::providers::Operation;
use http::{HeaderName, HeaderValue};
use pingora::proxy::Session;

/// How a unified request ended when it did not end well.
pub enum Failed {
    /// Nothing was written yet: answer with this error.
    Early(GatewayError),
    /// The response had started: the connection must be closed without a clean end.
    Late(RelayError),
}

impl From<GatewayError> for Failed {
    fn from(e: GatewayError) -> Self {
        Failed::Early(e)
    }
}

/// Client headers passed to OpenAI-compatible providers when present (account scoping and
/// beta switches the OpenAI SDK sets).
const PROVIDER_PASS_HEADERS: &[&str] = &["openai-organization", "openai-project", "openai-beta"];

fn is_json_content_type(session: &Session) -> bool {
    match session.req_header().headers.get(http::header::CONTENT_TYPE) {
        None => true,
        Some(v) => v
            .to_str()
            .map(|s| s.to_ascii_lowercase().contains("json"))
            .unwrap_or(false),
    }
}

pub async fn handle(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    op: Operation,
    headers: &PortkeyHeaders,
) -> Result<(), Failed> {
    let state = &gw.state;
    if !is_json_content_type(session) {
        return Err(GatewayError::UnsupportedContentType.into());
    }
    let body = read_body(session, state.settings.limits.max_request_body_bytes).await?;
    let peeked = peek(&body)?;
    ctx.stream = peeked.stream.unwrap_or(false);
    ctx.model = peeked.model.map(|m| m.into_owned());
    let target = Target::from_headers(state, headers)?;
    ctx.provider = Some(target.provider.slug().to_string());

    let prepared = target
        .provider
        .prepare(op, body, target.api_key.as_deref())?;
    let req = session.req_header();
    let mut out_headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(8);
    out_headers.push((
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    let accept = req
        .headers
        .get(http::header::ACCEPT)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    out_headers.push((http::header::ACCEPT, accept));
    for name in PROVIDER_PASS_HEADERS {
        if let Some(v) = req.headers.get(*name) {
            out_headers.push((HeaderName::from_static(name), v.clone()));
        }
    }
    for name in &headers.forward_headers {
        if let (Ok(n), Some(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            req.headers.get(name),
        ) {
            out_headers.push((n, v.clone()));
        }
    }
    out_headers.extend(prepared.headers);
    let mut path = format!("{}{}", target.upstream.base_path, prepared.path);
    if let Some(q) = req.uri.query() {
        path.push('?');
        path.push_str(q);
    }
    let outbound = Outbound {
        provider: target.provider.slug(),
        upstream: &target.upstream,
        public_only: target.public_only,
        method: "POST",
        path: &path,
        headers: &out_headers,
        body: prepared.body,
    };
    let inbound = state.dispatcher.send(&outbound).await?;
    relay(session, inbound, ctx, &state.dispatcher)
        .await
        .map_err(Failed::Late)
}
