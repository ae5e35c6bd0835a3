//! Keep-alive connections are never dropped between requests: many clients,
//! each on one raw HTTP/1.1 connection, send requests back to back the moment the previous
//! response is complete. A client that sends its next request while the gateway is still
//! finishing the previous one must get its answer, not a closed connection.
//!
//! The requests are written by hand on a `TcpStream` so that no client pool can hide a close
//! by silently reconnecting.

use crate::support::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: usize = 16;
const REQUESTS_PER_CLIENT: usize = 300;

/// One parsed response: status, whether it said `Connection: close`, body.
struct Response {
    status: u16,
    close: bool,
    body: Vec<u8>,
}

/// Why a request got no complete response.
#[derive(Debug)]
#[allow(dead_code)] // the texts are read through `Debug` in the failure report
enum Failure {
    /// The connection ended (EOF or reset) before a complete response.
    Closed(String),
    /// The response could not be parsed or its body was incomplete.
    Garbled(String),
}

/// Reads one HTTP/1.1 response (Content-Length or chunked body) from `stream`; `buf` carries
/// bytes read past the end of the previous response.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Response, Failure> {
    let (status, close, head_len, length, chunked) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let find = |name: &str| {
                    resp.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
                };
                let length = find("content-length").and_then(|v| v.trim().parse::<usize>().ok());
                let chunked = find("transfer-encoding").is_some_and(|v| v.contains("chunked"));
                let close = find("connection").is_some_and(|v| v.contains("close"));
                break (resp.code.unwrap_or(0), close, n, length, chunked);
            }
            Ok(httparse::Status::Partial) => fill(stream, buf).await?,
            Err(e) => return Err(Failure::Garbled(format!("bad response head: {e}"))),
        }
    };
    buf.drain(..head_len);
    let body = if let Some(len) = length {
        while buf.len() < len {
            fill(stream, buf).await?;
        }
        buf.drain(..len).collect()
    } else if chunked {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                fill(stream, buf).await?;
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| Failure::Garbled(format!("bad chunk size {size_text:?}")))?;
            while buf.len() < line_end + 2 + size + 2 {
                fill(stream, buf).await?;
            }
            body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        return Err(Failure::Garbled("response without a length".into()));
    };
    Ok(Response {
        status,
        close,
        body,
    })
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), Failure> {
    let mut chunk = [0u8; 8192];
    match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk)).await {
        Ok(Ok(0)) => Err(Failure::Closed("EOF before a complete response".into())),
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Ok(Err(e)) => Err(Failure::Closed(format!("read error: {e}"))),
        Err(_) => Err(Failure::Garbled("no response within 20 s".into())),
    }
}

