//! Moving an upstream body to the client: whole with its length when it can be (one path for a
//! translator that holds the answer and for a body that arrived whole), else chunk by chunk
//! through the translator, batched into few writes; what happens when the translator gives up
//! or the upstream fails mid-way.

use super::*;

/// The most bytes of ready chunks joined into one downstream write.
pub(super) const BATCH_LIMIT: usize = 64 * 1024;

/// Chunks for one downstream write: the first kept as it is (no copy when it is alone).
#[derive(Default)]
pub(super) struct Batch {
    pub(super) first: Option<Bytes>,
    pub(super) joined: Option<bytes::BytesMut>,
}

impl Batch {
    pub(super) fn add(&mut self, chunk: Bytes) {
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

    pub(super) fn len(&self) -> usize {
        match (&self.first, &self.joined) {
            (_, Some(joined)) => joined.len(),
            (Some(first), None) => first.len(),
            (None, None) => 0,
        }
    }

    pub(super) fn take(&mut self) -> Option<Bytes> {
        let first = self.first.take();
        self.joined.take().map(bytes::BytesMut::freeze).or(first)
    }
}

/// An upstream failure after the response started: an SSE client is told in-band (best
/// effort: it may be gone too).
pub(super) async fn upstream_failed(
    session: &mut Session,
    err: GatewayError,
    sse: bool,
) -> RelayError {
    if sse {
        let _ = session
            .write_response_body(Some(err.sse_event()), false)
            .await;
    }
    RelayError::Upstream(err)
}

/// Resolves once the shutdown's deadline asks open streams to end (at once when it already
/// has); never for a relay that does not watch (`None`).
pub(super) async fn cut_requested(cut: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    if let Some(rx) = cut {
        if rx.wait_for(|v| *v).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await
}

/// Ends a stream at the shutdown's deadline: the event cut short (if any) is closed, the client
/// told why in-band, and the body ended cleanly (its terminating chunk), so the client sees a
/// complete response that says to retry rather than a dropped connection.
pub(super) async fn cut_short(session: &mut Session) -> RelayError {
    let err = GatewayError::ShuttingDown;
    let mut out = Batch::default();
    out.add(Bytes::from_static(b"\n\n"));
    out.add(err.sse_event());
    session.set_keepalive(None);
    let _ = session.write_response_body(out.take(), true).await;
    RelayError::Cut(err)
}

/// What a body read whole becomes.
pub(super) enum Whole {
    /// Its translation, sent with its length in one write.
    Body(Bytes),
    /// The part before an event too large to split. Boxed: this rare case would otherwise
    /// widen the relay's future.
    Overflowed(Box<Batch>),
    /// The translator gave up holding the answer (past its size limit): what it handed back
    /// starts a chunked relay of the rest, untranslated and in order, so an answer of any size
    /// costs a chunk of memory, not its size.
    GaveUp(Bytes),
}

/// The body of a translator that can only translate at the end (a non-streamed translated
/// answer): all of it, read to its end, or what the translator handed back when it gave up.
pub(super) async fn read_to_end(
    source: &mut Source,
    ctx: &mut RequestCtx,
    translator: &mut dyn Translator,
) -> Result<Whole, RelayError> {
    while let Some(chunk) = source
        .next_chunk()
        .await
        .map_err(RelayError::BeforeResponse)?
    {
        if let Some(out) = translator.push(chunk) {
            capture(ctx, &out);
            return Ok(Whole::GaveUp(out));
        }
    }
    Ok(Whole::Body(finish(translator, ctx).unwrap_or_default()))
}

/// The response header, sized when the body goes out whole. A function of its own, so that
/// the header being built takes no room in the relay's future.
pub(super) fn head(
    source: &Source,
    ctx: &mut RequestCtx,
    translator: &dyn Translator,
    whole: Option<&Whole>,
) -> Result<Box<ResponseHeader>, RelayError> {
    let mut header = downstream_header(source, ctx, translator).map_err(header_failed)?;
    // An event too large to split goes out as the chunked relay sends it: the header as it
    // is, then the events before it and the reason.
    if let Some(Whole::Body(body)) = whole {
        sized(&mut header, body.len(), ctx)?;
    }
    Ok(Box::new(header))
}

/// A header for a body sent whole: its length instead of chunked framing, and the body's one
/// write is both its first and its last chunk.
pub(super) fn sized(
    header: &mut ResponseHeader,
    len: usize,
    ctx: &mut RequestCtx,
) -> Result<(), RelayError> {
    let _ = header.remove_header(&http::header::TRANSFER_ENCODING);
    header
        .insert_header(http::header::CONTENT_LENGTH, len)
        .map_err(header_failed)?;
    let now = std::time::Instant::now();
    ctx.relayed.first_chunk_at = Some(now);
    ctx.relayed.last_chunk_at = Some(now);
    Ok(())
}

/// Translates a body [`Source::read_ready`] found whole, as the chunked relay does chunk by
/// chunk: the same captures for the cache, the same stop when a guardrail ends the stream, the
/// translator's last words.
fn translate_ready(
    source: &mut Source,
    ctx: &mut RequestCtx,
    translator: &mut dyn Translator,
) -> Whole {
    let mut out = Batch::default();
    while let Some(chunk) = source.take_ready() {
        match feed(translator, ctx, &mut out, chunk) {
            Fed::Going => {}
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
pub(super) enum Fed {
    /// The relay goes on with the next chunk.
    Going,
    /// A guardrail ended the stream: nothing more from upstream reaches the client.
    Stopped,
    /// An event grew past the splitter's limit (see [`overflowed`]).
    Overflowed,
}

/// Feeds one upstream chunk to the translator; what it releases goes into `out` and into the
/// captures (a completed stream is cached and logged as the client got it).
pub(super) fn feed(
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
        capture(ctx, &pushed);
        out.add(pushed);
    }
    if translator.stopped() {
        Fed::Stopped
    } else {
        Fed::Going
    }
}

/// The translator's last words (the end of a translated stream), captured like the rest.
pub(super) fn finish(translator: &mut dyn Translator, ctx: &mut RequestCtx) -> Option<Bytes> {
    let rest = translator.finish();
    if let Some(rest) = rest.as_ref() {
        capture(ctx, rest);
    }
    rest
}

/// What the client is sent, kept for the response cache (a miss to store) and for the log
/// store (the answer of a dataset).
fn capture(ctx: &mut RequestCtx, sent: &Bytes) {
    if let Some(c) = ctx.cache_capture.as_mut() {
        c.push(sent);
    }
    if let Some(t) = ctx.transcript.as_mut() {
        t.push(sent);
    }
}

/// An SSE event grew past the splitter's limit: the event cut short is ended and the client
/// told why the stream ends, after the events of `out` (the response header is written).
pub(super) async fn overflowed(
    session: &mut Session,
    ctx: &RequestCtx,
    mut out: Batch,
) -> RelayError {
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

pub(super) async fn pump(
    session: &mut Session,
    source: &mut Source,
    ctx: &mut RequestCtx,
    translator: &mut dyn Translator,
    sse: bool,
    cut: &mut Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<(), RelayError> {
    // The one whole-body path: the body goes out whole, with its length, when the translator
    // can only translate at the end (all of it is read first), or when what has already
    // arrived is all of it (a short stream in one burst, an answer the gateway holds). Sent
    // whole, header and body go out in one write; sent chunked, Pingora flushes the header on
    // its own, then the body, then the last-chunk mark: three system calls, three segments and
    // three wake-ups of the client.
    let whole = if translator.buffers_whole() {
        // Boxed, like the failure paths below: inline, this wait would size this future, and
        // with it the handler's, which every open stream holds.
        Some(Box::pin(read_to_end(source, ctx, translator)).await?)
    } else if source.read_ready(BATCH_LIMIT) {
        Some(translate_ready(source, ctx, translator))
    } else {
        None
    };
    let header = head(source, ctx, translator, whole.as_ref())?;
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
        Some(Whole::GaveUp(first)) => {
            let now = std::time::Instant::now();
            ctx.relayed.first_chunk_at = Some(now);
            ctx.relayed.last_chunk_at = Some(now);
            if session
                .write_response_body(Some(first), false)
                .await
                .is_err()
            {
                return Err(RelayError::ClientGone);
            }
        }
    }
    let mut client_watch = true;
    loop {
        // `biased`: the upstream branch is polled first, so a finished upstream body always
        // ends the loop before the downstream is read. The downstream branch only watches for
        // the client leaving; with pipelining enabled on the session (see `request_filter`),
        // bytes of the client's next request that arrive meanwhile are kept for it by Pingora
        // and the branch just stays pending.
        // The shutdown's cut comes first: an upstream that is always ready must not keep a
        // stream past the deadline. It costs a read of the channel's value per wake-up.
        let next = tokio::select! {
            biased;
            () = cut_requested(cut) => return Err(Box::pin(cut_short(session)).await),
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
                Fed::Going => {}
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
            ctx.relayed.first_chunk_at.get_or_insert(now);
            ctx.relayed.last_chunk_at = Some(now);
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
