//! Writing responses downstream: local answers (errors, health) and relaying an upstream
//! response as it arrives.

use super::ctx::RequestCtx;
use crate::dispatch::{Dispatcher, Inbound};
use crate::error::GatewayError;
use crate::portkey::response;
use crate::providers::error_envelope as provider_error;
use crate::stream::{Meter, Translator};
use crate::types::held::HeldAnswer;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

mod headers;
mod local;
mod pump;

pub(crate) use headers::add_gateway_headers;
use headers::*;
use local::*;
pub(crate) use local::{send_error, send_local};
use pump::*;

/// Why relaying stopped before the end of the upstream body.
#[derive(Debug)]
pub(crate) enum RelayError {
    /// Nothing was written yet: the client gets this error as a normal answer.
    BeforeResponse(GatewayError),
    /// The client went away; the upstream exchange was aborted.
    ClientGone,
    /// The upstream failed after the response had started; the client was told in-band when
    /// the stream format allows it, and the connection is then closed without a clean end.
    Upstream(GatewayError),
    /// The gateway ended an SSE stream itself (the shutdown's grace period is over): the
    /// client got this error as an event and a clean end of the body; the upstream exchange
    /// was aborted.
    Cut(GatewayError),
}

/// Where an answer's body comes from: a live upstream response, or an answer the gateway holds
/// (a provider error rewritten into Portkey's envelope, a cache hit, a guardrail's answer).
/// Both go through the same writer, translator and meter, so headers, metrics, the access log
/// and stream framing are the same whatever the source.
pub(crate) enum Source {
    Live(Box<Inbound>),
    /// Its body is handed out once (an empty body is no chunk at all).
    Held(Box<HeldAnswer>),
}

impl Source {
    /// The answer's status.
    pub(crate) fn status_code(&self) -> u16 {
        match self {
            Source::Live(inbound) => inbound.status(),
            Source::Held(held) => held.status,
        }
    }

    fn headers(&self) -> Option<&http::HeaderMap> {
        match self {
            Source::Live(inbound) => inbound.header().map(|h| &h.headers),
            Source::Held(held) => Some(&held.headers),
        }
    }

    /// The provider's content type.
    pub(crate) fn content_type(&self) -> &str {
        self.headers()
            .and_then(|h| h.get(http::header::CONTENT_TYPE))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, GatewayError> {
        match self {
            Source::Live(inbound) => inbound.next_chunk().await,
            Source::Held(held) => Ok(held.take_body()),
        }
    }

    /// Reads ahead what has already arrived, without waiting (up to about `limit` bytes);
    /// `true` when that is the whole body. A body the gateway holds is always whole.
    fn read_ready(&mut self, limit: usize) -> bool {
        match self {
            Source::Live(inbound) => inbound.read_ready(limit),
            Source::Held(_) => true,
        }
    }

    /// The next chunk of a body [`Source::read_ready`] found whole (`None` at its end).
    fn take_ready(&mut self) -> Option<Bytes> {
        match self {
            Source::Live(inbound) => inbound.take_ready(),
            Source::Held(held) => held.take_body(),
        }
    }

    /// Usage and model an answer the gateway holds is known to carry.
    fn known_usage(&mut self) -> Option<(crate::types::usage::Usage, Option<String>)> {
        match self {
            Source::Live(_) => None,
            Source::Held(held) => held.usage.take().map(|u| (u, held.model.take())),
        }
    }

    /// Returns a fully read upstream connection to the pool, or closes one cut short. Not
    /// `async` (see [`Dispatcher::release`]): the relay's future, held by every open stream,
    /// stays small.
    fn end(self, dispatcher: &Dispatcher, complete: bool) {
        if let Source::Live(inbound) = self {
            if complete {
                dispatcher.finish(*inbound);
            } else {
                inbound.abort();
            }
        }
    }
}

/// The largest provider error body read whole to be wrapped in Portkey's envelope.
const ERROR_BODY_LIMIT: usize = 256 * 1024;

/// Answers a provider's error (non-2xx) in Portkey's envelope (`providers::error_envelope`):
/// status and headers kept (`retry-after`, rate-limit headers), the body read whole, rewritten
/// as JSON and relayed as a local body. Also for a `stream: true` request, whose failure is
/// JSON, not SSE.
pub(crate) async fn relay_provider_error(
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
            inbound.abort();
            return Err(RelayError::BeforeResponse(e));
        }
    };
    let provider = ctx.provider.as_deref().unwrap_or("unknown");
    let status = inbound.status();
    // The Messages route answers in Anthropic's envelope, which the Anthropic SDKs read.
    let body = if ctx.route == super::routes::Route::Unified(crate::providers::Operation::Messages)
    {
        Bytes::from(crate::providers::messages::envelope(provider, status, &raw))
    } else {
        Bytes::from(provider_error::envelope(provider, status, &raw))
    };
    let headers = inbound
        .header()
        .map(|h| h.headers.clone())
        .unwrap_or_default();
    dispatcher.finish(inbound);
    let held = HeldAnswer::json(status, headers, body);
    relay_held(session, ctx, dispatcher, keep_body, held).await
}

