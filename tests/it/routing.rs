//! Portkey configs end to end with several mock providers: strategies, nesting, overrides,
//! named configs, the legacy form and route, validation errors.

use crate::support::*;
use serde_json::json;

fn body() -> serde_json::Value {
    json!({"model": "client-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_moves_on_from_a_failing_target() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    a.always(Reply::json(
        503,
        json!({"error": {"message": "overloaded"}}),
    ));
    let config = json!({
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "openai", "api_key": "sk-a"},
            {"provider": "groq", "api_key": "sk-b", "override_params": {"model": "llama-3.1-8b"}}
        ]
    })
    .to_string();
    let (status, h, v) = with_config(&gw, &config, body()).await;
    assert_eq!(status, 200);
    assert_eq!(v["model"], "llama-3.1-8b");
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.targets[1]"
    );
    assert_eq!(header(&h, "x-portkey-provider"), "groq");
    assert_eq!(header(&h, "x-portkey-retry-attempt-count"), "0");
    assert_eq!(a.request_count(), 1);
    let rb = &b.requests()[0];
    assert_eq!(rb.header("authorization"), Some("Bearer sk-b"));
    let sent = rb.json();
    assert_eq!(
        sent["model"], "llama-3.1-8b",
        "override_params seen upstream"
    );
    assert_eq!(sent["temperature"], 0.5, "other fields kept");
    assert_eq!(a.requests()[0].header("authorization"), Some("Bearer sk-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_on_status_codes_and_exhaustion() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    a.always(Reply::json(500, json!({"error": {"message": "a down"}})));
    b.always(Reply::json(502, json!({"error": {"message": "b down"}})));
    // Only 429 moves on: the 500 is returned as is.
    let only_429 = json!({
        "strategy": {"mode": "fallback", "on_status_codes": [429]},
        "targets": [{"provider": "openai", "api_key": "sk-openai"}, {"provider": "groq", "api_key": "sk-groq"}]
    })
    .to_string();
    let (status, _, v) = with_config(&gw, &only_429, body()).await;
    assert_eq!(status, 500);
    assert_eq!(v["error"]["message"], "openai error: a down");
    assert_eq!(b.request_count(), 0);
    // Every target fails: the last target's answer is returned.
    let all = json!({"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai", "api_key": "sk-openai"}, {"provider": "groq", "api_key": "sk-groq"}]})
        .to_string();
    let (status, h, v) = with_config(&gw, &all, body()).await;
    assert_eq!(status, 502);
    assert_eq!(v["error"]["message"], "groq error: b down");
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.targets[1]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadbalance_follows_the_weights() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    let config = json!({
        "strategy": {"mode": "loadbalance"},
        "targets": [
            {"provider": "openai", "api_key": "sk-openai", "weight": 0.7},
            {"provider": "groq", "api_key": "sk-groq", "weight": 0.3},
            {"provider": "together-ai", "api_key": "sk-together-ai", "weight": 0}
        ]
    })
    .to_string();
    let n = 300;
    for _ in 0..n {
        let (status, _, _) = with_config(&gw, &config, body()).await;
        assert_eq!(status, 200);
    }
    let (na, nb) = (a.request_count() as f64, b.request_count() as f64);
    assert_eq!(na + nb, n as f64, "weight 0 is never chosen");
    // Binomial(300, 0.7): sd ≈ 7.9; ±4 sd.
    assert!((na - 210.0).abs() < 32.0, "openai got {na} of {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadbalance_inside_fallback_reports_nested_paths() {
    let (a, b, c, gw) = three_mocks(|_| {}).await;
    let config = json!({
        "strategy": {"mode": "fallback"},
        "targets": [
            {"strategy": {"mode": "loadbalance"},
             "targets": [{"provider": "openai", "api_key": "sk-openai", "weight": 0}, {"provider": "groq", "api_key": "sk-groq", "weight": 1}]},
            {"provider": "together-ai", "api_key": "sk-together-ai"}
        ]
    })
    .to_string();
    let (status, h, _) = with_config(&gw, &config, body()).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.targets[0].targets[1]"
    );
    // The balanced target fails: the fallback serves.
    b.always(Reply::json(503, json!({})));
    let (status, h, _) = with_config(&gw, &config, body()).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.targets[1]"
    );
    assert_eq!(
        (a.request_count(), b.request_count(), c.request_count()),
        (0, 2, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_routing_on_metadata_and_params() {
    let (a, b, c, gw) = three_mocks(|_| {}).await;
    // The Anthropic guide's conditional config, with targets on three mocks.
    let config = json!({
        "strategy": {
            "mode": "conditional",
            "conditions": [
                {"query": {"metadata.user_plan": {"$eq": "paid"}}, "then": "paid-model"},
                {"query": {"$and": [{"metadata.user_plan": "free"}, {"params.max_tokens": {"$lt": 100}}]}, "then": "free-model"},
                {"query": {"params.model": {"$regex": "^gpt-4"}}, "then": "gpt"}
            ],
            "default": "free-model"
        },
        "targets": [
            {"name": "free-model", "provider": "groq", "api_key": "sk-groq", "override_params": {"model": "claude-3.5-haiku"}},
            {"name": "paid-model", "provider": "openai", "api_key": "sk-openai", "override_params": {"model": "claude-3.5-sonnet"}},
            {"name": "gpt", "provider": "together-ai", "api_key": "sk-together-ai"}
        ]
    })
    .to_string();
    let send = |meta: &'static str, body: serde_json::Value| {
        let config = config.clone();
        let gw = &gw;
        async move {
            chat(
                gw,
                "/v1/chat/completions",
                &[("x-portkey-config", &config), ("x-portkey-metadata", meta)],
                body,
            )
            .await
        }
    };
    let (_, h, v) = send(r#"{"user_plan":"paid"}"#, body()).await;
    assert_eq!(v["model"], "claude-3.5-sonnet");
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.targets[1]"
    );
    let (_, _, v) = send(
        r#"{"user_plan":"free"}"#,
        json!({"model": "x", "max_tokens": 50, "messages": []}),
    )
    .await;
    assert_eq!(v["model"], "claude-3.5-haiku");
    let (_, h, _) = send(
        r#"{"user_plan":"trial"}"#,
        json!({"model": "gpt-4o", "messages": []}),
    )
    .await;
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.targets[2]"
    );
    let (_, h, _) = send(r#"{}"#, json!({"model": "llama", "messages": []})).await;
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.targets[0]",
        "default"
    );
    assert_eq!(
        (a.request_count(), b.request_count(), c.request_count()),
        (1, 2, 1)
    );

    // No match and no default: 400, nothing sent.
    let no_default = json!({
        "strategy": {"mode": "conditional", "conditions": [{"query": {"metadata.user_plan": "paid"}, "then": "p"}]},
        "targets": [{"name": "p", "provider": "openai", "api_key": "sk-openai"}]
    })
    .to_string();
    let (status, _, v) = with_config(&gw, &no_default, body()).await;
    assert_eq!(status, 400);
    assert_eq!(v["status"], "failure");
    assert_eq!(a.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_are_400_with_paths() {
    let (a, _b, _c, gw) = three_mocks(|_| {}).await;
    let bad = json!({
        "strategy": {"mode": "fallback"},
        "targets": [{"provider": "openai", "api_key": "sk-openai", "weight": "heavy"}, {"provider": "nope", "api_key": "sk-nope"}]
    })
    .to_string();
    let (status, _, v) = with_config(&gw, &bad, body()).await;
    assert_eq!(status, 400);
    assert_eq!(v["message"], "Invalid config passed");
    let errors: Vec<String> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("path: targets,0,weight")),
        "{errors:?}"
    );
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-config", "{not json")],
        body(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(v["message"].as_str().unwrap().contains("valid json"));
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-config", "pc-missing")],
        body(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(v["message"].as_str().unwrap().contains("pc-missing"));
    assert_eq!(a.request_count(), 0);
}

fn seed_legacy_config() -> serde_json::Value {
    json!({
        "cache": "semantic",
        "mode": "fallback",
        "options": [
            {"provider": "anyscale", "api_key": "...", "override_params": {"model": "meta-llama/Llama-2-7b-chat-hf"}},
            {"provider": "anyscale", "api_key": "...", "override_params": {"model": "mistralai/Mistral-7B-Instruct-v0.1"}}
        ]
    })
}

/// The Anyscale seed: a legacy semantic-cache fallback config saved under an id, sent to the
/// legacy `/v1/chatComplete` route with a body that has no model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_legacy_config_on_chat_complete() {
    let (a, _b, _c, gw) = three_mocks(|s| {
        s.configs.insert("CONFIG_KEY".into(), seed_legacy_config());
    })
    .await;
    a.script([Reply::json(
        503,
        json!({"error": {"message": "llama overloaded"}}),
    )]);
    let data = json!({"messages": [{"role": "user", "content": "What happens when you mix red & yellow?"}]});
    let (status, h, v) = chat(
        &gw,
        "/v1/chatComplete",
        &[
            ("x-portkey-api-key", "PORTKEY_API_KEY"),
            ("x-portkey-config", "CONFIG_KEY"),
        ],
        data,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "mistralai/Mistral-7B-Instruct-v0.1");
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.options[1]"
    );
    let models: Vec<String> = a
        .requests()
        .iter()
        .map(|r| r.json()["model"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        models,
        vec![
            "meta-llama/Llama-2-7b-chat-hf",
            "mistralai/Mistral-7B-Instruct-v0.1"
        ]
    );
    assert_eq!(
        a.requests()[1].json()["messages"][0]["content"],
        "What happens when you mix red & yellow?"
    );

    // The old body form {"config": ..., "params": ...} works on the same route.
    let wrapped = json!({"config": seed_legacy_config(), "params": {"messages": [{"role": "user", "content": "hi"}]}});
    let (status, _, v) = chat(&gw, "/v1/chatComplete", &[], wrapped).await;
    assert_eq!(status, 200);
    assert_eq!(v["model"], "meta-llama/Llama-2-7b-chat-hf");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_and_default_configs() {
    let (a, b, _c, gw) = three_mocks(|s| {
        s.configs.insert(
            "pc-prod-fallback".into(),
            json!({"strategy": {"mode": "fallback"}, "targets": [{"provider": "groq", "api_key": "sk-groq"}, {"provider": "openai", "api_key": "sk-openai"}]}),
        );
        s.configs.insert("pc-default".into(), json!({"provider": "openai", "api_key": "sk-openai", "override_params": {"model": "default-model"}}));
        s.default_config = Some("pc-default".into());
    })
    .await;
    let (status, h, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-config", "pc-prod-fallback")],
        body(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portkey-provider"), "groq");
    // No config named: the default applies.
    let (status, _, v) = chat(&gw, "/v1/chat/completions", &[], body()).await;
    assert_eq!(status, 200);
    assert_eq!(v["model"], "default-model");
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
}
