//! Azure OpenAI through the gateway: where the request goes (deployment path, api-version,
//! `api-key`), from headers, config fields and a virtual key, and what the client gets back,
//! whole and streamed.
//!
//! The mock stands in for `https://{resource}.openai.azure.com/openai` through a custom host
//! (`x-portkey-custom-host`, a config `custom_host` or a virtual key's `custom_host`), which
//! replaces that base URL as in Portkey, so it ends in `/openai`. That the resource name
//! becomes the host is checked in `src/providers/azure.rs`.

use crate::support::*;
use portgate::settings::VirtualKeyRow;
use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/azure-openai/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn request_fixture() -> Value {
    serde_json::from_str(&fixture("chat_request.json")).unwrap()
}

/// The mock as the base URL `https://{resource}.openai.azure.com/openai` would be.
fn azure_base(mock: &MockProvider) -> String {
    let base = mock.base_url();
    format!("{}/openai", base.trim_end_matches("/v1"))
}

fn secret_file(value: &str) -> String {
    let dir = std::env::temp_dir().join(format!("portgate-azure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("azure-key");
    std::fs::write(&path, value).unwrap();
    path.display().to_string()
}

async fn setup() -> (MockProvider, TestGateway) {
    let mock = MockProvider::start().await;
    mock.always(Reply::Json {
        status: 200,
        body: fixture("chat_response.json"),
        headers: vec![],
    });
    let mut s = test_settings();
    s.virtual_keys.insert(
        "azure-vk".into(),
        VirtualKeyRow {
            provider: "azure-openai".into(),
            api_key_env: None,
            api_key_file: Some(secret_file("vk-azure-key\n")),
            custom_host: Some(azure_base(&mock)),
            options: [
                ("azure_resource_name", "contoso"),
                ("azure_deployment_id", "vk-dep"),
                ("azure_api_version", "2024-06-01"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            rate_limits: Vec::new(),
            usage_limits: Vec::new(),
        },
    );
    (mock, TestGateway::start(s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_name_resource_deployment_and_version() {
    let (mock, gw) = setup().await;
    let f = request_fixture();
    let base = azure_base(&mock);
    let (status, h, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "azure-openai"),
            ("authorization", "Bearer AZ-KEY"),
            ("x-portkey-custom-host", &base),
            ("x-portkey-azure-resource-name", "contoso-eastus"),
            ("x-portkey-azure-deployment-id", "gpt-4o-prod"),
            ("x-portkey-azure-api-version", "2024-10-21"),
        ],
        f["client_body"].clone(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(header(&h, "x-portkey-provider"), "azure-openai");
    // Azure's answer (with its content-filter fields) reaches the client as it was.
    let answer: Value = serde_json::from_str(&fixture("chat_response.json")).unwrap();
    assert_eq!(v, answer);
    let r = &mock.requests()[0];
    assert_eq!(
        r.path,
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(r.header("api-key"), Some("AZ-KEY"));
    assert_eq!(
        r.header("authorization"),
        None,
        "the key goes in api-key only"
    );
    assert_eq!(r.json(), f["upstream"]["body"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_and_completions_use_the_deployment_path() {
    let (mock, gw) = setup().await;
    let base = azure_base(&mock);
    let headers = [
        ("x-portkey-provider", "azure-openai"),
        ("authorization", "Bearer AZ-KEY"),
        ("x-portkey-custom-host", base.as_str()),
        ("x-portkey-azure-deployment-id", "emb"),
    ];
    let (status, _, _) = chat(
        &gw,
        "/v1/embeddings",
        &headers,
        json!({"model": "text-embedding-3-small", "input": "hi"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = chat(
        &gw,
        "/v1/completions",
        &headers,
        json!({"model": "gpt-35-turbo-instruct", "prompt": "hi"}),
    )
    .await;
    assert_eq!(status, 200);
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/openai/deployments/emb/embeddings?api-version=2024-10-21",
            "/openai/deployments/emb/completions?api-version=2024-10-21"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_resource_or_deployment_is_a_clear_400() {
    let (mock, gw) = setup().await;
    let base = azure_base(&mock);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    // No custom host and no resource: nowhere to send it.
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "azure-openai"),
            ("authorization", "Bearer AZ-KEY"),
            ("x-portkey-azure-deployment-id", "d"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("azure_resource_name"),
        "{v}"
    );
    // A malformed resource name never becomes a host.
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "azure-openai"),
            ("authorization", "Bearer AZ-KEY"),
            ("x-portkey-azure-resource-name", "evil.example.com#"),
            ("x-portkey-azure-deployment-id", "d"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "azure-openai"),
            ("authorization", "Bearer AZ-KEY"),
            ("x-portkey-custom-host", &base),
        ],
        body,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("azure_deployment_id"),
        "{v}"
    );
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_fields_win_and_headers_apply_only_to_the_headers_target() {
    let (mock, gw) = setup().await;
    let base = azure_base(&mock);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    // A config target that names the provider: its fields; the headers' are not used.
    let config = json!({
        "provider": "azure-openai", "api_key": "cfg-key", "custom_host": base,
        "azure_resource_name": "contoso", "azure_deployment_id": "cfg-dep",
        "azure_api_version": "2024-06-01"
    })
    .to_string();
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-config", &config),
            ("x-portkey-azure-deployment-id", "hdr-dep"),
            ("x-portkey-azure-api-version", "2025-01-01-preview"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    // Inherited from the root into a nested target, overridden key by key.
    let config = json!({
        "strategy": {"mode": "fallback"},
        "azure_api_version": "2024-02-01",
        "azure_deployment_id": "root-dep",
        "targets": [{"provider": "azure-openai", "api_key": "cfg-key", "custom_host": base,
                     "azure_deployment_id": "leaf-dep"}]
    })
    .to_string();
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-config", &config)],
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    // A config without provider: the headers name the target, the config's fields win.
    let config = json!({"retry": {"attempts": 0}, "azure_deployment_id": "cfg-dep"}).to_string();
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-config", &config),
            ("x-portkey-provider", "azure-openai"),
            ("authorization", "Bearer AZ-KEY"),
            ("x-portkey-custom-host", &base),
            ("x-portkey-azure-deployment-id", "hdr-dep"),
        ],
        body,
    )
    .await;
    assert_eq!(status, 200);
    let got: Vec<(String, Option<String>)> = mock
        .requests()
        .into_iter()
        .map(|r| (r.path.clone(), r.header("api-key").map(str::to_string)))
        .collect();
    assert_eq!(
        got,
        [
            (
                "/openai/deployments/cfg-dep/chat/completions?api-version=2024-06-01".into(),
                Some("cfg-key".into())
            ),
            (
                "/openai/deployments/leaf-dep/chat/completions?api-version=2024-02-01".into(),
                Some("cfg-key".into())
            ),
            (
                "/openai/deployments/cfg-dep/chat/completions?api-version=2024-10-21".into(),
                Some("AZ-KEY".into())
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_key_brings_key_resource_deployment_and_version() {
    let (mock, gw) = setup().await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let (status, h, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-virtual-key", "azure-vk"),
            ("authorization", "Bearer OPENAI_API_KEY"),
            // Lower precedence than the key's own options.
            ("x-portkey-azure-deployment-id", "hdr-dep"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portkey-provider"), "azure-openai");
    // Through a config target too, whose own field wins over the key's.
    let config = json!({"virtual_key": "azure-vk", "azure_deployment_id": "cfg-dep"}).to_string();
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-config", &config)],
        body,
    )
    .await;
    assert_eq!(status, 200);
    let r = mock.requests();
    assert_eq!(
        r[0].path,
        "/openai/deployments/vk-dep/chat/completions?api-version=2024-06-01"
    );
    assert_eq!(r[0].header("api-key"), Some("vk-azure-key"));
    assert_eq!(
        r[1].path,
        "/openai/deployments/cfg-dep/chat/completions?api-version=2024-06-01"
    );
    assert_eq!(r[1].header("api-key"), Some("vk-azure-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_token_goes_as_bearer_instead_of_api_key() {
    let (mock, gw) = setup().await;
    let base = azure_base(&mock);
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "azure-openai"),
            ("x-portkey-custom-host", &base),
            ("x-portkey-azure-deployment-id", "d"),
            ("x-portkey-azure-ad-token", "eyJ0eXAi"),
        ],
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let r = &mock.requests()[0];
    assert_eq!(r.header("authorization"), Some("Bearer eyJ0eXAi"));
    assert_eq!(r.header("api-key"), None);
}

fn stream_events() -> Vec<String> {
    fixture("chat_stream.sse")
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(str::to_string)
        .collect()
}

async fn stream(gw: &TestGateway, base: &str, version: &str, body: Value) -> String {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "azure-openai")
        .header("authorization", "Bearer AZ-KEY")
        .header("x-portkey-custom-host", base)
        .header("x-portkey-azure-deployment-id", "d")
        .header("x-portkey-azure-api-version", version)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_relayed_and_usage_is_asked_for_on_new_api_versions() {
    let (mock, gw) = setup().await;
    let base = azure_base(&mock);
    let body = json!({"model": "gpt-4o", "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    mock.script([Reply::Sse {
        events: stream_events(),
        delay: std::time::Duration::ZERO,
    }]);
    let text = stream(&gw, &base, "2024-10-21", body.clone()).await;
    // The gateway asked for usage; the client, who did not, sees no trace of it.
    let sent = mock.requests()[0].json();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    assert!(!text.contains("usage"), "{text}");
    assert!(text.contains(r#""content":"Hi""#), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    // An api-version older than stream_options: the body goes out as the client wrote it.
    mock.script([Reply::Sse {
        events: stream_events(),
        delay: std::time::Duration::ZERO,
    }]);
    let text = stream(&gw, &base, "2024-06-01", body.clone()).await;
    assert_eq!(mock.requests()[1].json(), body);
    assert!(text.ends_with("data: [DONE]\n\n"));

    // A client that asks for usage gets Azure's usage chunk.
    let mut asked = body;
    asked["stream_options"] = json!({"include_usage": true});
    mock.script([Reply::Sse {
        events: stream_events(),
        delay: std::time::Duration::ZERO,
    }]);
    let text = stream(&gw, &base, "2024-10-21", asked).await;
    assert!(text.contains(r#""total_tokens":15"#), "{text}");
}
