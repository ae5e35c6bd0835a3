//! The unified LLM routes end to end: what the provider receives and what the client gets.

use crate::support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completion_reaches_the_provider_unchanged() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"temperature":0.2}"#;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .header("authorization", "Bearer sk-test-123")
        .header("content-type", "application/json")
        .header("x-portkey-metadata", r#"{"_user":"u1"}"#)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-portkey-provider"], "openai");
    let trace = resp.headers()["x-portkey-trace-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(trace.len(), 36, "a generated UUID trace id: {trace}");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["choices"][0]["message"]["content"], "hello from mock");

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.body, body.as_bytes(), "body forwarded byte for byte");
    assert_eq!(r.header("authorization"), Some("Bearer sk-test-123"));
    assert_eq!(r.header("host"), Some(mock.addr.to_string().as_str()));
    assert_eq!(
        r.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert!(
        r.headers.iter().all(|(k, _)| !k.starts_with("x-portkey-")),
        "gateway headers are not forwarded: {:?}",
        r.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_trace_id_is_echoed() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .header("x-portkey-trace-id", "anyscale_portkey_test")
        .body(r#"{"model":"m","messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-portkey-trace-id"],
        "anyscale_portkey_test"
    );
}

/// The Anyscale seed: legacy `x-portkey-mode: proxy anyscale` with the key in Authorization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_anyscale_legacy_mode_header() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let data = json!({
        "messages": [{"role": "user", "content": "What happens when you mix red & yellow?"}],
        "model": "mistralai/Mistral-7B-Instruct-v0.1"
    });
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("Authorization", "Bearer ANYSCALE_KEY")
        .header("x-portkey-api-key", "PORTKEY_API_KEY")
        .header("x-portkey-mode", "proxy anyscale")
        .header("x-portkey-trace-id", "anyscale_portkey_test")
        .header(
            "x-portkey-metadata",
            r#"{"_environment":"production","_user":"userid123","_organisation":"orgid123","_prompt":"summarisationPrompt"}"#,
        )
        .json(&data)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-portkey-provider"], "anyscale");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["model"], "mistralai/Mistral-7B-Instruct-v0.1");
    let r = &mock.requests()[0];
    assert_eq!(r.header("authorization"), Some("Bearer ANYSCALE_KEY"));
    assert_eq!(r.json(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_embeddings_routes() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    for (path, body) in [
        ("/v1/completions", r#"{"model":"m","prompt":"hi"}"#),
        ("/v1/embeddings", r#"{"model":"e","input":"hi"}"#),
    ] {
        let resp = client()
            .post(gw.url(path))
            .header("x-portkey-provider", "openai")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/v1/completions", "/v1/embeddings"]);
}

/// Pingora replays pre-read bodies only up to 64 KiB; the gateway's own exchange has no limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_64_kib_are_forwarded_whole() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let long = "x".repeat(300 * 1024);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": long}]}).to_string();
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = &mock.requests()[0];
    assert_eq!(r.body.len(), body.len());
    assert_eq!(r.body, body.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_keep_status_and_headers_and_are_wrapped() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let err = json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}});
    mock.script([
        Reply::json(429, err.clone()).with_header("retry-after", "7"),
        Reply::json(500, json!({"error": {"message": "boom"}})),
    ]);
    let send = || {
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-portkey-provider", "openai")
            .body(r#"{"model":"m","messages":[]}"#)
            .send()
    };
    let resp = send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"error": {"message": "openai error: Rate limit reached", "type": "requests",
                         "param": null, "code": "rate_limit_exceeded"}, "provider": "openai"})
    );
    let resp = send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(mock.request_count(), 2, "no retries without a config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_host_and_forwarded_headers() {
    let mock = MockProvider::start().await;
    // The default openai row points at the real API; the custom host redirects to the mock.
    let gw = TestGateway::start(test_settings());
    let resp = client()
        .post(gw.url("/v1/chat/completions?api-version=1"))
        .header("x-portkey-provider", "openai")
        .header(
            "x-portkey-custom-host",
            format!("http://127.0.0.1:{}/v1", mock.addr.port()),
        )
        .header("x-portkey-forward-headers", "x-team, x-request-id")
        .header("x-team", "search")
        .header("x-request-id", "r-1")
        .header("x-not-forwarded", "secret")
        .header("openai-organization", "org-1")
        .body(r#"{"model":"m","messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1/chat/completions?api-version=1");
    assert_eq!(r.header("x-team"), Some("search"));
    assert_eq!(r.header("x-request-id"), Some("r-1"));
    assert_eq!(r.header("openai-organization"), Some("org-1"));
    assert_eq!(r.header("x-not-forwarded"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    for _ in 0..5 {
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-portkey-provider", "openai")
            .body(r#"{"model":"m","messages":[]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    assert_eq!(mock.request_count(), 5);
    assert_eq!(
        mock.connections(),
        1,
        "one pooled upstream connection served all"
    );
}
