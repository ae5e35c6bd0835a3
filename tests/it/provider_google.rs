//! The `google` (Gemini) provider end to end: an OpenAI-SDK-shaped request reaches a mock
//! Gemini API as a Gemini request and comes back to the client in OpenAI's shape; a stream's
//! tokens reach `/metrics`.

use crate::support::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

const REQUEST: &str = include_str!("../fixtures/google/chat_request.openai.json");
const REQUEST_GEMINI: &str = include_str!("../fixtures/google/chat_request.gemini.json");
const RESPONSE: &str = include_str!("../fixtures/google/chat_response.gemini.json");
const RESPONSE_OPENAI: &str = include_str!("../fixtures/google/chat_response.openai.json");
const STREAM: &str = include_str!("../fixtures/google/stream.gemini.sse");
const STREAM_OPENAI: &str = include_str!("../fixtures/google/stream.openai.sse");

/// The mock as a custom host (no path: Gemini's paths start at `/v1beta`).
fn host(mock: &MockProvider) -> String {
    format!("http://{}", mock.addr)
}

/// The fixture's events, one string each, as the mock writes them (it adds the blank line).
fn gemini_events() -> Vec<String> {
    STREAM
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let d = e.strip_prefix("data: ").unwrap_or(e);
            serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string()))
        })
        .collect()
}

async fn post(gw: &TestGateway, mock: &MockProvider, body: &str) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "google")
        .header("x-portkey-custom-host", host(mock))
        .header("authorization", "Bearer AIza-test-key")
        .header("content-type", "application/json")
        .header("user-agent", "OpenAI/Python 1.54.0")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completion_is_translated_both_ways() {
    let mock = MockProvider::start().await;
    mock.script([Reply::Json {
        status: 200,
        body: RESPONSE.to_string(),
        headers: vec![],
    }]);
    let gw = TestGateway::start(test_settings());
    let resp = post(&gw, &mock, REQUEST).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-portkey-provider"], "google");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let v: Value = resp.json().await.unwrap();
    let mut expected: Value = serde_json::from_str(RESPONSE_OPENAI).unwrap();
    // `created` is the gateway's clock.
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    expected["created"] = v["created"].clone();
    assert_eq!(v, expected);

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(r.header("x-goog-api-key"), Some("AIza-test-key"));
    assert_eq!(
        r.header("authorization"),
        None,
        "the key goes in x-goog-api-key only"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        serde_json::from_str::<Value>(REQUEST_GEMINI).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_translated_and_tokens_are_metered() {
    let mock = MockProvider::start().await;
    mock.always(Reply::Sse {
        events: gemini_events(),
        delay: Duration::from_millis(5),
    });
    let gw = TestGateway::start(test_settings());

    // The client asks for usage: it gets the usage chunk.
    let body = json!({"model": "gemini-2.0-flash", "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Weather, time and news for Zürich?"}]});
    let resp = post(&gw, &mock, &body.to_string()).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut text = String::new();
    let mut s = resp.bytes_stream();
    while let Some(c) = s.next().await {
        text.push_str(&String::from_utf8_lossy(&c.unwrap()));
    }
    let mut got = parse_events(&text);
    let mut expected = parse_events(STREAM_OPENAI);
    assert_eq!(got.len(), expected.len(), "{text}");
    for (g, e) in got.iter_mut().zip(expected.iter_mut()) {
        if let Some(c) = g.get("created").cloned() {
            e["created"] = c;
        }
    }
    assert_eq!(got, expected);
    let r = &mock.requests()[0];
    assert_eq!(
        r.path,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(r.header("x-goog-api-key"), Some("AIza-test-key"));
    let sent = r.json();
    assert!(sent.get("stream_options").is_none() && sent.get("stream").is_none());
    assert_eq!(
        sent["contents"],
        json!([{"role": "user", "parts": [{"text": "Weather, time and news for Zürich?"}]}])
    );

    // A client that did not ask gets no usage chunk, and the tokens are still counted.
    let body = json!({"model": "gemini-2.0-flash", "stream": true,
        "messages": [{"role": "user", "content": "again"}]});
    let text = post(&gw, &mock, &body.to_string())
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("usage"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(parse_events(&text).len(), expected.len() - 1);

    // Two streams of 12 prompt (8 cached) and 20 + 8 thinking output tokens each.
    let m = scrape(&gw).await;
    let t = |ty| {
        sample(
            &m,
            "portgate_tokens_total",
            &[("provider", "google"), ("type", ty)],
        )
    };
    assert_eq!(t("input"), Some(24.0), "{m}");
    assert_eq!(t("output"), Some(56.0));
    assert_eq!(t("cached_input"), Some(16.0));
    let otel = |ty| {
        sample(
            &m,
            "gen_ai_client_token_usage_sum",
            &[
                ("gen_ai_token_type", ty),
                ("gen_ai_provider_name", "google"),
                ("gen_ai_response_model", "gemini-2.0-flash"),
            ],
        )
    };
    assert_eq!(otel("input"), Some(24.0), "{m}");
    assert_eq!(otel("output"), Some(56.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_errors_come_back_in_portkeys_envelope() {
    let mock = MockProvider::start().await;
    mock.script([Reply::json(
        400,
        json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}}),
    )]);
    let gw = TestGateway::start(test_settings());
    let resp = post(&gw, &mock, r#"{"model":"gemini-2.0-flash","messages":[]}"#).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "google error: API key not valid. Please pass a valid API key."
    );
    assert_eq!(v["provider"], "google");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_and_refused_completions() {
    let mock = MockProvider::start().await;
    mock.script([Reply::json(
        200,
        json!({"embedding": {"values": [0.5, -1.0]}}),
    )]);
    let gw = TestGateway::start(test_settings());
    let resp = client()
        .post(gw.url("/v1/embeddings"))
        .header("x-portkey-provider", "google")
        .header("x-portkey-custom-host", host(&mock))
        .header("authorization", "Bearer AIza-test-key")
        .json(&json!({"model": "text-embedding-004", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["embedding"], json!([0.5, -1.0]));
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1beta/models/text-embedding-004:embedContent");
    assert_eq!(r.json(), json!({"content": {"parts": [{"text": "hello"}]}}));

    let resp = client()
        .post(gw.url("/v1/completions"))
        .header("x-portkey-provider", "google")
        .header("x-portkey-custom-host", host(&mock))
        .json(&json!({"model": "gemini-2.0-flash", "prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        mock.request_count(),
        1,
        "nothing was sent for /v1/completions"
    );
}
