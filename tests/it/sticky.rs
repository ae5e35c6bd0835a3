//! Sticky load balancing across replicas: two gateways with the same config and no shared
//! state send a session to the same target; sessions spread over the targets; a target whose
//! circuit opens loses only its own sessions.

use crate::support::*;
use portgate::Settings;
use serde_json::json;

fn settings(a: &MockProvider, b: &MockProvider, c: &MockProvider) -> Settings {
    let mut s = test_settings();
    route_to(&mut s, a, &["openai"]);
    route_to(&mut s, b, &["groq"]);
    route_to(&mut s, c, &["together-ai"]);
    s.circuit_breaker.min_cooldown_ms = 100;
    s
}

fn config() -> String {
    let breaker = json!({"failure_threshold": 1, "cooldown_interval": 60000});
    json!({
        "strategy": {"mode": "loadbalance",
                     "sticky": {"enabled": true, "hash_fields": ["metadata.session"], "ttl": 3600}},
        "targets": [
            {"provider": "openai", "api_key": "sk-a", "cb_config": breaker},
            {"provider": "groq", "api_key": "sk-b", "cb_config": breaker},
            {"provider": "together-ai", "api_key": "sk-c", "cb_config": breaker}
        ]
    })
    .to_string()
}

/// Sends one request of `session` (its text names the session and the request, so the mocks'
/// records show where it went); returns the status and the option index answered.
async fn send(gw: &TestGateway, session: &str, n: usize) -> (u16, String) {
    let config = config();
    let metadata = json!({"session": session}).to_string();
    let (status, h, _) = chat(
        gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-config", config.as_str()),
            ("x-portkey-metadata", metadata.as_str()),
        ],
        user_chat("m", &format!("{session}/{n}")),
    )
    .await;
    (
        status,
        header(&h, "x-portkey-last-used-option-index").to_string(),
    )
}

/// Which mocks (0, 1, 2) received requests of `session`.
fn served_by(mocks: &[&MockProvider; 3], session: &str) -> Vec<usize> {
    let prefix = format!("{session}/");
    let mut out = Vec::new();
    for (i, m) in mocks.iter().enumerate() {
        let got = m.requests().iter().any(|r| {
            r.json()["messages"][0]["content"]
                .as_str()
                .is_some_and(|t| t.starts_with(&prefix))
        });
        if got {
            out.push(i);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_stick_to_one_target_on_every_replica() {
    let (a, b, c) = (
        MockProvider::start().await,
        MockProvider::start().await,
        MockProvider::start().await,
    );
    let one = TestGateway::start(settings(&a, &b, &c));
    let two = TestGateway::start(settings(&a, &b, &c));
    let mocks = [&a, &b, &c];
    let sessions: Vec<String> = (0..12).map(|i| format!("session-{i}")).collect();
    let mut target_of = Vec::new();
    for s in &sessions {
        let mut indexes = Vec::new();
        for (n, gw) in [&one, &two, &one, &two].into_iter().enumerate() {
            let (status, index) = send(gw, s, n).await;
            assert_eq!(status, 200);
            indexes.push(index);
        }
        indexes.dedup();
        assert_eq!(indexes.len(), 1, "{s} answered by {indexes:?}");
        let served = served_by(&mocks, s);
        assert_eq!(served.len(), 1, "{s} reached mocks {served:?}");
        assert_eq!(indexes[0], format!("config.targets[{}]", served[0]));
        target_of.push(served[0]);
    }
    let mut used = target_of.clone();
    used.sort_unstable();
    used.dedup();
    assert!(used.len() >= 2, "sessions did not spread: {target_of:?}");
    assert_eq!(
        a.request_count() + b.request_count() + c.request_count(),
        48
    );

    // The target of the first session fails: its circuit opens on the first gateway.
    let down = target_of[0];
    mocks[down].always(Reply::json(500, json!({"error": {"message": "down"}})));
    let (status, _) = send(&one, &sessions[0], 10).await;
    assert_eq!(status, 500);
    let before = [a.request_count(), b.request_count(), c.request_count()];
    // Its sessions move to another target; every other session keeps its target.
    for (s, target) in sessions.iter().zip(&target_of) {
        let (status, index) = send(&one, s, 20).await;
        assert_eq!(status, 200, "{s}");
        if *target == down {
            assert_ne!(index, format!("config.targets[{down}]"), "{s}");
        } else {
            assert_eq!(index, format!("config.targets[{target}]"), "{s} moved");
        }
    }
    let after = [a.request_count(), b.request_count(), c.request_count()];
    assert_eq!(after[down], before[down], "an open circuit is not called");
    // The moved session stays where it moved.
    let (_, first) = send(&one, &sessions[0], 30).await;
    let (_, again) = send(&one, &sessions[0], 31).await;
    assert_eq!(first, again);
}

/// Without a value for any hash field, the choice is the ordinary weighted random one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_session_are_spread_at_random() {
    let (a, b, c) = (
        MockProvider::start().await,
        MockProvider::start().await,
        MockProvider::start().await,
    );
    let gw = TestGateway::start(settings(&a, &b, &c));
    let config = config();
    for i in 0..30 {
        let (status, _, _) = with_config(&gw, &config, user_chat("m", &format!("n{i}"))).await;
        assert_eq!(status, 200);
    }
    let counts = [a.request_count(), b.request_count(), c.request_count()];
    assert!(counts.iter().filter(|n| **n > 0).count() >= 2, "{counts:?}");
}

/// An invalid sticky setting is a 400 naming its path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_sticky_setting_is_refused() {
    let a = MockProvider::start().await;
    let gw = gateway_for(&a);
    let config = json!({
        "strategy": {"mode": "loadbalance", "sticky": {"enabled": true, "hash_fields": ["session"]}},
        "targets": [{"provider": "openai", "api_key": "sk-a"}]
    })
    .to_string();
    let (status, _, body) = with_config(&gw, &config, user_chat("m", "hi")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("sticky"), "{body}");
    assert_eq!(a.request_count(), 0);
}
