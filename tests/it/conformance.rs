//! Portkey wire conformance: the exact statuses, messages, envelopes,
//! headers and routes of Portkey's gateway, asserted on both sides of the proxy.

use crate::support::*;
use serde_json::{json, Value};

/// Sends a raw body with the given headers to `path`.
async fn send(
    gw: &TestGateway,
    path: &str,
    headers: &[(&str, &str)],
    raw: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().post(gw.url(path)).body(raw.to_string());
    let mut typed = false;
    for (k, v) in headers {
        typed |= k.eq_ignore_ascii_case("content-type");
        req = req.header(*k, *v);
    }
    if !typed {
        req = req.header("content-type", "application/json");
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        h,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn failure(message: &str) -> Value {
    json!({"status": "failure", "message": message})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_messages_are_portkeys_byte_for_byte() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let ok = user_chat("gpt-4o", "hi").to_string();
    let openai = ("x-portkey-provider", "openai");
    let missing_provider = "Either x-portkey-provider needs to be passed. Or the x-portkey-config \
                            header should have a valid config with provider details in it.";
    let mut cases: Vec<(Vec<(&str, &str)>, Value)> = vec![
        (
            vec![],
            failure("Either x-portkey-config or x-portkey-provider header is required"),
        ),
        (
            vec![("x-portkey-config", r#"{"retry":{"attempts":1}}"#)],
            failure(missing_provider),
        ),
        (
            vec![("x-portkey-provider", "nope")],
            failure("Invalid provider passed"),
        ),
        (
            vec![openai, ("content-type", "text/plain")],
            failure("Invalid content type passed"),
        ),
        (
            vec![openai, ("x-portkey-config", "{bad")],
            failure("Invalid config passed. You need to pass a valid json"),
        ),
    ];
    for host in [
        "ftp://example.com",
        "http://user:pw@example.com/v1",
        "http://169.254.169.254/latest",
        "http://10.0.0.1/v1",
        "http://0x7f000001/v1",
        "http://2130706433/v1",
        "http://foo.internal/v1",
    ] {
        cases.push((
            vec![openai, ("x-portkey-custom-host", host)],
            failure("Invalid custom host"),
        ));
    }
    for (headers, expected) in cases {
        let (status, h, v) = send(&gw, "/v1/chat/completions", &headers, &ok).await;
        assert_eq!((status, &v), (400, &expected), "{headers:?}");
        assert!(
            !h.contains_key("x-portkey-retry-attempt-count"),
            "validation errors carry no routing headers"
        );
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_schema_rules_are_portkeys() {
    let (a, _b, _c, gw) = three_mocks(|_| {}).await;
    let rule =
        "Invalid configuration. It must have either 'provider' and 'api_key', or 'strategy' \
                and 'targets', or 'cache', or 'retry', or 'request_timeout'";
    // A provider without a key.
    let no_key = json!({"strategy": {"mode": "fallback"},
        "targets": [{"provider": "openai", "api_key": "sk-a"}, {"provider": "groq"}]})
    .to_string();
    let (status, _, v) = with_config(&gw, &no_key, user_chat("gpt-4o", "hi")).await;
    assert_eq!(status, 400);
    assert_eq!(
        v,
        json!({"status": "failure", "message": "Invalid config passed",
               "errors": [format!("path: targets,1, message: {rule}")]})
    );
    // An unknown mode.
    let mode = json!({"strategy": {"mode": "round-robin"},
        "targets": [{"provider": "openai", "api_key": "sk-a"}]})
    .to_string();
    let (status, _, v) = with_config(&gw, &mode, user_chat("gpt-4o", "hi")).await;
    assert_eq!(status, 400);
    assert!(v["errors"][0]
        .as_str()
        .unwrap()
        .contains("Invalid 'mode' value"));
    // override_params alone is not a config.
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            (
                "x-portkey-config",
                r#"{"override_params":{"max_tokens":7}}"#,
            ),
            ("x-portkey-provider", "openai"),
        ],
        user_chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(
        (status, &v["message"]),
        (400, &json!("Invalid config passed"))
    );
    assert_eq!(a.request_count(), 0);
    // Gateway settings alone borrow provider and key from the headers.
    let settings_only = json!({"retry": {"attempts": 1}, "override_params": {"max_tokens": 7}});
    let (status, h, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-config", &settings_only.to_string()),
            ("x-portkey-provider", "openai"),
            ("authorization", "Bearer sk-own"),
        ],
        user_chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portkey-last-used-option-index"), "config");
    let r = &a.requests()[0];
    assert_eq!(r.json()["max_tokens"], 7);
    assert_eq!(r.header("authorization"), Some("Bearer sk-own"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_key_never_reaches_a_provider_a_config_names() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    a.always(Reply::json(500, json!({"error": {"message": "down"}})));
    // groq satisfies the schema through `retry`, and has no key of its own.
    let config = json!({"strategy": {"mode": "fallback"}, "targets": [
        {"provider": "openai", "api_key": "sk-a"},
        {"provider": "groq", "retry": {"attempts": 0}}
    ]})
    .to_string();
    let (status, h, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-config", &config),
            ("authorization", "Bearer sk-openai-client"),
        ],
        user_chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portkey-provider"), "groq");
    assert_eq!(a.requests()[0].header("authorization"), Some("Bearer sk-a"));
    assert_eq!(b.requests()[0].header("authorization"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_routing_without_a_match_or_default() {
    let (a, _b, _c, gw) = three_mocks(|_| {}).await;
    let config = json!({
        "strategy": {"mode": "conditional",
            "conditions": [{"query": {"metadata.plan": {"$eq": "paid"}}, "then": "paid"}]},
        "targets": [{"name": "paid", "provider": "openai", "api_key": "sk-a"}]
    })
    .to_string();
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-config", &config),
            ("x-portkey-metadata", r#"{"plan":"free"}"#),
        ],
        user_chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(
        (status, v),
        (
            400,
            failure("Query router did not resolve to any valid target")
        )
    );
    assert_eq!(a.request_count(), 0);
}

/// Portkey's conditional router: `$length` routes on the length of a list, and its own
/// messages (400, `status: failure`) for an operator it does not know, a target name that no
/// target has, and a strategy without conditions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_router_length_and_its_errors() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    let config = |query: Value, then: &str| {
        json!({
            "strategy": {"mode": "conditional",
                "conditions": [{"query": query, "then": then}], "default": "short"},
            "targets": [{"name": "long", "provider": "openai", "api_key": "sk-a"},
                        {"name": "short", "provider": "groq", "api_key": "sk-b"}]
        })
        .to_string()
    };
    let long = config(json!({"params.messages": {"$length": {"$gt": 2}}}), "long");
    let three = json!({"model": "m", "messages": [
        {"role": "user", "content": "1"}, {"role": "assistant", "content": "2"},
        {"role": "user", "content": "3"}]});
    let (status, h, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-config", &long)],
        three,
    )
    .await;
    assert_eq!((status, header(&h, "x-portkey-provider")), (200, "openai"));
    let (status, h, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-config", &long)],
        user_chat("m", "one"),
    )
    .await;
    assert_eq!((status, header(&h, "x-portkey-provider")), (200, "groq"));
    assert_eq!((a.request_count(), b.request_count()), (1, 1));

    let cases = [
        (
            config(json!({"metadata.plan": {"$like": "paid"}}), "long"),
            "Unsupported operator used in the query router: $like",
        ),
        (
            config(json!({"metadata.plan": "paid"}), "nobody"),
            "Invalid target name found in the query router: nobody",
        ),
        (
            json!({"strategy": {"mode": "conditional", "default": "a"},
                   "targets": [{"name": "a", "provider": "openai", "api_key": "sk-a"}]})
            .to_string(),
            "No conditions passed in the query router",
        ),
    ];
    for (config, message) in cases {
        for path in ["/v1/chat/completions", "/v1/embeddings"] {
            let (status, h, v) = chat(
                &gw,
                path,
                &[("x-portkey-config", &config)],
                user_chat("m", "hi"),
            )
            .await;
            assert_eq!((status, v), (400, failure(message)), "{path} {config}");
            assert_eq!(header(&h, "content-type"), "application/json");
        }
    }
    assert_eq!(
        (a.request_count(), b.request_count()),
        (1, 1),
        "nothing was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_keep_status_and_headers_in_portkeys_envelope() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    let openai = [("x-portkey-provider", "openai")];
    // A 429 with OpenAI's error shape and rate-limit headers.
    a.script([Reply::json(
        429,
        json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null,
                         "code": "rate_limit_exceeded"}}),
    )
    .with_header("retry-after", "7")
    .with_header("x-ratelimit-remaining-requests", "0")]);
    let (status, h, v) = chat(
        &gw,
        "/v1/chat/completions",
        &openai,
        user_chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(
        v,
        json!({"error": {"message": "openai error: Rate limit reached", "type": "requests",
                         "param": null, "code": "rate_limit_exceeded"}, "provider": "openai"})
    );
    assert_eq!(header(&h, "retry-after"), "7");
    assert_eq!(header(&h, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&h, "content-type"), "application/json");
    assert_eq!(header(&h, "x-portkey-provider"), "openai");
    assert_eq!(header(&h, "x-portkey-last-used-option-index"), "config");
    assert_eq!(header(&h, "x-portkey-retry-attempt-count"), "0");
    assert_eq!(header(&h, "x-portkey-cache-status"), "DISABLED");
    // A body that is not an error object keeps its text.
    a.script([Reply::Json {
        status: 500,
        body: "upstream exploded".into(),
        headers: vec![],
    }]);
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &openai,
        user_chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(v["error"]["message"], "openai error: upstream exploded");
    assert_eq!(v["error"]["type"], Value::Null);
    // A stream that failed before streaming is answered in JSON, not SSE.
    a.script([Reply::json(
        503,
        json!({"error": {"message": "overloaded"}}),
    )]);
    let mut streamed = user_chat("gpt-4o", "hi");
    streamed["stream"] = json!(true);
    let (status, h, v) = chat(&gw, "/v1/chat/completions", &openai, streamed).await;
    assert_eq!(status, 503);
    assert_eq!(header(&h, "content-type"), "application/json");
    assert_eq!(v["error"]["message"], "openai error: overloaded");
    // The last answer of an exhausted fallback, from the provider that gave it.
    a.script([Reply::json(500, json!({"error": {"message": "a down"}}))]);
    b.script([Reply::json(
        502,
        json!({"error": {"message": "b down", "code": "x"}}),
    )]);
    let config = json!({"strategy": {"mode": "fallback"}, "targets": [
        {"provider": "openai", "api_key": "sk-a"}, {"provider": "groq", "api_key": "sk-b"}]})
    .to_string();
    let (status, h, v) = with_config(&gw, &config, user_chat("gpt-4o", "hi")).await;
    assert_eq!(status, 502);
    assert_eq!(
        v,
        json!({"error": {"message": "groq error: b down", "type": null, "param": null,
                         "code": "x"}, "provider": "groq"})
    );
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.targets[1]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unified_answer_carries_the_routing_headers() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let (status, h, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-provider", "openai")],
        user_chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(status, 200);
    for (name, value) in [
        ("x-portkey-provider", "openai"),
        ("x-portkey-last-used-option-index", "config"),
        ("x-portkey-retry-attempt-count", "0"),
        ("x-portkey-cache-status", "DISABLED"),
    ] {
        assert_eq!(header(&h, name), value, "{name}");
    }
    assert!(!header(&h, "x-portkey-trace-id").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portkey_sdk_openai_headers_reach_openai_only() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    let sdk = [
        ("x-portkey-openai-organization", "org-1"),
        ("x-portkey-openai-project", "proj-1"),
    ];
    for provider in ["openai", "groq"] {
        let mut headers = vec![("x-portkey-provider", provider)];
        headers.extend(sdk);
        let (status, _, _) = chat(
            &gw,
            "/v1/chat/completions",
            &headers,
            user_chat("gpt-4o", "hi"),
        )
        .await;
        assert_eq!(status, 200);
    }
    let to_openai = &a.requests()[0];
    assert_eq!(to_openai.header("openai-organization"), Some("org-1"));
    assert_eq!(to_openai.header("openai-project"), Some("proj-1"));
    assert_eq!(to_openai.header("x-portkey-openai-project"), None);
    let to_groq = &b.requests()[0];
    assert_eq!(to_groq.header("openai-organization"), None);
    assert_eq!(to_groq.header("openai-project"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_proxy_route_strips_its_segment() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let (status, h, v) = send(
        &gw,
        "/v1/proxy/chat/completions?x=1",
        &[("x-portkey-provider", "openai")],
        &user_chat("gpt-4o", "hi").to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(mock.requests()[0].path, "/v1/chat/completions?x=1");
    // The proxy routes carry Portkey's routing headers too.
    for (name, value) in [
        ("x-portkey-provider", "openai"),
        ("x-portkey-last-used-option-index", "config"),
        ("x-portkey-retry-attempt-count", "0"),
        ("x-portkey-cache-status", "DISABLED"),
    ] {
        assert_eq!(header(&h, name), value, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_legacy_stream_is_read_after_unwrapping() {
    let mock = MockProvider::start().await;
    mock.always(Reply::Sse {
        events: chat_events("m", &["Hello", " world"]),
        delay: std::time::Duration::ZERO,
    });
    let gw = gateway_for(&mock);
    let wrapped = json!({
        "config": {"provider": "openai", "api_key": "sk-legacy"},
        "params": {"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}
    });
    let resp = client()
        .post(gw.url("/v1/chatComplete"))
        .json(&wrapped)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    assert!(text.contains("Hello") && text.trim_end().ends_with("data: [DONE]"));
    let sent = mock.requests()[0].json();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["model"], "m");
    // The gateway saw the stream: it asked for the usage chunk to count tokens.
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert!(sent.get("params").is_none() && sent.get("config").is_none());
    assert_eq!(
        mock.requests()[0].header("authorization"),
        Some("Bearer sk-legacy")
    );
}
