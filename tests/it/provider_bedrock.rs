//! AWS Bedrock through the gateway: the signed Converse request the mock receives, and the
//! OpenAI-format answer the client gets, whole and streamed (AWS event-stream frames cut in
//! small pieces), errors in Portkey's envelope, and fallbacks between Bedrock and OpenAI. The
//! mock stands in for `https://bedrock-runtime.<region>.amazonaws.com` through a custom host.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/bedrock/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The mock's origin, as `https://bedrock-runtime.eu-west-3.amazonaws.com` would be.
fn origin(mock: &MockProvider) -> String {
    mock.base_url().trim_end_matches("/v1").to_string()
}

const MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";

async fn send(gw: &TestGateway, mock: &MockProvider, body: Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "bedrock")
        .header("x-portkey-aws-access-key-id", "AKIDEXAMPLE")
        .header(
            "x-portkey-aws-secret-access-key",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )
        .header("x-portkey-aws-session-token", "session-token")
        .header("x-portkey-aws-region", "eu-west-3")
        .header("x-portkey-custom-host", origin(mock))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn question(stream: bool) -> Value {
    json!({"model": MODEL, "stream": stream, "max_tokens": 100,
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "What happens when you mix red & yellow?"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_is_signed_translated_and_translated_back() {
    let mock = MockProvider::start().await;
    let answer: Value = serde_json::from_slice(&fixture("matrix_response.json")).unwrap();
    mock.script([Reply::json(200, answer)]);
    let gw = TestGateway::start(test_settings());
    let resp = send(&gw, &mock, question(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-portkey-provider"], "bedrock");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Mixing red and yellow gives orange."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 25);

    let seen = &mock.requests()[0];
    assert_eq!(
        seen.path,
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
    let auth = seen.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && auth.contains("/eu-west-3/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="),
        "{auth}"
    );
    assert_eq!(seen.header("x-amz-security-token"), Some("session-token"));
    assert!(seen.header("x-amz-date").unwrap().ends_with('Z'));
    assert!(
        seen.headers
            .iter()
            .all(|(k, _)| !k.starts_with("x-portkey-")),
        "no Portkey header (nor the secret key) reaches AWS: {:?}",
        seen.headers
    );
    let sent = seen.json();
    assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
    assert_eq!(sent["inferenceConfig"], json!({"maxTokens": 100}));
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"text": "What happens when you mix red & yellow?"}]}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_event_stream_frames_becomes_openai_chunks() {
    let mock = MockProvider::start().await;
    mock.script([Reply::Bytes {
        content_type: "application/vnd.amazon.eventstream".into(),
        body: fixture("tools_stream.eventstream"),
        piece: 7,
        delay: Duration::ZERO,
    }]);
    let gw = TestGateway::start(test_settings());
    let mut body = question(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = send(&gw, &mock, body).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| json!(d)))
        .collect();
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Checking both.");
    let args: Vec<(u64, String)> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].get(0))
        .map(|c| {
            (
                c["index"].as_u64().unwrap(),
                c["function"]["arguments"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let joined = |i: u64| -> String {
        args.iter()
            .filter(|(n, _)| *n == i)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    assert_eq!(joined(0), "{\"city\":\"Paris\"}");
    assert_eq!(joined(1), "{\"city\":\"Rome\"}");
    assert!(events
        .iter()
        .any(|e| e["choices"][0]["finish_reason"] == "tool_calls"));
    let usage = events.iter().find(|e| e["usage"].is_object()).unwrap();
    assert_eq!(usage["usage"]["prompt_tokens"], 1220);
    assert_eq!(events.last().unwrap(), &json!("[DONE]"));
    let seen = &mock.requests()[0];
    assert!(seen.path.ends_with("/converse-stream"), "{}", seen.path);
    // Tokens and cost of the stream reached the metrics (cache reads and writes included).
    let metrics = scrape(&gw).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("portgate_tokens_total")
                && l.contains("provider=\"bedrock\"")
                && l.contains("type=\"input\"")
                && l.ends_with(" 1220")),
        "{metrics}"
    );
    // Each input token priced once at its own rate: 20 fresh at $0.80, 1000 cache reads at
    // $0.08, 200 cache writes at $1.00, 30 output at $4.00 per million.
    let cost: f64 = metrics
        .lines()
        .find(|l| l.starts_with("portgate_cost_usd_total") && l.contains("provider=\"bedrock\""))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("{metrics}"))
        .parse()
        .unwrap();
    assert!((cost - 0.000416).abs() < 1e-12, "{cost}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_in_portkeys_envelope_and_missing_keys_are_refused() {
    let mock = MockProvider::start().await;
    mock.script([Reply::json(
        403,
        json!({"message": "The security token included in the request is invalid."}),
    )
    .with_header("x-amzn-errortype", "UnrecognizedClientException")]);
    let gw = TestGateway::start(test_settings());
    let resp = send(&gw, &mock, question(false)).await;
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "bedrock error: The security token included in the request is invalid."
    );
    assert_eq!(v["provider"], "bedrock");

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "bedrock")
        .header("x-portkey-custom-host", origin(&mock))
        .json(&question(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v.to_string().contains("bedrock needs AWS credentials"),
        "{v}"
    );
    assert_eq!(mock.request_count(), 1, "nothing unsigned was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_between_bedrock_and_openai_both_ways() {
    let mock = MockProvider::start().await;
    let gw = TestGateway::start(test_settings());
    let bedrock = json!({"provider": "bedrock", "aws_access_key_id": "AKID",
        "aws_secret_access_key": "secret", "aws_region": "us-west-2",
        "custom_host": origin(&mock)});
    let openai = json!({"provider": "openai", "api_key": "sk-test",
        "custom_host": mock.base_url()});
    let answer: Value = serde_json::from_slice(&fixture("matrix_response.json")).unwrap();
    for (targets, replies, second_path) in [
        (
            json!([bedrock, openai]),
            vec![
                Reply::json(500, json!({"message": "Internal error"})),
                Reply::chat("gpt-4o-mini", "From OpenAI"),
            ],
            "/v1/chat/completions",
        ),
        (
            json!([openai, bedrock]),
            vec![
                Reply::json(503, json!({"error": {"message": "overloaded"}})),
                Reply::json(200, answer.clone()),
            ],
            "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
        ),
    ] {
        let before = mock.request_count();
        mock.script(replies);
        let config = json!({"strategy": {"mode": "fallback"}, "targets": targets});
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-portkey-config", config.to_string())
            .json(&question(false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["x-portkey-last-used-option-index"],
            "config.targets[1]"
        );
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["object"], "chat.completion");
        let seen = mock.requests();
        assert_eq!(seen.len(), before + 2);
        assert_eq!(seen[before + 1].path, second_path);
        let signed = seen
            .iter()
            .skip(before)
            .find(|r| r.path.starts_with("/model/"))
            .unwrap();
        assert!(signed
            .header("authorization")
            .unwrap()
            .contains("/us-west-2/bedrock/aws4_request"));
        let openai_seen = seen
            .iter()
            .skip(before)
            .find(|r| r.path == "/v1/chat/completions")
            .unwrap();
        assert_eq!(openai_seen.header("authorization"), Some("Bearer sk-test"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdk_on_messages_reaches_bedrock_anthropic_models() {
    let mock = MockProvider::start().await;
    mock.script([Reply::Bytes {
        content_type: "application/vnd.amazon.eventstream".into(),
        body: fixture("messages_stream.eventstream"),
        piece: 11,
        delay: Duration::ZERO,
    }]);
    let gw = TestGateway::start(test_settings());
    let body = json!({"model": "anthropic.claude-3-5-haiku-20241022-v1:0", "max_tokens": 50,
        "stream": true, "messages": [{"role": "user", "content": "Red and yellow?"}]});
    let resp = client()
        .post(gw.url("/v1/messages"))
        .header("x-portkey-provider", "bedrock")
        .header("x-portkey-aws-access-key-id", "AKIDEXAMPLE")
        .header("x-portkey-aws-secret-access-key", "secret")
        .header("x-portkey-custom-host", origin(&mock))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("event: message_start\ndata: "), "{text}");
    assert!(
        text.contains("event: content_block_delta\ndata: "),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("{\"type\":\"message_stop\"}"),
        "{text}"
    );
    let seen = &mock.requests()[0];
    assert_eq!(
        seen.path,
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke-with-response-stream"
    );
    let sent = seen.json();
    assert_eq!(sent["anthropic_version"], "bedrock-2023-05-31");
    assert!(sent.get("model").is_none() && sent.get("stream").is_none());
    assert!(sent.get("stream_options").is_none());
    assert!(seen
        .header("authorization")
        .unwrap()
        .starts_with("AWS4-HMAC-SHA256 "));
}
