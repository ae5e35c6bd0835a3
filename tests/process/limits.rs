#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::string_slice
)]
//! Bounded memory per request and per process: config size caps,
//! shared inheritance, the process-wide budget of buffered request bytes, and SSE events over
//! the size limit.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn body() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

/// A config of 1 + 15 × (1 + 15) = 241 nodes under a ~50 KB `override_params`, distinct by `n`.
fn wide_config(n: usize) -> String {
    let mut big = serde_json::Map::new();
    for i in 0..500 {
        big.insert(format!("k{i}"), json!("x".repeat(90)));
    }
    big.insert("n".into(), json!(n));
    let leaf = json!({"provider": "openai", "api_key": "k"});
    let group = json!({"strategy": {"mode": "fallback"}, "targets": vec![leaf; 15]});
    json!({"strategy": {"mode": "fallback"}, "override_params": big, "targets": vec![group; 15]})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_configs_share_what_they_inherit() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    // Warm up allocator arenas and the connection pool before measuring.
    let (status, _, _) = with_config(&gw, &wide_config(0), body()).await;
    assert_eq!(status, 200);
    let before = rss_kib();
    for n in 1..=30 {
        let config = wide_config(n);
        assert!(config.len() < 64 * 1024);
        let (status, _, v) = with_config(&gw, &config, body()).await;
        assert_eq!(status, 200, "{v}");
    }
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    // Cloned into each of 225 leaves, every config would cost tens of MiB (GiBs in all).
    assert!(
        grown_mib < 48,
        "30 wide configs grew the process by {grown_mib} MiB"
    );
    assert_eq!(
        mock.requests()[1].json()["n"],
        1,
        "the overrides still apply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_configs_are_refused_before_parsing() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let huge = json!({"provider": "openai", "api_key": "k",
                      "override_params": {"pad": "x".repeat(70 * 1024)}})
    .to_string();
    let (status, _, v) = with_config(&gw, &huge, body()).await;
    assert_eq!(status, 400);
    assert_eq!(v["message"], "Invalid config passed");
    assert!(v["errors"][0].as_str().unwrap().contains("at most 65536"));
    // 17 × 17 leaves: small in bytes, too many nodes.
    let leaf = json!({"provider": "openai", "api_key": "k"});
    let group = json!({"strategy": {"mode": "fallback"}, "targets": vec![leaf; 17]});
    let many = json!({"strategy": {"mode": "fallback"}, "targets": vec![group; 17]}).to_string();
    let (status, _, v) = with_config(&gw, &many, body()).await;
    assert_eq!(status, 400);
    assert!(v["errors"][0].as_str().unwrap().contains("256"), "{v}");
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_bytes_have_a_process_wide_budget() {
    let mock = MockProvider::start().await;
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    s.limits.max_request_body_bytes = 6000;
    s.limits.max_buffered_bytes = 10_000;
    let gw = TestGateway::start(s);
    let payload =
        json!({"model": "m", "messages": [{"role": "user", "content": "a".repeat(5800)}]})
            .to_string();
    assert!(payload.len() <= 6000 && payload.len() > 5000);
    // A slow client: headers and half of its declared body, then it waits.
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-portkey-provider: openai\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        payload.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&payload.as_bytes()[..100]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Its reservation plus another body would pass the budget: 503, try again shortly.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .header("content-type", "application/json")
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "overloaded");
    // The slow request completes normally, and its bytes are returned to the budget.
    slow.write_all(&payload.as_bytes()[100..]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = slow.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    drop(slow);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-provider", "openai")],
        serde_json::from_str(&payload).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_event_over_the_limit_ends_the_stream_with_an_error_event() {
    let mock = MockProvider::start().await;
    let mut events = chat_events("m", &["Hello"]);
    // One event of 5 MiB (over the 4 MiB limit), then more that must not arrive.
    let huge = format!("data: {{\"pad\":\"{}\"}}", "x".repeat(5 * 1024 * 1024));
    events.insert(1, huge);
    events.insert(2, events[0].clone());
    mock.always(Reply::Sse {
        events,
        delay: Duration::ZERO,
    });
    let gw = gateway_for(&mock);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .json(&json!({"model": "m", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The connection is closed without a clean end after the error event: read what came.
    let mut resp = resp;
    let mut got = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        got.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("Hello"));
    let tail = &text[text.len().saturating_sub(400)..];
    assert!(tail.contains("event: error"), "{tail}");
    assert!(tail.contains("larger than 4194304 bytes"), "{tail}");
    assert!(!text.trim_end().ends_with("[DONE]"));
}
