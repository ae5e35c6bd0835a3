//! The LLM routes (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, and the legacy
//! `/v1/chatComplete`): read and check the body, resolve the config into a plan, let the attempt
//! loop pick, send, retry and fall back, then relay the answer that was kept as it arrives.

use super::body::{peek, read_body};
use super::ctx::RequestCtx;
use super::respond::{relay, RelayError};
use super::Gateway;
use crate::dispatch::attempts::{Outcome, Request, Walk};
use crate::error::GatewayError;
use crate::portkey::PortkeyHeaders;
use crate::providers::Operation;
use bytes::Bytes;
use pingora::proxy::Session;
use tracing::Instrument;

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

fn is_json_content_type(session: &Session) -> bool {
    match session.req_header().headers.get(http::header::CONTENT_TYPE) {
        None => true,
        Some(v) => v
            .to_str()
            .map(|s| s.to_ascii_lowercase().contains("json"))
            .unwrap_or(false),
    }
}

/// The legacy `/v1/chatComplete` body may wrap the request as `{"config": ..., "params": ...}`;
/// returns the inner params and the config it carries.
fn unwrap_legacy(body: Bytes) -> Result<(Bytes, Option<String>), GatewayError> {
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    match v.get("params") {
        Some(params @ serde_json::Value::Object(_)) => {
            let config = v.get("config").map(|c| match c {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            Ok((Bytes::from(params.to_string()), config))
        }
        _ => Ok((body, None)),
    }
}

pub async fn handle(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    op: Operation,
    legacy: bool,
    mut headers: PortkeyHeaders,
) -> Result<(), Failed> {
    let state = &gw.state;
    if !is_json_content_type(session) {
        return Err(GatewayError::UnsupportedContentType.into());
    }
    let mut body = read_body(session, state.settings.limits.max_request_body_bytes).await?;
    let peeked = peek(&body)?;
    ctx.stream = peeked.stream.unwrap_or(false);
    ctx.model = peeked.model.map(|m| m.into_owned());
    if legacy {
        let (inner, config) = unwrap_legacy(body)?;
        body = inner;
        if headers.config.is_none() {
            headers.config = config;
        }
    }
    let plan = state
        .configs
        .resolve(headers.config.as_deref(), &state.plan_context())?;

    if state.access_log.log_bodies {
        ctx.request_body = Some(body.clone());
    }
    let traceparent = ctx.trace.as_ref().map(|t| t.outgoing());
    let req_header = session.req_header();
    let request = Request {
        op,
        body,
        stream: ctx.stream,
        headers: &headers,
        client_headers: &req_header.headers,
        query: req_header.uri.query(),
        pathname: req_header.uri.path(),
        traceparent,
    };
    let mut walk = Walk::new(state, &request);
    // A span per request (debug level: free unless a subscriber wants it, e.g. an OTLP layer).
    let span = tracing::debug_span!(
        target: "portgate::span",
        "gen_ai.request",
        trace_id = %ctx.trace_id,
        gen_ai.operation.name = op.name(),
        gen_ai.request.model = ctx.model.as_deref().unwrap_or(""),
    );
    // In place unless the span is recorded (see `Walk::send`).
    let answer = if span.is_disabled() {
        walk.run(plan.as_deref()).await
    } else {
        walk.run(plan.as_deref()).instrument(span).await
    };
    ctx.attempts = std::mem::take(&mut walk.attempts);
    ctx.upstream_time += walk.waited
        + ctx
            .attempts
            .iter()
            .map(|a| a.duration)
            .sum::<std::time::Duration>();
    ctx.provider = answer
        .provider
        .or_else(|| ctx.attempts.last().map(|a| a.provider.clone()));
    ctx.last_used = answer.leaf_path;
    ctx.retry_count = Some(answer.retry_count);
    ctx.budget_exhausted = answer.budget_exhausted;
    match answer.outcome {
        Outcome::Failed(e) => Err(Failed::Early(e)),
        Outcome::Response(inbound) => {
            let keep_body = state.access_log.log_bodies;
            relay(
                session,
                *inbound,
                ctx,
                &state.dispatcher,
                answer.hide_usage,
                keep_body,
            )
            .await
            .map_err(Failed::Late)
        }
    }
}
