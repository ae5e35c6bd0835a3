//! One request/response exchange with an upstream over a pooled connection.

use super::custom_host::is_public;
use super::{DnsCache, Upstream};
use crate::error::GatewayError;
use crate::settings::UpstreamSettings;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue};
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::{http_req_header_to_wire, HttpSession as Http1Session};
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType, OrErr};
use std::net::SocketAddr;
use std::time::Duration;

mod inbound;

use tokio::io::{AsyncWrite, AsyncWriteExt};

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
pub(crate) struct Outbound<'a> {
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
    /// A read failure met while reading ahead without waiting ([`Inbound::read_ready`]),
    /// reported once the chunks read before it are handed out.
    failed: Option<GatewayError>,
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
    /// Pingora's transport connector (TCP, TLS and the connection pool): every upstream peer
    /// speaks HTTP/1.1 (no ALPN is offered). The exchange takes its streams and writes the
    /// request itself (see [`write_request`]), then hands the stream to Pingora's HTTP/1
    /// client session to read the response; it can be asked for a pooled connection alone
    /// (see `try_once`).
    transport: TransportConnector,
    dns: DnsCache,
    timeouts: UpstreamSettings,
    /// Set once, when a graceful shutdown's grace period is over: the streams still being
    /// relayed end with an error event (`shutdown.rs`). Here because the dispatcher, like the
    /// streams it serves, outlives a reload of the settings.
    stream_cut: tokio::sync::watch::Sender<bool>,
}

impl Dispatcher {
    pub(crate) fn new(timeouts: &UpstreamSettings) -> Self {
        Dispatcher {
            transport: TransportConnector::new(Some(ConnectorOptions::new(timeouts.pool_size))),
            dns: DnsCache::new(
                Duration::from_secs(timeouts.dns_ttl_seconds),
                Duration::from_millis(timeouts.dns_timeout_ms),
            ),
            timeouts: timeouts.clone(),
            stream_cut: tokio::sync::watch::Sender::new(false),
        }
    }

    /// What a stream's relay watches to learn that it must end now (no allocation: a
    /// reference to the one shared channel).
    pub(crate) fn stream_cut(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stream_cut.subscribe()
    }

    /// Ends every stream being relayed, now and from now on (the drain's deadline).
    pub(crate) fn cut_streams(&self) {
        self.stream_cut.send_replace(true);
    }

