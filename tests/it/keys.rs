//! Virtual keys (credentials from mounted files) and the optional gateway key.

use crate::support::*;
use serde_json::json;

fn body() -> serde_json::Value {
    json!({"model": "claude-3.5-sonnet", "messages": [{"role": "user", "content": "Say this is a test"}]})
}

fn secret_file(name: &str, value: &str) -> String {
    let dir = std::env::temp_dir().join(format!("portgate-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, value).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_keys_supply_credentials_and_beat_the_sdk_placeholder() {
    let file = secret_file("openai", "sk-from-secret\n");
    let (a, b, _c, gw) = three_mocks(|s| {
        s.virtual_keys.insert(
            "anthropic-virtual-key".into(),
            portgate::settings::VirtualKeyRow {
                provider: "openai".into(),
                api_key_env: None,
                api_key_file: Some(file.clone()),
                custom_host: None,
                options: Default::default(),
                rate_limits: Vec::new(),
                usage_limits: Vec::new(),
            },
        );
        s.virtual_keys.insert(
            "groq-vk".into(),
            portgate::settings::VirtualKeyRow {
                provider: "groq".into(),
                api_key_env: None,
                api_key_file: Some(file.clone()),
                custom_host: None,
                options: Default::default(),
                rate_limits: Vec::new(),
                usage_limits: Vec::new(),
            },
        );
    })
    .await;
    // What the Portkey SDK sends: the virtual key header and a placeholder Authorization.
    let (status, h, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-virtual-key", "anthropic-virtual-key"),
            ("authorization", "Bearer OPENAI_API_KEY"),
            ("x-portkey-api-key", "YOUR_PORTKEY_API_KEY"),
        ],
        body(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portkey-provider"), "openai");
    assert_eq!(
        a.requests()[0].header("authorization"),
        Some("Bearer sk-from-secret")
    );

    // The same through a config (the Anthropic guide's load-balance config).
    let config = json!({
        "strategy": {"mode": "loadbalance"},
        "targets": [
            {"virtual_key": "groq-vk", "override_params": {"model": "claude-3.5-haiku"}, "weight": 1},
            {"virtual_key": "groq-vk", "override_params": {"model": "claude-3.5-sonnet"}, "weight": 0}
        ]
    })
    .to_string();
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-config", &config),
            ("authorization", "Bearer OPENAI_API_KEY"),
        ],
        body(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["model"], "claude-3.5-haiku");
    assert_eq!(
        b.requests()[0].header("authorization"),
        Some("Bearer sk-from-secret")
    );

    // Unknown ids are 401, in the header and in a config; the message names the id, never a key.
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-virtual-key", "nope")],
        body(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(v["message"].as_str().unwrap().contains("\"nope\""));
    let cfg = json!({"virtual_key": "nope-2"}).to_string();
    let (status, _, v) = with_config(&gw, &cfg, body()).await;
    assert_eq!(status, 401);
    assert!(!v.to_string().contains("sk-from-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_key_is_required_when_configured() {
    let real = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(b"pg-local-key");
        format!(
            "sha256:{}",
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    };
    let (a, _b, _c, gw) = three_mocks(|s| s.gateway_keys = vec![real.clone()]).await;
    let openai = ("x-portkey-provider", "openai");
    let (status, _, v) = chat(&gw, "/v1/chat/completions", &[openai], body()).await;
    assert_eq!(status, 401);
    assert_eq!(v["status"], "failure");
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[openai, ("x-portkey-api-key", "wrong")],
        body(),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[openai, ("x-portkey-api-key", "pg-local-key")],
        body(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(a.request_count(), 1);
    // The health check needs no key.
    let resp = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
