//! Cohere through the gateway: the v2 request the mock receives, and the OpenAI-format answer
//! the client gets, whole, streamed (with and without a usage chunk), for embeddings, and for
//! errors. The mock stands in for `https://api.cohere.com` through `x-portkey-custom-host`.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/cohere/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// The mock's origin, as `https://api.cohere.com` would be.
fn origin(mock: &MockProvider) -> String {
    mock.base_url().trim_end_matches("/v1").to_string()
}

fn sse_events(name: &str) -> Vec<String> {
    fixture(name)
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(str::to_string)
        .collect()
}

async fn send(gw: &TestGateway, mock: &MockProvider, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .header("x-portkey-provider", "cohere")
        .header("authorization", "Bearer co-key")
        .header("x-portkey-custom-host", origin(mock))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The client's stream as JSON values (`[DONE]` as a string), `created` removed.
fn client_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let d = e.strip_prefix("data: ").unwrap();
            let mut v = serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string()));
            if let Some(o) = v.as_object_mut() {
                assert!(o.remove("created").unwrap().is_u64());
            }
            v
        })
        .collect()
}

fn without_created(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("created");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_is_translated_both_ways() {
    let mock = MockProvider::start().await;
    let answer = json_fixture("chat_response.json");
    mock.script([Reply::json(200, answer["upstream"].clone())]);
    let gw = TestGateway::start(test_settings());
    let req = json_fixture("chat_request.json");
    let resp = send(
        &gw,
        &mock,
        "/v1/chat/completions",
        req["client_body"].clone(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-portkey-provider"), "cohere");
    assert!(header(resp.headers(), "content-type").starts_with("application/json"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        without_created(v),
        without_created(answer["expected"].clone())
    );
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v2/chat");
    assert_eq!(r.header("authorization"), Some("Bearer co-key"));
    assert_eq!(r.json(), req["upstream"]["body"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_come_back_as_openai_tool_calls() {
    let mock = MockProvider::start().await;
    let answer = json_fixture("chat_tool_response.json");
    mock.script([Reply::json(200, answer["upstream"].clone())]);
    let gw = TestGateway::start(test_settings());
    let body = json!({"model": "command-r-plus-08-2024",
        "messages": [{"role": "user", "content": "weather in Paris and Lyon?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]});
    let resp = send(&gw, &mock, "/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        without_created(v),
        without_created(answer["expected"].clone())
    );
    assert_eq!(
        mock.requests()[0].json()["tools"],
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_translated_with_a_usage_chunk_only_when_asked() {
    let mock = MockProvider::start().await;
    let gw = TestGateway::start(test_settings());
    // The client asks for usage: the text stream with its usage chunk.
    mock.script([Reply::Sse {
        events: sse_events("chat_stream.sse"),
        delay: Duration::from_millis(5),
    }]);
    let body = json!({"model": "command-r-plus-08-2024", "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]});
    let resp = send(&gw, &mock, "/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    let expected: Vec<Value> = json_fixture("chat_stream.expected.json")["events"]
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .map(without_created)
        .collect();
    assert_eq!(client_events(&text), expected, "{text}");
    let sent = mock.requests()[0].json();
    assert_eq!(sent["stream"], true);
    assert!(sent.get("stream_options").is_none());

    // The client does not: the tool stream, no usage chunk.
    mock.script([Reply::Sse {
        events: sse_events("chat_tool_stream.sse"),
        delay: Duration::ZERO,
    }]);
    let body = json!({"model": "command-r-plus-08-2024", "stream": true,
        "messages": [{"role": "user", "content": "weather?"}]});
    let resp = send(&gw, &mock, "/v1/chat/completions", body).await;
    let text = resp.text().await.unwrap();
    let expected: Vec<Value> = json_fixture("chat_tool_stream.expected.json")["events"]
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .map(without_created)
        .collect();
    assert_eq!(client_events(&text), expected, "{text}");

    // Both streams were metered from message-end, shown to the client or not.
    let m = scrape(&gw).await;
    let t = |ty| {
        sample(
            &m,
            "portgate_tokens_total",
            &[
                ("provider", "cohere"),
                ("model", "command-r-plus-08-2024"),
                ("type", ty),
            ],
        )
    };
    assert_eq!(t("input"), Some(45.0), "{m}");
    assert_eq!(t("output"), Some(23.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_go_to_v2_embed() {
    let mock = MockProvider::start().await;
    let f = json_fixture("embed.json");
    mock.script([Reply::json(200, f["upstream_response"].clone())]);
    let gw = TestGateway::start(test_settings());
    let resp = send(&gw, &mock, "/v1/embeddings", f["client_body"].clone()).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, f["expected"]);
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v2/embed");
    assert_eq!(r.json(), f["upstream_request"]["body"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_untranslatable_requests() {
    let mock = MockProvider::start().await;
    mock.script([Reply::json(
        400,
        json!({"id": "x", "message": "invalid request: model 'nope' not found"}),
    )]);
    let gw = TestGateway::start(test_settings());
    let body = json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]});
    let resp = send(&gw, &mock, "/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "cohere error: invalid request: model 'nope' not found"
    );
    assert_eq!(v["provider"], "cohere");
    // A request Cohere cannot take is refused before it is sent.
    let resp = send(
        &gw,
        &mock,
        "/v1/chat/completions",
        json!({"model": "m", "messages": [{"role": "function", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let resp = send(
        &gw,
        &mock,
        "/v1/completions",
        json!({"model": "m", "prompt": "x"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(mock.request_count(), 1);
}