/// Relays an answer the gateway holds through the meter. A plain function: what it builds is
/// moved into the relay's future, not kept beside it.
pub(crate) fn relay_held<'a>(
    session: &'a mut Session,
    ctx: &'a mut RequestCtx,
    dispatcher: &'a Dispatcher,
    keep_body: bool,
    held: HeldAnswer,
) -> impl std::future::Future<Output = Result<(), RelayError>> + Send + 'a {
    let translator = Box::new(held_meter(&held, keep_body));
    relay(
        session,
        Source::Held(Box::new(held)),
        translator,
        ctx,
        dispatcher,
        keep_body,
    )
}

/// The meter of an answer the gateway holds: a JSON answer whose usage is known is not read
/// again (unless its body is logged); a stream is, for its events.
fn held_meter(held: &HeldAnswer, keep_body: bool) -> Meter {
    if held.usage.is_some() && !keep_body && !held.is_sse() {
        Meter::new(crate::stream::meter::Kind::Other)
    } else {
        Meter::for_response(held.status, held.content_type(), false)
    }
}

/// Relays an answer the gateway holds through a stream guard (the output guardrails of a
/// cached stream), which may end it early with an error event; returns the guard's report.
pub(crate) async fn relay_held_guarded(
    session: &mut Session,
    ctx: &mut RequestCtx,
    dispatcher: &Dispatcher,
    keep_body: bool,
    held: HeldAnswer,
    guard: Box<crate::pipeline::guard_stream::StreamGuard>,
) -> (
    Result<(), RelayError>,
    std::sync::Arc<std::sync::Mutex<crate::pipeline::guard_stream::Report>>,
) {
    let meter = Box::new(held_meter(&held, keep_body));
    let (translator, report) = crate::pipeline::guard_stream::wrap(meter, guard);
    let source = Source::Held(Box::new(held));
    let relayed = relay(session, source, translator, ctx, dispatcher, keep_body).await;
    (relayed, report)
}

/// Streams an answer to the client chunk by chunk, as it arrives (SSE events are never held
/// back), through the provider's translator, while watching for the client going away; what
/// the translator reads about usage and model lands in `ctx.relayed`.
///
/// A plain function returning an `async move` block rather than an `async fn`: an `async fn`
/// moves its arguments into locals, so its future would hold the `Source` twice; the block
/// uses what it captured in place. Every open stream holds this future.
#[allow(clippy::manual_async_fn)]
pub(crate) fn relay<'a>(
    session: &'a mut Session,
    mut source: Source,
    mut translator: Box<dyn Translator>,
    ctx: &'a mut RequestCtx,
    dispatcher: &'a Dispatcher,
    keep_body: bool,
) -> impl std::future::Future<Output = Result<(), RelayError>> + Send + 'a {
    async move {
        let started = std::time::Instant::now();
        let sse = translator
            .content_type()
            .unwrap_or(source.content_type())
            .starts_with("text/event-stream");
        // Only an SSE stream can be told why it ends; any other body in flight at the
        // shutdown's deadline is cut as before.
        let mut cut = sse.then(|| dispatcher.stream_cut());
        let result = pump(
            session,
            &mut source,
            ctx,
            translator.as_mut(),
            sse,
            &mut cut,
        )
        .await;
        ctx.upstream_time += started.elapsed();
        let m = &mut ctx.relayed;
        m.usage = translator.usage();
        m.model = translator.model().map(str::to_string);
        m.events = translator.events();
        if let Some((usage, model)) = source.known_usage() {
            m.usage = Some(usage);
            m.model = model.or(m.model.take());
        }
        if keep_body {
            m.body = translator.json_body();
        }
        source.end(dispatcher, result.is_ok());
        result
    }
}

/// Whether an idle read on the client connection means the client went away (FIN or reset),
/// as opposed to anything else, which must not abort a response the client is waiting for.
pub(crate) fn client_left(e: &pingora::Error) -> bool {
    matches!(
        e.etype(),
        pingora::ErrorType::ConnectionClosed | pingora::ErrorType::ReadError
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header that cannot be built leaves nothing written: the client gets the error as an
    /// answer, on every path (one was labelled as a failure after the response had started,
    /// which closes the connection without an answer).
    #[test]
    fn a_header_that_cannot_be_built_is_answered_not_cut() {
        let e = pingora::Error::explain(pingora::ErrorType::InternalError, "no header");
        assert!(matches!(
            header_failed(e),
            RelayError::BeforeResponse(GatewayError::Internal(m)) if m.contains("response header")
        ));
    }
}
