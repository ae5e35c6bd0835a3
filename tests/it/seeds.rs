//! The examples of Portkey's Anthropic integration guide, each run through the gateway as the
//! guide writes it, with virtual keys from the settings pointing at mock providers.
//! `anthropic-virtual-key` names an OpenAI-compatible provider on its own mock, so what is
//! tested here is the routing the guide describes (Anthropic's own translation is tested in
//! `provider_anthropic.rs`). The Anyscale guide's
//! examples are in `chat.rs` (legacy mode header) and `routing.rs` (legacy config).

use crate::support::*;
use portgate::settings::VirtualKeyRow;
use serde_json::{json, Value};

fn secret_file(name: &str, value: &str) -> String {
    let dir = std::env::temp_dir().join(format!("portgate-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, value).unwrap();
    path.display().to_string()
}

/// Mock A serves `openai-virtual-key`, mock B serves `anthropic-virtual-key`.
async fn guide_gateway() -> (MockProvider, MockProvider, TestGateway) {
    let openai_key = secret_file("openai", "sk-openai-vault");
    let anthropic_key = secret_file("anthropic", "sk-ant-vault");
    let (a, b, _c, gw) = three_mocks(|s| {
        for (id, provider, file) in [
            ("openai-virtual-key", "openai", &openai_key),
            ("anthropic-virtual-key", "groq", &anthropic_key),
        ] {
            s.virtual_keys.insert(
                id.into(),
                VirtualKeyRow {
                    provider: provider.into(),
                    api_key_env: None,
                    api_key_file: Some(file.clone()),
                    custom_host: None,
                    options: Default::default(),
                    rate_limits: Vec::new(),
                    usage_limits: Vec::new(),
                },
            );
        }
    })
    .await;
    (a, b, gw)
}

/// What `portkey.chat.completions.create(messages=..., model="claude-3.5-sonnet")` sends: the
/// SDK's placeholder Authorization and the headers its constructor arguments become.
async fn sdk_call(
    gw: &TestGateway,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut headers = vec![
        ("authorization", "Bearer OPENAI_API_KEY"),
        ("x-portkey-api-key", "YOUR_PORTKEY_API_KEY"),
    ];
    headers.extend_from_slice(extra);
    chat(
        gw,
        "/v1/chat/completions",
        &headers,
        json!({"messages": [{"role": "user", "content": "Say this is a test"}],
               "model": "claude-3.5-sonnet"}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_and_custom_metadata_with_a_virtual_key() {
    let (_a, b, gw) = guide_gateway().await;
    let metadata =
        json!({"environment": "production", "prompt": "test_prompt", "session_id": "1729"})
            .to_string();
    let (status, h, v) = sdk_call(
        &gw,
        &[
            ("x-portkey-virtual-key", "anthropic-virtual-key"),
            ("x-portkey-metadata", &metadata),
        ],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "claude-3.5-sonnet");
    assert_eq!(header(&h, "x-portkey-provider"), "groq");
    let r = &b.requests()[0];
    assert_eq!(
        r.header("authorization"),
        Some("Bearer sk-ant-vault"),
        "the vault key, never the SDK's placeholder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_fallback_as_the_guide_says() {
    let (a, b, gw) = guide_gateway().await;
    a.always(Reply::json(
        429,
        json!({"error": {"message": "Rate limit reached"}}),
    ));
    let config = json!({
        "retry": {"attempts": 3},
        "fallback": {"targets": [
            {"virtual_key": "openai-virtual-key"},
            {"virtual_key": "anthropic-virtual-key"}
        ]}
    })
    .to_string();
    let (status, h, v) = sdk_call(&gw, &[("x-portkey-config", &config)]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(a.request_count(), 4, "the first call and 3 retries");
    assert_eq!(b.request_count(), 1, "then the fallback target");
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.fallback.targets[1]"
    );
    assert_eq!(header(&h, "x-portkey-retry-attempt-count"), "0");
    assert_eq!(
        a.requests()[0].header("authorization"),
        Some("Bearer sk-openai-vault")
    );
    assert_eq!(
        b.requests()[0].header("authorization"),
        Some("Bearer sk-ant-vault")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_routing_on_user_plan() {
    let (_a, b, gw) = guide_gateway().await;
    let config = json!({
      "strategy": {
        "mode": "conditional",
        "conditions": [
          {"query": {"metadata.user_plan": {"$eq": "paid"}}, "then": "free-model"},
          {"query": {"metadata.user_plan": {"$eq": "free"}}, "then": "paid-model"}
        ],
        "default": "free-model"
      },
      "targets": [
        {"name": "free-model", "virtual_key": "anthropic-virtual-key",
         "override_params": {"model": "claude-3.5-haiku"}},
        {"name": "paid-model", "virtual_key": "anthropic-virtual-key",
         "override_params": {"model": "claude-3.5-sonnet"}}
      ]
    })
    .to_string();
    // The guide maps `paid` to "free-model" and `free` to "paid-model": as written.
    for (metadata, target, model) in [
        (
            Some(r#"{"user_plan":"paid"}"#),
            "config.targets[0]",
            "claude-3.5-haiku",
        ),
        (
            Some(r#"{"user_plan":"free"}"#),
            "config.targets[1]",
            "claude-3.5-sonnet",
        ),
        (None, "config.targets[0]", "claude-3.5-haiku"),
    ] {
        let mut headers = vec![("x-portkey-config", config.as_str())];
        if let Some(m) = metadata {
            headers.push(("x-portkey-metadata", m));
        }
        let (status, h, _) = sdk_call(&gw, &headers).await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "x-portkey-last-used-option-index"), target);
        let sent = b.requests().last().unwrap().json();
        assert_eq!(sent["model"], model, "{metadata:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancing_seventy_thirty() {
    let (_a, b, gw) = guide_gateway().await;
    let config = json!({
        "strategy": {"mode": "loadbalance"},
        "targets": [
            {"virtual_key": "anthropic-virtual-key",
             "override_params": {"model": "claude-3.5-haiku"}, "weight": 0.7},
            {"virtual_key": "anthropic-virtual-key",
             "override_params": {"model": "claude-3.5-sonnet"}, "weight": 0.3}
        ]
    })
    .to_string();
    let n = 400;
    for _ in 0..n {
        let (status, _, _) = sdk_call(&gw, &[("x-portkey-config", &config)]).await;
        assert_eq!(status, 200);
    }
    let haiku = b
        .requests()
        .iter()
        .filter(|r| r.json()["model"] == "claude-3.5-haiku")
        .count();
    // 0.7 × 400 = 280, σ ≈ 9.2: the bounds are over 6σ away, so this never flakes.
    assert!((224..=336).contains(&haiku), "{haiku} of {n} went to haiku");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_config_is_accepted_and_served() {
    let (_a, b, gw) = guide_gateway().await;
    // Semantic mode without an embedding target in the settings: exact matching, a miss
    // reported as `SEMANTIC MISS`, the repeat served from the cache.
    let config = json!({"cache": {"mode": "semantic"}}).to_string();
    for expected in ["SEMANTIC MISS", "HIT"] {
        let (status, h, _) = sdk_call(
            &gw,
            &[
                ("x-portkey-config", &config),
                ("x-portkey-virtual-key", "anthropic-virtual-key"),
            ],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "x-portkey-cache-status"), expected);
    }
    assert_eq!(b.request_count(), 1);
}
