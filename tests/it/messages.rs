//! `/v1/messages` (Anthropic's Messages API) on providers that do not speak it (OpenAI,
//! Gemini, Cohere, Azure OpenAI), with the Anthropic SDK's request shapes (`x-api-key`,
//! `anthropic-version`): the provider receives a chat request, the client gets an Anthropic
//! message or event stream, errors come in Anthropic's envelope, tokens are metered as on the
//! chat route; and `count_tokens`.

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

/// The events of an SSE fixture, one string each, as the mock writes them.
fn sse_fixture(slug: &str, name: &str) -> Vec<String> {
    String::from_utf8(provider_fixture(slug, name))
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(String::from)
        .collect()
}

/// `/v1/messages` as the Anthropic SDK sends it, with a provider's own headers.
async fn post_with(gw: &TestGateway, headers: &[(&str, String)], body: Value) -> reqwest::Response {
    let mut req = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

/// The names of a Messages stream's events, checked in Anthropic's order: `message_start`,
/// blocks numbered as they start, taking deltas while open and each closed once, then
/// `message_delta` and `message_stop`.
fn checked_names(ev: &[(String, Value)]) -> Vec<&str> {
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
    let mut open: Vec<u64> = Vec::new();
    let mut started = 0;
    for (name, v) in &ev[1..ev.len() - 2] {
        assert_eq!(&v["type"], name);
        let index = v["index"].as_u64().unwrap();
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(index, started, "{names:?}");
                started += 1;
                open.push(index);
            }
            "content_block_delta" => assert!(open.contains(&index), "{v}"),
            "content_block_stop" => {
                assert!(open.contains(&index), "{v}");
                open.retain(|i| *i != index);
            }
            other => panic!("{other} inside the message: {names:?}"),
        }
    }
    assert!(open.is_empty() && started > 0, "{names:?}");
    names
}

/// A stream's tool_use blocks, their input assembled from the deltas: (id, name, input).
fn streamed_tools(ev: &[(String, Value)]) -> Vec<(String, String, Value)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for (name, v) in ev {
        if name == "content_block_start" && v["content_block"]["type"] == "tool_use" {
            let b = &v["content_block"];
            out.push((
                b["id"].as_str().unwrap().into(),
                b["name"].as_str().unwrap().into(),
                String::new(),
            ));
        }
        if let Some(part) = v["delta"]["partial_json"].as_str() {
            out.last_mut().unwrap().2.push_str(part);
        }
    }
    out.into_iter()
        .map(|(id, name, json)| (id, name, serde_json::from_str(&json).unwrap()))
        .collect()
}

fn cohere_on(mock: &MockProvider) -> Vec<(&'static str, String)> {
    vec![
        ("x-portkey-provider", "cohere".into()),
        (
            "x-portkey-custom-host",
            mock.base_url().trim_end_matches("/v1").into(),
        ),
    ]
}

