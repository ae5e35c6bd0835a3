//! Rate limits and budgets: two gateways on one Redis admit exactly a request limit between
//! them and spend one budget; per-user policies; gateway keys; a Redis that is down; the admin
//! view and reset. A refused request never reaches the provider.

use crate::support::*;
use portgate::settings::limits::{
    LimitsBackend, OnBackendError, Period, RateKind, RateLimit, RateUnit, UsageKind, UsageLimit,
};
use portgate::settings::{Settings, VirtualKeyRow};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn vk(mock: &MockProvider, rates: Vec<RateLimit>, usage: Vec<UsageLimit>) -> VirtualKeyRow {
    VirtualKeyRow {
        provider: "openai".into(),
        api_key_env: None,
        api_key_file: None,
        custom_host: Some(mock.base_url()),
        options: Default::default(),
        rate_limits: rates,
        usage_limits: usage,
    }
}

fn requests(unit: RateUnit, value: u64) -> RateLimit {
    RateLimit {
        kind: RateKind::Requests,
        unit,
        value,
    }
}

fn budget(kind: UsageKind, credit_limit: f64) -> UsageLimit {
    UsageLimit {
        kind,
        credit_limit,
        periodic_reset: Some(Period::Monthly),
        alert_threshold: None,
    }
}

fn on_redis(s: &mut Settings, redis: &RedisServer) {
    s.limits.backend = LimitsBackend::Redis;
    // As `redis: {url: …}` in a file reads: the other fields at `cache.redis`'s defaults.
    s.limits.redis = portgate::settings::cache::RedisSettings {
        url: Some(redis.url()),
        ..Default::default()
    };
    // Generous bounds: the test machine is shared and busy; production keeps 50 ms.
    s.limits.redis.lookup_timeout_ms = 1000;
    s.limits.redis.store_timeout_ms = 1000;
    s.limits.redis.reconnect_interval_ms = 200;
}

fn usage_reply(prompt: u64, completion: u64) -> Reply {
    Reply::json(
        200,
        json!({"id": "c", "object": "chat.completion", "model": "gpt-5-2025-08-07",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                         "total_tokens": prompt + completion}}),
    )
}

async fn ask(gw: &TestGateway, vk: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    chat(
        gw,
        "/v1/chat/completions",
        &[("x-portkey-virtual-key", vk)],
        user_chat("gpt-5", "hi"),
    )
    .await
}

async fn limits(gw: &TestGateway) -> Value {
    admin_json(gw, "/limits").await
}

