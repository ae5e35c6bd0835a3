//! The `ProxyHttp` implementation. Each hook is a few lines that hand the work to the module
//! named after it; the per-request state lives in [`RequestCtx`].

mod admit;
mod body;
mod count_tokens;
mod ctx;
mod feedback;
mod passthrough;
mod record;
mod respond;
mod routes;
mod timer_anchor;
mod unified;

pub(crate) use ctx::RequestCtx;
pub(crate) use routes::Route;

use crate::error::GatewayError;
use crate::portkey::{hop, metadata, PortkeyHeaders};
use crate::providers::Operation;
pub(crate) use crate::state::State;
use crate::telemetry::trace::TraceContext;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};
use std::sync::Arc;

/// The settings a request starts on: swapped whole by a reload (`reload.rs`).
pub(crate) type Current = Arc<arc_swap::ArcSwap<State>>;

/// The gateway service.
pub(crate) struct Gateway {
    pub current: Current,
}

impl Gateway {
    pub(crate) fn new(current: Current) -> Self {
        Gateway { current }
    }
}

/// An error for Pingora that makes it close the downstream connection without writing anything
/// more (the response had already started).
fn abort_error(why: &str) -> Box<Error> {
    Error::explain(ErrorType::ConnectionClosed, why.to_string())
}

