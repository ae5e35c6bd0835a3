//! Writing responses downstream: local answers (errors, health) and relaying an upstream
//! response as it arrives.

use super::ctx::RequestCtx;
use crate::dispatch::{Dispatcher, Inbound};
use crate::error::GatewayError;
use crate::portkey::response;
use crate::providers::error_envelope as provider_error;
use crate::stream::{Meter, Translator};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
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

/// The header of an answer the gateway writes itself: `headers` filled directly, plus the
/// headers every gateway response carries. Pingora's own `insert_header` parses each name
/// again and, on a header built with its case map, copies the name and inserts twice: ~1.6k
/// instructions per header, with 6-10 headers per answer (callgrind). A header without a case
/// map sends the same bytes (Pingora title-cases the standard names and writes the others as
/// stored; every name here is a lower-case `HeaderName`).
fn own_header(
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
fn text_value(s: &str) -> pingora::Result<HeaderValue> {
    HeaderValue::from_str(s).map_err(|_| {
        pingora::Error::explain(
            pingora::ErrorType::InvalidHTTPHeader,
            "a response header value is not visible ASCII",
        )
    })
}

/// The headers every gateway response carries, each handed to `put`.
fn gateway_headers(
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
        put(response::RETRY_ATTEMPT_COUNT, HeaderValue::from(n))?;
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
pub fn add_gateway_headers(h: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    gateway_headers(ctx, |name, value| h.insert_header(name, value))
}

/// Answers locally with a complete body.
pub async fn send_local(
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
    let mut map = HeaderMap::with_capacity(10);
    let json = HeaderValue::from_static("application/json");
    map.insert(http::header::CONTENT_TYPE, json);
    let body = err.body();
    map.insert(http::header::CONTENT_LENGTH, body.len().into());
    if matches!(err, GatewayError::Overloaded) {
        map.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
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
fn header_failed(e: Box<pingora::Error>) -> RelayError {
    RelayError::BeforeResponse(GatewayError::Internal(format!("response header: {e}")))
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

/// Where an answer's body comes from: a live upstream response, or bytes the gateway holds (a
/// provider error rewritten into Portkey's envelope; later a cache hit or a guardrail's
/// answer). Both go through the same writer, translator and meter, so headers, metrics, the
/// access log and stream framing are the same whatever the source.
pub enum Source {
    Live(Box<Inbound>),
    Local {
        status: u16,
        headers: http::HeaderMap,
        body: Option<Bytes>,
    },
}

impl Source {
    /// The answer's status.
    pub fn status_code(&self) -> u16 {
        match self {
            Source::Live(inbound) => inbound.status(),
            Source::Local { status, .. } => *status,
        }
    }

    fn headers(&self) -> Option<&http::HeaderMap> {
        match self {
            Source::Live(inbound) => inbound.header().map(|h| &h.headers),
            Source::Local { headers, .. } => Some(headers),
        }
    }

    /// The provider's content type.
    pub fn content_type(&self) -> &str {
        self.headers()
            .and_then(|h| h.get(http::header::CONTENT_TYPE))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, GatewayError> {
        match self {
            Source::Live(inbound) => inbound.next_chunk().await,
            Source::Local { body, .. } => Ok(body.take()),
        }
    }

    /// Reads ahead what has already arrived, without waiting (up to about `limit` bytes);
    /// `true` when that is the whole body. A body the gateway holds is always whole.
    fn read_ready(&mut self, limit: usize) -> bool {
        match self {
            Source::Live(inbound) => inbound.read_ready(limit),
            Source::Local { .. } => true,
        }
    }

    /// The next chunk of a body [`Source::read_ready`] found whole (`None` at its end).
    fn take_ready(&mut self) -> Option<Bytes> {
        match self {
            Source::Live(inbound) => inbound.take_ready(),
            Source::Local { body, .. } => body.take(),
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

/// Copies the answer's status and headers (minus hop-by-hop ones) and adds the gateway's. A
/// body whose length is declared and not rewritten keeps its `Content-Length`; any other body
/// is sent chunked, so the client can always tell a complete body from a cut one.
fn downstream_header(
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

/// The largest provider error body read whole to be wrapped in Portkey's envelope.
const ERROR_BODY_LIMIT: usize = 256 * 1024;

/// Answers a provider's error (non-2xx) in Portkey's envelope (`providers::error_envelope`):
/// status and headers kept (`retry-after`, rate-limit headers), the body read whole, rewritten
/// as JSON and relayed as a local body. Also for a `stream: true` request, whose failure is
/// JSON, not SSE.
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
            inbound.abort();
            return Err(RelayError::BeforeResponse(e));
        }
    };
    let provider = ctx.provider.as_deref().unwrap_or("unknown");
    let status = inbound.status();
    let body = Bytes::from(provider_error::envelope(provider, status, &raw));
    let mut headers = inbound
        .header()
        .map(|h| h.headers.clone())
        .unwrap_or_default();
    dispatcher.finish(inbound);
    headers.remove(http::header::TRANSFER_ENCODING);
    headers.remove(http::header::CONTENT_ENCODING);
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    let whole = (status, headers, body, "application/json");
    relay_whole(session, ctx, dispatcher, keep_body, whole).await
}

/// Relays an answer held whole (status, headers, body: a provider's error in Portkey's
/// envelope, a guardrail's answer, one from the cache) through the meter, told the body is of
/// the content type given (`""`: no need to read it). A plain function: what it builds is
/// moved into the relay's future, not kept beside it.
pub fn relay_whole<'a>(
    session: &'a mut Session,
    ctx: &'a mut RequestCtx,
    dispatcher: &'a Dispatcher,
    keep_body: bool,
    (status, headers, body, content_type): (u16, http::HeaderMap, Bytes, &str),
) -> impl std::future::Future<Output = Result<(), RelayError>> + Send + 'a {
    let translator = Box::new(Meter::for_response(status, content_type, false));
    let source = Source::Local {
        status,
        headers,
        body: Some(body),
    };
    relay(session, source, translator, ctx, dispatcher, keep_body)
}

/// Relays an answer the gateway holds through a stream guard (the output guardrails of a
/// cached stream), which may end it early with an error event; returns the guard's report.
pub async fn relay_guarded(
    session: &mut Session,
    ctx: &mut RequestCtx,
    dispatcher: &Dispatcher,
    keep_body: bool,
    (status, headers, body, content_type): (u16, http::HeaderMap, Bytes, &str),
    guard: Box<crate::pipeline::guard_stream::StreamGuard>,
) -> (
    Result<(), RelayError>,
    std::sync::Arc<std::sync::Mutex<crate::pipeline::guard_stream::Report>>,
) {
    let meter = Box::new(Meter::for_response(status, content_type, false));
    let (translator, report) = crate::pipeline::guard_stream::wrap(meter, guard);
    let source = Source::Local {
        status,
        headers,
        body: Some(body),
    };
    let relayed = relay(session, source, translator, ctx, dispatcher, keep_body).await;
    (relayed, report)
}

/// Streams an answer to the client chunk by chunk, as it arrives (SSE events are never held
/// back), through the provider's translator, while watching for the client going away; what
/// the translator reads about usage and model lands in `ctx.metered`.
///
/// A plain function returning an `async move` block rather than an `async fn`: an `async fn`
/// moves its arguments into locals, so its future held the 136-byte `Source` twice; the block
/// uses what it captured in place. Every open stream holds this future.
#[allow(clippy::manual_async_fn)]
pub fn relay<'a>(
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
        let result = pump(session, &mut source, ctx, translator.as_mut(), sse).await;
        ctx.upstream_time += started.elapsed();
        let m = &mut ctx.metered;
        m.usage = translator.usage();
        m.model = translator.model().map(str::to_string);
        m.events = translator.events();
        if keep_body {
            m.body = translator.json_body();
        }
        source.end(dispatcher, result.is_ok());
        result
    }
}

/// Relays an answer the translator makes whole (a non-streamed translated answer): reads the
/// upstream body to its end, then sends the translation with its `Content-Length` — no chunked
/// framing, and the client's first byte comes with the complete answer.
///
/// A translator that gives up (an answer past its size limit) hands back what it held and
/// then each chunk as it is: from then on the answer is relayed as it comes, untranslated and
/// in order, so an answer of any size costs a chunk of memory, not its size.
async fn pump_whole(
    session: &mut Session,
    source: &mut Source,
    ctx: &mut RequestCtx,
    translator: &mut dyn Translator,
) -> Result<(), RelayError> {
    while let Some(chunk) = source
        .next_chunk()
        .await
        .map_err(RelayError::BeforeResponse)?
    {
        if let Some(out) = translator.push(chunk) {
            return pump_given_up(session, source, ctx, translator, out).await;
        }
    }
    let body = translator.finish().unwrap_or_default();
    if let Some(c) = ctx.cache_capture.as_mut() {
        c.push(&body);
    }
    let mut header = downstream_header(source, ctx, translator).map_err(header_failed)?;
    sized(&mut header, body.len(), ctx)?;
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

/// The rest of an answer whose translator gave up: the header (the translator now says the
/// body is the upstream's own), what it handed back, then each chunk as it arrives.
async fn pump_given_up(
    session: &mut Session,
    source: &mut Source,
    ctx: &mut RequestCtx,
    translator: &mut dyn Translator,
    first: Bytes,
) -> Result<(), RelayError> {
    let header = downstream_header(source, ctx, translator).map_err(header_failed)?;
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
    {
        return Err(RelayError::ClientGone);
    }
    ctx.metered.first_chunk_at = Some(std::time::Instant::now());
    let mut out = Some(first);
    loop {
        if let Some(bytes) = out.take() {
            if let Some(c) = ctx.cache_capture.as_mut() {
                c.push(&bytes);
            }
            if session
                .write_response_body(Some(bytes), false)
                .await
                .is_err()
            {
                return Err(RelayError::ClientGone);
            }
        }
        match source.next_chunk().await {
            Ok(Some(chunk)) => out = translator.push(chunk),
            Ok(None) => break,
            Err(err) => return Err(Box::pin(upstream_failed(session, err, false)).await),
        }
    }
    ctx.metered.last_chunk_at = Some(std::time::Instant::now());
    if session
        .write_response_body(translator.finish(), true)
        .await
        .is_err()
    {
        return Err(RelayError::ClientGone);
    }
    Ok(())
}

/// Whether an idle read on the client connection means the client went away (FIN or reset),
/// as opposed to anything else, which must not abort a response the client is waiting for.
pub fn client_left(e: &pingora::Error) -> bool {
    matches!(
        e.etype(),
        pingora::ErrorType::ConnectionClosed | pingora::ErrorType::ReadError
    )
}

/// The most bytes of ready chunks joined into one downstream write.
const BATCH_LIMIT: usize = 64 * 1024;

/// Chunks for one downstream write: the first kept as it is (no copy when it is alone).
#[derive(Default)]
struct Batch {
    first: Option<Bytes>,
    joined: Option<bytes::BytesMut>,
}

impl Batch {
    fn add(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        match (&self.first, &mut self.joined) {
            (None, _) => self.first = Some(chunk),
            (Some(first), None) => {
                let mut joined = bytes::BytesMut::with_capacity((first.len() + chunk.len()) * 2);
                joined.extend_from_slice(first);
                joined.extend_from_slice(&chunk);
                self.joined = Some(joined);
            }
            (Some(_), Some(joined)) => joined.extend_from_slice(&chunk),
        }
    }

    fn len(&self) -> usize {
        match (&self.first, &self.joined) {
            (_, Some(joined)) => joined.len(),
            (Some(first), None) => first.len(),
            (None, None) => 0,
        }
    }

    fn take(&mut self) -> Option<Bytes> {
        let first = self.first.take();
        self.joined.take().map(bytes::BytesMut::freeze).or(first)
    }
}

/// An upstream failure after the response started: an SSE client is told in-band (best
/// effort: it may be gone too).
async fn upstream_failed(session: &mut Session, err: GatewayError, sse: bool) -> RelayError {
    if sse {
        let _ = session
            .write_response_body(Some(err.sse_event()), false)
            .await;
    }
    RelayError::Upstream(err)
}

/// What a body read whole becomes: its translation, or the part before an event too large to
/// split.
enum Whole {
    Body(Bytes),
    /// Boxed: this rare case would otherwise widen the relay's future.
    Overflowed(Box<Batch>),
}

/// The response header, and the body too when it is all read already.
///
/// An answer read to its end by the time its header is due (a short stream that came in one
/// burst, an answer the gateway holds) goes out with its length: header and body in one write.
/// Sent chunked, Pingora flushes the header on its own, then the body, then the last-chunk
/// mark: three system calls, three segments and three wake-ups of the client. A function of
/// its own, so that the header being built takes no room in the relay's future.
fn head(
    source: &mut Source,
    ctx: &mut RequestCtx,
    translator: &mut dyn Translator,
) -> Result<(Box<ResponseHeader>, Option<Whole>), RelayError> {
    let mut header = downstream_header(source, ctx, translator).map_err(header_failed)?;
    if !source.read_ready(BATCH_LIMIT) {
        return Ok((Box::new(header), None));
    }
    let whole = translate_whole(source, ctx, translator);
    // An event too large to split goes out as the chunked relay sends it: the header as it
    // is, then the events before it and the reason.
    if let Whole::Body(body) = &whole {
        sized(&mut header, body.len(), ctx)?;
    }
    Ok((Box::new(header), Some(whole)))
}

/// A header for a body sent whole: its length instead of chunked framing, and the body's one
/// write is both its first and its last chunk.
fn sized(header: &mut ResponseHeader, len: usize, ctx: &mut RequestCtx) -> Result<(), RelayError> {
    let _ = header.remove_header(&http::header::TRANSFER_ENCODING);
    header
        .insert_header(http::header::CONTENT_LENGTH, len)
        .map_err(header_failed)?;
    let now = std::time::Instant::now();
    ctx.metered.first_chunk_at = Some(now);
    ctx.metered.last_chunk_at = Some(now);
    Ok(())
}

/// Translates a body [`Source::read_ready`] found whole, as the chunked relay does chunk by
/// chunk: the same captures for the cache, the same stop when a guardrail ends the stream, the
/// translator's last words.
fn translate_whole(
    source: &mut Source,
    ctx: &mut RequestCtx,
    translator: &mut dyn Translator,
) -> Whole {
    let mut out = Batch::default();
    while let Some(chunk) = source.take_ready() {
        match feed(translator, ctx, &mut out, chunk) {
            Fed::More => {}
            Fed::Stopped => break,
            Fed::Overflowed => return Whole::Overflowed(Box::new(out)),
        }
    }
    if let Some(rest) = finish(translator, ctx) {
        out.add(rest);
    }
    Whole::Body(out.take().unwrap_or_default())
}

/// What feeding one chunk to the translator leaves the relay to do.
enum Fed {
    More,
    /// A guardrail ended the stream: nothing more from upstream reaches the client.
    Stopped,
    /// An event grew past the splitter's limit (see [`overflowed`]).
    Overflowed,
}

/// Feeds one upstream chunk to the translator; what it releases goes into `out` and into the
/// response cache's capture (a completed stream is stored as the client got it).
fn feed(
    translator: &mut dyn Translator,
    ctx: &mut RequestCtx,
    out: &mut Batch,
    chunk: Bytes,
) -> Fed {
    let pushed = translator.push(chunk);
    if translator.overflowed() {
        return Fed::Overflowed;
    }
    if let Some(pushed) = pushed {
        if let Some(c) = ctx.cache_capture.as_mut() {
            c.push(&pushed);
        }
        out.add(pushed);
    }
    if translator.stopped() {
        Fed::Stopped
    } else {
        Fed::More
    }
}

/// The translator's last words (the end of a translated stream), captured like the rest.
fn finish(translator: &mut dyn Translator, ctx: &mut RequestCtx) -> Option<Bytes> {
    let rest = translator.finish();
    if let (Some(c), Some(rest)) = (ctx.cache_capture.as_mut(), rest.as_ref()) {
        c.push(rest);
    }
    rest
}

/// An SSE event grew past the splitter's limit: the event cut short is ended and the client
/// told why the stream ends, after the events of `out` (the response header is written).
async fn overflowed(session: &mut Session, ctx: &RequestCtx, mut out: Batch) -> RelayError {
    let err = GatewayError::UpstreamIo {
        provider: ctx.provider.clone().unwrap_or_default(),
        detail: format!(
            "an SSE event is larger than {} bytes",
            crate::stream::sse::MAX_EVENT
        ),
    };
    out.add(Bytes::from_static(b"\n\n"));
    out.add(err.sse_event());
    if let Some(out) = out.take() {
        let _ = session.write_response_body(Some(out), false).await;
    }
    RelayError::Upstream(err)
}

async fn pump(
    session: &mut Session,
    source: &mut Source,
    ctx: &mut RequestCtx,
    translator: &mut dyn Translator,
    sse: bool,
) -> Result<(), RelayError> {
    if translator.buffers_whole() {
        // Boxed, like the failure paths below: inline, these rarer paths' futures would size
        // this one, and with it the handler's, which every open stream holds.
        return Box::pin(pump_whole(session, source, ctx, translator)).await;
    }
    let (header, whole) = head(source, ctx, translator)?;
    if session.write_response_header(header, false).await.is_err() {
        return Err(RelayError::ClientGone);
    }
    match whole {
        None => {}
        Some(Whole::Body(body)) => {
            return match session.write_response_body(Some(body), true).await {
                Ok(()) => Ok(()),
                Err(_) => Err(RelayError::ClientGone),
            }
        }
        Some(Whole::Overflowed(out)) => return Err(Box::pin(overflowed(session, ctx, *out)).await),
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
            chunk = source.next_chunk() => chunk,
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
        let mut chunk = match next {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(err) => return Err(Box::pin(upstream_failed(session, err, sse)).await),
        };
        // Chunks that are already read (a burst of events in one read) go out in one write:
        // each downstream write costs a syscall and a chunk header. Only what is ready now is
        // taken, so nothing is held back waiting for more.
        let mut out = Batch::default();
        let mut ended = None;
        loop {
            match feed(translator, ctx, &mut out, chunk) {
                Fed::More => {}
                Fed::Stopped => {
                    ended = Some(Ok(None));
                    break;
                }
                Fed::Overflowed => return Err(Box::pin(overflowed(session, ctx, out)).await),
            }
            if out.len() >= BATCH_LIMIT {
                break;
            }
            // Polls once: a chunk ready now, else `None` (the future is dropped; body reads are
            // cancel-safe, which the `select!` above relies on already).
            match futures_util::FutureExt::now_or_never(source.next_chunk()) {
                Some(Ok(Some(next))) => chunk = next,
                Some(end) => {
                    ended = Some(end);
                    break;
                }
                None => break,
            }
        }
        if let Some(out) = out.take() {
            let now = std::time::Instant::now();
            ctx.metered.first_chunk_at.get_or_insert(now);
            ctx.metered.last_chunk_at = Some(now);
            if session.write_response_body(Some(out), false).await.is_err() {
                return Err(RelayError::ClientGone);
            }
        }
        match ended {
            None => {}
            Some(Ok(_)) => break,
            Some(Err(err)) => return Err(Box::pin(upstream_failed(session, err, sse)).await),
        }
    }
    let rest = finish(translator, ctx);
    if session.write_response_body(rest, true).await.is_err() {
        return Err(RelayError::ClientGone);
    }
    Ok(())
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
