//! Retries as the mock sees them: counts, Retry-After, backoff, timeouts, the retry budget.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

fn retry_config(retry: serde_json::Value) -> String {
    json!({"provider": "openai", "api_key": "sk-openai", "retry": retry}).to_string()
}

fn gaps(mock: &MockProvider) -> Vec<Duration> {
    let r = mock.requests();
    r.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_success_and_reports_the_count() {
    let (a, _b, _c, gw) = three_mocks(|_| {}).await;
    a.script([
        Reply::json(429, json!({"error": {"message": "slow down"}})),
        Reply::json(503, json!({})),
    ]);
    let config = retry_config(json!({"attempts": 3}));
    let (status, h, _) = with_config(&gw, &config, user_chat("m", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portkey-retry-attempt-count"), "2");
    assert_eq!(a.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_return_the_last_failure_with_minus_one() {
    let (a, _b, _c, gw) = three_mocks(|_| {}).await;
    a.always(Reply::json(500, json!({"error": {"message": "down"}})));
    let config = retry_config(json!({"attempts": 2}));
    let (status, h, v) = with_config(&gw, &config, user_chat("m", "hi")).await;
    assert_eq!(status, 500);
    assert_eq!(v["error"]["message"], "openai error: down");
    assert_eq!(header(&h, "x-portkey-retry-attempt-count"), "-1");
    assert_eq!(a.request_count(), 3, "first call + 2 retries");
    // A status outside the retry codes is returned at once.
    a.script([Reply::json(400, json!({"error": {"message": "bad"}}))]);
    let (status, h, _) = with_config(&gw, &config, user_chat("m", "hi")).await;
    assert_eq!(status, 400);
    assert_eq!(header(&h, "x-portkey-retry-attempt-count"), "0");
    assert_eq!(a.request_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_doubles_between_retries() {
    let (a, _b, _c, gw) = three_mocks(|s| s.retry.backoff_base_ms = 150).await;
    a.script([Reply::json(500, json!({})), Reply::json(500, json!({}))]);
    let config = retry_config(json!({"attempts": 2}));
    let (status, _, _) = with_config(&gw, &config, user_chat("m", "hi")).await;
    assert_eq!(status, 200);
    let g = gaps(&a);
    assert!(
        g[0] >= Duration::from_millis(120),
        "first wait ≈150 ms: {g:?}"
    );
    assert!(
        g[1] >= Duration::from_millis(240),
        "second wait ≈300 ms: {g:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_for_429() {
    // A long backoff proves the short Retry-After was used instead.
    let (a, _b, _c, gw) = three_mocks(|s| s.retry.backoff_base_ms = 5_000).await;
    a.script([Reply::json(429, json!({})).with_header("retry-after-ms", "300")]);
    let config = retry_config(json!({"attempts": 1, "use_retry_after_header": true}));
    let (status, _, _) = with_config(&gw, &config, user_chat("m", "hi")).await;
    assert_eq!(status, 200);
    let g = gaps(&a)[0];
    assert!(
        g >= Duration::from_millis(290) && g < Duration::from_millis(2_000),
        "{g:?}"
    );

    // A Retry-After beyond the 60 s budget stops retrying at once, with count -1.
    a.script([Reply::json(429, json!({})).with_header("retry-after", "120")]);
    let (status, h, _) = with_config(&gw, &config, user_chat("m", "hi")).await;
    assert_eq!(status, 429);
    assert_eq!(header(&h, "x-portkey-retry-attempt-count"), "-1");
    assert_eq!(a.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_are_retried() {
    let (a, _b, _c, gw) = three_mocks(|_| {}).await;
    a.script([Reply::Reset]);
    let config = retry_config(json!({"attempts": 1}));
    let (status, h, _) = with_config(&gw, &config, user_chat("m", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portkey-retry-attempt-count"), "1");
    assert_eq!(a.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_is_a_408_that_falls_back() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    a.always(Reply::Slow {
        delay: Duration::from_secs(3),
        then: Box::new(Reply::chat("m", "late")),
    });
    let single =
        json!({"provider": "openai", "api_key": "sk-openai", "request_timeout": 200}).to_string();
    let (status, _, v) = with_config(&gw, &single, user_chat("m", "hi")).await;
    assert_eq!(status, 408);
    assert_eq!(v["error"]["type"], "timeout_error");
    assert_eq!(
        v["error"]["message"],
        "Request exceeded the timeout sent in the request: 200ms"
    );

    let fallback = json!({
        "strategy": {"mode": "fallback"},
        "request_timeout": 200,
        "targets": [{"provider": "openai", "api_key": "sk-openai"}, {"provider": "groq", "api_key": "sk-groq"}]
    })
    .to_string();
    let (status, h, _) = with_config(&gw, &fallback, user_chat("m", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portkey-provider"), "groq");
    assert_eq!(b.request_count(), 1);

    // The header wins over the config.
    let long =
        json!({"provider": "openai", "api_key": "sk-openai", "request_timeout": 60000}).to_string();
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-config", &long),
            ("x-portkey-request-timeout", "150"),
        ],
        user_chat("m", "hi"),
    )
    .await;
    assert_eq!(status, 408);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_stops_retry_storms() {
    let (a, _b, _c, gw) = three_mocks(|s| {
        s.retry.budget.ratio = 0.0;
        // 0.2/s × 10 s window = 2 extra sends for the whole window.
        s.retry.budget.min_retries_per_second = 0.2;
        s.retry.budget.window_seconds = 10;
    })
    .await;
    a.always(Reply::json(503, json!({"error": {"message": "outage"}})));
    let config = retry_config(json!({"attempts": 3}));
    let (status, h, _) = with_config(&gw, &config, user_chat("m", "hi")).await;
    assert_eq!(status, 503);
    assert_eq!(
        a.request_count(),
        3,
        "first call + the 2 retries the budget allows"
    );
    assert_eq!(header(&h, "x-portgate-retry-budget"), "exhausted");
    let (status, h, v) = with_config(&gw, &config, user_chat("m", "hi")).await;
    assert_eq!(status, 503);
    assert_eq!(
        v["error"]["message"], "openai error: outage",
        "the failure itself is returned"
    );
    assert_eq!(a.request_count(), 4, "no retries left: only the first call");
    assert_eq!(header(&h, "x-portgate-retry-budget"), "exhausted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_timeout_falls_back_before_anything_reaches_the_client() {
    let (a, b, _c, gw) = three_mocks(|s| s.upstream.first_token_timeout_ms = 200).await;
    a.always(Reply::Sse {
        events: chat_events("m", &["late"]),
        delay: Duration::from_secs(2),
    });
    b.always(Reply::Sse {
        events: chat_events("m", &["fast"]),
        delay: Duration::from_millis(1),
    });
    let config = json!({"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai", "api_key": "sk-openai"}, {"provider": "groq", "api_key": "sk-groq"}]})
        .to_string();
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-config", config)
        .json(&json!({"model": "m", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-portkey-provider"], "groq");
    let text = resp.text().await.unwrap();
    assert!(text.contains("fast") && !text.contains("late"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
}
