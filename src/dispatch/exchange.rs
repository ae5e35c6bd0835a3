//! One request/response exchange with an upstream over a pooled connection.

use super::{DnsCache, Upstream};
use crate::error::GatewayError;
use crate::portkey::custom_host::is_public;
use crate::settings::UpstreamSettings;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue};
use pingora::connectors::http::v1::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};
use std::net::SocketAddr;
use std::time::Duration;

/// How many resolved addresses are tried when connecting fails.
const MAX_ADDRESSES: usize = 3;
/// How many pooled connections may turn out stale (closed by the upstream while idle) before
/// the exchange gives up; each stale one is dropped and the request re-sent on another.
///
/// A resend is safe only when the provider cannot have acted on the request: Pingora marks an
/// error retryable on a *reused* connection only when it closed before a single response byte
/// (the idle connection was closed by the provider as the request went out). Each resend also
/// asks the request's retry budget ([`Outbound::may_resend`]), so a provider that drops every
/// pooled connection cannot double the traffic sent to it.
const MAX_STALE_RETRIES: usize = 3;

/// The request to send, already rewritten for its target.
pub struct Outbound<'a> {
    /// Provider slug, for error messages.
    pub provider: &'a str,
    pub upstream: &'a Upstream,
    /// Refuse resolved addresses that are not public (an untrusted custom host).
    pub public_only: bool,
    pub method: &'a str,
    /// Full path and query sent upstream (base path included).
    pub path: &'a str,
    /// Headers to send; `Host` and `Content-Length` are set by the exchange.
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub body: Bytes,
    /// Asked before re-sending on a fresh connection after a stale pooled one; `false` (the
    /// retry budget is spent) reports the stale connection's error instead.
    pub may_resend: &'a (dyn Fn() -> bool + Sync),
}

/// An upstream response whose header has been read and whose body is still to be read.
pub struct Inbound {
    session: HttpSession,
    peer: HttpPeer,
    provider: String,
    /// Body chunks read ahead (the first token of a stream, or a whole answer), handed out
    /// first.
    peeked: std::collections::VecDeque<Bytes>,
}

/// Where an attempt failed, which decides whether it can be repeated elsewhere.
enum Failure {
    /// Nothing was sent: the next address may be tried.
    Connect(Box<Error>),
    /// The request went out on a pooled connection that turned out closed: resend on another.
    Stale(Box<Error>),
    /// The upstream may have seen the request: report it.
    Exchange(Box<Error>),
}

/// Owns the connection pools and the resolver shared by all requests.
pub struct Dispatcher {
    /// Pingora's HTTP/1 connector: every upstream peer speaks HTTP/1.1 (no ALPN is offered),
    /// and this one, unlike the protocol-choosing `http::Connector`, can be asked for a pooled
    /// connection alone (see `try_once`).
    connector: Connector,
    dns: DnsCache,
    timeouts: UpstreamSettings,
}

impl Dispatcher {
    pub fn new(timeouts: &UpstreamSettings) -> Self {
        Dispatcher {
            connector: Connector::new(Some(ConnectorOptions::new(timeouts.pool_size))),
            dns: DnsCache::new(
                Duration::from_secs(timeouts.dns_ttl_seconds),
                Duration::from_millis(timeouts.dns_timeout_ms),
            ),
            timeouts: timeouts.clone(),
        }
    }

    pub fn dns(&self) -> &DnsCache {
        &self.dns
    }