/// One client: one connection, `n` requests one after another. Returns the failures; after a
/// failure it reconnects so the count says how many requests were lost in total.
async fn client_loop(gw: std::net::SocketAddr, n: usize, id: usize, chat: bool) -> Vec<String> {
    let body = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"client {id}"}}]}}"#
    );
    let request = if chat {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\nx-portkey-provider: openai\r\nauthorization: Bearer sk-test\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    } else {
        // A passthrough route, on Pingora's own proxy path.
        "GET /v1/models HTTP/1.1\r\nhost: gateway\r\nx-portkey-provider: openai\r\nauthorization: Bearer sk-test\r\n\r\n".to_string()
    };
    let mut failures = Vec::new();
    let mut stream = TcpStream::connect(gw).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    for i in 0..n {
        let outcome = match stream.write_all(request.as_bytes()).await {
            Err(e) => Err(Failure::Closed(format!("write error: {e}"))),
            Ok(()) => read_response(&mut stream, &mut buf).await,
        };
        let reconnect = match outcome {
            Ok(r) if r.status == 200 && !r.close => {
                let v: serde_json::Value = serde_json::from_slice(&r.body)
                    .unwrap_or_else(|e| panic!("client {id} request {i}: body not JSON: {e}"));
                assert_eq!(v["choices"][0]["message"]["content"], "hello from mock");
                false
            }
            Ok(r) => {
                failures.push(format!(
                    "client {id} request {i}: status {} close {}",
                    r.status, r.close
                ));
                r.close
            }
            Err(f) => {
                failures.push(format!("client {id} request {i}: {f:?}"));
                true
            }
        };
        if reconnect {
            stream = TcpStream::connect(gw).await.unwrap();
            stream.set_nodelay(true).unwrap();
            buf.clear();
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_requests_on_kept_alive_connections_all_get_answers() {
    back_to_back(true, REQUESTS_PER_CLIENT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_passthrough_requests_all_get_answers() {
    back_to_back(false, REQUESTS_PER_CLIENT / 2).await;
}

async fn back_to_back(chat: bool, per_client: usize) {
    let mock = MockProvider::start().await;
    let mut s = test_settings();
    s.threads = 2;
    route_to(&mut s, &mock, &["openai"]);
    let gw = TestGateway::start(s);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client_loop(gw.addr, per_client, id, chat)))
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    let total = CLIENTS * per_client;
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed; first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(mock.request_count(), total);
    let metrics = scrape(&gw).await;
    assert_eq!(
        sample(
            &metrics,
            "portgate_downstream_closed_without_response_total",
            &[]
        ),
        Some(0.0),
        "no connection closed without a response"
    );
}

/// A proxy-path failure closes the connection, and the error response says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_before_a_close_says_connection_close() {
    let mut s = test_settings();
    s.providers.insert(
        "openai".into(),
        portgate::settings::ProviderRow {
            base_url: format!("http://127.0.0.1:{}/v1", free_port()),
            auth_header: "authorization".into(),
            stream_usage: true,
        },
    );
    let gw = TestGateway::start(s);
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(
            b"GET /v1/models HTTP/1.1\r\nhost: gateway\r\nx-portkey-provider: openai\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut stream, &mut buf).await.unwrap();
    assert_eq!(r.status, 502);
    assert!(r.close, "the 502 announces the close");
    let mut rest = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the connection is closed after the 502");
}

/// A client that leaves in the middle of its request body gets no answer, and that close
/// without a response is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_without_a_response_is_counted() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let before = sample(
        &scrape(&gw).await,
        "portgate_downstream_closed_without_response_total",
        &[],
    );
    assert_eq!(before, Some(0.0));
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nx-portkey-provider: openai\r\ncontent-length: 1000\r\n\r\n{\"model\":",
        )
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "no answer to a client that left: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let after = sample(
        &scrape(&gw).await,
        "portgate_downstream_closed_without_response_total",
        &[],
    );
    assert_eq!(after, Some(1.0));
    assert_eq!(mock.request_count(), 0);
}

/// A body over the cap is refused with 413 and the connection closed (its unread rest is not
/// drained); the 413 says `Connection: close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_says_connection_close() {
    let mock = MockProvider::start().await;
    let mut s = test_settings();
    s.limits.max_request_body_bytes = 4096;
    route_to(&mut s, &mock, &["openai"]);
    let gw = TestGateway::start(s);
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nx-portkey-provider: openai\r\ncontent-length: 100000\r\n\r\n{")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut stream, &mut buf).await.unwrap();
    assert_eq!(r.status, 413);
    assert!(r.close, "the 413 announces the close");
}

/// A client that pipelines (sends its next request before reading the answer, RFC 9112
/// §9.3.2) gets every answer, in order, on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let body = r#"{"model":"m","messages":[]}"#;
    let one = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nx-portkey-provider: openai\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(one.repeat(3).as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    for i in 0..3 {
        let r = read_response(&mut stream, &mut buf)
            .await
            .unwrap_or_else(|f| panic!("response {i}: {f:?}"));
        assert_eq!(r.status, 200, "response {i}");
        assert!(!r.close, "response {i}");
    }
    assert_eq!(mock.request_count(), 3);
}
