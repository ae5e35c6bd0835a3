#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::string_slice
)]
//! The Grafana dashboard and the alert rules query only metrics that `/metrics` really exports,
//! and README documents every exported family. (Manifest schemas are checked by
//! `scripts/validate-deploy.sh` in `make test`.)

use crate::support::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

fn referenced_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["gen_ai_", "portgate_"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.insert(tail[..end].to_string());
            }
            rest = &tail[end..];
        }
    }
    out
}

/// Drives traffic that makes every family produce samples.
async fn exercise(gw: &TestGateway, a: &MockProvider, b: &MockProvider) {
    let body = json!({"model": "gpt-4o", "messages": []});
    a.always(Reply::json(
        200,
        json!({"model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "completion_tokens_details": {"reasoning_tokens": 1}}}),
    ));
    chat(
        gw,
        "/v1/chat/completions",
        &[("x-portkey-provider", "openai")],
        body.clone(),
    )
    .await;
    a.script([Reply::json(200, json!({"model": "unpriced", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}))]);
    chat(
        gw,
        "/v1/chat/completions",
        &[("x-portkey-provider", "openai")],
        json!({"model": "unpriced", "messages": []}),
    )
    .await;
    a.script([Reply::Sse {
        events: chat_events("gpt-4o", &["a", "b", "c"]),
        delay: Duration::from_millis(5),
    }]);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    resp.text().await.unwrap();
    // Fallback with a breaker that opens, and a retry the budget refuses.
    b.always(Reply::json(503, json!({})));
    let config = json!({
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "groq", "api_key": "sk-groq", "retry": {"attempts": 2}, "cb_config": {"failure_threshold": 1, "cooldown_interval": 60000}},
            {"provider": "openai", "api_key": "sk-openai"}
        ]
    })
    .to_string();
    chat(
        gw,
        "/v1/chat/completions",
        &[("x-portkey-config", &config)],
        body,
    )
    .await;
    chat(
        gw,
        "/v1/feedback",
        &[],
        json!({"trace_id": "t", "value": 3}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    let (a, b, _c, gw) = three_mocks(|s| {
        s.circuit_breaker.min_cooldown_ms = 100;
        s.retry.budget.ratio = 0.0;
        s.retry.budget.min_retries_per_second = 0.0;
    })
    .await;
    exercise(&gw, &a, &b).await;
    let text = scrape(&gw).await;
    let samples: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let families: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert!(families.len() >= 16, "{families:?}");
    for family in &families {
        assert!(
            samples.iter().any(|s| s.starts_with(family.as_str())),
            "{family} has no sample after the exercise: the test does not cover it"
        );
    }
    // Label names share the prefixes (gen_ai_request_model ...); they are not metrics.
    let labels: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.split_once('{')
                .and_then(|(_, rest)| rest.split_once('}'))
                .map(|(ls, _)| ls.to_string())
        })
        .flat_map(|ls| {
            ls.split(',')
                .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    for file in [
        "deploy/kubernetes/grafana-dashboard.json",
        "deploy/kubernetes/prometheus-rules.yaml",
    ] {
        let names: BTreeSet<String> = referenced_names(&std::fs::read_to_string(file).unwrap())
            .into_iter()
            .filter(|n| !labels.contains(n))
            .collect();
        assert!(!names.is_empty(), "{file} queries no metric");
        for n in names {
            assert!(
                samples.contains(&n),
                "{file} queries {n}, which /metrics does not export"
            );
        }
    }
    let readme = std::fs::read_to_string("README.md").unwrap();
    for family in &families {
        assert!(
            readme.contains(&format!("`{family}`")),
            "README does not document {family}"
        );
    }
}
