//! `/metrics` after known requests: exact token counts, cost, attempts by kind, stream TTFT,
//! and exact stream usage when the client did not ask for it (and did not see it).

use crate::support::*;
use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;

fn usage_reply(model: &str, prompt: u64, completion: u64, cached: u64) -> Reply {
    Reply::json(
        200,
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "orange"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": cached}}
        }),
    )
}

/// Prices come from the catalog (cents per token) and costs add as whole picodollars: gpt-5 at
/// $1.25 / $10 per million is exact on the metric, to the cent and past it, however many
/// requests add to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_prices_cost_exactly() {
    let (a, _b, _c, gw) = three_mocks(|_| {}).await;
    a.always(usage_reply("gpt-5-2025-08-07", 1_000_000, 1_000_000, 0));
    for _ in 0..3 {
        let (status, _, _) = chat(
            &gw,
            "/v1/chat/completions",
            &[("x-portkey-provider", "openai")],
            json!({"model": "gpt-5", "messages": []}),
        )
        .await;
        assert_eq!(status, 200);
    }
    a.always(usage_reply("gpt-5-2025-08-07", 1, 1, 0));
    for _ in 0..1000 {
        chat(
            &gw,
            "/v1/chat/completions",
            &[("x-portkey-provider", "openai")],
            json!({"model": "gpt-5", "messages": []}),
        )
        .await;
    }
    let m = scrape(&gw).await;
    let cost = sample(
        &m,
        "portgate_cost_usd_total",
        &[("provider", "openai"), ("model", "gpt-5")],
    );
    // 3 × $11.25, then 1,000 × $0.00001125.
    assert_eq!(cost, Some(33.76125));
    assert_eq!(
        sample(
            &m,
            "portgate_cost_unpriced_requests_total",
            &[("model", "gpt-5")]
        ),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_cost_for_a_priced_model() {
    let (a, _b, _c, gw) = three_mocks(|_| {}).await;
    a.always(usage_reply("gpt-4o-2024-08-06", 1000, 500, 200));
    for _ in 0..2 {
        let (status, _, _) = chat(
            &gw,
            "/v1/chat/completions",
            &[("x-portkey-provider", "openai")],
            json!({"model": "gpt-4o", "messages": []}),
        )
        .await;
        assert_eq!(status, 200);
    }
    let m = scrape(&gw).await;
    let t = |ty| tokens(&m, "openai", "gpt-4o", ty);
    assert_eq!(t("input"), Some(2000.0));
    assert_eq!(t("output"), Some(1000.0));
    assert_eq!(t("cached_input"), Some(400.0));
    // Per request: 800 × 2.50 + 200 × 1.25 + 500 × 10.00 per million = 0.00725 USD.
    let cost = sample(
        &m,
        "portgate_cost_usd_total",
        &[("provider", "openai"), ("model", "gpt-4o")],
    )
    .unwrap();
    assert!((cost - 0.0145).abs() < 1e-9, "{cost}");
    assert_eq!(
        sample(
            &m,
            "portgate_requests_total",
            &[
                ("route", "chat_completions"),
                ("provider", "openai"),
                ("status_class", "2xx"),
                ("cache_status", "DISABLED")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "gen_ai_client_token_usage_count",
            &[
                ("gen_ai_token_type", "input"),
                ("gen_ai_response_model", "gpt-4o-2024-08-06")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "gen_ai_client_token_usage_sum",
            &[("gen_ai_token_type", "output")]
        ),
        Some(1000.0)
    );
    assert_eq!(
        sample(&m, "portgate_overhead_seconds_count", &[]),
        Some(2.0)
    );
    assert_eq!(sample(&m, "portgate_inflight_requests", &[]), Some(0.0));

    // An unpriced model adds no cost and is counted as unpriced.
    a.always(usage_reply("my-finetune", 10, 10, 0));
    chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-provider", "openai")],
        json!({"model": "my-finetune", "messages": []}),
    )
    .await;
    let m = scrape(&gw).await;
    assert_eq!(
        sample(
            &m,
            "portgate_cost_unpriced_requests_total",
            &[("model", "my-finetune")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "portgate_cost_usd_total", &[("model", "my-finetune")]),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_by_kind_after_fallback_and_retries() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    a.always(Reply::json(503, json!({})));
    b.script([Reply::json(500, json!({}))]);
    let config = json!({
        "strategy": {"mode": "fallback"},
        "targets": [{"provider": "openai", "api_key": "sk-openai"}, {"provider": "groq", "api_key": "sk-groq", "retry": {"attempts": 2}}]
    })
    .to_string();
    let (status, _, _) = with_config(&gw, &config, json!({"model": "m", "messages": []})).await;
    assert_eq!(status, 200);
    let m = scrape(&gw).await;
    let at = |p, kind, outcome| {
        sample(
            &m,
            "portgate_upstream_attempts_total",
            &[("provider", p), ("kind", kind), ("outcome", outcome)],
        )
    };
    assert_eq!(at("openai", "first", "5xx"), Some(1.0));
    assert_eq!(at("groq", "fallback", "5xx"), Some(1.0));
    assert_eq!(at("groq", "retry", "2xx"), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "gen_ai_client_operation_duration_seconds_count",
            &[("gen_ai_provider_name", "groq")]
        ),
        Some(2.0)
    );
    assert_eq!(b.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_usage_is_exact_and_hidden_from_a_client_that_did_not_ask() {
    let (a, _b, _c, gw) = three_mocks(|_| {}).await;
    // What OpenAI sends when asked for usage: "usage":null on every chunk, then a usage chunk.
    let chunk = |content: &str| {
        format!(
            r#"data: {{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{{"index":0,"delta":{{"content":"{content}"}},"finish_reason":null}}],"usage":null}}"#
        )
    };
    let events = vec![
        chunk("Mixing"),
        chunk(" gives"),
        chunk(" orange"),
        r#"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":17,"completion_tokens":3,"total_tokens":20}}"#.to_string(),
        "data: [DONE]".to_string(),
    ];
    a.always(Reply::Sse {
        events: events.clone(),
        delay: Duration::from_millis(30),
    });
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    let mut s = resp.bytes_stream();
    while let Some(c) = s.next().await {
        text.push_str(&String::from_utf8_lossy(&c.unwrap()));
    }
    assert!(
        !text.contains("usage"),
        "the client did not ask for usage and sees none: {text}"
    );
    assert_eq!(text.matches("data: ").count(), 4);
    assert!(
        text.contains(r#"{"content":" orange"},"finish_reason":null}]}"#),
        "{text}"
    );
    // The provider was asked for usage.
    let sent = a.requests()[0].json();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let m = scrape(&gw).await;
    let t = |ty| {
        sample(
            &m,
            "portgate_tokens_total",
            &[("model", "gpt-4o-mini"), ("type", ty)],
        )
    };
    assert_eq!(t("input"), Some(17.0));
    assert_eq!(t("output"), Some(3.0));
    assert_eq!(
        sample(
            &m,
            "gen_ai_server_time_to_first_token_seconds_count",
            &[("gen_ai_request_model", "gpt-4o-mini")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "gen_ai_server_time_per_output_token_seconds_count", &[]),
        Some(1.0)
    );

    // A client that asks for usage gets the stream untouched.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true}, "messages": []}))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let expected: String = events.iter().map(|e| format!("{e}\n\n")).collect();
    assert_eq!(text, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_labels_only_when_listed_and_models_capped() {
    let (a, _b, _c, gw) = three_mocks(|s| {
        s.metrics.metadata_labels = vec!["user_plan".into()];
        s.metrics.max_model_labels = 1;
    })
    .await;
    a.always(usage_reply("x", 1, 1, 0));
    for model in ["custom-a", "custom-b"] {
        chat(
            &gw,
            "/v1/chat/completions",
            &[
                ("x-portkey-provider", "openai"),
                ("x-portkey-metadata", r#"{"user_plan":"paid","_user":"u1"}"#),
            ],
            json!({"model": model, "messages": []}),
        )
        .await;
    }
    let m = scrape(&gw).await;
    assert_eq!(
        sample(
            &m,
            "portgate_requests_total",
            &[("model", "custom-a"), ("metadata_user_plan", "paid")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "portgate_requests_total", &[("model", "other")]),
        Some(1.0),
        "{m}"
    );
    assert!(!m.contains("u1"), "unlisted metadata never becomes a label");
    // Invalid metadata is a 400 naming the key.
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "openai"),
            ("x-portkey-metadata", r#"{"session_id": 1729}"#),
        ],
        json!({"model": "m", "messages": []}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(v["message"].as_str().unwrap().contains("session_id"));
}
