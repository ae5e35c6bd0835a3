//! The LLM routes (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, and the legacy
//! `/v1/chatComplete`): read and check the body, resolve the config into a plan, let the attempt
//! loop pick, send, retry and fall back, then relay the answer that was kept as it arrives.

use super::admit;
use super::body::read_body;
use super::ctx::RequestCtx;
use super::respond::{
    self, relay, relay_held, relay_held_guarded, relay_provider_error, RelayError, Source,
};
use crate::buffers::BufferLease;
use crate::error::GatewayError;
use crate::pipeline::attempts::{Answer, Outcome, Request, Walk};
use crate::portkey::PortkeyHeaders;
use crate::providers::error_envelope as provider_error;
use crate::providers::{Operation, ResponseOptions};
use crate::request::RequestView;
use crate::stream::Meter;
use pingora::proxy::Session;
use std::time::Duration;
use tracing::Instrument;

/// How a unified request ended when it did not end well.
pub(crate) enum Failed {
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

/// How the attempt loop ended.
enum Walked {
    Answer(Answer),
    Deadline,
    ClientGone,
}

/// Resolves when the client closes its connection (it sent its whole request already, so any
/// read is either its close or the start of a pipelined next request, which Pingora keeps).
async fn client_gone(session: &mut Session) {
    match session.downstream_session.read_body_or_idle(true).await {
        Err(e) if respond::client_left(&e) => {}
        // Anything else (not expected once the body is read) is never taken for a close: the
        // relay applies the same rule.
        _ => std::future::pending::<()>().await,
    }
}

/// Answers one request on an LLM route: the walk picks and sends, then the answer it kept is
/// relayed. The two phases are separate futures so that an open stream, whose handler sits in
/// the relay for minutes, holds no room for the walk's locals: Pingora boxes this future (inside
/// `request_filter`'s) per request, and every byte of it is written and stays resident.
pub(crate) async fn handle(
    session: &mut Session,
    ctx: &mut RequestCtx,
    op: Operation,
    legacy: bool,
    headers: &mut PortkeyHeaders,
) -> Result<(), Failed> {
    let Answer {
        outcome,
        adapter,
        leaf_path,
        provider,
        retry_count,
        budget_exhausted,
        hide_usage,
        guard,
        cache: cache_note,
        charges,
        ..
    } = walk(session, ctx, headers, op, legacy).await?;
    ctx.limit_charges.add(charges);
    let state = &ctx.state.clone();
    ctx.provider = provider.or_else(|| ctx.attempts.last().map(|a| a.provider.clone()));
    ctx.budget_exhausted = budget_exhausted;
    // A provider answered, or the exchange with one failed: the answer carries Portkey's
    // routing headers. A gateway error (unknown provider, no route) is answered like a
    // validation error, without them.
    let exchanged = match &outcome {
        Outcome::Response(_) | Outcome::Held(_) | Outcome::Cached(_) => true,
        Outcome::Failed(e) => e.is_upstream(),
    };
    if exchanged {
        // A request without a config is its own root target: `config`, as Portkey says.
        ctx.last_used = Some(leaf_path.unwrap_or_else(|| "config".into()));
        ctx.retry_count = Some(retry_count);
        ctx.cache_status = Some(cache_note.status);
    }
    let keep_body = state.access_log.log_bodies;
    let dispatcher = &state.dispatcher;
    // Each relay's future is built in a block of its own (or a function) and awaited outside
    // it: a value moved into the relay (its source, the answer it came from) keeps no room of
    // its own in this future while the relay runs.
    match outcome {
        Outcome::Failed(e) => Err(Failed::Early(e)),
        // A guardrail's answer (446, or a whole answer with `hook_results`), already in the
        // client's format.
        Outcome::Held(held) => relay_held(session, ctx, dispatcher, keep_body, *held)
            .await
            .map_err(Failed::Late),
        Outcome::Cached(entry) => {
            // Replayed through the same relay and meter as a live answer; usage and model are
            // the ones read when the answer was stored (the meter reads OpenAI's format only).
            let held = entry.answer();
            let relayed = match guard {
                // A cached stream passes the target's output guardrails as it is replayed,
                // like a live one (a whole answer was judged in the walk). Boxed: a rare path,
                // whose future inline would size this handler's for every request.
                Some(guard) => {
                    let (relayed, report) = Box::pin(relay_held_guarded(
                        session, ctx, dispatcher, keep_body, held, guard,
                    ))
                    .await;
                    crate::pipeline::guard_stream::record(
                        state,
                        &ctx.trace_id,
                        &report,
                        &mut ctx.guardrails,
                    );
                    relayed
                }
                None => relay_held(session, ctx, dispatcher, keep_body, held).await,
            };
            relayed.map_err(Failed::Late)
        }
        Outcome::Response(inbound) if provider_error::wraps_status(inbound.status()) => {
            // Boxed: its future (the error body read, then a relay) is the largest this
            // handler awaits, and inline it would size the handler's future, which Pingora
            // copies into a box per request and which every open stream holds.
            Box::pin(relay_provider_error(
                session, *inbound, ctx, dispatcher, keep_body,
            ))
            .await
            .map_err(Failed::Late)
        }
        Outcome::Response(inbound) => {
            let status = inbound.status();
            // What the client is sent, for a miss to be stored (see below).
            let mut stored_type = None;
            // After-request guardrails on a stream read its text as it is relayed.
            let mut guarded = None;
            let relayed = {
                let source = Source::Live(inbound);
                let opts = ResponseOptions {
                    hide_usage,
                    strict: headers.strict_open_ai_compliance.unwrap_or(true),
                    created: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    model: ctx.model.as_deref(),
                };
                let translator = match &adapter {
                    Some(adapter) => crate::providers::response(
                        &**adapter,
                        op,
                        status,
                        source.content_type(),
                        &opts,
                    ),
                    None => Box::new(Meter::for_response(
                        status,
                        source.content_type(),
                        hide_usage,
                    )),
                };
                // A miss to be stored: what the client is sent is captured as it goes; not a
                // stream whose after-request guardrails may still end it early.
                if guard.is_none() {
                    stored_type = state.cache.capture(&cache_note).map(|capture| {
                        ctx.cache_capture = Some(capture);
                        translator
                            .content_type()
                            .unwrap_or(source.content_type())
                            .to_string()
                    });
                }
                let translator = match guard {
                    Some(g) => {
                        let (t, report) = crate::pipeline::guard_stream::wrap(translator, g);
                        guarded = Some(report);
                        t
                    }
                    None => translator,
                };
                relay(session, source, translator, ctx, dispatcher, keep_body)
            }
            .await;
            if let Some(report) = guarded {
                crate::pipeline::guard_stream::record(
                    state,
                    &ctx.trace_id,
                    &report,
                    &mut ctx.guardrails,
                );
            }
            if let (Ok(()), Some(ct), Some(capture)) =
                (&relayed, stored_type, ctx.cache_capture.take())
            {
                let (usage, model) = (ctx.relayed.usage, ctx.relayed.model.clone());
                state
                    .cache
                    .store(&cache_note, capture, status, &ct, usage, model);
            }
            relayed.map_err(Failed::Late)
        }
    }
}

/// The walk phase: reads and checks the body, resolves the config, and runs the attempt loop
/// until it has an answer, the deadline passes or the client leaves. Everything only it needs
/// (the body, the copy of the client's headers, the plan) is freed when it returns, before the
/// answer is relayed, which for a stream may last minutes.
async fn walk(
    session: &mut Session,
    ctx: &mut RequestCtx,
    headers: &mut PortkeyHeaders,
    op: Operation,
    legacy: bool,
) -> Result<Answer, Failed> {
    let state = &ctx.state.clone();
    admit::content_type(&session.req_header().headers)?;
    if !legacy {
        // The legacy route may carry its config in the body: checked once it is read.
        admit::target_headers(state, headers)?;
    }
    let lease = ctx
        .lease
        .get_or_insert_with(|| BufferLease::new(&state.buffers));
    let limit = state.settings.limits.max_request_body_bytes;
    let body = read_body(session, limit, lease).await?;
    let view = if legacy {
        let (view, config) = RequestView::parse_legacy(body)?;
        if headers.config.is_none() {
            headers.config = config;
        }
        admit::target_headers(state, headers)?;
        view
    } else {
        RequestView::parse(body)?
    };
    ctx.stream = view.stream;
    ctx.model = view.model.clone();
    let plan = state
        .configs
        .resolve(headers.config.as_deref(), &state.plan_context())?;

    let store_bodies = state.log_store.as_ref().is_some_and(|s| s.bodies());
    if state.access_log.log_bodies || store_bodies {
        ctx.request_body = Some(view.body.clone());
    }
    // The answer of a conversation is kept for the log store as it is sent (a dataset's last
    // turn): only its bytes are copied here, the store's thread reads them.
    if store_bodies
        && matches!(
            op,
            Operation::ChatCompletions
                | Operation::Completions
                | Operation::Responses
                | Operation::Messages
        )
    {
        ctx.transcript = Some(Box::default());
    }
    let traceparent = ctx.trace.as_ref().map(|t| t.outgoing());
    // The walk reads its own copy of the request line and headers, so that the session stays
    // free to watch the client while attempts, backoffs and fallbacks run.
    let req_header = session.req_header();
    let client_headers = req_header.headers.clone();
    let uri = req_header.uri.clone();
    let request = Request {
        op,
        view: &view,
        headers,
        metadata: &ctx.metadata,
        client_headers: &client_headers,
        query: uri.query(),
        pathname: uri.path(),
        traceparent,
        hop: &ctx.hop,
        trace_id: &ctx.trace_id,
        guardrails: crate::guardrails::Allowance::new(&state.settings.limits.guardrails),
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
    let deadline_ms = state.settings.upstream.request_deadline_ms;
    super::timer_anchor::ensure(Duration::from_millis(deadline_ms));
    let walked = {
        // Boxed once: the walk's future is large, and wrapping it by value in `timeout` and
        // `select!` copied it several times per request.
        let run = Box::pin(async {
            // In place unless the span is recorded (see `Walk::send`).
            if span.is_disabled() {
                walk.run(plan.as_deref()).await
            } else {
                walk.run(plan.as_deref()).instrument(span).await
            }
        });
        // The walk ends with an answer, at the request's deadline, or as soon as the client
        // leaves: then no further attempt, retry or fallback is sent, and the one in flight is
        // dropped (its connection closed).
        tokio::select! {
            biased;
            answer = tokio::time::timeout(Duration::from_millis(deadline_ms), run) => {
                answer.map_or(Walked::Deadline, Walked::Answer)
            }
            () = client_gone(session) => Walked::ClientGone,
        }
    };
    ctx.attempts = std::mem::take(&mut walk.attempts);
    ctx.guardrails = std::mem::take(&mut walk.guardrails);
    ctx.upstream_time += walk.waited
        + ctx
            .attempts
            .iter()
            .map(|a| a.duration)
            .sum::<std::time::Duration>();
    match walked {
        Walked::Answer(answer) => Ok(answer),
        Walked::Deadline => {
            ctx.provider = ctx.attempts.last().map(|a| a.provider.clone());
            Err(GatewayError::DeadlineExceeded(deadline_ms).into())
        }
        Walked::ClientGone => Err(Failed::Late(RelayError::ClientGone)),
    }
}
