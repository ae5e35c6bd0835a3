#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::string_slice
)]
//! The fault matrix: every way a provider or a client can fail,
//! many times over and concurrently. Every request must end with exactly one well-formed answer
//! (a JSON body, or a stream that ends with `[DONE]` or an error event), nothing may hang, the
//! process must give its memory back, and no log line may hold a key.

use crate::support::*;
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "sk-FAULT-MATRIX-SECRET-0042";

/// What one request ended with.
#[derive(Debug)]
enum Ended {
    Json(u16),
    StreamDone,
    StreamError,
}

/// Sends one chat request (streamed or not) and checks the answer is well formed.
async fn one(gw: &TestGateway, provider: &str, config: Option<&str>, stream: bool) -> Ended {
    let mut req = client()
        .post(gw.url("/v1/chat/completions"))
        .timeout(Duration::from_secs(20))
        .header("authorization", format!("Bearer {SECRET}"))
        .json(&json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}));
    req = match config {
        Some(c) => req.header("x-portkey-config", c),
        None => req.header("x-portkey-provider", provider),
    };
    let mut resp = req
        .send()
        .await
        .expect("an answer, never a hang or a bare close");
    let status = resp.status().as_u16();
    let sse = header(resp.headers(), "content-type").starts_with("text/event-stream");
    let mut body = Vec::new();
    // A stream cut by the provider ends without a clean chunked end: read what came.
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body).to_string();
    if sse {
        let tail = text.trim_end();
        if tail.ends_with("data: [DONE]") {
            return Ended::StreamDone;
        }
        assert!(
            tail.contains("event: error"),
            "a stream must end visibly: {tail:?}"
        );
        return Ended::StreamError;
    }
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("a JSON body for status {status}: {text:?}"));
    assert!(
        v.get("error").is_some() || v.get("status").is_some() || v.get("choices").is_some(),
        "{v}"
    );
    Ended::Json(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_ends_with_one_well_formed_answer() {
    let log = std::env::temp_dir().join(format!("portgate-faults-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let log_path = log.display().to_string();
    let mock = MockProvider::start().await;
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    // Nothing listens on a freshly reserved port; `.invalid` never resolves.
    for (slug, url) in [
        ("groq", format!("http://127.0.0.1:{}/v1", free_port())),
        ("together-ai", "http://no-such-host.invalid/v1".to_string()),
    ] {
        s.providers.insert(
            slug.into(),
            portgate::settings::ProviderRow {
                base_url: url,
                auth_header: "authorization".into(),
                stream_usage: true,
            },
        );
    }
    s.upstream.read_timeout_ms = 400;
    s.retry.backoff_base_ms = 10;
    s.log.access_log = log_path.clone();
    s.threads = 2;
    let gw = TestGateway::start(s);
    let baseline = rss_kib();

    let retry = json!({"provider": "openai", "api_key": SECRET,
        "retry": {"attempts": 2, "use_retry_after_header": true}})
    .to_string();
    let storm = || {
        Reply::json(429, json!({"error": {"message": "slow down"}})).with_header("retry-after", "0")
    };
    let events = chat_events("m", &["a", "b", "c"]);
    let slow_body = Reply::Sse {
        events: events.clone(),
        delay: Duration::from_millis(600),
    };
    let slow_headers = Reply::Slow {
        delay: Duration::from_millis(700),
        then: Box::new(Reply::chat("m", "late")),
    };
    type Case = (&'static str, Vec<Reply>, &'static str, bool, bool);
    let cases: Vec<Case> = vec![
        (
            "429 storm with Retry-After",
            vec![storm()],
            "openai",
            true,
            false,
        ),
        (
            "500",
            vec![Reply::json(500, json!({"error": {"message": "boom"}}))],
            "openai",
            false,
            false,
        ),
        (
            "503 stream",
            vec![Reply::json(503, json!({}))],
            "openai",
            false,
            true,
        ),
        ("connection refused", vec![], "groq", false, false),
        ("DNS failure", vec![], "together-ai", false, false),
        (
            "reset before headers",
            vec![Reply::Reset],
            "openai",
            false,
            false,
        ),
        (
            "reset mid-body",
            vec![Reply::CutBody {
                declared: 500,
                sent: "{\"id\":".into(),
            }],
            "openai",
            false,
            false,
        ),
        (
            "mid-stream cut",
            vec![Reply::SseThenReset {
                events: events[..2].to_vec(),
                delay: Duration::ZERO,
            }],
            "openai",
            false,
            true,
        ),
        ("slow headers", vec![slow_headers], "openai", false, false),
        ("slow body", vec![slow_body], "openai", false, true),
        (
            "healthy stream",
            vec![Reply::Sse {
                events: events.clone(),
                delay: Duration::ZERO,
            }],
            "openai",
            false,
            true,
        ),
    ];
    for (name, replies, provider, with_retry, stream) in cases {
        let started = Instant::now();
        if let Some(r) = replies.first() {
            mock.always(r.clone());
        }
        let config = with_retry.then_some(retry.as_str());
        let ended = join_all((0..12).map(|_| one(&gw, provider, config, stream))).await;
        for e in &ended {
            match (name, e) {
                ("healthy stream", Ended::StreamDone) => {}
                ("healthy stream", other) => panic!("{name}: {other:?}"),
                (_, Ended::Json(status)) => assert!(*status >= 400, "{name}: {status}"),
                (_, Ended::StreamError) => assert!(stream, "{name}"),
                (_, Ended::StreamDone) => panic!("{name}: a failure cannot end cleanly"),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{name} took too long"
        );
    }

    // A client that leaves during backoff.
    mock.always(Reply::json(500, json!({"error": {"message": "down"}})));
    let slow_retry = json!({"provider": "openai", "api_key": SECRET,
        "retry": {"attempts": 3, "on_status_codes": [500]}})
    .to_string();
    let gone = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .timeout(Duration::from_millis(5))
        .header("x-portkey-config", &slow_retry)
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await;
    assert!(gone.is_err());

    // 10,000 malformed requests on 16 kept-alive connections: each gets one 4xx JSON answer.
    let malformed = [
        ("x-portkey-provider: openai\r\n", "{not json"),
        ("x-portkey-provider: openai\r\n", "[1,2,3]"),
        ("x-portkey-provider: nope\r\n", "{}"),
        ("x-portkey-config: {bad\r\n", "{}"),
        (
            "x-portkey-config: {\"strategy\":{\"mode\":\"x\"}}\r\n",
            "{}",
        ),
        (
            "x-portkey-metadata: {\"a\":1}\r\nx-portkey-provider: openai\r\n",
            "{}",
        ),
        (
            "x-portkey-custom-host: http://169.254.169.254\r\nx-portkey-provider: openai\r\n",
            "{}",
        ),
        ("", "{}"),
    ];
    let tasks = (0..16).map(|t| {
        let addr = gw.addr;
        async move {
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut buf = Vec::new();
            for i in 0..625 {
                let (headers, body) = malformed[(t + i) % malformed.len()];
                let req = format!(
                    "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n{headers}\
                     authorization: Bearer {SECRET}\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(req.as_bytes()).await.unwrap();
                let (status, rest) =
                    read_response(&mut conn, std::mem::take(&mut buf), headers).await;
                assert!((400..500).contains(&status), "{headers} {body}: {status}");
                buf = rest;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), join_all(tasks))
        .await
        .expect("10,000 malformed requests answered without a hang");

    // Memory comes back, and the log never saw a key.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown_mib = rss_kib().saturating_sub(baseline) / 1024;
    assert!(grown_mib < 48, "the process grew by {grown_mib} MiB");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.lines().count() >= 10_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text.lines().count() >= 10_000, "every request has its line");
    assert!(!text.contains(SECRET), "no log line holds a key");
    let _ = std::fs::remove_file(&log);
}

/// Reads one HTTP response with a `Content-Length` body from a kept-alive connection; returns
/// its status and any bytes read past it.
async fn read_response(
    conn: &mut tokio::net::TcpStream,
    mut buf: Vec<u8>,
    case: &str,
) -> (u16, Vec<u8>) {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = resp.parse(&buf) {
            let status = resp.code.unwrap();
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .expect("error answers declare their length");
            if buf.len() >= head + len {
                let body: Value = serde_json::from_slice(&buf[head..head + len]).unwrap();
                assert!(body.get("status").is_some() || body.get("error").is_some());
                return (status, buf.split_off(head + len));
            }
        }
        let mut chunk = [0u8; 8192];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed without an answer ({case:?})");
        buf.extend_from_slice(&chunk[..n]);
    }
}
