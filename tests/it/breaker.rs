//! Circuit breakers: open after failures, skipped, half-open after the cooldown, closed again.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

fn body() -> serde_json::Value {
    json!({"model": "m", "messages": []})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_skips_half_opens_and_closes() {
    let (a, b, _c, gw) = three_mocks(|s| s.circuit_breaker.min_cooldown_ms = 100).await;
    a.always(Reply::json(500, json!({"error": {"message": "a down"}})));
    let config = json!({
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "openai", "api_key": "sk-openai", "cb_config": {"failure_threshold": 2, "cooldown_interval": 400}},
            {"provider": "groq", "api_key": "sk-groq"}
        ]
    })
    .to_string();
    let headers = [("x-portkey-config", config.as_str())];
    let send = || chat(&gw, "/v1/chat/completions", &headers, body());
    for _ in 0..2 {
        let (status, h, _) = send().await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "x-portkey-provider"), "groq");
    }
    assert_eq!(a.request_count(), 2);
    let target = format!("openai@{}/m#", a.addr);
    let c = circuits(&gw).await;
    assert!(
        c["circuits"][0]["target"]
            .as_str()
            .unwrap()
            .starts_with(&target),
        "{c}"
    );
    assert_eq!(c["circuits"][0]["state"], "open");

    // Open: skipped without a send.
    let (status, h, _) = send().await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.targets[1]"
    );
    assert_eq!(a.request_count(), 2, "an open target is not called");

    // After the cooldown one probe goes through; it succeeds and closes the circuit.
    tokio::time::sleep(Duration::from_millis(450)).await;
    a.always(Reply::chat("m", "a is back"));
    let (status, h, _) = send().await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portkey-provider"), "openai");
    assert_eq!(a.request_count(), 3);
    assert_eq!(circuits(&gw).await["circuits"][0]["state"], "closed");
    assert_eq!(b.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_open_fails_fast_with_503() {
    let (a, _b, _c, gw) = three_mocks(|s| {
        s.circuit_breaker.min_cooldown_ms = 100;
        // A settings default breaker applies to targets whose config sets none.
        s.circuit_breaker.default =
            Some(json!({"failure_threshold": 1, "cooldown_interval": 60000}));
    })
    .await;
    a.always(Reply::json(503, json!({})));
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-provider", "openai")],
        body(),
    )
    .await;
    assert_eq!(status, 503);
    let (status, h, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-provider", "openai")],
        body(),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(v["error"]["type"], "circuit_open", "{v}");
    assert_eq!(header(&h, "x-portkey-gateway-exception"), "true");
    assert_eq!(a.request_count(), 1, "the open circuit was not called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_breaker_opens_only_its_own_circuit() {
    let (a, _b, _c, gw) = three_mocks(|s| {
        s.circuit_breaker.min_cooldown_ms = 100;
        // The operator's breaker for every target: lenient.
        s.circuit_breaker.default =
            Some(json!({"failure_threshold": 50, "cooldown_interval": 60000}));
    })
    .await;
    a.script([Reply::json(500, json!({"error": {"message": "blip"}}))]);
    // A client config with a hair-trigger breaker on openai.
    let touchy = json!({"provider": "openai", "api_key": "sk",
        "cb_config": {"failure_threshold": 1, "cooldown_interval": 60000}})
    .to_string();
    let (status, _, _) = with_config(&gw, &touchy, body()).await;
    assert_eq!(status, 500);
    let (status, _, v) = with_config(&gw, &touchy, body()).await;
    assert_eq!(status, 503, "its own circuit is open: {v}");
    assert_eq!(a.request_count(), 1);
    // Everyone else still reaches openai.
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "openai"),
            ("authorization", "Bearer sk"),
        ],
        body(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(a.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_never_open_a_circuit() {
    let (a, _b, _c, gw) = three_mocks(|s| s.circuit_breaker.min_cooldown_ms = 100).await;
    a.always(Reply::json(
        400,
        json!({"error": {"message": "bad request"}}),
    ));
    // Even listed, a 400 is the request's fault, not the provider's.
    let config = json!({"provider": "openai", "api_key": "sk",
        "cb_config": {"failure_threshold": 1, "cooldown_interval": 60000, "on_status_codes": [400, 500]}})
    .to_string();
    for _ in 0..3 {
        let (status, _, _) = with_config(&gw, &config, body()).await;
        assert_eq!(status, 400);
    }
    assert_eq!(a.request_count(), 3, "never skipped");
}

/// Circuits are per credential: a client whose own key draws 429s (its own rate limit) opens
/// the circuit of that key, not the provider's for every other key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_own_429s_open_only_that_keys_circuit() {
    let (a, _b, _c, gw) = three_mocks(|s| {
        s.circuit_breaker.min_cooldown_ms = 100;
        s.circuit_breaker.default =
            Some(json!({"failure_threshold": 1, "cooldown_interval": 60000}));
    })
    .await;
    a.script([Reply::json(429, json!({"error": {"message": "slow down"}}))]);
    let send = |key: &'static str| {
        let auth = format!("Bearer {key}");
        let gw = &gw;
        async move {
            chat(
                gw,
                "/v1/chat/completions",
                &[("x-portkey-provider", "openai"), ("authorization", &auth)],
                body(),
            )
            .await
            .0
        }
    };
    assert_eq!(send("sk-noisy").await, 429);
    assert_eq!(send("sk-noisy").await, 503, "its circuit is open");
    assert_eq!(a.request_count(), 1);
    assert_eq!(
        send("sk-quiet").await,
        200,
        "another key's circuit is closed"
    );
    assert_eq!(a.request_count(), 2);
}
