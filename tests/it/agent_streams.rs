//! Translated agent streams are relayed as the provider's events arrive: a Responses stream
//! made from Anthropic's events and a Messages stream made from OpenAI chat chunks each show
//! their first content event long before the provider has sent its last one.

use crate::support::*;
use futures_util::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

/// Between two upstream events.
const GAP: Duration = Duration::from_millis(150);

/// Reads an SSE body and notes when each event named `content` and the `last` event arrived.
async fn arrivals(resp: reqwest::Response, content: &str, last: &str) -> (Duration, Duration) {
    let start = Instant::now();
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let (mut first_content, mut end) = (None, None);
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        if first_content.is_none() && text.contains(&format!("event: {content}\n")) {
            first_content = Some(start.elapsed());
        }
        if end.is_none() && text.contains(&format!("event: {last}\n")) {
            end = Some(start.elapsed());
        }
    }
    (
        first_content.expect("a content event"),
        end.expect("the last event"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_responses_stream_is_not_buffered() {
    let mock = MockProvider::start().await;
    let ev = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}");
    let mut events = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    )];
    events.push(ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    for word in ["one ", "two ", "three ", "four"] {
        events.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}),
        ));
    }
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}}),
    ));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    mock.always(Reply::Sse { events, delay: GAP });
    let gw = TestGateway::start(test_settings());
    let resp = client()
        .post(gw.url("/v1/responses"))
        .header("x-portkey-provider", "anthropic")
        .header("x-portkey-custom-host", mock.base_url())
        .header("authorization", "Bearer sk-ant-test")
        .json(&json!({"model": "claude", "input": "count", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (first, end) = arrivals(resp, "response.output_text.delta", "response.completed").await;
    // Six more upstream events (150 ms apart) follow the first text delta.
    assert!(
        end - first >= GAP * 5,
        "first delta {first:?}, completed {end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_messages_stream_is_not_buffered() {
    let mock = MockProvider::start().await;
    let mut events = chat_events("gpt-4o", &["one ", "two ", "three ", "four"]);
    let done = events.pop().unwrap_or_default();
    events.push(format!(
        "data: {}",
        json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    ));
    events.push(done);
    mock.always(Reply::Sse { events, delay: GAP });
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    let gw = TestGateway::start(s);
    let resp = client()
        .post(gw.url("/v1/messages"))
        .header("x-portkey-provider", "openai")
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "gpt-4o", "max_tokens": 64, "stream": true,
                      "messages": [{"role": "user", "content": "count"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (first, end) = arrivals(resp, "content_block_delta", "message_stop").await;
    // Four more upstream events (150 ms apart) follow the first text chunk.
    assert!(
        end - first >= GAP * 3,
        "first delta {first:?}, stop {end:?}"
    );
}