    /// Resolves the upstream host and applies the public-only rule.
    pub(crate) async fn resolve(
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
    pub(crate) async fn send(&self, out: &Outbound<'_>) -> Result<Inbound, GatewayError> {
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
                            failed: None,
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
        // A pooled connection first, through a small future; only without one the connect
        // future (TCP, TLS, their timeouts: kilobytes) runs, boxed. Awaited inline, it made
        // every future above it that much larger, and each request copies two of them
        // whole when they are boxed (Pingora's `request_filter` and the walk).
        let (stream, reused) = match self.transport.reused_stream(peer).await {
            Some(stream) => (stream, true),
            None => (
                Box::pin(self.transport.new_stream(peer))
                    .await
                    .map_err(Failure::Connect)?,
                false,
            ),
        };
        let failed = |mut e: Box<Error>| {
            e.retry.decide_reuse(reused);
            if reused && e.retry() {
                Failure::Stale(e)
            } else {
                Failure::Exchange(e)
            }
        };
        let header = build_request_header(out).map_err(Failure::Exchange)?;
        let write_timeout = Duration::from_millis(self.timeouts.write_timeout_ms);
        let session = if out.method == "HEAD" {
            // Pingora's session must know a HEAD request to read its answer as bodiless: it
            // writes this one (a HEAD has no body to coalesce anyway).
            let mut session = Http1Session::new_with_options(stream, peer);
            session.write_timeout = Some(write_timeout);
            session
                .write_request_header(Box::new(header))
                .await
                .map_err(failed)?;
            session.finish_body().await.map_err(failed)?;
            session
        } else {
            let mut stream = stream;
            write_request(&mut stream, &header, &out.body, write_timeout)
                .await
                .map_err(failed)?;
            Http1Session::new_with_options(stream, peer)
        };
        let mut session = HttpSession::H1(session);
        session.set_read_timeout(Some(Duration::from_millis(self.timeouts.read_timeout_ms)));
        session.read_response_header().await.map_err(failed)?;
        Ok(session)
    }

    /// Disposes of a response the gateway will not relay (a failure before a retry or fallback):
    /// a small body is read so the connection can be pooled, anything else is closed.
    pub(crate) async fn discard(&self, mut inbound: Inbound) {
        const DRAIN_LIMIT: usize = 64 * 1024;
        let drained =
            tokio::time::timeout(Duration::from_secs(1), inbound.read_to_end(DRAIN_LIMIT)).await;
        match drained {
            Ok(Ok(_)) => self.finish(inbound),
            _ => inbound.abort(),
        }
    }

    /// Pools the connection of a response read to its end, and closes any other.
    pub(crate) fn finish(&self, mut inbound: Inbound) {
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
    /// open stream holds (see docs/performance.md).
    pub(crate) fn release(&self, inbound: Inbound) {
        let idle = Some(Duration::from_millis(self.timeouts.idle_timeout_ms));
        // `try_once` only makes HTTP/1 sessions; anything else would just be closed.
        if let HttpSession::H1(mut session) = inbound.session {
            session.respect_keepalive();
            // `reuse` only waits when it closes the connection (see above).
            if let Some(Some(stream)) = session.reuse().now_or_never() {
                self.transport
                    .release_stream(stream, inbound.peer.reuse_hash(), idle);
            }
        }
    }
}

/// Writes the request's header and body with one write and one flush: one system call (a
/// `writev` when the request is larger than the stream's write buffer, the body not copied),
/// one TCP segment for a small request, one wake-up of the provider. Pingora's session writes
/// and flushes the header, then the body: two of each, as its proxy path does (the bare
/// Pingora floor of `make bench`); nginx sends a request in one `writev`. The bytes are those
/// Pingora would write: its own serialisation of the header, then the body.
///
/// The session that then reads the answer was not told the request (Pingora records it only
/// when it writes the header itself), which changes nothing for a request other than HEAD:
/// the request decides keep-alive only through a `Connection` header, a hop-by-hop header
/// never sent upstream, and upgrades are not proxied here.
async fn write_request<W: AsyncWrite + Unpin>(
    stream: &mut W,
    header: &RequestHeader,
    body: &Bytes,
    timeout: Duration,
) -> pingora::Result<()> {
    use bytes::Buf;
    let head = http_req_header_to_wire(header).ok_or_else(|| {
        Error::explain(
            ErrorType::InvalidHTTPHeader,
            "request-line contains forbidden delimiter bytes or unsupported HTTP version",
        )
    })?;
    let mut request = head.chain(body.clone());
    let write = async {
        stream.write_all_buf(&mut request).await?;
        stream.flush().await
    };
    match pingora::time::timeout(timeout, write).await {
        Ok(written) => written.or_err(ErrorType::WriteError, "while writing the request"),
        Err(_) => Error::e_explain(
            ErrorType::WriteTimedout,
            "while writing the request (timeout)",
        ),
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
pub(crate) fn classify(provider: &str, e: &Error) -> GatewayError {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::io::IoSlice;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A writer that records each write call's bytes and the flushes, taking at most `max`
    /// bytes per call.
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        max: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let mut taken = Vec::new();
            for b in bufs {
                let n = b.len().min(self.max - taken.len());
                taken.extend_from_slice(&b[..n]);
            }
            let n = taken.len();
            self.writes.push(taken);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn outbound<'a>(
        upstream: &'a Upstream,
        method: &'a str,
        headers: &'a [(HeaderName, HeaderValue)],
        body: &'static str,
    ) -> Outbound<'a> {
        Outbound {
            provider: "openai",
            upstream,
            public_only: false,
            method,
            path: "/v1/chat/completions",
            headers,
            body: Bytes::from_static(body.as_bytes()),
            may_resend: &|| false,
        }
    }

    const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

    /// The header and the body go out in one write call and one flush, as the bytes Pingora's
    /// session would have written in two of each.
    #[tokio::test]
    async fn the_request_is_one_write() {
        let upstream = Upstream::parse("http://127.0.0.1:9/v1").unwrap();
        let headers = [(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-test"),
        )];
        let out = outbound(&upstream, "POST", &headers, BODY);
        let header = build_request_header(&out).unwrap();
        let mut w = Recorder {
            writes: vec![],
            flushes: 0,
            max: usize::MAX,
        };
        write_request(&mut w, &header, &out.body, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(w.writes.len(), 1);
        assert_eq!(w.flushes, 1);
        let mut expected = http_req_header_to_wire(&header).unwrap().to_vec();
        expected.extend_from_slice(BODY.as_bytes());
        assert_eq!(w.writes[0], expected);
        let text = String::from_utf8(w.writes[0].clone()).unwrap();
        assert!(
            text.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("Content-Length: {}\r\n", BODY.len())),
            "{text}"
        );
        assert!(text.ends_with(&format!("\r\n\r\n{BODY}")), "{text}");
    }

    /// A writer that takes a few bytes at a time still gets every byte, in order.
    #[tokio::test]
    async fn short_writes_are_continued() {
        let upstream = Upstream::parse("http://127.0.0.1:9/v1").unwrap();
        let out = outbound(&upstream, "POST", &[], BODY);
        let header = build_request_header(&out).unwrap();
        let mut w = Recorder {
            writes: vec![],
            flushes: 0,
            max: 7,
        };
        write_request(&mut w, &header, &out.body, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(w.writes.len() > 10);
        let mut expected = http_req_header_to_wire(&header).unwrap().to_vec();
        expected.extend_from_slice(BODY.as_bytes());
        assert_eq!(w.writes.concat(), expected);
    }

    /// Reads one request (header, then `Content-Length` bytes of body) from the socket.
    async fn read_request(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> String {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |v| v.parse::<usize>().unwrap());
                if buf.len() >= end + 4 + len {
                    let req = String::from_utf8_lossy(&buf[..end + 4 + len]).to_string();
                    buf.drain(..end + 4 + len);
                    return req;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed mid-request");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Over a real connection: a POST written by the gateway and a HEAD written by Pingora's
    /// session share one pooled connection, the HEAD's answer is read as bodiless despite its
    /// `Content-Length`, and the POST's body arrives whole.
    #[tokio::test]
    async fn requests_share_a_pooled_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut seen = Vec::new();
            for answer in [
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                "HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nyes",
            ] {
                seen.push(read_request(&mut sock, &mut buf).await);
                sock.write_all(answer.as_bytes()).await.unwrap();
            }
            seen
        });
        let upstream = Upstream::parse(&format!("http://127.0.0.1:{port}/v1")).unwrap();
        let dispatcher = Dispatcher::new(&UpstreamSettings::default());
        for (method, body, status, answer) in [
            ("POST", BODY, 200, "ok"),
            ("HEAD", "", 200, ""),
            ("POST", "{}", 201, "yes"),
        ] {
            let out = outbound(&upstream, method, &[], body);
            let mut inbound = tokio::time::timeout(Duration::from_secs(5), dispatcher.send(&out))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(inbound.status(), status);
            let read = tokio::time::timeout(Duration::from_secs(5), inbound.read_to_end(1024))
                .await
                .expect("a HEAD answer is bodiless")
                .unwrap();
            assert_eq!(read, answer.as_bytes());
            dispatcher.finish(inbound);
        }
        let seen = server.await.unwrap();
        assert!(seen[0].starts_with("POST /v1/chat/completions HTTP/1.1\r\n"));
        assert!(seen[0].ends_with(BODY));
        assert!(seen[1].starts_with("HEAD /v1/chat/completions HTTP/1.1\r\n"));
        assert!(seen[2].ends_with("\r\n\r\n{}"));
    }
}
