//! Every failure gets the right status and a JSON body (Portkey's error envelope), and none hangs.

use crate::support::*;
use serde_json::Value;
use std::time::Duration;

async fn post(
    gw: &TestGateway,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client()
        .post(gw.url("/v1/chat/completions"))
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let v: Value = resp.json().await.expect("error bodies are JSON");
    (status, v, headers)
}

const OK_BODY: &str = r#"{"model":"m","messages":[]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_are_400_in_portkey_shape() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let openai = ("x-portkey-provider", "openai");
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (vec![openai], "{not json", "Invalid JSON body"),
        (vec![openai], "[1,2]", "JSON object"),
        (
            vec![],
            OK_BODY,
            "Either x-portkey-config or x-portkey-provider header is required",
        ),
        (
            vec![("x-portkey-provider", "nope")],
            OK_BODY,
            "Invalid provider passed",
        ),
        (
            vec![("x-portkey-mode", "anyscale")],
            OK_BODY,
            "x-portkey-mode",
        ),
        (
            vec![
                openai,
                ("x-portkey-custom-host", "http://169.254.169.254/latest"),
            ],
            OK_BODY,
            "Invalid custom host",
        ),
        (
            vec![openai, ("x-portkey-custom-host", "ftp://example.com")],
            OK_BODY,
            "Invalid custom host",
        ),
        (
            vec![openai, ("content-type", "text/plain")],
            OK_BODY,
            "Invalid content type passed",
        ),
        (
            vec![
                openai,
                ("x-portkey-forward-headers", "x-portkey-forward-headers"),
            ],
            OK_BODY,
            "x-portkey-forward-headers",
        ),
    ];
    for (headers, body, message) in cases {
        let (status, v, h) = post(&gw, &headers, body).await;
        assert_eq!(status, 400, "{headers:?} {body}");
        assert_eq!(v["status"], "failure");
        let m = v["message"].as_str().unwrap();
        assert!(m.contains(message), "{m:?} should contain {message:?}");
        assert!(h.contains_key("x-portkey-trace-id"));
    }
    assert_eq!(
        mock.request_count(),
        0,
        "invalid requests never reach the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_cap_is_413() {
    let mock = MockProvider::start().await;
    let mut s = test_settings();
    s.limits.max_request_body_bytes = 4096;
    route_to(&mut s, &mock, &["openai"]);
    let gw = TestGateway::start(s);
    let big = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(8000)
    );
    let (status, v, _) = post(&gw, &[("x-portkey-provider", "openai")], &big).await;
    assert_eq!(status, 413);
    assert_eq!(v["status"], "failure");
    // A chunked body (no Content-Length) is capped while reading.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(big.clone())]);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_and_connect_failures_are_502() {
    let mut s = test_settings();
    s.providers.insert(
        "openai".into(),
        portgate::settings::ProviderRow {
            base_url: "http://no-such-host.invalid/v1".into(),
            auth_header: "authorization".into(),
            stream_usage: true,
        },
    );
    s.providers.insert(
        "groq".into(),
        portgate::settings::ProviderRow {
            // Nothing listens on this freshly reserved port.
            base_url: format!("http://127.0.0.1:{}/v1", free_port()),
            auth_header: "authorization".into(),
            stream_usage: true,
        },
    );
    let gw = TestGateway::start(s);
    for provider in ["openai", "groq"] {
        let (status, v, h) = post(&gw, &[("x-portkey-provider", provider)], OK_BODY).await;
        assert_eq!(status, 502, "{provider}: {v}");
        assert_eq!(v["error"]["type"], "upstream_error");
        assert!(
            h.get("x-portkey-gateway-exception").is_none(),
            "a provider's failure is not a gateway exception"
        );
        assert_eq!(h["x-portkey-provider"], provider);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_read_timeout_is_504() {
    let mock = MockProvider::start().await;
    let mut s = test_settings();
    s.upstream.read_timeout_ms = 300;
    route_to(&mut s, &mock, &["openai"]);
    let gw = TestGateway::start(s);
    mock.script([Reply::Slow {
        delay: Duration::from_secs(3),
        then: Box::new(Reply::chat("m", "late")),
    }]);
    let (status, v, _) = post(&gw, &[("x-portkey-provider", "openai")], OK_BODY).await;
    assert_eq!(status, 504);
    assert_eq!(v["error"]["type"], "timeout_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_before_answer_is_502() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    mock.script([Reply::Reset]);
    let (status, v, _) = post(&gw, &[("x-portkey-provider", "openai")], OK_BODY).await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["type"], "upstream_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_and_health_answers() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let resp = client().get(gw.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, serde_json::json!({"message": "Not Found", "ok": false}));
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "AI Gateway says hey!");
    for path in ["/healthz", "/readyz"] {
        let resp = client().get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let resp = client().get(gw.admin_url("/other")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}
