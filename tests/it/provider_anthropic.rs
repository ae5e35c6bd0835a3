//! Anthropic through the gateway, against a mock that records what it receives: an OpenAI-SDK
//! request reaches it as a Messages request and comes back as a `chat.completion` (streaming and
//! not), the native `/v1/messages` route passes bytes through, fallbacks cross providers, and
//! tokens and cost count cache reads and writes once each.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

const STREAM: &str = include_str!("../fixtures/anthropic/stream_tools.sse");
const MESSAGE: &str = include_str!("../fixtures/anthropic/message_tools.json");

/// The fixture stream as the mock's events (it adds the blank line after each).
fn stream_events() -> Vec<String> {
    STREAM
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(String::from)
        .collect()
}

async fn send(
    gw: &TestGateway,
    path: &str,
    headers: &[(&'static str, String)],
    body: Value,
) -> reqwest::Response {
    let mut req = client().post(gw.url(path)).json(&body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

fn chat_body(stream: bool) -> Value {
    json!({"model": "claude-3-5-sonnet-20241022", "stream": stream,
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Weather in Paris and Rome?"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_request_is_served_by_anthropic() {
    let mock = MockProvider::start().await;
    mock.always(Reply::Json {
        status: 200,
        body: MESSAGE.into(),
        headers: vec![],
    });
    let gw = TestGateway::start(test_settings());
    let resp = send(
        &gw,
        "/v1/chat/completions",
        &anthropic_on(&mock),
        chat_body(false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-portkey-provider"), "anthropic");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][1]["id"],
        "toolu_01B"
    );
    assert_eq!(v["usage"]["prompt_tokens"], 3120);
    // What Anthropic received.
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(
        r.header("authorization"),
        None,
        "the key goes in x-api-key only"
    );
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    let sent = r.json();
    assert_eq!(sent["system"][0]["text"], "Be brief.");
    assert_eq!(sent["messages"][0]["role"], "user");
    assert_eq!(sent["max_tokens"], 4096);
}

/// A streamed chat request through the gateway to a mock answering with `reply`; checks the
/// status and content type, and returns the gateway (for its metrics), the mock and the
/// response.
async fn stream_through(reply: Reply) -> (TestGateway, MockProvider, reqwest::Response) {
    let mock = MockProvider::start().await;
    mock.always(reply);
    let mut s = test_settings();
    s.metrics.max_model_labels = 50;
    let gw = TestGateway::start(s);
    let resp = send(
        &gw,
        "/v1/chat/completions",
        &anthropic_on(&mock),
        chat_body(true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    (gw, mock, resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_translated_as_it_arrives() {
    let (gw, mock, resp) = stream_through(Reply::Sse {
        events: stream_events(),
        delay: Duration::from_millis(20),
    })
    .await;
    // Events 20 ms apart: relayed as they come, chunked.
    assert_eq!(header(resp.headers(), "transfer-encoding"), "chunked");
    let text = resp.text().await.unwrap();
    check_translated_stream(&text);
    assert_eq!(mock.requests()[0].json()["stream"], true);
    check_stream_usage(&gw).await;
}

/// The same stream arriving in one burst, its end included, is translated whole and sent with
/// its length: the same events, the same usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_read_whole_is_sent_with_its_length() {
    let (gw, _mock, resp) = stream_through(Reply::SseBurst {
        events: stream_events(),
        end_after: Duration::ZERO,
    })
    .await;
    assert_eq!(header(resp.headers(), "transfer-encoding"), "");
    let length: usize = header(resp.headers(), "content-length").parse().unwrap();
    let text = resp.text().await.unwrap();
    assert_eq!(length, text.len());
    check_translated_stream(&text);
    check_stream_usage(&gw).await;
}

/// The translation of the fixture stream: the role first, the two tool calls' deltas, the
/// finish reason, then `[DONE]`.
fn check_translated_stream(text: &str) {
    assert!(text.trim_end().ends_with("data: [DONE]"));
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let indices: Vec<u64> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["index"].as_u64())
        .collect();
    assert_eq!(indices, vec![0, 0, 0, 1, 1]);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

/// Tokens and cost of the fixture stream: cache reads and writes are parts of the input, each
/// priced once.
async fn check_stream_usage(gw: &TestGateway) {
    let m = scrape(gw).await;
    let t = |ty| {
        sample(
            &m,
            "portgate_tokens_total",
            &[("provider", "anthropic"), ("type", ty)],
        )
    };
    assert_eq!(t("input"), Some(872.0));
    assert_eq!(t("output"), Some(89.0));
    assert_eq!(t("cached_input"), Some(300.0));
    assert_eq!(t("cache_write"), Some(100.0));
    let cost = sample(&m, "portgate_cost_usd_total", &[("provider", "anthropic")]).unwrap();
    // 472 × 3.00 + 300 × 0.30 + 100 × 3.75 + 89 × 15.00 per million.
    let expected = (472.0 * 3.0 + 300.0 * 0.30 + 100.0 * 3.75 + 89.0 * 15.0) / 1e6;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_messages_route() {
    let mock = MockProvider::start().await;
    mock.always(Reply::Json {
        status: 200,
        body: MESSAGE.into(),
        headers: vec![],
    });
    let gw = TestGateway::start(test_settings());
    let native = json!({"model": "claude-3-5-sonnet-20241022", "max_tokens": 10,
        "system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}]});
    let mut headers = anthropic_on(&mock);
    headers.push(("anthropic-beta", "prompt-caching-2024-07-31".into()));
    let resp = send(&gw, "/v1/messages", &headers, native.clone()).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert_eq!(body, MESSAGE, "the answer byte for byte");
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(
        r.json(),
        native,
        "the request untouched, cache_control included"
    );
    assert_eq!(
        r.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    // Other providers serve the route through their chat path: see `messages.rs`.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_cross_providers_both_ways() {
    let anthropic = MockProvider::start().await;
    let openai = MockProvider::start().await;
    let mut s = test_settings();
    route_to(&mut s, &openai, &["openai"]);
    let gw = TestGateway::start(s);
    let anthropic_target = json!({"provider": "anthropic", "api_key": "sk-ant",
        "custom_host": anthropic.base_url(),
        "override_params": {"model": "claude-3-5-haiku-20241022"}});
    let openai_target = json!({"provider": "openai", "api_key": "sk-oai",
        "override_params": {"model": "gpt-4o-mini"}});
    // Anthropic overloaded → OpenAI.
    anthropic.always(Reply::json(
        529,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ));
    let config = json!({"strategy": {"mode": "fallback"},
        "targets": [anthropic_target.clone(), openai_target.clone()]})
    .to_string();
    let resp = send(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-config", config)],
        chat_body(false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-portkey-provider"), "openai");
    assert_eq!(openai.requests()[0].json()["model"], "gpt-4o-mini");
    // OpenAI down → Anthropic, translated.
    openai.always(Reply::json(503, json!({"error": {"message": "down"}})));
    anthropic.always(Reply::Json {
        status: 200,
        body: MESSAGE.into(),
        headers: vec![],
    });
    let config = json!({"strategy": {"mode": "fallback"},
        "targets": [openai_target, anthropic_target]})
    .to_string();
    let resp = send(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-config", config)],
        chat_body(false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-portkey-provider"), "anthropic");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    let last = anthropic.requests().last().unwrap().json();
    assert_eq!(last["model"], "claude-3-5-haiku-20241022");
    assert!(last.get("messages").is_some());
    // An Anthropic error on its own: Portkey's envelope with Anthropic's type.
    let resp = send(
        &gw,
        "/v1/chat/completions",
        &anthropic_on(&anthropic),
        chat_body(false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    anthropic.always(Reply::json(
        400,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}),
    ));
    let resp = send(
        &gw,
        "/v1/chat/completions",
        &anthropic_on(&anthropic),
        chat_body(false),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["message"], "anthropic error: bad");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["provider"], "anthropic");
}
