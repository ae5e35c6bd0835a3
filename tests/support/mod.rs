//! Test support shared by the integration tests: a scripted mock provider and an in-process
//! gateway harness. Not every test file uses every helper.
#![allow(dead_code, unused_imports)]

pub mod harness;
pub mod mock;
pub mod postgres;
pub mod redis;

pub use harness::{client, free_port, test_settings, TestGateway};
pub use mock::{chat_body, chat_events, MockProvider, Recorded, Reply};
pub use postgres::PgServer;
pub use redis::RedisServer;

use portgate::settings::ProviderRow;
use portgate::Settings;

/// A chat request with one user message.
pub fn user_chat(model: &str, text: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Points the given provider slugs at the mock.
pub fn route_to(settings: &mut Settings, mock: &MockProvider, slugs: &[&str]) {
    for slug in slugs {
        settings.providers.insert(
            slug.to_string(),
            ProviderRow {
                base_url: mock.base_url(),
                auth_header: "authorization".into(),
                stream_usage: true,
            },
        );
    }
}

/// A gateway whose `openai` and `anyscale` providers are the mock.
pub fn gateway_for(mock: &MockProvider) -> TestGateway {
    let mut s = test_settings();
    route_to(&mut s, mock, &["openai", "anyscale"]);
    TestGateway::start(s)
}

/// Sends a chat request with the given headers; returns status, headers and JSON body.
pub async fn chat(
    gw: &TestGateway,
    path: &str,
    headers: &[(&str, &str)],
    body: serde_json::Value,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut req = client().post(gw.url(path)).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, h, v)
}

/// A chat request carrying `x-portkey-config`.
pub async fn with_config(
    gw: &TestGateway,
    config: &str,
    body: serde_json::Value,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    chat(
        gw,
        "/v1/chat/completions",
        &[("x-portkey-config", config)],
        body,
    )
    .await
}

/// A JSON document of the admin listener (`/circuits`, `/limits`).
pub async fn admin_json(gw: &TestGateway, path: &str) -> serde_json::Value {
    client()
        .get(gw.admin_url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The admin listener's `/circuits`.
pub async fn circuits(gw: &TestGateway) -> serde_json::Value {
    admin_json(gw, "/circuits").await
}

/// A header value as text ("" when absent).
pub fn header<'h>(h: &'h reqwest::header::HeaderMap, name: &str) -> &'h str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Three mocks as providers `openai`, `groq` and `together-ai`, and a gateway routing to them.
pub async fn three_mocks(
    tweak: impl FnOnce(&mut Settings),
) -> (MockProvider, MockProvider, MockProvider, TestGateway) {
    let (a, b, c) = (
        MockProvider::start().await,
        MockProvider::start().await,
        MockProvider::start().await,
    );
    let mut s = test_settings();
    route_to(&mut s, &a, &["openai", "anyscale"]);
    route_to(&mut s, &b, &["groq"]);
    route_to(&mut s, &c, &["together-ai"]);
    s.retry.backoff_base_ms = 10;
    tweak(&mut s);
    let gw = TestGateway::start(s);
    (a, b, c, gw)
}

/// Scrapes `/metrics` from the admin listener once every request has been recorded: a client
/// has its whole answer before the gateway's `logging` hook records it, so a scrape right after
/// could race it. Requests are counted in `portgate_inflight_requests` until recorded. A scrape
/// is not one snapshot (families are read one after another, sorted by name), so the one that
/// saw no request in flight may still hold families read before the last one was recorded
/// (`portgate_cost_usd_total` sorts before the gauge): the text returned is the scrape after.
pub async fn scrape(gw: &TestGateway) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let fetch = || async {
        client()
            .get(gw.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    loop {
        let text = fetch().await;
        if sample(&text, "portgate_inflight_requests", &[]) == Some(0.0) {
            return fetch().await;
        }
        if std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Headers naming `anthropic` with the mock as its host (loopback is trusted in tests).
pub fn anthropic_on(mock: &MockProvider) -> Vec<(&'static str, String)> {
    vec![
        ("x-portkey-provider", "anthropic".into()),
        ("x-portkey-custom-host", mock.base_url()),
        ("authorization", "Bearer sk-ant-test".into()),
    ]
}

/// `portgate_tokens_total` of one provider, model and token type (`input`, `output`, ...).
pub fn tokens(text: &str, provider: &str, model: &str, kind: &str) -> Option<f64> {
    sample(
        text,
        "portgate_tokens_total",
        &[("provider", provider), ("model", model), ("type", kind)],
    )
}

/// `portgate_tokens_total` of one provider and token kind, whatever the model.
pub fn provider_tokens(text: &str, provider: &str, kind: &str) -> Option<f64> {
    sample(
        text,
        "portgate_tokens_total",
        &[("provider", provider), ("type", kind)],
    )
}

/// The value of one sample: `name{labels}` with labels in any order, given as `k="v"` pairs
/// that must all be present. `None` when no sample matches.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The resident set of this process, in KiB (the gateway under test runs in it).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A directory of its own under the system's temporary directory, emptied at the start and
/// removed when dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    /// `prefix` names the test file, `name` the test: a test process's dirs never collide.
    pub fn new(prefix: &str, name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    /// Writes a file in the directory; its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A provider's fixture file, as bytes.
pub fn provider_fixture(slug: &str, name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{slug}/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The `upstream` member of a provider's fixture: the provider's own answer.
pub fn fixture_upstream(slug: &str, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&provider_fixture(slug, name)).unwrap();
    v["upstream"].clone()
}
