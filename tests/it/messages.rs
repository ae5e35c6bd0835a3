//! `/v1/messages` (Anthropic's Messages API) on providers that do not speak it, with the
//! Anthropic SDK's request shapes (`x-api-key`, `anthropic-version`): the provider receives a
//! chat request, the client gets an Anthropic message or event stream, errors come in
//! Anthropic's envelope, tokens are metered as on the chat route; and `count_tokens`.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn post(
    gw: &TestGateway,
    path: &str,
    provider: &str,
    host: Option<String>,
    body: Value,
) -> reqwest::Response {
    let mut req = client()
        .post(gw.url(path))
        .header("x-portkey-provider", provider)
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .json(&body);
    if let Some(h) = host {
        req = req.header("x-portkey-custom-host", h);
    }
    req.send().await.unwrap()
}

fn gateway(mock: &MockProvider) -> TestGateway {
    let mut s = test_settings();
    route_to(&mut s, mock, &["openai"]);
    TestGateway::start(s)
}

fn messages_body(stream: bool) -> Value {
    json!({"model": "gpt-4o", "max_tokens": 256, "stream": stream,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"name": "weather", "description": "Weather of a city.",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "auto"}})
}

/// Anthropic's events as (name, payload).
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_with_tools_on_an_openai_target_and_tokens_metered() {
    let mock = MockProvider::start().await;
    mock.always(Reply::json(
        200,
        json!({
        "id": "chatcmpl-7", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 7, "total_tokens": 47}}),
    ));
    let gw = gateway(&mock);
    let resp = post(&gw, "/v1/messages", "openai", None, messages_body(false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["id"], "msg_chatcmpl-7");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"][0],
        json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}})
    );
    assert_eq!(v["usage"], json!({"input_tokens": 40, "output_tokens": 7}));
    // What the provider received: an OpenAI chat request, the key from `x-api-key`.
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
    let sent = r.json();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["messages"][1],
        json!({"role": "user", "content": "Weather in Paris?"})
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");
    assert_eq!(sent["tool_choice"], "auto");
    assert_eq!(sent["max_tokens"], 256);
    // Metered as on the chat route.
    let m = scrape(&gw).await;
    let t = |ty| tokens(&m, "openai", "gpt-4o", ty);
    assert_eq!(t("input"), Some(40.0));
    assert_eq!(t("output"), Some(7.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_message_from_an_openai_target() {
    let mock = MockProvider::start().await;
    let mut ev = chat_events("gpt-4o", &["Sunny ", "and warm."]);
    let done = ev.pop().unwrap();
    ev.push(format!(
        "data: {}",
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
        "model": "gpt-4o", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    ));
    ev.push(format!(
        "data: {}",
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
        "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 4}})
    ));
    ev.push(done);
    mock.always(Reply::Sse {
        events: ev,
        delay: Duration::from_millis(5),
    });
    let gw = gateway(&mock);
    let resp = post(&gw, "/v1/messages", "openai", None, messages_body(true)).await;
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    let ev = events(&resp.text().await.unwrap());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(ev[3].1["delta"]["text"], "and warm.");
    assert_eq!(ev[5].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        ev[5].1["usage"],
        json!({"input_tokens": 21, "output_tokens": 4})
    );
    // The stream was asked for its usage.
    assert_eq!(
        mock.requests()[0].json()["stream_options"]["include_usage"],
        true
    );
    let m = scrape(&gw).await;
    let out = sample(
        &m,
        "portgate_tokens_total",
        &[("provider", "openai"), ("type", "output")],
    );
    assert_eq!(out, Some(4.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_from_gemini() {
    let mock = MockProvider::start().await;
    mock.always(Reply::json(
        200,
        json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Bonjour."}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2, "totalTokenCount": 10},
        "modelVersion": "gemini-1.5-pro"}),
    ));
    let gw = TestGateway::start(test_settings());
    let body = json!({"model": "gemini-1.5-pro", "max_tokens": 50,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi in French."}]}]});
    let resp = post(
        &gw,
        "/v1/messages",
        "google",
        Some(format!("http://{}", mock.addr)),
        body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"], json!([{"type": "text", "text": "Bonjour."}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 8);
    assert_eq!(v["usage"]["output_tokens"], 2);
    let r = &mock.requests()[0];
    assert!(
        r.path.contains("gemini-1.5-pro:generateContent"),
        "{}",
        r.path
    );
    assert_eq!(
        r.json()["contents"][0]["parts"][0]["text"],
        "Say hi in French."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_error_in_anthropics_envelope() {
    let mock = MockProvider::start().await;
    mock.always(Reply::json(
        429,
        json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
    ));
    let gw = gateway(&mock);
    let resp = post(&gw, "/v1/messages", "openai", None, messages_body(false)).await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "rate_limit_error",
            "message": "openai error: Rate limit reached"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_estimated_for_openai_forwarded_to_anthropic() {
    let mock = MockProvider::start().await;
    mock.always(Reply::json(200, json!({"input_tokens": 42})));
    let gw = gateway(&mock);
    let body = json!({"model": "gpt-4o", "system": "You are terse.",
        "messages": [{"role": "user", "content": "Hello, world!"}]});
    let resp = post(
        &gw,
        "/v1/messages/count_tokens",
        "openai",
        None,
        body.clone(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(resp.headers(), "x-portgate-token-count"),
        "estimate; tokenizer"
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, json!({"input_tokens": 16}));
    assert!(mock.requests().is_empty(), "an estimate calls no provider");
    // Anthropic counts natively: passed through.
    let resp = post(
        &gw,
        "/v1/messages/count_tokens",
        "anthropic",
        Some(mock.base_url()),
        body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-portgate-token-count").is_none());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, json!({"input_tokens": 42}));
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1/messages/count_tokens");
    assert_eq!(r.header("x-api-key"), Some("sk-test"));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
}