/// Waits until `/limits` of `gw` shows `used` for the limit of `kind` (usage is counted after
/// the answer, off the client's path).
async fn used(gw: &TestGateway, kind: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = limits(gw).await;
        let got = l["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["type"] == kind)
            .map(|x| x["used"].as_f64().unwrap());
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{kind} used {got:?}, want {want}: {l}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_admit_exactly_the_request_limit() {
    let redis = RedisServer::start();
    let mock = MockProvider::start().await;
    let gateway = || {
        let mut s = test_settings();
        s.virtual_keys.insert(
            "team-a".into(),
            vk(&mock, vec![requests(RateUnit::Rpd, 10)], vec![]),
        );
        on_redis(&mut s, &redis);
        TestGateway::start(s)
    };
    let (a, b) = (gateway(), gateway());
    // 30 requests at once, half through each replica.
    let sends = (0..30).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        async move { ask(gw, "team-a").await }
    });
    let answers = futures_util::future::join_all(sends).await;
    let ok = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let limited: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!((ok, limited.len()), (10, 20));
    assert_eq!(
        mock.request_count(),
        10,
        "a refused request never reaches the provider"
    );
    let (_, h, v) = limited[0];
    assert_eq!(
        v,
        &json!({"error": {"message": "Portkey Virtual Key te********m-a Rate Limit Exceeded",
                          "type": "virtual_key_rate_limit_error", "param": null, "code": null}})
    );
    let wait: u64 = header(h, "retry-after").parse().unwrap();
    assert!((1..=86_400).contains(&wait), "{wait}");
    assert!(!header(h, "x-portkey-trace-id").is_empty());
    let m = scrape(&a).await;
    let refused_a = sample(
        &m,
        "portgate_limit_rejections_total",
        &[("kind", "rate"), ("scope", "virtual_key")],
    )
    .unwrap_or(0.0);
    let refused_b = sample(
        &scrape(&b).await,
        "portgate_limit_rejections_total",
        &[("kind", "rate"), ("scope", "virtual_key")],
    )
    .unwrap_or(0.0);
    assert_eq!(refused_a + refused_b, 20.0);
    // A restart loses nothing: a new replica on the same Redis still refuses.
    let c = gateway();
    assert_eq!(ask(&c, "team-a").await.0, 429);
    // The counters are under the limits' own prefix, not the cache's.
    let mut conn = ::redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        !keys.is_empty()
            && keys
                .iter()
                .all(|k| k.starts_with("portgate:limits:vk:team-a:")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_are_spent_across_replicas() {
    let redis = RedisServer::start();
    let mock = MockProvider::start().await;
    // 1M input and 1M output tokens of gpt-5: $11.25 each answer.
    mock.always(usage_reply(1_000_000, 1_000_000));
    let gateway = || {
        let mut s = test_settings();
        s.virtual_keys.insert(
            "team-a".into(),
            vk(&mock, vec![], vec![budget(UsageKind::Cost, 20.0)]),
        );
        on_redis(&mut s, &redis);
        TestGateway::start(s)
    };
    let (a, b) = (gateway(), gateway());
    assert_eq!(ask(&a, "team-a").await.0, 200);
    used(&b, "cost", 11.25).await;
    // Under the budget still: served, and it crosses it (a soft cap).
    assert_eq!(ask(&b, "team-a").await.0, 200);
    used(&a, "cost", 22.5).await;
    let (status, _, v) = ask(&a, "team-a").await;
    assert_eq!(status, 412);
    assert_eq!(
        v,
        json!({"error": {"message": "Portkey Virtual Key te********m-a Usage Limit Exceeded",
                         "type": "virtual_key_exhaust_error", "param": null, "code": "04"}})
    );
    assert_eq!(mock.request_count(), 2);
    // An operator resets the key's counters (from the pod): served again on every replica.
    let reset: Value = client()
        .post(a.admin_url("/limits/reset?scope=vk:team-a"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(reset["counters_reset"].as_u64().unwrap() >= 1, "{reset}");
    assert_eq!(ask(&b, "team-a").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_limits_and_policies_per_user() {
    let mock = MockProvider::start().await;
    mock.always(usage_reply(40, 20));
    let mut s = test_settings();
    s.virtual_keys.insert(
        "team-a".into(),
        vk(
            &mock,
            vec![RateLimit {
                kind: RateKind::Tokens,
                unit: RateUnit::Rpd,
                value: 100,
            }],
            vec![],
        ),
    );
    s.limits.policies = vec![serde_yaml_ng::from_str(
        "{id: per-user, match: {metadata: _user}, rate_limits: [{type: requests, unit: rpd, value: 2}]}",
    )
    .unwrap()];
    let gw = TestGateway::start(s);
    let as_user = |user: &'static str| {
        let gw = &gw;
        async move {
            chat(
                gw,
                "/v1/chat/completions",
                &[
                    ("x-portkey-virtual-key", "team-a"),
                    ("x-portkey-metadata", &format!(r#"{{"_user":"{user}"}}"#)),
                ],
                user_chat("gpt-5", "hi"),
            )
            .await
        }
    };
    // 60 tokens, then 120: the third request meets a spent token window.
    assert_eq!(as_user("alice").await.0, 200);
    used(&gw, "tokens", 60.0).await;
    assert_eq!(as_user("bob").await.0, 200);
    used(&gw, "tokens", 120.0).await;
    let (status, h, v) = as_user("carol").await;
    assert_eq!(status, 429);
    assert_eq!(v["error"]["type"], "virtual_key_rate_limit_error");
    assert!(!header(&h, "retry-after").is_empty());
    // Alice's own policy counter: 2 per day, the third refused by the policy itself.
    let mut s = test_settings();
    s.limits.policies = vec![serde_yaml_ng::from_str(
        "{id: per-user, match: {metadata: _user}, rate_limits: [{type: requests, unit: rpd, value: 2}]}",
    )
    .unwrap()];
    s.virtual_keys
        .insert("plain".into(), vk(&mock, vec![], vec![]));
    let gw = TestGateway::start(s);
    let send = |user: &'static str| {
        let gw = &gw;
        async move {
            chat(
                gw,
                "/v1/chat/completions",
                &[
                    ("x-portkey-virtual-key", "plain"),
                    ("x-portkey-metadata", &format!(r#"{{"_user":"{user}"}}"#)),
                ],
                user_chat("gpt-5", "hi"),
            )
            .await
        }
    };
    assert_eq!(send("alice").await.0, 200);
    assert_eq!(send("alice").await.0, 200);
    let (status, _, v) = send("alice").await;
    assert_eq!(status, 429);
    assert_eq!(
        v["error"]["message"],
        "Portkey Rate Limit Policy per-user exceeded for value key alice"
    );
    assert_eq!(send("bob").await.0, 200, "each user has a counter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_target_gives_way_to_the_fallback() {
    let mock = MockProvider::start().await;
    let other = MockProvider::start().await;
    let mut s = test_settings();
    s.virtual_keys.insert(
        "small".into(),
        vk(&mock, vec![requests(RateUnit::Rpd, 1)], vec![]),
    );
    s.virtual_keys
        .insert("big".into(), vk(&other, vec![], vec![]));
    let gw = TestGateway::start(s);
    let config = json!({"strategy": {"mode": "fallback"},
        "targets": [{"virtual_key": "small"}, {"virtual_key": "big"}]})
    .to_string();
    for _ in 0..2 {
        let (status, _, _) = with_config(&gw, &config, user_chat("gpt-5", "hi")).await;
        assert_eq!(status, 200);
    }
    assert_eq!((mock.request_count(), other.request_count()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_is_down_fails_open_or_closed_as_set() {
    let mock = MockProvider::start().await;
    let gateway = |on_error| {
        let mut s = test_settings();
        s.virtual_keys.insert(
            "team-a".into(),
            vk(&mock, vec![requests(RateUnit::Rpd, 100)], vec![]),
        );
        s.limits.backend = LimitsBackend::Redis;
        // Nothing listens there.
        s.limits.redis.url = Some(format!("redis://127.0.0.1:{}/", free_port()));
        s.limits.redis.lookup_timeout_ms = 100;
        s.limits.on_backend_error = on_error;
        TestGateway::start(s)
    };
    let open = gateway(OnBackendError::Allow);
    let started = Instant::now();
    assert_eq!(ask(&open, "team-a").await.0, 200);
    let closed = gateway(OnBackendError::Deny);
    let (status, _, v) = ask(&closed, "team-a").await;
    assert_eq!(status, 503);
    assert_eq!(v["error"]["type"], "limits_unavailable");
    assert_eq!(mock.request_count(), 1);
    // Within the bound, not the connect timeout: both answers in well under a second each.
    assert!(started.elapsed() < Duration::from_secs(5));
    let m = scrape(&closed).await;
    assert_eq!(
        sample(
            &m,
            "portgate_limit_rejections_total",
            &[("kind", "unavailable")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_keys_carry_limits_too() {
    let mock = MockProvider::start().await;
    let key = "pk-team-a-secret";
    let digest = format!("sha256:{}", sha256_hex(key));
    let mut s = test_settings();
    s.gateway_keys = vec![digest.clone()];
    s.limits.gateway_keys = vec![serde_yaml_ng::from_str(&format!(
        "{{digest: \"{digest}\", name: ci-bot, rate_limits: [{{type: requests, unit: rpd, value: 1}}]}}"
    ))
    .unwrap()];
    s.virtual_keys
        .insert("plain".into(), vk(&mock, vec![], vec![]));
    let gw = TestGateway::start(s);
    let headers = [
        ("x-portkey-virtual-key", "plain"),
        ("x-portkey-api-key", key),
    ];
    let send = || {
        chat(
            &gw,
            "/v1/chat/completions",
            &headers,
            user_chat("gpt-5", "hi"),
        )
    };
    assert_eq!(send().await.0, 200);
    let (status, _, v) = send().await;
    assert_eq!(status, 429);
    assert_eq!(
        v,
        json!({"status": "failure",
               "message": "Portkey Error: apikey ci********bot rate limit exceded. Error Code: 05",
               "error": {"message": "Portkey Error: apikey ci********bot rate limit exceded. Error Code: 05",
                         "code": "05"}})
    );
    let l = limits(&gw).await;
    assert_eq!(l["limits"][0]["scope"], "gateway_key");
    assert_eq!(l["limits"][0]["used"], 2.0);
    assert_eq!(mock.request_count(), 1);
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `/metrics` shows each virtual key's limits and their use, and budgets that crossed their
/// alert threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_their_use_are_metrics() {
    let mock = MockProvider::start().await;
    mock.always(usage_reply(1_000_000, 1_000_000));
    let mut s = test_settings();
    let mut alerting = budget(UsageKind::Cost, 100.0);
    alerting.alert_threshold = Some(10.0);
    s.virtual_keys.insert(
        "team-a".into(),
        vk(&mock, vec![requests(RateUnit::Rpd, 50)], vec![alerting]),
    );
    let gw = TestGateway::start(s);
    assert_eq!(ask(&gw, "team-a").await.0, 200);
    used(&gw, "cost", 11.25).await;
    let m = scrape(&gw).await;
    let series = |name, kind, window| {
        sample(
            &m,
            name,
            &[
                ("scope", "virtual_key"),
                ("name", "team-a"),
                ("type", kind),
                ("window", window),
            ],
        )
    };
    assert_eq!(series("portgate_limit", "requests", "rpd"), Some(50.0));
    assert_eq!(series("portgate_limit_used", "requests", "rpd"), Some(1.0));
    assert_eq!(series("portgate_limit", "cost", "monthly"), Some(100.0));
    assert_eq!(
        series("portgate_limit_used", "cost", "monthly"),
        Some(11.25)
    );
    assert_eq!(
        sample(&m, "portgate_limit_alerts_total", &[("name", "team-a")]),
        Some(1.0)
    );
}

/// A per-user policy holds across replicas: each user's counter is shared by both gateways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_policies_hold_across_replicas() {
    let redis = RedisServer::start();
    let mock = MockProvider::start().await;
    let gateway = || {
        let mut s = test_settings();
        s.virtual_keys
            .insert("plain".into(), vk(&mock, vec![], vec![]));
        s.limits.policies = vec![serde_yaml_ng::from_str(
            "{id: per-user, match: {metadata: _user}, rate_limits: [{type: requests, unit: rpd, value: 2}]}",
        )
        .unwrap()];
        on_redis(&mut s, &redis);
        TestGateway::start(s)
    };
    let (a, b) = (gateway(), gateway());
    let send = |gw: &TestGateway, user: &str| {
        let meta = format!(r#"{{"_user":"{user}"}}"#);
        let gw = gw.url("/v1/chat/completions");
        async move {
            client()
                .post(gw)
                .header("x-portkey-virtual-key", "plain")
                .header("x-portkey-metadata", meta)
                .json(&user_chat("gpt-5", "hi"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(send(&a, "alice").await, 200);
    assert_eq!(send(&b, "alice").await, 200);
    assert_eq!(
        send(&a, "alice").await,
        429,
        "alice's two are spent on both replicas"
    );
    assert_eq!(send(&b, "alice").await, 429);
    assert_eq!(send(&b, "bob").await, 200);
    assert_eq!(mock.request_count(), 3);
}

/// A passthrough route (no walk admits it per target) still meets its virtual key's limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_routes_meet_the_virtual_keys_limits() {
    let mock = MockProvider::start().await;
    let mut s = test_settings();
    s.virtual_keys.insert(
        "team-a".into(),
        vk(&mock, vec![requests(RateUnit::Rpd, 1)], vec![]),
    );
    let gw = TestGateway::start(s);
    let get = || {
        client()
            .get(gw.url("/v1/models"))
            .header("x-portkey-virtual-key", "team-a")
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    let refused = get().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    assert_eq!(mock.request_count(), 1);
}
