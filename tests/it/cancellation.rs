//! Deadlines and cancellation: a client that leaves stops the work
//! done for it, a whole request has a deadline across retries and fallbacks, and a client that
//! stops reading a stream is cut off.

use crate::support::*;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn retrying(attempts: u32) -> String {
    json!({"provider": "openai", "api_key": "sk",
           "retry": {"attempts": attempts, "on_status_codes": [500]}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_during_backoff_stops_the_retries() {
    let (a, _b, _c, gw) = three_mocks(|s| s.retry.backoff_base_ms = 300).await;
    a.always(Reply::json(500, json!({"error": {"message": "down"}})));
    let gone = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-config", retrying(5))
        .json(&user_chat("m", "hi"))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    // The request is recorded once its walk has ended (dropped with the client): from then on
    // no retry can go out. Unended, retries would have gone out at ~300 ms and ~900 ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(&gw).await;
        if sample(
            &text,
            "portgate_requests_total",
            &[("status_class", "none")],
        )
        .is_some()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the request was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        a.request_count(),
        1,
        "no upstream send after the client left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_request_has_a_deadline() {
    let (a, _b, _c, gw) = three_mocks(|s| {
        s.retry.backoff_base_ms = 300;
        s.upstream.request_deadline_ms = 700;
    })
    .await;
    // A retry whose wait would end past the deadline is not made: the last answer is.
    a.always(Reply::json(500, json!({"error": {"message": "down"}})));
    let (status, h, _) = with_config(&gw, &retrying(5), user_chat("m", "hi")).await;
    assert_eq!(status, 500);
    assert_eq!(header(&h, "x-portkey-retry-attempt-count"), "-1");
    assert_eq!(
        a.request_count(),
        2,
        "first call at 0 ms, retry at 300 ms, next at 900 ms > 700"
    );
    // An answer that does not come in time is a 504, whatever the per-read timeout says.
    a.always(Reply::Slow {
        delay: Duration::from_secs(3),
        then: Box::new(Reply::chat("m", "late")),
    });
    let started = std::time::Instant::now();
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-provider", "openai")],
        user_chat("m", "hi"),
    )
    .await;
    assert_eq!(status, 504, "{v}");
    assert_eq!(v["error"]["type"], "timeout_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("deadline"));
    assert!(started.elapsed() < Duration::from_millis(2500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_stream_is_cut_off() {
    let mock = MockProvider::start().await;
    // Far more than the socket buffers between client, gateway and mock can hold.
    let chunk = format!(
        "data: {}",
        json!({"choices": [{"delta": {"content": "x".repeat(16 * 1024)}}]})
    );
    mock.always(Reply::Sse {
        events: vec![chunk; 4000],
        delay: Duration::ZERO,
    });
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    s.upstream.client_write_timeout_ms = 300;
    let gw = TestGateway::start(s);
    let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = json!({"model": "m", "stream": true, "messages": []}).to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-portkey-provider: openai\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{request}",
        request.len()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let mut first = [0u8; 64];
    let n = client.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    // Stop reading. The gateway's writes block, time out, and the upstream stream is dropped.
    let mut waited = Duration::ZERO;
    while mock.aborted_streams().is_empty() && waited < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    let aborted = mock.aborted_streams();
    assert_eq!(aborted.len(), 1, "the upstream stream was closed");
    assert!(aborted[0] < 4000, "before the provider finished sending");
    drop(client);
}