fn cohere_body(stream: bool) -> Value {
    let mut b = messages_body(stream);
    b["model"] = json!("command-r-plus-08-2024");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_on_cohere_whole_and_with_tools() {
    let mock = MockProvider::start().await;
    let upstream = |name| fixture_upstream("cohere", name);
    mock.script([
        Reply::json(200, upstream("chat_response.json")),
        Reply::json(200, upstream("chat_tool_response.json")),
    ]);
    let gw = TestGateway::start(test_settings());
    let mut plain = cohere_body(false);
    plain.as_object_mut().unwrap().remove("tools");
    plain.as_object_mut().unwrap().remove("tool_choice");
    let resp = post_with(&gw, &cohere_on(&mock), plain).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    // Cohere names no model: the one asked for.
    assert_eq!(v["model"], "command-r-plus-08-2024");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Tomorrow: sunny, 23°C."}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 8);
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    // Cohere got its v2 chat request, the key from `x-api-key`.
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v2/chat");
    assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(
        r.header("x-api-key"),
        None,
        "the client's key header stays here"
    );
    let sent = r.json();
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "Weather in Paris?"}])
    );
    assert_eq!(sent["max_tokens"], 256);
    assert!(sent.get("tools").is_none());

    let resp = post_with(&gw, &cohere_on(&mock), cohere_body(false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    let tools: Vec<&Value> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(
        tools,
        [
            &json!({"type": "tool_use", "id": "get_weather_abc", "name": "get_weather",
                "input": {"city": "Paris"}}),
            &json!({"type": "tool_use", "id": "get_weather_def", "name": "get_weather",
                "input": {"city": "Lyon"}})
        ]
    );
    assert_eq!(v["usage"], json!({"input_tokens": 30, "output_tokens": 12}));
    let sent = mock.requests()[1].json();
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");
    assert_eq!(
        sent["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
        "string"
    );
    let m = scrape(&gw).await;
    assert_eq!(
        tokens(&m, "cohere", "command-r-plus-08-2024", "output"),
        Some(20.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_on_cohere_streamed_with_and_without_tools() {
    let mock = MockProvider::start().await;
    mock.script([
        Reply::Sse {
            events: sse_fixture("cohere", "chat_stream.sse"),
            delay: Duration::from_millis(2),
        },
        Reply::Sse {
            events: sse_fixture("cohere", "chat_tool_stream.sse"),
            delay: Duration::from_millis(2),
        },
    ]);
    let gw = TestGateway::start(test_settings());
    let resp = post_with(&gw, &cohere_on(&mock), cohere_body(true)).await;
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    assert!(!text.contains("[DONE]"), "{text}");
    let ev = events(&text);
    checked_names(&ev);
    let deltas: String = ev
        .iter()
        .filter_map(|(_, v)| v["delta"]["text"].as_str())
        .collect();
    assert_eq!(deltas, "Héllo 👋 world");
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);
    assert_eq!(mock.requests()[0].json()["stream"], true);

    let resp = post_with(&gw, &cohere_on(&mock), cohere_body(true)).await;
    assert_eq!(resp.status(), 200);
    let ev = events(&resp.text().await.unwrap());
    checked_names(&ev);
    assert_eq!(
        streamed_tools(&ev),
        [
            (
                "get_weather_1".into(),
                "get_weather".into(),
                json!({"city": "Paris"})
            ),
            (
                "get_weather_2".into(),
                "get_weather".into(),
                json!({"city": "Lyon"})
            )
        ]
    );
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        delta["usage"],
        json!({"input_tokens": 40, "output_tokens": 20})
    );
}

/// Headers naming Azure OpenAI (resource, deployment, version) with the mock as its host.
fn azure_on(mock: &MockProvider) -> Vec<(&'static str, String)> {
    vec![
        ("x-portkey-provider", "azure-openai".into()),
        (
            "x-portkey-custom-host",
            format!("{}/openai", mock.base_url().trim_end_matches("/v1")),
        ),
        ("x-portkey-azure-resource-name", "contoso".into()),
        ("x-portkey-azure-deployment-id", "gpt-4o-prod".into()),
        ("x-portkey-azure-api-version", "2024-10-21".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_on_azure_openai_with_tools() {
    let mock = MockProvider::start().await;
    mock.always(Reply::json(
        200,
        json!({
        "id": "chatcmpl-AZ9", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
        "choices": [{"index": 0, "finish_reason": "tool_calls", "content_filter_results": {},
            "message": {"role": "assistant", "content": "Let me look.",
            "tool_calls": [{"id": "call_az", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 52, "completion_tokens": 11, "total_tokens": 63}}),
    ));
    let gw = TestGateway::start(test_settings());
    let resp = post_with(&gw, &azure_on(&mock), messages_body(false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["id"], "msg_chatcmpl-AZ9");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Let me look."},
               {"type": "tool_use", "id": "call_az", "name": "weather", "input": {"city": "Paris"}}])
    );
    assert_eq!(v["usage"], json!({"input_tokens": 52, "output_tokens": 11}));
    assert!(
        v.get("prompt_filter_results").is_none(),
        "nothing of Azure's own reaches an Anthropic client"
    );
    // Azure got an OpenAI chat request on the deployment's path, the key in `api-key`.
    let r = &mock.requests()[0];
    assert_eq!(
        r.path,
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(r.header("api-key"), Some("sk-test"));
    assert_eq!(r.header("authorization"), None);
    let sent = r.json();
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "Weather in Paris?"}])
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");
    assert_eq!(sent["tool_choice"], "auto");
    let m = scrape(&gw).await;
    assert_eq!(provider_tokens(&m, "azure-openai", "input"), Some(52.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_message_from_azure_openai() {
    let mock = MockProvider::start().await;
    mock.always(Reply::Sse {
        events: sse_fixture("azure-openai", "chat_stream.sse"),
        delay: Duration::from_millis(2),
    });
    let gw = TestGateway::start(test_settings());
    let mut body = messages_body(true);
    body.as_object_mut().unwrap().remove("tools");
    body.as_object_mut().unwrap().remove("tool_choice");
    let resp = post_with(&gw, &azure_on(&mock), body).await;
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    assert!(!text.contains("prompt_filter_results"), "{text}");
    let ev = events(&text);
    assert_eq!(
        checked_names(&ev),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    // The message is Azure's answer, not its leading prompt-filter chunk (empty id and model).
    assert_eq!(ev[0].1["message"]["id"], "msg_chatcmpl-AZ2");
    assert_eq!(ev[0].1["message"]["model"], "gpt-4o-2024-08-06");
    assert_eq!(ev[2].1["delta"]["text"], "Hi");
    assert_eq!(ev[4].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        ev[4].1["usage"],
        json!({"input_tokens": 14, "output_tokens": 1})
    );
    let r = &mock.requests()[0];
    assert_eq!(
        r.path,
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    let sent = r.json();
    assert_eq!(sent["stream"], true);
    // 2024-10-21 reports a stream's usage when asked: asked.
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

/// `count_tokens` with the Anthropic SDK's headers and Bedrock's AWS keys.
async fn count_on_bedrock(
    gw: &TestGateway,
    mock: &MockProvider,
    body: &Value,
) -> reqwest::Response {
    let mut headers = vec![
        ("x-portkey-provider", "bedrock".to_string()),
        ("x-portkey-aws-access-key-id", "AKIDEXAMPLE".into()),
        ("x-portkey-aws-secret-access-key", "secret".into()),
        ("x-portkey-aws-session-token", "session-token".into()),
        ("x-portkey-aws-region", "eu-west-3".into()),
        (
            "x-portkey-custom-host",
            mock.base_url().trim_end_matches("/v1").into(),
        ),
    ];
    let mut req = client()
        .post(gw.url("/v1/messages/count_tokens"))
        .header("anthropic-version", "2023-06-01")
        .json(body);
    for (k, v) in headers.drain(..) {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_on_bedrock_asks_its_count_tokens_api() {
    let mock = MockProvider::start().await;
    mock.script([
        Reply::json(200, json!({"inputTokens": 37})),
        Reply::json(
            400,
            json!({"message": "The provided model doesn't support counting tokens."}),
        )
        .with_header("x-amzn-errortype", "ValidationException"),
        Reply::json(
            403,
            json!({"message": "The security token included in the request is invalid."}),
        ),
    ]);
    let gw = TestGateway::start(test_settings());
    let body = json!({"model": "anthropic.claude-3-5-haiku-20241022-v1:0",
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Hello, world!"}],
        "tools": [{"name": "w", "input_schema": {"type": "object"}}]});
    let resp = count_on_bedrock(&gw, &mock, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-portkey-provider"), "bedrock");
    assert!(
        resp.headers().get("x-portgate-token-count").is_none(),
        "Bedrock's own count, not an estimate"
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, json!({"input_tokens": 37}));
    // What Bedrock received: CountTokens of the InvokeModel body, signed.
    let r = &mock.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/count-tokens"
    );
    let auth = r.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && auth.contains("/eu-west-3/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="),
        "{auth}"
    );
    assert_eq!(r.header("x-amz-security-token"), Some("session-token"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.headers.iter().all(|(k, _)| !k.starts_with("x-portkey-")));
    let sent = r.json();
    let b64 = sent["input"]["invokeModel"]["body"].as_str().unwrap();
    let invoke: Value =
        serde_json::from_slice(&aws_smithy_types::base64::decode(b64).unwrap()).unwrap();
    assert_eq!(invoke["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(invoke["system"], "You are terse.");
    assert_eq!(invoke["messages"], body["messages"]);
    assert_eq!(invoke["tools"], body["tools"]);
    assert!(invoke.get("model").is_none());

    // A model Bedrock does not count (its ValidationException): the estimate.
    let resp = count_on_bedrock(&gw, &mock, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(resp.headers(), "x-portgate-token-count"),
        "estimate; chars/4"
    );
    let v: Value = resp.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(mock.request_count(), 2);

    // Any other failure is the client's to see, in Anthropic's envelope.
    let resp = count_on_bedrock(&gw, &mock, &body).await;
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "permission_error",
            "message": "bedrock error: The security token included in the request is invalid."}})
    );

    // A model that is not Anthropic's: estimated without asking Bedrock.
    let mut llama = body.clone();
    llama["model"] = json!("meta.llama3-70b-instruct-v1:0");
    let resp = count_on_bedrock(&gw, &mock, &llama).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(resp.headers(), "x-portgate-token-count"),
        "estimate; chars/4"
    );
    assert_eq!(mock.request_count(), 3);
}
