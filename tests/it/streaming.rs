#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::string_slice
)]
//! Server-sent events: relayed event by event as they arrive, framed correctly, the upstream
//! dropped when the client leaves, and an upstream failure mid-stream made visible.

use crate::support::*;
use futures_util::StreamExt;
use std::time::{Duration, Instant};

fn stream_request(gw: &TestGateway) -> reqwest::RequestBuilder {
    client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .header("accept", "text/event-stream")
        .body(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"count"}]}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_incrementally_and_intact() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let events = chat_events("m", &["one", "two", "three", "four"]);
    mock.script([Reply::Sse {
        events: events.clone(),
        delay: Duration::from_millis(150),
    }]);
    let start = Instant::now();
    let resp = stream_request(&gw).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(resp.headers()["x-portkey-provider"], "openai");
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let mut arrivals = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        let s = String::from_utf8(chunk.to_vec()).unwrap();
        // Record when each complete event arrived.
        for _ in 0..s.matches("\n\n").count() {
            arrivals.push(start.elapsed());
        }
        text.push_str(&s);
    }
    let expected: String = events.iter().map(|e| format!("{e}\n\n")).collect();
    assert_eq!(text, expected, "events are relayed unchanged");
    assert_eq!(arrivals.len(), 5);
    // The first event reached the client long before the last was even produced
    // (events are 150 ms apart upstream): nothing was buffered.
    assert!(
        arrivals[4] - arrivals[0] >= Duration::from_millis(450),
        "arrivals {arrivals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_drops_the_upstream_stream() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    mock.script([Reply::Sse {
        events: chat_events("m", &words),
        delay: Duration::from_millis(100),
    }]);
    let resp = stream_request(&gw).send().await.unwrap();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("w0"));
    drop(stream);
    // The mock notices when a write fails; 40 events would take 4 s if nobody stopped it.
    let deadline = Instant::now() + Duration::from_secs(3);
    while mock.aborted_streams().is_empty() {
        assert!(Instant::now() < deadline, "upstream stream was not dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written = mock.aborted_streams()[0];
    assert!(written < 30, "upstream stopped after {written} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failure_mid_stream_ends_with_an_error_event() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    mock.script([Reply::SseThenReset {
        events: chat_events("m", &["partial"])[..1].to_vec(),
        delay: Duration::from_millis(10),
    }]);
    let resp = stream_request(&gw).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let mut ended_with_error = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => text.push_str(&String::from_utf8_lossy(&c)),
            Err(_) => {
                ended_with_error = true;
                break;
            }
        }
    }
    assert!(text.contains("partial"), "{text}");
    assert!(text.contains("event: error"), "error event sent: {text}");
    assert!(!text.contains("[DONE]"));
    assert!(ended_with_error, "the stream must not end cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_json_body_fails_the_attempt_not_the_response() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    let cut = || Reply::CutBody {
        declared: 500,
        sent: r#"{"id":"chatcmpl-1","choices":"#.into(),
    };
    a.script([cut()]);
    // Read whole within the attempt: a clean 502, never a 200 with a cut body.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .body(r#"{"model":"m","messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "upstream_error");
    // And a fallback moves on from it.
    a.script([cut()]);
    let config = serde_json::json!({"strategy": {"mode": "fallback"}, "targets": [
        {"provider": "openai", "api_key": "k"}, {"provider": "groq", "api_key": "k"}]})
    .to_string();
    let (status, h, _) = with_config(
        &gw,
        &config,
        serde_json::json!({"model": "m", "messages": []}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portkey-provider"), "groq");
    assert_eq!(b.request_count(), 1);
}

/// Sends a streamed chat request on a raw connection (`connection: close`) to the gateway,
/// whose mock answers with `events` in one burst and the end of the body `end_after` later;
/// returns the response head and its raw body.
async fn burst_through_gateway(events: &[String], end_after: Duration) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    mock.script([Reply::SseBurst {
        events: events.to_vec(),
        end_after,
    }]);
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"count"}]}"#;
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nx-portkey-provider: openai\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), rest.to_string())
}

fn forty_events() -> Vec<String> {
    let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    chat_events("m", &words)
}

/// Events that arrive together (a burst in one read) leave together: one downstream write
/// instead of one per event, each of which costs a syscall and a chunk header. The body's end
/// comes later, so the answer goes out chunked as it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_goes_out_in_few_writes_and_intact() {
    let events = forty_events();
    let (head, mut rest) = burst_through_gateway(&events, Duration::from_secs(1)).await;
    let rest_all = rest.clone();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    // Decode the chunked framing, counting the chunks.
    let mut frames = 0;
    let mut decoded = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            break;
        }
        frames += 1;
        decoded.push_str(&after[..size]);
        rest = after[size + 2..].to_string();
    }
    let expected: String = events.iter().map(|e| format!("{e}\n\n")).collect();
    assert_eq!(
        decoded, expected,
        "events are relayed unchanged: {rest_all}"
    );
    assert!(
        frames * 4 <= events.len(),
        "{} events went out in {frames} writes",
        events.len()
    );
}

/// A stream already read to its end when the response header is due (a short answer that
/// came in one burst) goes out with its `Content-Length`: header and body in one write, no
/// chunk framing, the events unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_burst_goes_out_with_its_length() {
    let events = forty_events();
    let (head, body) = burst_through_gateway(&events, Duration::ZERO).await;
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    let expected: String = events.iter().map(|e| format!("{e}\n\n")).collect();
    assert!(
        head.contains(&format!("content-length: {}", expected.len())),
        "{head}"
    );
    assert_eq!(body, expected, "events are relayed unchanged");
}