#[async_trait]
impl ProxyHttp for Gateway {
    /// Boxed: Pingora keeps the context inside its per-request future, which it moves
    /// (copies) several times per request; inline, the context's copies were a measurable
    /// share of a request's instructions against the bare Pingora floor.
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        let state = self.current.load_full();
        let inflight = ctx::Inflight::new(&state.metrics.inflight);
        Box::new(RequestCtx::new(state, Some(inflight)))
    }

    /// Routes the request, then either answers it here (health, errors, the LLM routes, which
    /// run their whole upstream exchange inside this hook) and returns `Ok(true)`, or plans a
    /// passthrough and returns `Ok(false)` for Pingora's proxy path.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<bool> {
        let state = ctx.state.clone();
        // A keep-alive client may send its next request as soon as it has read the last byte
        // of this response, while the relay is still watching the connection for a close.
        // Without pipelining Pingora treats those bytes as an error and the next request is
        // lost; with it, they are kept and parsed as the next request on this connection.
        session.downstream_session.set_pipelining_enabled(true);
        // A client that stops reading (a stream it no longer consumes) is cut off instead of
        // holding the upstream connection and the relay's buffers forever.
        let write_timeout = state.settings.upstream.client_write_timeout_ms;
        session
            .downstream_session
            .set_write_timeout(Some(std::time::Duration::from_millis(write_timeout)));
        let req = session.req_header();
        ctx.route = Route::classify(&req.method, req.uri.path());
        // On the heap, and the parse's `Result` lives in this block only: this future, which
        // Pingora boxes per request and every open stream holds, stays within a 2 KiB
        // allocation class.
        let mut headers = Box::new({
            let parsed = PortkeyHeaders::parse(&req.headers);
            ctx.trace = req
                .headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(TraceContext::parse);
            // A trace id: the client's, else its W3C trace's, else a new one.
            ctx.trace_id = match &parsed {
                Ok(h) => h.trace_id.clone(),
                Err(_) => None,
            }
            .or_else(|| ctx.trace.as_ref().map(|t| t.trace_id.clone()))
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            match parsed {
                Ok(h) => h,
                Err(e) => return self.fail(session, ctx, e).await,
            }
        });
        let gated = !matches!(
            ctx.route,
            Route::Health | Route::HealthJson | Route::NotFound
        );
        if gated {
            let own = &state.instance_id;
            match hop::check(&session.req_header().headers, own) {
                Ok(incoming) => ctx.hop = hop::outgoing(incoming.as_deref(), own),
                Err(e) => return self.fail(session, ctx, e).await,
            }
            match metadata::parse(headers.metadata.as_deref()) {
                Ok(m) => ctx.metadata = m,
                Err(e) => return self.fail(session, ctx, e).await,
            }
            let presented = session
                .req_header()
                .headers
                .get("x-portkey-api-key")
                .and_then(|v| v.to_str().ok());
            if !state.gateway_key_ok(presented) {
                return self.fail(session, ctx, GatewayError::Unauthorized).await;
            }
            // The gateway key's and the metadata policies' limits, once per request; on a
            // passthrough route (which no walk admits per target) the virtual key's too.
            let limiter = &state.limiter;
            if limiter.is_active() && !matches!(ctx.route, Route::Feedback | Route::FeedbackUpdate)
            {
                let digest: Option<[u8; 32]> =
                    presented.map(|k| <sha2::Sha256 as sha2::Digest>::digest(k.as_bytes()).into());
                let mut scopes = limiter.request_scopes(digest.as_ref(), &ctx.metadata);
                if ctx.route == Route::Passthrough {
                    let vk = headers.virtual_key.as_deref();
                    scopes.extend(vk.and_then(|id| limiter.virtual_key(id)));
                }
                if !scopes.is_empty() {
                    // Boxed: inline, the admission's future (a Redis round trip) would size
                    // this one, which Pingora boxes and copies for every request.
                    let admitted =
                        Box::pin(limiter.admit(&scopes, crate::types::time::unix_ms())).await;
                    match admitted {
                        Ok(charges) => ctx.limit_charges = charges,
                        Err(refused) => {
                            state.metrics.limit_refused(refused.labels());
                            return self.fail(session, ctx, refused.into_error()).await;
                        }
                    }
                }
            }
        }
        let unified = match ctx.route {
            Route::Unified(op) => Some((op, false)),
            Route::LegacyChatComplete => Some((Operation::ChatCompletions, true)),
            _ => None,
        };
        if let Some((op, legacy)) = unified {
            return match unified::handle(session, ctx, op, legacy, &mut headers).await {
                Ok(()) => Ok(true),
                Err(unified::Failed::Early(e))
                | Err(unified::Failed::Late(respond::RelayError::BeforeResponse(e))) => {
                    self.fail(session, ctx, e).await
                }
                Err(unified::Failed::Late(respond::RelayError::ClientGone)) => {
                    ctx.error = Some(GatewayError::ClientClosed("during the response".into()));
                    Err(abort_error(
                        "client closed the connection during the response",
                    ))
                }
                Err(unified::Failed::Late(respond::RelayError::Cut(e))) => {
                    // The answer ended cleanly with the reason in it: nothing to abort.
                    ctx.error = Some(e);
                    Ok(true)
                }
                Err(unified::Failed::Late(respond::RelayError::Upstream(e))) => {
                    let why = format!("upstream failed mid-response: {e}");
                    ctx.error = Some(e);
                    Err(abort_error(&why))
                }
            };
        }
        match ctx.route {
            Route::Health => {
                respond::send_local(
                    session,
                    ctx,
                    200,
                    "text/plain",
                    Bytes::from_static(b"AI Gateway says hey!"),
                )
                .await?;
                Ok(true)
            }
            Route::HealthJson => {
                respond::send_local(session, ctx, 200, "application/json", health_body()).await?;
                Ok(true)
            }
            Route::Feedback | Route::FeedbackUpdate => {
                let state = state.clone();
                let done = if ctx.route == Route::Feedback {
                    feedback::create(&state, session, ctx).await
                } else {
                    feedback::update(&state, session, ctx).await
                };
                match done {
                    Ok(()) => Ok(true),
                    Err(e) => self.fail(session, ctx, e).await,
                }
            }
            Route::NotFound | Route::Unified(_) | Route::LegacyChatComplete => {
                self.fail(session, ctx, GatewayError::NotFound).await
            }
            Route::Passthrough => {
                let req = session.req_header();
                let admitted = admit::content_type(&req.headers)
                    .and_then(|()| admit::target_headers(&state, &headers))
                    .and_then(|()| {
                        passthrough::plan(&state, &headers, &ctx.metadata, req.uri.path())
                    });
                match admitted {
                    Ok(target) => {
                        ctx.provider = Some(target.provider.clone());
                        // Portkey's routing headers, as on the unified routes (one send, no
                        // retries, no cache on this route).
                        ctx.last_used = Some(target.option_path.clone());
                        ctx.retry_count = Some(crate::pipeline::answer::Retries::Made(0));
                        ctx.cache_status = Some(ctx::CACHE_DISABLED);
                        let path = session.req_header().uri.path();
                        if count_tokens::answered_here(&target.provider, path) {
                            return match count_tokens::answer(session, ctx, &target).await {
                                Ok(()) => Ok(true),
                                Err(e) => self.fail(session, ctx, e).await,
                            };
                        }
                        ctx.passthrough = Some(target);
                        Ok(false)
                    }
                    Err(e) => self.fail(session, ctx, e).await,
                }
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<Box<HttpPeer>> {
        let Some(target) = ctx.passthrough.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "no passthrough target planned");
        };
        match passthrough::peer(&ctx.state, target).await {
            Ok(peer) => Ok(Box::new(peer)),
            Err(e) => {
                let status = e.status();
                ctx.error = Some(e);
                Error::e_explain(ErrorType::HTTPStatus(status), "resolving the upstream")
            }
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        match ctx.passthrough.as_ref() {
            Some(target) => {
                passthrough::rewrite(target, upstream_request, ctx.trace.as_ref(), &ctx.hop)
            }
            None => Error::e_explain(ErrorType::InternalError, "no passthrough target planned"),
        }
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        respond::add_gateway_headers(upstream_response, ctx)
    }

    /// Turns a proxy-path failure into the gateway's JSON error (Pingora's default sends an
    /// empty body and maps timeouts to 502). Nothing is written once a response has started.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let started = session.response_written().is_some();
        let err = ctx.error.take().unwrap_or_else(|| from_pingora(e, ctx));
        let code = if started || matches!(err, GatewayError::ClientClosed(_)) {
            0
        } else {
            // The connection is not reused after a proxy failure (the request body may be
            // half sent upstream and half unread), so the answer says `Connection: close`.
            session.set_keepalive(None);
            match respond::send_error(session, ctx, &err).await {
                Ok(()) => err.status(),
                Err(_) => 0,
            }
        };
        ctx.error = Some(err);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, _error: &Error) -> bool {
        // Every request is logged once, in `logging`.
        true
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        let state = ctx.state.clone();
        let status = session.response_written().map_or(0, |h| h.status.as_u16());
        if status == 0 {
            // No response at all: the connection is closed without one (every path that
            // reaches here without a response returns an error or refuses reuse).
            state.metrics.closed_without_response.inc();
        }
        if ctx.route == Route::Passthrough {
            ctx.upstream_time = ctx.started.elapsed();
        }
        let client = session.client_addr();
        let req = session.req_header();
        let (method, path) = (req.method.as_str(), req.uri.path());
        record::record(&state, ctx, status, client, method, path);
        if let Some(e) = &ctx.error {
            tracing::debug!(
                trace_id = %ctx.trace_id,
                error = e.kind(),
                message = %e,
                detail = e.detail().unwrap_or(""),
                "request failed"
            );
        }
    }
}