    /// Resolves the upstream host and applies the public-only rule.
    pub async fn resolve(
        &self,
        upstream: &Upstream,
        public_only: bool,
    ) -> Result<Vec<SocketAddr>, GatewayError> {
        let addrs = self
            .dns
            .resolve(&upstream.host, upstream.port)
            .await
            .map_err(|detail| GatewayError::UpstreamDns {
                host: upstream.host.clone(),
                detail,
            })?;
        let usable: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| !public_only || is_public(a.ip()))
            .take(MAX_ADDRESSES)
            .collect();
        if usable.is_empty() {
            return Err(GatewayError::InvalidCustomHost(format!(
                "{} resolves only to private addresses",
                upstream.host
            )));
        }
        Ok(usable)
    }

    /// Sends the request and reads the response header. Connect failures move on to the next
    /// resolved address; a stale pooled connection is replaced; anything else is reported.
    pub async fn send(&self, out: &Outbound<'_>) -> Result<Inbound, GatewayError> {
        let addrs = self.resolve(out.upstream, out.public_only).await?;
        let mut last: Option<Box<Error>> = None;
        for addr in addrs {
            let peer = out.upstream.peer(addr, &self.timeouts);
            let mut stale = 0;
            loop {
                match self.try_once(&peer, out).await {
                    Ok(session) => {
                        return Ok(Inbound {
                            session,
                            peer,
                            provider: out.provider.to_string(),
                            peeked: std::collections::VecDeque::new(),
                        })
                    }
                    Err(Failure::Stale(_)) if stale < MAX_STALE_RETRIES && (out.may_resend)() => {
                        stale += 1
                    }
                    Err(Failure::Stale(e)) | Err(Failure::Exchange(e)) => {
                        return Err(classify(out.provider, &e))
                    }
                    Err(Failure::Connect(e)) => {
                        last = Some(e);
                        break;
                    }
                }
            }
        }
        Err(match last {
            Some(e) => classify(out.provider, &e),
            None => GatewayError::Internal("no upstream address was tried".into()),
        })
    }

    async fn try_once(&self, peer: &HttpPeer, out: &Outbound<'_>) -> Result<HttpSession, Failure> {
        // A pooled connection first, through a future of ~200 bytes; only without one the
        // connect future (~8.8 KB: TCP, TLS, their timeouts) runs, boxed. Awaited inline, it
        // made every future above it ~8.8 KB larger, and each request copies two of them
        // whole when they are boxed (Pingora's `request_filter` and the walk).
        let (session, reused) = match self.connector.reused_http_session(peer).await {
            Some(session) => (session, true),
            None => Box::pin(self.connector.get_http_session(peer))
                .await
                .map_err(Failure::Connect)?,
        };
        let mut session = HttpSession::H1(session);
        session.set_read_timeout(Some(Duration::from_millis(self.timeouts.read_timeout_ms)));
        session.set_write_timeout(Some(Duration::from_millis(self.timeouts.write_timeout_ms)));
        let failed = |mut e: Box<Error>| {
            e.retry.decide_reuse(reused);
            if reused && e.retry() {
                Failure::Stale(e)
            } else {
                Failure::Exchange(e)
            }
        };
        let header = build_request_header(out).map_err(Failure::Exchange)?;
        session
            .write_request_header(Box::new(header))
            .await
            .map_err(failed)?;
        if !out.body.is_empty() {
            session
                .write_request_body(out.body.clone(), true)
                .await
                .map_err(failed)?;
        }
        session.finish_request_body().await.map_err(failed)?;
        session.read_response_header().await.map_err(failed)?;
        Ok(session)
    }

    /// Disposes of a response the gateway will not relay (a failure before a retry or fallback):
    /// a small body is read so the connection can be pooled, anything else is closed.
    pub async fn discard(&self, mut inbound: Inbound) {
        const DRAIN_LIMIT: usize = 64 * 1024;
        let drained =
            tokio::time::timeout(Duration::from_secs(1), inbound.read_to_end(DRAIN_LIMIT)).await;
        match drained {
            Ok(Ok(_)) => self.finish(inbound),
            _ => inbound.abort(),
        }
    }

    /// Pools the connection of a response read to its end, and closes any other.
    pub fn finish(&self, mut inbound: Inbound) {
        if inbound.is_done() {
            self.release(inbound);
        } else {
            inbound.abort();
        }
    }

    /// Returns a fully read response's connection to the pool.
    ///
    /// Not `async`, on purpose: Pingora's release only waits when it closes a connection it
    /// will not pool (a TCP shutdown, which never waits, or a TLS `close_notify` that waits
    /// for room in a full socket buffer). Polled once here, such a wait is dropped with the
    /// connection, which then closes without the alert. Awaited, its ~4.4 KB future sat in
    /// every request's future, which Pingora copies into a box per request and which every
    /// open stream holds (see README › Performance).
    pub fn release(&self, inbound: Inbound) {
        let idle = Some(Duration::from_millis(self.timeouts.idle_timeout_ms));
        // `try_once` only makes HTTP/1 sessions; anything else would just be closed.
        if let HttpSession::H1(session) = inbound.session {
            let _ = self
                .connector
                .release_http_session(session, &inbound.peer, idle)
                .now_or_never();
        }
    }
}

