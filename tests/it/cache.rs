//! The response cache with the memory backend, end to end: hits, misses, refresh, namespaces,
//! credentials, expiry, errors never cached, streamed answers replayed as SSE, metrics.

use crate::support::*;
use serde_json::json;

fn body(content: &str) -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": content}], "temperature": 0})
}

fn cached_config(key: &str) -> String {
    json!({"provider": "openai", "api_key": key, "cache": {"mode": "simple"}}).to_string()
}

async fn ask(
    gw: &TestGateway,
    config: &str,
    extra: &[(&str, &str)],
    body: serde_json::Value,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut headers = vec![("x-portkey-config", config)];
    headers.extend_from_slice(extra);
    chat(gw, "/v1/chat/completions", &headers, body).await
}

fn status(h: &reqwest::header::HeaderMap) -> &str {
    header(h, "x-portkey-cache-status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_hit_after_a_miss_with_key_order_ignored() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let config = cached_config("sk-1");
    let (s1, h1, v1) = ask(&gw, &config, &[], body("hi")).await;
    assert_eq!(s1, 200);
    assert_eq!(status(&h1), "MISS");
    // Same request, members in another order: served from the cache.
    let reordered =
        json!({"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m"});
    let (s2, h2, v2) = ask(&gw, &config, &[], reordered).await;
    assert_eq!(s2, 200);
    assert_eq!(status(&h2), "HIT");
    assert_eq!(v1, v2, "the stored answer, byte for byte the same JSON");
    assert_eq!(
        mock.request_count(),
        1,
        "the hit did not reach the provider"
    );
    assert_eq!(header(&h2, "x-portkey-provider"), "openai");
    assert_eq!(header(&h2, "x-portkey-last-used-option-index"), "config");
    // A different prompt misses.
    let (_, h3, _) = ask(&gw, &config, &[], body("other")).await;
    assert_eq!(status(&h3), "MISS");
    assert_eq!(mock.request_count(), 2);

    let text = scrape(&gw).await;
    let count = |result: &str| {
        sample(
            &text,
            "portgate_cache_requests_total",
            &[("mode", "simple"), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(count("hit"), 1.0);
    assert_eq!(count("miss"), 2.0);
    assert_eq!(
        sample(&text, "portgate_requests_total", &[("cache_status", "HIT")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "portgate_cache_saved_tokens_total",
            &[("type", "input")]
        ),
        Some(9.0),
        "the hit's prompt tokens were saved"
    );
    assert_eq!(sample(&text, "portgate_cache_entries", &[]), Some(2.0));
    assert!(sample(&text, "portgate_cache_bytes", &[]).unwrap() > 0.0);
    assert!(
        sample(
            &text,
            "portgate_cache_lookup_duration_seconds_count",
            &[("backend", "memory")]
        )
        .unwrap()
            >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cache_config_the_status_is_disabled() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let config = json!({"provider": "openai", "api_key": "sk-1"}).to_string();
    for _ in 0..2 {
        let (_, h, _) = ask(&gw, &config, &[], body("hi")).await;
        assert_eq!(status(&h), "DISABLED");
    }
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_refresh_skips_the_read_and_replaces_the_entry() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let config = cached_config("sk-1");
    mock.script([Reply::chat("m", "first"), Reply::chat("m", "second")]);
    let (_, h, v) = ask(&gw, &config, &[], body("hi")).await;
    assert_eq!(status(&h), "MISS");
    assert_eq!(v["choices"][0]["message"]["content"], "first");
    // `false` does nothing.
    let (_, h, v) = ask(
        &gw,
        &config,
        &[("x-portkey-cache-force-refresh", "false")],
        body("hi"),
    )
    .await;
    assert_eq!(status(&h), "HIT");
    assert_eq!(v["choices"][0]["message"]["content"], "first");
    let (_, h, v) = ask(
        &gw,
        &config,
        &[("x-portkey-cache-force-refresh", "true")],
        body("hi"),
    )
    .await;
    assert_eq!(status(&h), "REFRESH");
    assert_eq!(v["choices"][0]["message"]["content"], "second");
    let (_, h, v) = ask(&gw, &config, &[], body("hi")).await;
    assert_eq!(status(&h), "HIT");
    assert_eq!(
        v["choices"][0]["message"]["content"], "second",
        "the refreshed entry"
    );
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_credentials_never_share_an_entry() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let a = cached_config("sk-a");
    let b = cached_config("sk-b");
    let (_, h, _) = ask(&gw, &a, &[], body("hi")).await;
    assert_eq!(status(&h), "MISS");
    let (_, h, _) = ask(&gw, &b, &[], body("hi")).await;
    assert_eq!(status(&h), "MISS", "another credential");
    let (_, h, _) = ask(
        &gw,
        &a,
        &[("x-portkey-cache-namespace", "tenant-1")],
        body("hi"),
    )
    .await;
    assert_eq!(status(&h), "MISS", "another namespace");
    let (_, h, _) = ask(
        &gw,
        &a,
        &[("x-portkey-cache-namespace", "tenant-1")],
        body("hi"),
    )
    .await;
    assert_eq!(status(&h), "HIT");
    let (_, h, _) = ask(&gw, &b, &[], body("hi")).await;
    assert_eq!(status(&h), "HIT");
    assert_eq!(mock.request_count(), 3);
    // The credential is in the key only as a digest: the upstream still got the right one.
    let keys: Vec<_> = mock
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect();
    assert_eq!(keys, ["Bearer sk-a", "Bearer sk-b", "Bearer sk-a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_expire_after_max_age() {
    let mock = MockProvider::start().await;
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    // The test knob: the smallest max_age honoured (60 s by default).
    s.cache.min_max_age_seconds = 1;
    let gw = TestGateway::start(s);
    let config =
        json!({"provider": "openai", "api_key": "sk", "cache": {"mode": "simple", "max_age": 1}})
            .to_string();
    let (_, h, _) = ask(&gw, &config, &[], body("hi")).await;
    assert_eq!(status(&h), "MISS");
    let (_, h, _) = ask(&gw, &config, &[], body("hi")).await;
    assert_eq!(status(&h), "HIT");
    // Expiry is in whole seconds: the entry is served until its second has passed, then
    // never again (asked every 50 ms rather than sleeping a fixed worst case).
    let stored = std::time::Instant::now();
    let expired = loop {
        let (_, h, _) = ask(&gw, &config, &[], body("hi")).await;
        if status(&h) != "HIT" {
            break status(&h).to_string();
        }
        assert!(
            stored.elapsed().as_secs() < 3,
            "still served after its max_age"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(expired, "MISS", "expired");
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_never_cached() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let config = cached_config("sk");
    mock.script([
        Reply::json(429, json!({"error": {"message": "slow down"}})),
        Reply::json(500, json!({"error": {"message": "oops"}})),
    ]);
    let (s, h, _) = ask(&gw, &config, &[], body("hi")).await;
    assert_eq!(s, 429);
    assert_eq!(status(&h), "MISS");
    let (s, h, _) = ask(&gw, &config, &[], body("hi")).await;
    assert_eq!(s, 500, "the 429 was not replayed");
    assert_eq!(status(&h), "MISS");
    let (s, h, _) = ask(&gw, &config, &[], body("hi")).await;
    assert_eq!(s, 200);
    assert_eq!(status(&h), "MISS");
    let (s, h, _) = ask(&gw, &config, &[], body("hi")).await;
    assert_eq!(s, 200);
    assert_eq!(status(&h), "HIT");
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_string_form_enables_the_cache() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let config = json!({"provider": "openai", "api_key": "sk", "cache": "simple"}).to_string();
    let (_, h, _) = ask(&gw, &config, &[], body("hi")).await;
    assert_eq!(status(&h), "MISS");
    let (_, h, _) = ask(&gw, &config, &[], body("hi")).await;
    assert_eq!(status(&h), "HIT");
    // Semantic mode: the exact match is tried first; a miss says so.
    let semantic =
        json!({"provider": "openai", "api_key": "sk", "cache": {"mode": "semantic"}}).to_string();
    let (_, h, _) = ask(&gw, &semantic, &[], body("new")).await;
    assert_eq!(status(&h), "SEMANTIC MISS");
    let (_, h, _) = ask(&gw, &semantic, &[], body("new")).await;
    assert_eq!(status(&h), "HIT");
}

/// The `data:` payloads of an SSE body, parsed with the gateway's event splitter fed one byte
/// at a time (any framing error would show as a missing or merged event).
fn sse_data(raw: &[u8]) -> Vec<String> {
    let mut splitter = portgate::stream::sse::SseSplitter::default();
    let mut events = Vec::new();
    for b in raw {
        events.extend(splitter.push(&bytes::Bytes::copy_from_slice(&[*b])));
    }
    events.extend(splitter.finish());
    events
        .iter()
        .filter_map(portgate::stream::sse::data)
        .map(|d| String::from_utf8(d.to_vec()).unwrap())
        .collect()
}

async fn stream(gw: &TestGateway, config: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-config", config)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"count"}]}"#)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    // A stream cut short ends in a body error: what arrived is enough here.
    let raw = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    (status, h, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_is_stored_once_complete_and_replayed_as_sse() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let config = cached_config("sk");
    mock.script([Reply::Sse {
        events: chat_events("m", &["one", " two", " three"]),
        delay: std::time::Duration::ZERO,
    }]);
    let (s1, h1, live) = stream(&gw, &config).await;
    assert_eq!(s1, 200);
    assert_eq!(status(&h1), "MISS");
    let (s2, h2, replay) = stream(&gw, &config).await;
    assert_eq!(s2, 200);
    assert_eq!(status(&h2), "HIT");
    assert!(header(&h2, "content-type").starts_with("text/event-stream"));
    assert_eq!(mock.request_count(), 1);
    let events = sse_data(&replay);
    assert_eq!(events, sse_data(&live), "the same events");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let text: String = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(e).unwrap();
            assert_eq!(v["object"], "chat.completion.chunk");
            v["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(text, "one two three");
    // A whole answer to the same prompt is a separate entry.
    let (_, h, _) = ask(
        &gw,
        &config,
        &[],
        json!({"model":"m","messages":[{"role":"user","content":"count"}]}),
    )
    .await;
    assert_eq!(status(&h), "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_short_is_not_stored() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let config = cached_config("sk");
    mock.script([Reply::SseThenReset {
        events: vec![chat_events("m", &["one"])[0].clone()],
        delay: std::time::Duration::ZERO,
    }]);
    let _ = stream(&gw, &config).await;
    mock.script([Reply::Sse {
        events: chat_events("m", &["whole"]),
        delay: std::time::Duration::ZERO,
    }]);
    let (_, h, _) = stream(&gw, &config).await;
    assert_eq!(status(&h), "MISS", "the cut stream was not stored");
    let (_, h, raw) = stream(&gw, &config).await;
    assert_eq!(status(&h), "HIT");
    assert!(String::from_utf8_lossy(&raw).contains("whole"));
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_can_turn_the_cache_off() {
    let mock = MockProvider::start().await;
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    s.cache.enabled = false;
    let gw = TestGateway::start(s);
    let config = cached_config("sk");
    for _ in 0..2 {
        let (_, h, _) = ask(&gw, &config, &[], body("hi")).await;
        assert_eq!(status(&h), "DISABLED");
    }
    assert_eq!(mock.request_count(), 2);
}

/// A gateway whose `openai` is `chat` and whose semantic cache embeds with `embedder`.
async fn semantic_gateway(
    tweak: impl FnOnce(&mut portgate::Settings),
) -> (MockProvider, MockProvider, TestGateway) {
    let (chat, embedder) = (MockProvider::start().await, MockProvider::start().await);
    let mut s = test_settings();
    route_to(&mut s, &chat, &["openai"]);
    use_embedder(&mut s, &embedder);
    tweak(&mut s);
    (chat, embedder, TestGateway::start(s))
}

/// A semantic-cache config with its own threshold.
fn semantic_config(threshold: f64) -> String {
    json!({"provider": "openai", "api_key": "sk", "cache": {"mode": "semantic", "threshold": threshold}})
        .to_string()
}

/// Makes `embedder` the semantic cache's embedding target (virtual key `embedder`).
fn use_embedder(s: &mut portgate::Settings, embedder: &MockProvider) {
    s.virtual_keys.insert(
        "embedder".into(),
        portgate::settings::VirtualKeyRow {
            provider: "openai".into(),
            api_key_env: None,
            api_key_file: None,
            custom_host: Some(embedder.base_url()),
            options: Default::default(),
            rate_limits: Vec::new(),
            usage_limits: Vec::new(),
        },
    );
    s.cache.semantic.virtual_key = Some("embedder".into());
}

fn embedding(v: &[f32]) -> Reply {
    Reply::json(
        200,
        json!({"object": "list", "model": "emb", "data": [{"object": "embedding", "index": 0, "embedding": v}],
               "usage": {"prompt_tokens": 5, "total_tokens": 5}}),
    )
}

fn question(system: &str, user: &str) -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_sets_its_own_semantic_threshold() {
    let (chat_mock, embedder, gw) = semantic_gateway(|s| {
        // The operator lets configs loosen the threshold down to 0.7.
        s.cache.semantic.min_threshold = Some(0.7);
        s.cache.semantic.model = "emb-model".into();
    })
    .await;
    let config = semantic_config;
    // Stored with [1, 0, 0]; each paraphrase is at cosine 0.8 from it (and 0.64 from each
    // other: the second, stored after its miss, is not the third's neighbour).
    embedder.script([
        embedding(&[1.0, 0.0, 0.0]),
        embedding(&[0.8, 0.6, 0.0]),
        embedding(&[0.8, 0.0, 0.6]),
    ]);
    let q = |text: &str| question("be brief", text);
    let (_, h, _) = ask(&gw, &config(0.9), &[], q("What is the capital of France?")).await;
    assert_eq!(status(&h), "SEMANTIC MISS");
    // 0.8 is below this config's 0.9: a miss, sent upstream.
    let (_, h, _) = ask(&gw, &config(0.9), &[], q("France: its capital?")).await;
    assert_eq!(status(&h), "SEMANTIC MISS");
    assert_eq!(chat_mock.request_count(), 2);
    // A config that accepts 0.75 gets the cached answer for the same paraphrase.
    let (_, h, _) = ask(&gw, &config(0.75), &[], q("France's capital city?")).await;
    assert_eq!(status(&h), "SEMANTIC HIT");
    assert_eq!(chat_mock.request_count(), 2);
    // Out of range: a 400 naming the field.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-config", config(1.5))
        .json(&q("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert!(body.contains("threshold"), "{body}");
}

/// Configs come from requests: without a floor set by the operator, a config may raise the
/// semantic threshold but never lower it, so `"threshold": 0.01` cannot be served another
/// prompt's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_cannot_lower_the_semantic_threshold_below_the_floor() {
    let (chat_mock, embedder, gw) = semantic_gateway(|_| {}).await;
    let config = semantic_config;
    embedder.script([
        embedding(&[1.0, 0.0, 0.0]),
        // An unrelated prompt (cosine 0.1) with a config asking for 0.01.
        embedding(&[0.1, 0.995, 0.0]),
        // A near paraphrase (cosine 0.97: a hit at the settings' 0.95) with a config asking
        // for 0.99: a config may raise the threshold.
        embedding(&[0.97, 0.0, 0.243]),
    ]);
    let q = |text: &str| question("be brief", text);
    let (_, h, _) = ask(&gw, &config(0.95), &[], q("What is the capital of France?")).await;
    assert_eq!(status(&h), "SEMANTIC MISS");
    let (_, h, v) = ask(&gw, &config(0.01), &[], q("How do I reset my password?")).await;
    assert_eq!(status(&h), "SEMANTIC MISS", "{v}");
    let (_, h, _) = ask(&gw, &config(0.99), &[], q("What's France's capital?")).await;
    assert_eq!(status(&h), "SEMANTIC MISS");
    assert_eq!(chat_mock.request_count(), 3, "each was sent upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantic_hit_for_a_paraphrase_and_miss_below_the_threshold() {
    let (chat_mock, embedder, gw) = semantic_gateway(|s| {
        s.cache.semantic.model = "emb-model".into();
    })
    .await;
    let config =
        json!({"provider": "openai", "api_key": "sk", "cache": {"mode": "semantic"}}).to_string();
    // The mock embedder's deterministic vectors, in request order.
    embedder.script([
        embedding(&[1.0, 0.0, 0.0]),
        embedding(&[0.99, 0.14, 0.0]),
        embedding(&[0.0, 1.0, 0.0]),
        Reply::json(500, json!({"error": {"message": "embedder down"}})),
    ]);
    let (_, h, v1) = ask(
        &gw,
        &config,
        &[],
        question("be brief", "What is the capital of France?"),
    )
    .await;
    assert_eq!(status(&h), "SEMANTIC MISS");
    let sent = embedder.requests()[0].json();
    assert_eq!(sent["model"], "emb-model");
    assert_eq!(
        sent["input"], "What is the capital of France?",
        "the user message only"
    );
    // Exact repeat: an exact hit, no embedding needed.
    let (_, h, _) = ask(
        &gw,
        &config,
        &[],
        question("be brief", "What is the capital of France?"),
    )
    .await;
    assert_eq!(status(&h), "HIT");
    assert_eq!(embedder.request_count(), 1);
    // A paraphrase (cosine 0.99 ≥ 0.95): the cached answer.
    let (s2, h, v2) = ask(
        &gw,
        &config,
        &[],
        question("be brief", "Tell me France's capital city"),
    )
    .await;
    assert_eq!(s2, 200);
    assert_eq!(status(&h), "SEMANTIC HIT");
    assert_eq!(v1, v2);
    assert_eq!(chat_mock.request_count(), 1);
    // Another question (cosine 0): a miss, sent upstream.
    let (_, h, _) = ask(
        &gw,
        &config,
        &[],
        question("be brief", "How tall is Everest?"),
    )
    .await;
    assert_eq!(status(&h), "SEMANTIC MISS");
    assert_eq!(chat_mock.request_count(), 2);
    // The embedder fails: the request is served all the same, and that is counted.
    let (s5, h, _) = ask(&gw, &config, &[], question("be brief", "Something else")).await;
    assert_eq!(s5, 200);
    assert_eq!(status(&h), "SEMANTIC MISS");
    assert_eq!(chat_mock.request_count(), 3);
    let text = scrape(&gw).await;
    let count = |result: &str| {
        sample(
            &text,
            "portgate_cache_requests_total",
            &[("mode", "semantic"), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(count("semantic_hit"), 1.0);
    assert_eq!(count("hit"), 1.0);
    assert_eq!(count("embedding_error"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semantic_neighbour_in_another_scope_is_not_a_hit() {
    let (chat_mock, embedder, gw) = semantic_gateway(|_| {}).await;
    let config =
        json!({"provider": "openai", "api_key": "sk", "cache": {"mode": "semantic"}}).to_string();
    embedder.always(embedding(&[1.0, 0.0]));
    let (_, h, _) = ask(&gw, &config, &[], question("be brief", "q1")).await;
    assert_eq!(status(&h), "SEMANTIC MISS");
    // Same vector, but another system prompt, namespace or credential: other scopes.
    let (_, h, _) = ask(&gw, &config, &[], question("be long", "q2")).await;
    assert_eq!(status(&h), "SEMANTIC MISS");
    let (_, h, _) = ask(
        &gw,
        &config,
        &[("x-portkey-cache-namespace", "other")],
        question("be brief", "q3"),
    )
    .await;
    assert_eq!(status(&h), "SEMANTIC MISS");
    let other_key =
        json!({"provider": "openai", "api_key": "sk-2", "cache": {"mode": "semantic"}}).to_string();
    let (_, h, _) = ask(&gw, &other_key, &[], question("be brief", "q4")).await;
    assert_eq!(status(&h), "SEMANTIC MISS");
    // Same scope: the neighbour is found.
    let (_, h, _) = ask(&gw, &config, &[], question("be brief", "q5")).await;
    assert_eq!(status(&h), "SEMANTIC HIT");
    assert_eq!(chat_mock.request_count(), 4);
}

const ANTHROPIC_STREAM: &str = include_str!("../fixtures/anthropic/stream_tools.sse");

/// SSE `event:` names, in order, parsed with the gateway's splitter.
fn sse_events(raw: &[u8]) -> Vec<String> {
    let mut splitter = portgate::stream::sse::SseSplitter::default();
    let mut events = splitter.push(&bytes::Bytes::copy_from_slice(raw));
    events.extend(splitter.finish());
    events
        .iter()
        .filter_map(|e| {
            std::str::from_utf8(e)
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("event: ").map(str::to_string))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_streams_replay_as_anthropic_events_and_as_openai_chunks() {
    let mock = MockProvider::start().await;
    let gw = TestGateway::start(test_settings());
    let events: Vec<String> = ANTHROPIC_STREAM
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(String::from)
        .collect();
    mock.always(Reply::Sse {
        events,
        delay: std::time::Duration::ZERO,
    });
    let config =
        json!({"provider": "anthropic", "api_key": "sk-ant", "custom_host": mock.base_url(),
                        "cache": {"mode": "simple"}})
        .to_string();
    let post = |path: &'static str, body: serde_json::Value| {
        let config = config.clone();
        let gw = &gw;
        async move {
            let resp = client()
                .post(gw.url(path))
                .header("x-portkey-config", config)
                .json(&body)
                .send()
                .await
                .unwrap();
            let h = resp.headers().clone();
            (h, resp.bytes().await.unwrap().to_vec())
        }
    };
    // Native /v1/messages: Anthropic's events, replayed as they were sent.
    let native = json!({"model": "claude-3-5-sonnet-20241022", "max_tokens": 64, "stream": true,
                        "messages": [{"role": "user", "content": "weather?"}]});
    let (h1, live) = post("/v1/messages", native.clone()).await;
    assert_eq!(status(&h1), "MISS");
    let (h2, replay) = post("/v1/messages", native).await;
    assert_eq!(status(&h2), "HIT");
    assert_eq!(replay, live);
    let names = sse_events(&replay);
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    // OpenAI-format chat to Anthropic: the translated chunks are what is replayed.
    let chat_req = json!({"model": "claude-3-5-sonnet-20241022", "stream": true,
                          "messages": [{"role": "user", "content": "weather?"}]});
    let (h3, live) = post("/v1/chat/completions", chat_req.clone()).await;
    assert_eq!(status(&h3), "MISS");
    let (h4, replay) = post("/v1/chat/completions", chat_req).await;
    assert_eq!(status(&h4), "HIT");
    let data = sse_data(&replay);
    assert_eq!(data, sse_data(&live));
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let first: serde_json::Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(mock.request_count(), 2);
    // The hits' usage (read when stored) counts as saved, not spent.
    let text = scrape(&gw).await;
    let saved = sample(
        &text,
        "portgate_cache_saved_tokens_total",
        &[("type", "input")],
    )
    .unwrap();
    assert!(saved >= 472.0, "saved input tokens: {saved}");
}

/// The key holds everything that changes the answer besides the body: two tenants behind one
/// host (base paths), API versions and betas, and headers the request forwards upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_holds_base_path_versions_and_forwarded_headers() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let origin = mock.base_url().trim_end_matches("/v1").to_string();
    let tenant = |t: &str| {
        json!({"provider": "openai", "api_key": "sk", "custom_host": format!("{origin}/{t}/v1"),
               "cache": {"mode": "simple"}})
        .to_string()
    };
    let (_, h, _) = ask(&gw, &tenant("a"), &[], body("hi")).await;
    assert_eq!(status(&h), "MISS");
    let (_, h, _) = ask(&gw, &tenant("b"), &[], body("hi")).await;
    assert_eq!(status(&h), "MISS", "another tenant's base path");
    let (_, h, _) = ask(&gw, &tenant("a"), &[], body("hi")).await;
    assert_eq!(status(&h), "HIT");
    assert_eq!(mock.request_count(), 2);
    let paths: Vec<String> = mock.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/a/v1/chat/completions", "/b/v1/chat/completions"]);

    let config = cached_config("sk");
    let (_, h, _) = ask(&gw, &config, &[("openai-beta", "assistants=v2")], body("x")).await;
    assert_eq!(status(&h), "MISS");
    let (_, h, _) = ask(&gw, &config, &[("openai-beta", "assistants=v1")], body("x")).await;
    assert_eq!(status(&h), "MISS", "another beta");
    let (_, h, _) = ask(&gw, &config, &[("openai-beta", "assistants=v2")], body("x")).await;
    assert_eq!(status(&h), "HIT");

    let forward = [("x-portkey-forward-headers", "x-tenant")];
    let (_, h, _) = ask(&gw, &config, &[forward[0], ("x-tenant", "t1")], body("y")).await;
    assert_eq!(status(&h), "MISS");
    let (_, h, _) = ask(&gw, &config, &[forward[0], ("x-tenant", "t2")], body("y")).await;
    assert_eq!(status(&h), "MISS", "another value of a forwarded header");
    assert_eq!(
        mock.requests().last().unwrap().header("x-tenant"),
        Some("t2")
    );
    let (_, h, _) = ask(&gw, &config, &[forward[0], ("x-tenant", "t1")], body("y")).await;
    assert_eq!(status(&h), "HIT");
}

/// A fallback whose targets each have a semantic cache embeds the request's text once: the
/// second target reuses the first one's vector (one call to the embedding model, not one per
/// target tried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_embedding_per_request_whatever_the_targets_tried() {
    let embedder = MockProvider::start().await;
    let (a, b, _c, gw) = three_mocks(|s| use_embedder(s, &embedder)).await;
    embedder.always(embedding(&[1.0, 0.0, 0.0]));
    a.always(Reply::json(503, json!({"error": {"message": "down"}})));
    let config = json!({
        "strategy": {"mode": "fallback"},
        "cache": {"mode": "semantic"},
        "targets": [
            {"provider": "openai", "api_key": "sk-a"},
            {"provider": "groq", "api_key": "sk-b"}
        ]
    })
    .to_string();
    let client_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, h, _) = ask(
        &gw,
        &config,
        &[("traceparent", client_trace)],
        question("be brief", "capital of France?"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portkey-provider"), "groq");
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    assert_eq!(
        embedder.request_count(),
        1,
        "one embedding for both targets"
    );
    // Built like every provider request: the loop-detection hop and the trace context of the
    // request it serves, never the client's headers.
    let seen = &embedder.requests()[0];
    assert!(seen.header("x-portgate-hop").is_some());
    let trace = seen.header("traceparent").unwrap_or_default().to_string();
    assert!(
        trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the client's trace: {trace}"
    );
    let provider_trace = a.requests()[0].header("traceparent").map(str::to_string);
    assert_eq!(
        trace.get(3..35),
        provider_trace.as_deref().and_then(|t| t.get(3..35)),
        "the same trace as the provider call"
    );
    assert!(seen.header("x-portkey-config").is_none());
}