impl Gateway {
    /// Answers with the error (before any response was written) and records it.
    async fn fail(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        err: GatewayError,
    ) -> pingora::Result<bool> {
        if matches!(err, GatewayError::ClientClosed(_)) {
            // Nobody is left to read an answer, and the connection cannot be reused with a
            // request body cut short: close it without writing.
            ctx.error = Some(err);
            return Err(abort_error(
                "client closed the connection before the response",
            ));
        }
        let written = respond::send_error(session, ctx, &err).await;
        ctx.error = Some(err);
        written.map(|()| true)
    }
}

/// Maps an error Pingora raised on the proxy path (passthrough routes) to the gateway's.
fn from_pingora(e: &Error, ctx: &RequestCtx) -> GatewayError {
    match e.esource() {
        pingora::ErrorSource::Downstream => GatewayError::ClientClosed(e.to_string()),
        pingora::ErrorSource::Upstream => {
            crate::dispatch::classify(ctx.provider.as_deref().unwrap_or(""), e)
        }
        _ => GatewayError::Internal(e.to_string()),
    }
}

/// The body of `GET /v1/health`, as Portkey's 2.0 gateway answers it, with portgate's version.
fn health_body() -> Bytes {
    Bytes::from_static(
        concat!(
            r#"{"status":"success","message":"Server is healthy","version":""#,
            env!("CARGO_PKG_VERSION"),
            r#""}"#
        )
        .as_bytes(),
    )
}
