#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::string_slice
)]
//! Bounded metric cardinality: 10,000 distinct model names and metadata values and a few
//! hundred distinct custom hosts leave `/metrics` with at most cap + 1 (`other`) values per
//! client-influenced label, and the process's memory about where it was.

use crate::support::*;
use futures_util::StreamExt;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const MODELS: usize = 10_000;
const HOSTS: usize = 300;
const CONCURRENCY: usize = 16;
/// `metrics.max_model_labels` in this test.
const MAX_MODELS: usize = 50;
/// Caps from `telemetry/labels.rs`.
const MAX_TARGETS: usize = 100;
const MAX_METADATA_VALUES: usize = 50;

/// Distinct values of `label` per sample name (histogram `_bucket`/`_sum`/`_count` apart).
fn values_by_family(text: &str, label: &str) -> BTreeMap<String, BTreeSet<String>> {
    let needle = format!("{label}=\"");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        // Match the label name exactly (`model=` is also the tail of `request_model=`).
        let Some(i) = rest
            .match_indices(&needle)
            .map(|(i, _)| i)
            .find(|&i| i == 0 || rest.as_bytes()[i - 1] == b',')
        else {
            continue;
        };
        let value = &rest[i + needle.len()..];
        let value = &value[..value.find('"').unwrap()];
        out.entry(name.to_string())
            .or_default()
            .insert(value.to_string());
    }
    out
}

fn assert_capped(text: &str, label: &str, cap: usize) {
    let families = values_by_family(text, label);
    assert!(!families.is_empty(), "no sample has {label}");
    for (family, values) in &families {
        // "" is the label of a request that carries no value: not one a client chose.
        let chosen = values.iter().filter(|v| !v.is_empty()).count();
        assert!(
            chosen <= cap + 1,
            "{family}: {chosen} distinct {label} values (cap {cap} + other)"
        );
        assert!(
            values.contains("other"),
            "{family}: no {label}=\"other\" although more than {cap} values were sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_chosen_labels_stay_bounded() {
    let mock = MockProvider::start().await;
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    s.metrics.max_model_labels = MAX_MODELS;
    s.metrics.metadata_labels = vec!["user".into()];
    // A breaker on every target, so each custom host sets `portgate_circuit_state`.
    s.circuit_breaker.default =
        Some(json!({"failure_threshold": 1000, "cooldown_interval": 60000}));
    let gw = TestGateway::start(s);
    // A pooled client: the point is the labels, not 10,000 TCP handshakes.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let url = gw.url("/v1/chat/completions");

    // Warm-up (pools, allocator arenas, lazily built tables) before the baseline.
    for i in 0..200 {
        let r = http
            .post(&url)
            .header("x-portkey-provider", "openai")
            .json(&json!({"model": format!("warmup-{i}"), "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let before = rss_kib();

    let statuses: Vec<u16> = futures_util::stream::iter(0..MODELS)
        .map(|i| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let r = http
                    .post(&url)
                    .header("x-portkey-provider", "openai")
                    .header(
                        "x-portkey-metadata",
                        json!({"user": format!("user-{i}")}).to_string(),
                    )
                    .json(&json!({"model": format!("client-model-{i}"), "messages": []}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                r.bytes().await.unwrap();
                status
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|&s| s == 200),
        "every model request answered"
    );

    // Distinct trusted custom hosts (distinct ports on loopback, nothing listening): each
    // request fails to connect, which the breaker records under its own target key.
    let ports: Vec<u16> = (0..HOSTS).map(|_| free_port()).collect();
    let statuses: Vec<u16> = futures_util::stream::iter(ports)
        .map(|port| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let r = http
                    .post(&url)
                    .header("x-portkey-provider", "openai")
                    .header(
                        "x-portkey-custom-host",
                        format!("http://127.0.0.1:{port}/v1"),
                    )
                    .json(&json!({"model": "gpt-4o", "messages": []}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                r.bytes().await.unwrap();
                status
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|&s| s >= 500),
        "custom hosts with nothing listening fail: {statuses:?}"
    );

    let text = scrape(&gw).await;
    // Requested and served names share one set of cap + other (the warm-up names filled it);
    // `gpt-4o` (the custom-host requests) is priced and always a label.
    for label in ["model", "gen_ai_request_model", "gen_ai_response_model"] {
        let families = values_by_family(&text, label);
        for (family, values) in &families {
            let unpriced = values.iter().filter(|v| v.as_str() != "gpt-4o").count();
            assert!(
                unpriced <= MAX_MODELS + 1,
                "{family}: {unpriced} distinct unpriced {label} values"
            );
        }
    }
    assert_capped(&text, "metadata_user", MAX_METADATA_VALUES);
    assert_capped(&text, "target", MAX_TARGETS);
    let target_values = values_by_family(&text, "target");
    assert!(
        target_values["portgate_circuit_state"].len() > 2,
        "custom hosts were admitted up to the cap before `other`"
    );
    // Everything together: the exposition stays small (unbounded, it would be 10,000 models
    // times every family).
    let samples = text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(samples < 20_000, "{samples} samples");

    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "RSS grew by {grown_mib} MiB");
}

/// A host that answers every request with a priced model's name (`gpt-4o`) does not lift the
/// cap from the names requested: only a name that is itself priced skips it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priced_answer_does_not_uncap_the_requested_names() {
    let mock = MockProvider::start().await;
    mock.always(Reply::chat("gpt-4o", "hi"));
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    s.metrics.max_model_labels = MAX_MODELS;
    let gw = TestGateway::start(s);
    for i in 0..(MAX_MODELS * 3) {
        let (status, _, _) = chat(
            &gw,
            "/v1/chat/completions",
            &[("x-portkey-provider", "openai")],
            json!({"model": format!("random-{i}"), "messages": []}),
        )
        .await;
        assert_eq!(status, 200);
    }
    let text = scrape(&gw).await;
    assert_capped(&text, "model", MAX_MODELS);
    assert_capped(&text, "gen_ai_request_model", MAX_MODELS);
    // The served name is priced: always its own label, and the answer is still priced.
    assert!(text.contains("gen_ai_response_model=\"gpt-4o\""));
    assert!(text.contains("portgate_cost_usd_total{"));
}
