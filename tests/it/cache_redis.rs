//! The Redis backend against a real `redis-server` each test starts on an ephemeral port
//! (`make test` installs it through `scripts/ensure-deps.sh`): replicas share entries, and a
//! Redis that is down or stops never fails a request.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn redis_gateway(mock: &MockProvider, url: &str) -> TestGateway {
    let mut s = test_settings();
    route_to(&mut s, mock, &["openai"]);
    s.cache.backend = portgate::cache::Backend::Redis;
    s.cache.redis.url = Some(url.to_string());
    // Generous bounds: the test machine is shared and busy; production keeps 50 ms.
    s.cache.redis.lookup_timeout_ms = 1000;
    s.cache.redis.store_timeout_ms = 1000;
    s.cache.redis.reconnect_interval_ms = 200;
    TestGateway::start(s)
}

fn config() -> String {
    json!({"provider": "openai", "api_key": "sk", "cache": {"mode": "simple"}}).to_string()
}

async fn ask(gw: &TestGateway, content: &str) -> (u16, String) {
    let (s, h, _) = with_config(gw, &config(), user_chat("m", content)).await;
    (s, header(&h, "x-portkey-cache-status").to_string())
}

/// Waits until the gateway stored `n` answers (stores run after the answer was sent).
async fn stored(gw: &TestGateway, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(gw).await;
        let got = sample(
            &text,
            "portgate_cache_stores_total",
            &[("result", "stored")],
        );
        if got == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "stored {got:?}, expected {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_redis_and_survive_its_loss() {
    let mut redis = RedisServer::start();
    let mock = MockProvider::start().await;
    let a = redis_gateway(&mock, &redis.url());
    let b = redis_gateway(&mock, &redis.url());

    assert_eq!(ask(&a, "hi").await, (200, "MISS".into()));
    stored(&a, 1.0).await;
    assert_eq!(ask(&b, "hi").await, (200, "HIT".into()), "b sees a's entry");
    assert_eq!(mock.request_count(), 1);
    assert_eq!(ask(&b, "other").await, (200, "MISS".into()));
    stored(&b, 1.0).await;
    assert_eq!(ask(&a, "other").await, (200, "HIT".into()));
    assert_eq!(mock.request_count(), 2);

    // Redis goes away: every request is still answered, uncached, and counted.
    redis.stop();
    for prompt in ["hi", "third", "third"] {
        assert_eq!(ask(&a, prompt).await, (200, "DISABLED".into()));
    }
    assert_eq!(mock.request_count(), 5);
    let text = scrape(&a).await;
    assert_eq!(
        sample(
            &text,
            "portgate_cache_requests_total",
            &[("mode", "simple"), ("result", "error")]
        ),
        Some(3.0)
    );
    assert!(
        sample(
            &text,
            "portgate_cache_lookup_duration_seconds_count",
            &[("backend", "redis")]
        )
        .unwrap()
            >= 5.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_never_fails_a_request() {
    let mock = MockProvider::start().await;
    // Nothing listens on this port.
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let gw = redis_gateway(&mock, &url);
    for _ in 0..3 {
        assert_eq!(ask(&gw, "hi").await, (200, "DISABLED".into()));
    }
    assert_eq!(mock.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_started_later_is_used_once_reachable() {
    let mock = MockProvider::start().await;
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let gw = redis_gateway(&mock, &url);
    assert_eq!(ask(&gw, "hi").await, (200, "DISABLED".into()));
    let _redis = RedisServer::start_on(port);
    // Reconnects are attempted at most every 200 ms here: ask until the cache answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, status) = ask(&gw, "hi").await;
        assert_eq!(s, 200);
        if status == "MISS" {
            break;
        }
        assert_eq!(status, "DISABLED");
        assert!(Instant::now() < deadline, "redis never used");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stored(&gw, 1.0).await;
    assert_eq!(ask(&gw, "hi").await, (200, "HIT".into()));
}

fn embedding(v: &[f32]) -> Reply {
    Reply::json(
        200,
        json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": v}]}),
    )
}

fn semantic_gateway(chat: &MockProvider, embedder: &MockProvider, url: &str) -> TestGateway {
    let mut s = test_settings();
    route_to(&mut s, chat, &["openai"]);
    s.cache.backend = portgate::cache::Backend::Redis;
    s.cache.redis.url = Some(url.to_string());
    s.cache.redis.lookup_timeout_ms = 1000;
    s.cache.redis.store_timeout_ms = 1000;
    s.cache.redis.reconnect_interval_ms = 200;
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
    TestGateway::start(s)
}

async fn ask_semantic(gw: &TestGateway, content: &str) -> String {
    let config =
        json!({"provider": "openai", "api_key": "sk", "cache": {"mode": "semantic"}}).to_string();
    let (s, h, _) = with_config(gw, &config, user_chat("m", content)).await;
    assert_eq!(s, 200);
    header(&h, "x-portkey-cache-status").to_string()
}

/// Waits until the gateway's semantic index holds `n` vectors.
async fn vectors(gw: &TestGateway, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = sample(&scrape(gw).await, "portgate_cache_semantic_vectors", &[]);
        if got == Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "vectors {got:?}, expected {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantic_entries_reach_every_replica_including_later_ones() {
    let redis = RedisServer::start();
    let chat = MockProvider::start().await;
    let embedder = MockProvider::start().await;
    // Every text embeds to nearly the same direction: paraphrases of one question.
    embedder.script([embedding(&[1.0, 0.0])]);
    embedder.always(embedding(&[0.99, 0.1]));
    let a = semantic_gateway(&chat, &embedder, &redis.url());
    let b = semantic_gateway(&chat, &embedder, &redis.url());
    // b follows the vectors from its first semantic lookup on (a miss in its own scope).
    let config_b =
        json!({"provider": "openai", "api_key": "sk-b", "cache": {"mode": "semantic"}}).to_string();
    let (_, h, _) = with_config(&b, &config_b, user_chat("m", "warm-up")).await;
    assert_eq!(header(&h, "x-portkey-cache-status"), "SEMANTIC MISS");

    assert_eq!(
        ask_semantic(&a, "capital of France?").await,
        "SEMANTIC MISS"
    );
    stored(&a, 1.0).await;
    // b's index got a's vector through the stream (plus its own warm-up one).
    vectors(&b, 2.0).await;
    assert_eq!(
        ask_semantic(&b, "France's capital city").await,
        "SEMANTIC HIT"
    );
    // A replica started afterwards loads the vectors stored before it.
    let c = semantic_gateway(&chat, &embedder, &redis.url());
    assert_eq!(
        ask_semantic(&c, "which city is France's capital").await,
        "SEMANTIC HIT"
    );
    assert_eq!(
        chat.request_count(),
        2,
        "warm-up and the first question only"
    );
}
