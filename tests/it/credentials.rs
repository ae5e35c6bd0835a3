//! Credentials go only where they belong: a key from the settings is
//! never sent to a host the request chose, forward lists cannot carry credentials, and
//! passthrough paths cannot climb out of the provider's base path.

use crate::support::*;
use portgate::settings::VirtualKeyRow;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway with the virtual key `vault` (provider openai, key from a file) on mock A.
async fn vault_gateway(
    tweak: impl FnOnce(&mut portgate::Settings, &str),
) -> (MockProvider, MockProvider, TestGateway) {
    let dir = std::env::temp_dir().join(format!("portgate-cred-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vault");
    std::fs::write(&file, "sk-vault-secret").unwrap();
    // The host a request might choose: a mock no provider row points at.
    let other = MockProvider::start().await;
    let other_url = other.base_url();
    let (a, _b, _c, gw) = three_mocks(|s| {
        s.virtual_keys.insert(
            "vault".into(),
            VirtualKeyRow {
                provider: "openai".into(),
                api_key_env: None,
                api_key_file: Some(file.display().to_string()),
                custom_host: None,
                options: Default::default(),
                rate_limits: Vec::new(),
                usage_limits: Vec::new(),
            },
        );
        tweak(s, &other_url);
    })
    .await;
    (a, other, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_key_never_goes_to_a_host_the_request_chose() {
    let (a, b, gw) = vault_gateway(|_, _| {}).await;
    let elsewhere = b.base_url();
    // The header virtual key with a header custom host.
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-virtual-key", "vault"),
            ("x-portkey-custom-host", &elsewhere),
        ],
        user_chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("virtual key"));
    // An inline config pairing a virtual key with a custom host.
    let inline = json!({"virtual_key": "vault", "custom_host": elsewhere}).to_string();
    let (status, _, v) = with_config(&gw, &inline, user_chat("gpt-4o", "hi")).await;
    assert_eq!(status, 400);
    assert_eq!(v["message"], "Invalid config passed");
    assert!(v["errors"][0].as_str().unwrap().contains("virtual_key"));
    // An inline config sending the header's virtual key to its own custom host.
    let borrowed = json!({"retry": {"attempts": 0}, "custom_host": elsewhere}).to_string();
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-config", &borrowed),
            ("x-portkey-virtual-key", "vault"),
        ],
        user_chat("gpt-4o", "hi"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!((a.request_count(), b.request_count()), (0, 0));
    // The request's own key may go to the request's own host.
    let own =
        json!({"provider": "openai", "api_key": "sk-mine", "custom_host": elsewhere}).to_string();
    let (status, _, _) = with_config(&gw, &own, user_chat("gpt-4o", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(
        b.requests()[0].header("authorization"),
        Some("Bearer sk-mine")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_config_may_send_a_vault_key_to_its_custom_host() {
    let (a, b, gw) = vault_gateway(|s, b_url| {
        s.configs.insert(
            "pc-local".into(),
            json!({"virtual_key": "vault", "custom_host": b_url}),
        );
    })
    .await;
    let (status, _, _) = with_config(&gw, "pc-local", user_chat("gpt-4o", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(a.request_count(), 0);
    assert_eq!(
        b.requests()[0].header("authorization"),
        Some("Bearer sk-vault-secret")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_lists_cannot_carry_credentials() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    for name in [
        "authorization",
        "X-Api-Key",
        "api-key",
        "x-portkey-virtual-key",
        "te",
    ] {
        let (status, _, _) = chat(
            &gw,
            "/v1/chat/completions",
            &[
                ("x-portkey-provider", "openai"),
                ("x-portkey-forward-headers", name),
            ],
            user_chat("gpt-4o", "hi"),
        )
        .await;
        assert_eq!(status, 400, "header list {name}");
        let config =
            json!({"provider": "openai", "api_key": "k", "forward_headers": [name]}).to_string();
        let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "hi")).await;
        assert_eq!(status, 400, "config list {name}");
        assert!(
            v["errors"][0].as_str().unwrap().contains("forward_headers"),
            "{v}"
        );
    }
    assert_eq!(mock.request_count(), 0);
}

/// Sends one raw request line (no URL normalisation by a client library) and returns the status.
async fn raw_get(gw: &TestGateway, target: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nhost: x\r\nx-portkey-provider: openai\r\n\
         authorization: Bearer sk\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_paths_stay_below_the_base_path() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    for bad in [
        "/v1/../admin",
        "/v1/models/../../x",
        "/v1/%2e%2e/x",
        "/v1/%2E%2E/%2e%2e/x",
        "/v1/a%2f..%2f..%2fx",
    ] {
        assert_eq!(raw_get(&gw, bad).await, 400, "{bad}");
    }
    assert_eq!(mock.request_count(), 0);
    assert_eq!(
        raw_get(&gw, "/v1/models/./gpt-4o/../gpt-4o-mini").await,
        200
    );
    assert_eq!(mock.requests()[0].path, "/v1/models/gpt-4o-mini");
}

/// A Bedrock virtual key carries no API key: its credential is the AWS key pair and session
/// token in its options (read from files here). It is a vault credential all the same, so no
/// form of request may send it to a host the request chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_keys_of_a_virtual_key_never_go_to_a_host_the_request_chose() {
    let dir = std::env::temp_dir().join(format!("portgate-aws-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, value: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        path.display().to_string()
    };
    let options = [
        ("aws_access_key_id_file", file("id", "AKIAVAULT")),
        ("aws_secret_access_key_file", file("secret", "vault-secret")),
        ("aws_session_token_file", file("token", "vault-session")),
        ("aws_region", "us-west-2".to_string()),
    ];
    let home = MockProvider::start().await;
    let home_origin = home.base_url().trim_end_matches("/v1").to_string();
    let (_a, other, gw) = vault_gateway(|s, _| {
        s.virtual_keys.insert(
            "bedrock-vk".into(),
            VirtualKeyRow {
                provider: "bedrock".into(),
                api_key_env: None,
                api_key_file: None,
                custom_host: Some(home_origin.clone()),
                options: options
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                rate_limits: Vec::new(),
                usage_limits: Vec::new(),
            },
        );
    })
    .await;
    let elsewhere = other.base_url().trim_end_matches("/v1").to_string();
    let body = json!({"model": "anthropic.claude-3-5-haiku-20241022-v1:0",
        "messages": [{"role": "user", "content": "hi"}]});
    let vk = ("x-portkey-virtual-key", "bedrock-vk");
    let configs = [
        // The config names the provider and a host; the header names the key.
        json!({"provider": "bedrock", "custom_host": elsewhere, "retry": {"attempts": 0}}),
        // A target without provider: the header's key under the config's host.
        json!({"custom_host": elsewhere, "retry": {"attempts": 0}}),
        // The host inherited by a nested target.
        json!({"strategy": {"mode": "fallback"}, "custom_host": elsewhere,
               "targets": [{"provider": "bedrock", "retry": {"attempts": 0}}]}),
    ];
    for config in configs {
        let config = config.to_string();
        let (status, _, v) = chat(
            &gw,
            "/v1/chat/completions",
            &[vk, ("x-portkey-config", &config)],
            body.clone(),
        )
        .await;
        assert_eq!(status, 400, "{config}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains("virtual key"),
            "{v}"
        );
    }
    // The config's own `virtual_key` with a host: refused when the config is read.
    let inline = json!({"virtual_key": "bedrock-vk", "custom_host": elsewhere}).to_string();
    let (status, _, v) = with_config(&gw, &inline, body.clone()).await;
    assert_eq!(status, 400);
    assert_eq!(v["message"], "Invalid config passed");
    // The header's custom host.
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[vk, ("x-portkey-custom-host", &elsewhere)],
        body.clone(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        other.request_count(),
        0,
        "nothing reached the request's host"
    );

    // At home (the key's own host from the settings) the request is signed with the vault's
    // keys, read from their files.
    home.always(Reply::json(
        200,
        serde_json::from_slice(
            &std::fs::read(format!(
                "{}/tests/fixtures/bedrock/matrix_response.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap(),
    ));
    let (status, _, v) = chat(&gw, "/v1/chat/completions", &[vk], body).await;
    assert_eq!(status, 200, "{v}");
    let seen = &home.requests()[0];
    let auth = seen.header("authorization").unwrap();
    assert!(auth.contains("Credential=AKIAVAULT/"), "{auth}");
    assert!(auth.contains("/us-west-2/bedrock/"), "{auth}");
    assert_eq!(seen.header("x-amz-security-token"), Some("vault-session"));
}