/// The upstream request's header. Its headers go straight into the `HeaderMap` of a header
/// without Pingora's case map: Pingora's `insert_header` parses each name again and, with the
/// case map, copies it and inserts twice. The bytes sent are the same: the names are already
/// lower-case `HeaderName`s, and Pingora title-cases the standard ones on the wire either way.
fn build_request_header(out: &Outbound<'_>) -> pingora::Result<RequestHeader> {
    // Built first for its method and request target (origin-form, kept by the conversion).
    let mut parts: http::request::Parts =
        RequestHeader::build_no_case(out.method, out.path.as_bytes(), None)?.into();
    let headers = &mut parts.headers;
    headers.reserve(out.headers.len() + 2);
    let host = HeaderValue::from_str(out.upstream.authority())
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid upstream host"))?;
    headers.insert(http::header::HOST, host);
    for (name, value) in out.headers {
        headers.append(name.clone(), value.clone());
    }
    if !out.body.is_empty() || out.method == "POST" || out.method == "PUT" {
        headers.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(out.body.len()),
        );
    }
    Ok(RequestHeader::from(parts))
}

/// Maps a Pingora client error to the gateway's: connect problems are 502, stalls are 504.
pub fn classify(provider: &str, e: &Error) -> GatewayError {
    use ErrorType::*;
    let provider = provider.to_string();
    let detail = e.to_string();
    match e.etype() {
        ReadTimedout | WriteTimedout => GatewayError::UpstreamTimeout { provider, detail },
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
        | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError | BindError
        | SocketError => GatewayError::UpstreamConnect { provider, detail },
        _ => GatewayError::UpstreamIo { provider, detail },
    }
}

impl Inbound {
    pub fn header(&self) -> Option<&ResponseHeader> {
        self.session.response_header()
    }

    pub fn status(&self) -> u16 {
        self.header().map_or(0, |h| h.status.as_u16())
    }

    /// The next body chunk; `None` at the end. A stall past the read timeout is an error.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, GatewayError> {
        if let Some(chunk) = self.peeked.pop_front() {
            return Ok(Some(chunk));
        }
        self.read_chunk().await
    }

    async fn read_chunk(&mut self) -> Result<Option<Bytes>, GatewayError> {
        self.session
            .read_response_body()
            .await
            .map_err(|e| classify(&self.provider, &e))
    }

    /// Reads the first body chunk ahead, so it can be checked before the response is committed
    /// to the client; `next_chunk` returns it first.
    pub async fn peek_chunk(&mut self) -> Result<(), GatewayError> {
        if self.peeked.is_empty() {
            if let Some(chunk) = self.read_chunk().await? {
                self.peeked.push_back(chunk);
            }
        }
        Ok(())
    }

    /// Reads the body ahead, whole, up to `limit` bytes (a larger one is then relayed as it
    /// comes, starting with what was read). A provider that fails mid-body therefore fails the
    /// attempt — which retries and fallbacks act on — instead of cutting the client's answer.
    pub async fn read_ahead(&mut self, limit: usize) -> Result<(), GatewayError> {
        let mut held: usize = self.peeked.iter().map(Bytes::len).sum();
        while held <= limit {
            match self.read_chunk().await? {
                Some(chunk) => {
                    held += chunk.len();
                    self.peeked.push_back(chunk);
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Whether the whole response was read (so the connection can be pooled).
    pub fn is_done(&mut self) -> bool {
        self.peeked.is_empty() && self.session.response_done()
    }

    /// Reads the rest of the body into memory, up to `limit` bytes (for error bodies and
    /// responses that must be inspected whole).
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Bytes, GatewayError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.next_chunk().await? {
            if buf.len() + chunk.len() > limit {
                return Err(GatewayError::UpstreamIo {
                    provider: self.provider.clone(),
                    detail: format!("response body larger than {limit} bytes"),
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Aborts the exchange: closes an HTTP/1 connection, resets an HTTP/2 stream.
    ///
    /// Not `async`, like [`Dispatcher::release`]: a TCP shutdown is done at once, and a TLS
    /// `close_notify` that cannot be written at once is dropped with the connection.
    pub fn abort(mut self) {
        let _ = self.session.shutdown().now_or_never();
    }
}
