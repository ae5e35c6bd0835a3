//! What a config's guardrails may cost: caps on checks per hook and per config, patterns and
//! remote checks per config (400 naming the cap), remote checks per request and at once in the
//! process, the time budget of checks that run on the CPU, one hook context shared by the
//! webhooks of a request, the custom-host rules for URLs found in text, and streamed answers
//! checked window by window.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

fn cfg(hooks: Value) -> String {
    json!({"provider": "openai", "api_key": "sk-a", "before_request_hooks": hooks}).to_string()
}

fn regex(rule: &str) -> Value {
    json!({"id": "default.regexMatch", "parameters": {"rule": rule}})
}

fn webhook(url: &str, timeout: u64) -> Value {
    json!({"id": "default.webhook", "parameters": {"webhookURL": url, "timeout": timeout}})
}

/// The `errors` of Portkey's invalid-config envelope, joined.
fn messages(v: &Value) -> String {
    assert_eq!(v["message"], "Invalid config passed", "{v}");
    v["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_over_a_cap_are_400_naming_it_and_the_provider_is_never_called() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let hook = |checks: Vec<Value>| json!({"checks": checks});
    let cases = [
        (
            cfg(json!([hook((0..33).map(|i| json!({"id": "default.wordCount", "parameters": {"maxWords": i}})).collect())])),
            "before_request_hooks,0, message: the hook has 33 checks; at most 32 are allowed (limits.guardrails.checks_per_hook)",
        ),
        (
            cfg(json!((0..5)
                .map(|h| hook((0..26).map(|i| json!({"id": "default.wordCount", "parameters": {"maxWords": h * 100 + i}})).collect()))
                .collect::<Vec<_>>())),
            "the config has 130 guardrail checks; at most 128 are allowed (limits.guardrails.checks_per_config)",
        ),
        (
            cfg(json!([hook((0..17).map(|_| webhook("https://hooks.example/v", 100)).collect())])),
            "the config has 17 webhook, log and validUrls checks; at most 16 are allowed (limits.guardrails.remote_checks_per_config)",
        ),
        (
            cfg(json!([
                hook((0..20).map(|i| regex(&format!("a{i}"))).collect()),
                hook((0..13).map(|i| regex(&format!("b{i}"))).collect()),
            ])),
            "the config has 33 regular expressions; at most 32 are allowed (limits.guardrails.patterns_per_config)",
        ),
    ];
    for (config, want) in cases {
        let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "hello")).await;
        assert_eq!(status, 400, "{v}");
        assert!(messages(&v).contains(want), "{v}");
    }
    // Routing's `$regex` counts with the guardrails' patterns.
    let conditions: Vec<Value> = (0..33)
        .map(|i| json!({"query": {"metadata.team": {"$regex": format!("t{i}")}}, "then": "a"}))
        .collect();
    let config = json!({"strategy": {"mode": "conditional", "conditions": conditions, "default": "a"},
                        "targets": [{"name": "a", "provider": "openai", "api_key": "sk-a"}]});
    let (status, _, v) = with_config(&gw, &config.to_string(), user_chat("gpt-4o", "hello")).await;
    assert_eq!(status, 400, "{v}");
    assert!(messages(&v).contains("33 regular expressions"), "{v}");
    assert_eq!(mock.request_count(), 0);
    // The caps are settings.
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    s.limits.guardrails.checks_per_hook = 40;
    let gw = TestGateway::start(s);
    let config = cfg(json!([hook(
        (0..33)
            .map(|i| json!({"id": "default.wordCount", "parameters": {"maxWords": 100 + i}}))
            .collect()
    )]));
    let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "hello")).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_starts_at_most_its_quota_of_remote_checks() {
    let mock = MockProvider::start().await;
    let hook = MockProvider::start().await;
    hook.always(Reply::json(200, json!({"verdict": true})));
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    s.limits.guardrails.remote_checks_per_request = 2;
    let gw = TestGateway::start(s);
    let url = format!("{}/guard", hook.base_url());
    let config = cfg(json!([
        {"sequential": true, "checks": [webhook(&url, 2000), webhook(&url, 2000), webhook(&url, 2000)]}
    ]));
    let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "hello")).await;
    // The third check errors (and so passes: no failOnError).
    assert_eq!(status, 200, "{v}");
    assert_eq!(hook.request_count(), 2, "two webhook calls, not three");
    let checks = &v["hook_results"]["before_request_hooks"][0]["checks"];
    assert_eq!(checks[0]["verdict"], true);
    assert!(
        checks[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.guardrails.remote_checks_per_request"),
        "{checks}"
    );
    // The quota is per request: the next one gets its own.
    let (status, _, _) = with_config(&gw, &config, user_chat("gpt-4o", "hello")).await;
    assert_eq!(status, 200);
    assert_eq!(hook.request_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_checks_beyond_the_process_limit_wait_within_their_timeout() {
    let mock = MockProvider::start().await;
    let hook = MockProvider::start().await;
    hook.always(Reply::Slow {
        delay: Duration::from_millis(600),
        then: Box::new(Reply::json(200, json!({"verdict": true}))),
    });
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    s.limits.guardrails.concurrent_remote_checks = 1;
    let gw = TestGateway::start(s);
    let url = format!("{}/guard", hook.base_url());
    let config = cfg(json!([{"checks": [webhook(&url, 1500), webhook(&url, 200)]}]));
    let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "hello")).await;
    assert_eq!(status, 200, "{v}");
    let checks = &v["hook_results"]["before_request_hooks"][0]["checks"];
    let errors: Vec<&str> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["error"]["message"].as_str())
        .collect();
    assert_eq!(errors.len(), 1, "{checks}");
    assert!(
        errors[0].contains("limits.guardrails.concurrent_remote_checks"),
        "{errors:?}"
    );
    assert_eq!(hook.request_count(), 1, "the second webhook never started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhooks_of_a_request_post_one_shared_context() {
    let mock = MockProvider::start().await;
    let hook = MockProvider::start().await;
    hook.always(Reply::json(200, json!({"verdict": true})));
    let gw = gateway_for(&mock);
    let url = format!("{}/guard", hook.base_url());
    let config = cfg(json!([
        {"checks": [webhook(&url, 2000), webhook(&url, 2000)]},
        {"checks": [webhook(&url, 2000), {"id": "default.log", "parameters": {"logURL": url}}]}
    ]));
    let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "hello there")).await;
    assert_eq!(status, 200, "{v}");
    let posted = hook.requests();
    assert_eq!(posted.len(), 4);
    for r in &posted {
        assert_eq!(r.body, posted[0].body, "every check posts the same context");
    }
    assert_eq!(posted[0].json()["request"]["text"], "hello there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_in_text_follow_the_custom_host_rules_without_the_trusted_list() {
    let mock = MockProvider::start().await;
    let target = MockProvider::start().await;
    target.always(Reply::json(200, json!({})));
    // localhost and 127.0.0.1 are trusted custom hosts in the test settings; a URL written
    // into a prompt is still never looked up or fetched there.
    let gw = gateway_for(&mock);
    let text = format!(
        "see http://localhost/a and http://metadata.google.internal/computeMetadata and {}/x",
        target.base_url()
    );
    for only_dns in [true, false] {
        let config = cfg(json!([{"checks": [
            {"id": "default.validUrls", "parameters": {"onlyDNS": only_dns}}]}]));
        let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", &text)).await;
        assert_eq!(status, 246, "a failing hook without deny: {v}");
        let data = &v["hook_results"]["before_request_hooks"][0]["checks"][0]["data"];
        assert_eq!(data["validUrls"], json!([]), "{data}");
        assert_eq!(data["invalidUrls"].as_array().unwrap().len(), 3, "{data}");
    }
    assert_eq!(target.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_past_the_time_budget_are_not_run() {
    let mock = MockProvider::start().await;
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    s.limits.guardrails.check_time_budget_ms = 1;
    let gw = TestGateway::start(s);
    // A long text: each pattern scan over it takes longer than the budget.
    let text = "lorem ipsum dolor sit amet ".repeat(80_000);
    let checks: Vec<Value> = (0..8).map(|i| regex(&format!(r"\b\w+q{i}\b"))).collect();
    let config = cfg(json!([{"deny": true, "checks": checks}]));
    let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", &text)).await;
    // The checks that did not run errored, and errors pass without failOnError.
    assert_eq!(status, 200, "{v}");
    let checks = v["hook_results"]["before_request_hooks"][0]["checks"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(checks.len(), 8);
    let skipped = checks
        .iter()
        .filter(|c| {
            c["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("limits.guardrails.check_time_budget_ms"))
        })
        .count();
    assert!((1..8).contains(&skipped), "{skipped} of 8 skipped");
    assert_eq!(mock.request_count(), 1);
}

/// A streamed request through a gateway for `mock` whose config has one deny hook of `checks`
/// on the output; the body the client received.
async fn streamed(mock: &MockProvider, checks: Value) -> String {
    let gw = gateway_for(mock);
    let config = json!({"provider": "openai", "api_key": "sk-a",
                        "after_request_hooks": [{"deny": true, "checks": checks}]});
    let mut b = user_chat("gpt-4o", "go");
    b["stream"] = json!(true);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-config", config.to_string())
        .json(&b)
        .send()
        .await
        .unwrap();
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_is_checked_window_by_window_and_still_denied_mid_way() {
    let mock = MockProvider::start().await;
    // 3,000 words (far more than the overlap window), then a forbidden phrase split across
    // two events, then more words.
    let mut pieces: Vec<String> = (0..60)
        .map(|e| (0..50).map(|i| format!("w{} ", e * 50 + i)).collect())
        .collect();
    pieces.push("BEGIN RSA PRI".into());
    pieces.push("VATE KEY ".into());
    pieces.extend((0..50).map(|i| format!("x{i} ")));
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    mock.always(Reply::Sse {
        events: chat_events("gpt-4o", &refs),
        delay: Duration::from_millis(3),
    });
    let text = streamed(&mock, json!([
        {"id": "default.regexMatch", "parameters": {"rule": "BEGIN (RSA )?PRIVATE KEY", "not": true}},
        {"id": "default.wordCount", "parameters": {"maxWords": 100000}}]))
    .await;
    assert!(text.contains("event: error"), "denied mid-stream");
    assert!(text.contains("w2999"), "the text before was relayed");
    assert!(
        !text.contains("x0 "),
        "nothing after the phrase reached the client"
    );
    assert!(!text.contains("data: [DONE]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_a_word_maximum_is_cut_when_it_passes_it() {
    let mock = MockProvider::start().await;
    let words: Vec<String> = (0..400).map(|i| format!("w{i} ")).collect();
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    mock.always(Reply::Sse {
        events: chat_events("gpt-4o", &refs),
        delay: Duration::from_millis(2),
    });
    let text = streamed(
        &mock,
        json!([{"id": "default.wordCount", "parameters": {"maxWords": 300}}]),
    )
    .await;
    assert!(text.contains("event: error"), "{text}");
    assert!(
        text.contains("\"w250 \""),
        "the words before the maximum were relayed"
    );
    assert!(!text.contains("\"w300 \""), "the 301st word was not");
}
