//! Whole answers too large for a provider's translator (8 MiB; 16 MiB for Gemini) are relayed
//! as the provider sent them, in order and complete, under the provider's own content type:
//! the translator hands back what it held and then every chunk as it comes, so the gateway
//! holds a chunk of the answer, not all of it.

use crate::support::*;
use serde_json::{json, Value};

/// A JSON answer of `size` bytes that no translator can read as its provider's answer.
fn large(size: usize) -> String {
    let head = r#"{"note":"large","pad":""#;
    let tail = r#""}"#;
    format!("{head}{}{tail}", "x".repeat(size - head.len() - tail.len()))
}

async fn through(provider: Value, big: &str) -> (u16, String, Vec<u8>) {
    let mock = MockProvider::start().await;
    mock.always(Reply::Json {
        status: 200,
        body: big.to_string(),
        headers: vec![],
    });
    let gw = TestGateway::start(test_settings());
    let origin = mock.base_url().trim_end_matches("/v1").to_string();
    let mut config = provider;
    let host = match config["provider"].as_str() {
        Some("anthropic") | Some("cohere") => format!("{origin}/v1"),
        _ => origin,
    };
    config["custom_host"] = json!(host);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-config", config.to_string())
        .json(&json!({"model": "m", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let content_type = header(resp.headers(), "content-type").to_string();
    let body = resp.bytes().await.unwrap().to_vec();
    assert_eq!(mock.request_count(), 1);
    (status, content_type, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_too_large_to_translate_arrive_whole_and_in_order() {
    let big = large(17 * 1024 * 1024);
    for provider in [
        json!({"provider": "anthropic", "api_key": "k"}),
        json!({"provider": "cohere", "api_key": "k"}),
        json!({"provider": "google", "api_key": "k"}),
        json!({"provider": "bedrock", "aws_access_key_id": "AKID",
               "aws_secret_access_key": "s", "aws_region": "us-east-1"}),
    ] {
        let name = provider["provider"].clone();
        let (status, content_type, body) = through(provider, &big).await;
        assert_eq!(status, 200, "{name}");
        assert!(
            content_type.starts_with("application/json"),
            "{name}: {content_type}"
        );
        assert_eq!(body.len(), big.len(), "{name}: the whole answer");
        assert!(body == big.as_bytes(), "{name}: the answer, in order");
    }
}
