#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::string_slice
)]
//! The access log line, W3C trace context, and the feedback API.

use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn log_path(name: &str) -> String {
    let p = std::env::temp_dir().join(format!(
        "portgate-{name}-{}-{}.log",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_file(&p);
    p.display().to_string()
}

/// Waits for `n` lines (the access log is written by a background thread).
async fn lines(path: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let v: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        if v.len() >= n || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_json_line_per_request_without_keys() {
    let path = log_path("access");
    let (a, _b, _c, gw) = three_mocks(|s| s.log.access_log = path.clone()).await;
    a.script([Reply::json(503, json!({}))]);
    a.always(Reply::json(
        200,
        json!({"model": "gpt-4o-2024-08-06", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 4}}),
    ));
    let config =
        json!({"provider": "openai", "api_key": "sk-config-secret", "retry": {"attempts": 1}})
            .to_string();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-config", &config),
            ("authorization", "Bearer sk-client-secret"),
            ("x-portkey-trace-id", "trace-log-1"),
            ("traceparent", traceparent),
            (
                "x-portkey-metadata",
                r#"{"_user":"userid123","_environment":"production"}"#,
            ),
        ],
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let v = lines(&path, 1).await;
    assert_eq!(v.len(), 1);
    let l = &v[0];
    assert_eq!(l["event"], "request");
    assert_eq!(l["trace_id"], "trace-log-1");
    assert_eq!(l["w3c_trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(l["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(l["route"], "chat_completions");
    assert_eq!(l["status"], 200);
    assert_eq!(l["provider"], "openai");
    assert_eq!(l["model_requested"], "gpt-4o");
    assert_eq!(l["model_served"], "gpt-4o-2024-08-06");
    assert_eq!(l["target"], "config");
    assert_eq!(l["retries"], 1);
    assert_eq!(l["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(l["attempts"][0]["status"], 503);
    assert_eq!(l["attempts"][1]["kind"], "retry");
    assert_eq!(l["tokens"]["input"], 10);
    assert!(l["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(l["cache_status"], "DISABLED");
    assert!(l["latency_ms"]["total"].as_f64().unwrap() > 0.0);
    assert!(l["overhead_ms"].as_f64().is_some());
    assert_eq!(l["metadata"]["_user"], "userid123");
    assert!(l["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(l.get("request_body").is_none(), "bodies are off by default");
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(
        !raw.contains("sk-config-secret") && !raw.contains("sk-client-secret"),
        "no key in logs"
    );

    // The trace continues upstream with the gateway's span as parent.
    let sent = a.requests()[0].header("traceparent").unwrap().to_string();
    assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert_eq!(&sent[36..52], l["span_id"].as_str().unwrap());
    assert_ne!(&sent[36..52], "00f067aa0ba902b7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_logged_only_when_enabled_and_redacted() {
    let path = log_path("bodies");
    let (_a, _b, _c, gw) = three_mocks(|s| {
        s.log.access_log = path.clone();
        s.log.log_bodies = true;
    })
    .await;
    chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-provider", "openai")],
        json!({"model": "m", "api_key": "sk-in-body", "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    let v = lines(&path, 1).await;
    assert_eq!(v[0]["request_body"]["messages"][0]["content"], "hello");
    assert_eq!(v[0]["request_body"]["api_key"], "[redacted]");
    assert_eq!(
        v[0]["response_body"]["choices"][0]["message"]["content"],
        "hello from mock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_validated_logged_and_counted() {
    let path = log_path("feedback");
    let (_a, _b, _c, gw) = three_mocks(|s| s.log.access_log = path.clone()).await;
    // The Anyscale seed's feedback call.
    let (status, _, v) = chat(
        &gw,
        "/v1/feedback",
        &[("x-portkey-api-key", "PORTKEY_API_KEY")],
        json!({"trace_id": "anyscale_portkey_test", "value": 1, "weight": 0.5}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["status"], "success");
    let id = v["feedback_ids"][0].as_str().unwrap().to_string();
    let (status, _, v) = chat(
        &gw,
        "/v1/feedback",
        &[],
        json!([{"trace_id": "t2", "value": -3}, {"trace_id": "t3", "value": 10, "metadata": {"_user": "u"}}]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["feedback_ids"].as_array().unwrap().len(), 2);
    let resp = client()
        .put(gw.url(&format!("/v1/feedback/{id}")))
        .json(&json!({"value": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client()
        .put(gw.url("/v1/feedback/unknown-id"))
        .json(&json!({"value": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    for (body, field) in [
        (json!({"value": 1}), "trace_id"),
        (json!({"trace_id": "t", "value": 11}), "value"),
        (
            json!({"trace_id": "t", "value": 1, "weight": 1.5}),
            "weight",
        ),
        (
            json!({"trace_id": "t", "value": 1, "metadata": {"k": 1}}),
            "metadata.k",
        ),
    ] {
        let (status, _, v) = chat(&gw, "/v1/feedback", &[], body).await;
        assert_eq!(status, 400);
        assert!(v["message"].as_str().unwrap().contains(field), "{v}");
    }
    let v = lines(&path, 4).await;
    let fb: Vec<&Value> = v.iter().filter(|l| l["event"] == "feedback").collect();
    assert_eq!(fb.len(), 3);
    assert_eq!(fb[0]["trace_id"], "anyscale_portkey_test");
    assert_eq!(fb[0]["weight"], 0.5);
    let upd: Vec<&Value> = v
        .iter()
        .filter(|l| l["event"] == "feedback_update")
        .collect();
    assert_eq!(
        upd[0]["trace_id"], "anyscale_portkey_test",
        "an update is joinable by trace id"
    );
    let m = scrape(&gw).await;
    assert_eq!(
        sample(&m, "portgate_feedback_total", &[("kind", "create")]),
        Some(3.0)
    );
    assert_eq!(
        sample(&m, "portgate_feedback_total", &[("kind", "update")]),
        Some(1.0)
    );
    assert_eq!(sample(&m, "portgate_feedback_value_count", &[]), Some(4.0));
    assert_eq!(sample(&m, "portgate_feedback_value_sum", &[]), Some(13.0));
}
