//! Guardrails end to end against mock providers that record what they received: before- and
//! after-request hooks, 446/246/200 bodies with `hook_results`, routing on 446, retries on
//! 446, mutators, webhooks, named guardrails from the settings, streams denied mid-stream,
//! validation errors and metrics.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

fn cfg(extra: Value) -> String {
    let mut c = json!({"provider": "openai", "api_key": "sk-a"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

fn regex_hook(rule: &str, not: bool, deny: bool) -> Value {
    json!({"type": "guardrail", "id": "g1", "deny": deny,
           "checks": [{"id": "default.regexMatch", "parameters": {"rule": rule, "not": not}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_before_deny_hook_is_446_and_the_provider_is_never_called() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let config = cfg(json!({"before_request_hooks": [regex_hook("password", true, true)]}));
    let (status, h, v) =
        with_config(&gw, &config, user_chat("gpt-4o", "my password is hunter2")).await;
    assert_eq!(status, 446, "{v}");
    assert_eq!(mock.request_count(), 0, "the provider was never called");
    assert_eq!(v["error"]["type"], "hooks_failed");
    assert_eq!(v["error"]["message"], "The guardrail checks defined in the config failed. You can find more information in the `hook_results` object.");
    assert_eq!(v["error"]["param"], Value::Null);
    let hr = &v["hook_results"];
    assert_eq!(hr["after_request_hooks"], json!([]));
    let hook = &hr["before_request_hooks"][0];
    assert_eq!(hook["id"], "g1");
    assert_eq!(hook["type"], "guardrail");
    assert_eq!(hook["verdict"], false);
    assert_eq!(hook["deny"], true);
    assert_eq!(hook["async"], false);
    assert_eq!(hook["checks"][0]["id"], "default.regexMatch");
    assert_eq!(hook["checks"][0]["verdict"], false);
    assert_eq!(hook["checks"][0]["fail_on_error"], false);
    for key in ["execution_time", "created_at", "transformed", "feedback"] {
        assert!(hook.get(key).is_some(), "hook result has {key}");
    }
    assert!(header(&h, "x-portkey-trace-id").len() > 4);
    // The same config with a clean prompt goes through, and carries the hook results.
    let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "hello")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(mock.request_count(), 1);
    assert_eq!(
        v["hook_results"]["before_request_hooks"][0]["verdict"],
        true
    );
    assert_eq!(v["choices"][0]["message"]["content"], "hello from mock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_hook_without_deny_is_246_with_the_body_and_hook_results() {
    let mock = MockProvider::start().await;
    mock.always(Reply::chat("gpt-4o", "The answer is 42"));
    let gw = gateway_for(&mock);
    let config = cfg(json!({"after_request_hooks": [{
        "type": "guardrail", "id": "out", "deny": false,
        "checks": [{"id": "default.endsWith", "parameters": {"suffix": "thanks"}},
                   {"id": "default.wordCount", "parameters": {"minWords": 1, "maxWords": 10}}]}]}));
    let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "q")).await;
    assert_eq!(status, 246, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "The answer is 42");
    let hook = &v["hook_results"]["after_request_hooks"][0];
    assert_eq!(hook["verdict"], false);
    assert_eq!(hook["deny"], false);
    assert_eq!(hook["checks"][0]["verdict"], false);
    assert_eq!(hook["checks"][1]["verdict"], true);
    assert_eq!(v["hook_results"]["before_request_hooks"], json!([]));
    // With deny, the same failure is a 446 with both lists.
    let config = cfg(json!({"after_request_hooks": [{
        "type": "guardrail", "deny": true,
        "checks": [{"id": "default.endsWith", "parameters": {"suffix": "thanks"}}]}]}));
    let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "q")).await;
    assert_eq!(status, 446);
    assert_eq!(v["error"]["type"], "hooks_failed");
    assert!(v.get("choices").is_none());
    assert_eq!(v["hook_results"]["after_request_hooks"][0]["deny"], true);
    // The provider answered both times: its tokens count, the denied answer's too (read
    // before the hooks ran, not parsed again from the body with `hook_results`).
    let metrics = scrape(&gw).await;
    let tokens = |kind: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("portgate_tokens_total") && l.contains(kind))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(tokens("type=\"input\""), 18.0, "{metrics}");
    assert_eq!(tokens("type=\"output\""), 6.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_hooks_answer_200_with_hook_results_and_shorthand_works() {
    let mock = MockProvider::start().await;
    mock.always(Reply::chat("gpt-4o", "{\"name\": \"x\", \"age\": 3}"));
    let gw = gateway_for(&mock);
    let config = cfg(json!({
        "input_guardrails": [{"deny": true, "characterCount": {"maxCharacters": 100}}],
        "output_guardrails": [{"default.jsonSchema": {"schema": {"type": "object", "required": ["name"]}},
                               "jsonKeys": {"keys": ["age"], "operator": "all"}}]
    }));
    let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "short")).await;
    assert_eq!(status, 200, "{v}");
    let before = &v["hook_results"]["before_request_hooks"][0];
    assert!(before["id"]
        .as_str()
        .unwrap()
        .starts_with("input_guardrail_"));
    assert_eq!(before["checks"][0]["id"], "default.characterCount");
    let after = &v["hook_results"]["after_request_hooks"][0];
    assert!(after["id"]
        .as_str()
        .unwrap()
        .starts_with("output_guardrail_"));
    assert_eq!(after["verdict"], true, "{after}");
    assert_eq!(after["checks"].as_array().unwrap().len(), 2);
    // Without hooks, no hook_results.
    let (status, _, v) = with_config(&gw, &cfg(json!({})), user_chat("gpt-4o", "short")).await;
    assert_eq!(status, 200);
    assert!(v.get("hook_results").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_moves_on_from_a_446() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    a.always(Reply::chat("gpt-4o", "contains SECRET data"));
    b.always(Reply::chat("llama", "clean answer"));
    let deny_secret = json!([{"deny": true, "checks": [{"id": "default.contains",
        "parameters": {"words": ["SECRET"], "operator": "none"}}]}]);
    let config = json!({
        "strategy": {"mode": "fallback"},
        "after_request_hooks": deny_secret,
        "targets": [{"provider": "openai", "api_key": "sk-a"}, {"provider": "groq", "api_key": "sk-b"}]
    })
    .to_string();
    let (status, h, v) = with_config(&gw, &config, user_chat("gpt-4o", "q")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "clean answer");
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.targets[1]"
    );
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    // on_status_codes without 446: the 446 is the answer.
    let config = json!({
        "strategy": {"mode": "fallback", "on_status_codes": [429]},
        "after_request_hooks": deny_secret,
        "targets": [{"provider": "openai", "api_key": "sk-a"}, {"provider": "groq", "api_key": "sk-b"}]
    })
    .to_string();
    let (status, _, _) = with_config(&gw, &config, user_chat("gpt-4o", "q")).await;
    assert_eq!(status, 446);
    assert_eq!(b.request_count(), 1, "no fallback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_446_reruns_the_call_and_the_hooks() {
    let (a, _b, _c, gw) = three_mocks(|_| {}).await;
    a.script([
        Reply::chat("gpt-4o", "bad SECRET"),
        Reply::chat("gpt-4o", "bad SECRET again"),
    ]);
    a.always(Reply::chat("gpt-4o", "fine"));
    let config = cfg(json!({
        "retry": {"attempts": 3, "on_status_codes": [446]},
        "after_request_hooks": [{"deny": true, "checks": [{"id": "default.regexMatch",
            "parameters": {"rule": "SECRET", "not": true}}]}]
    }));
    let (status, h, v) = with_config(&gw, &config, user_chat("gpt-4o", "q")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "fine");
    assert_eq!(a.request_count(), 3);
    assert_eq!(header(&h, "x-portkey-retry-attempt-count"), "2");
    // Without 446 in the list, no retry.
    let config = cfg(json!({
        "retry": {"attempts": 3},
        "after_request_hooks": [{"deny": true, "checks": [{"id": "default.regexMatch",
            "parameters": {"rule": "fine", "not": true}}]}]
    }));
    let before = a.request_count();
    let (status, _, _) = with_config(&gw, &config, user_chat("gpt-4o", "q")).await;
    assert_eq!(status, 446);
    assert_eq!(a.request_count(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutators_rewrite_the_request_sent_upstream_and_the_answer() {
    let mock = MockProvider::start().await;
    mock.always(Reply::chat("gpt-4o", "reach me at bob@example.com"));
    let gw = gateway_for(&mock);
    let config = cfg(json!({
        "before_request_hooks": [{"type": "mutator", "checks": [
            {"id": "default.regexReplace", "parameters": {"rule": "\\d{3}-\\d{4}", "redactText": "[PHONE]"}},
            {"id": "default.addPrefix", "parameters": {"prefix": "Be brief. "}}]}],
        "after_request_hooks": [{"type": "mutator", "checks": [
            {"id": "portgate.pii", "parameters": {"redact": true}}]}]
    }));
    let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "call 555-1234 now")).await;
    assert_eq!(status, 200, "{v}");
    let sent = mock.requests()[0].json();
    assert_eq!(sent["messages"][0]["content"], "Be brief. call [PHONE] now");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "reach me at [REDACTED_EMAIL]"
    );
    assert_eq!(
        v["hook_results"]["after_request_hooks"][0]["transformed"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_check_posts_the_context_and_takes_its_verdict() {
    let mock = MockProvider::start().await;
    let hook = MockProvider::start().await;
    hook.script([
        Reply::json(200, json!({"verdict": false, "data": {"reason": "nope"}})),
        Reply::json(200, json!({"verdict": true, "transformedData": {"request": {"json":
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "rewritten by webhook"}]}}}})),
    ]);
    let gw = gateway_for(&mock);
    let config = cfg(json!({"before_request_hooks": [{"deny": true, "checks": [
        {"id": "default.webhook", "parameters": {
            "webhookURL": format!("{}/guard?k=1", hook.base_url()),
            "headers": {"x-hook-key": "k1"}, "timeout": 2000}}]}]}));
    let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "hello")).await;
    assert_eq!(status, 446, "{v}");
    assert_eq!(mock.request_count(), 0);
    let got = &hook.requests()[0];
    assert_eq!(got.path, "/v1/guard?k=1");
    assert_eq!(got.header("x-hook-key"), Some("k1"));
    let ctx = got.json();
    assert_eq!(ctx["eventType"], "beforeRequestHook");
    assert_eq!(ctx["request"]["text"], "hello");
    assert_eq!(ctx["requestType"], "chatComplete");
    assert_eq!(ctx["provider"], "openai");
    let check = &v["hook_results"]["before_request_hooks"][0]["checks"][0];
    assert_eq!(check["data"]["responseData"]["reason"], "nope");
    // The webhook passes and rewrites the request.
    let (status, _, _) = with_config(&gw, &config, user_chat("gpt-4o", "hello")).await;
    assert_eq!(status, 200);
    assert_eq!(
        mock.requests()[0].json()["messages"][0]["content"],
        "rewritten by webhook"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_times_out_passes_unless_fail_on_error() {
    let mock = MockProvider::start().await;
    let hook = MockProvider::start().await;
    hook.always(Reply::Slow {
        delay: Duration::from_millis(800),
        then: Box::new(Reply::json(200, json!({"verdict": false}))),
    });
    let gw = gateway_for(&mock);
    let url = format!("{}/guard", hook.base_url());
    for (fail_on_error, want) in [(false, 200), (true, 446)] {
        let config = cfg(json!({"before_request_hooks": [{"deny": true, "checks": [
            {"id": "default.webhook", "parameters": {"webhookURL": url, "timeout": 100,
             "failOnError": fail_on_error}}]}]}));
        let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "hello")).await;
        assert_eq!(status, want, "{v}");
        let check = &v["hook_results"]["before_request_hooks"][0]["checks"][0];
        assert!(
            check["error"]["message"]
                .as_str()
                .unwrap()
                .contains("timed out"),
            "{check}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_guardrails_from_settings_work_as_the_seed_shows() {
    let mock = MockProvider::start().await;
    mock.always(Reply::chat(
        "claude",
        "Here you go: card 4111 1111 1111 1111",
    ));
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    s.guardrails.insert(
        "input-guardrail-id-xx".into(),
        json!({"deny": true, "checks": [{"id": "default.modelWhitelist", "parameters": {"models": ["gpt-4o"]}}],
               "on_fail": {"feedback": {"value": -5, "weight": 1, "metadata": {"why": "model"}}}}),
    );
    s.guardrails.insert(
        "output-guardrail-id-xx".into(),
        json!({"deny": false, "portgate.pii": {"categories": ["credit_card"]}}),
    );
    let gw = TestGateway::start(s);
    // The seed's config, verbatim.
    let config = cfg(json!({
        "before_request_hooks": [{"id": "input-guardrail-id-xx"}],
        "after_request_hooks": [{"id": "output-guardrail-id-xx"}]
    }));
    let (status, _, v) = with_config(&gw, &config, user_chat("gpt-4o", "q")).await;
    assert_eq!(status, 246, "{v}");
    assert_eq!(
        v["hook_results"]["before_request_hooks"][0]["id"],
        "input-guardrail-id-xx"
    );
    let after = &v["hook_results"]["after_request_hooks"][0];
    assert_eq!(after["id"], "output-guardrail-id-xx");
    assert_eq!(after["checks"][0]["data"]["detected"]["credit_card"], 1);
    // A model off the list is denied by the named input guardrail, with its feedback.
    let mut b = user_chat("gpt-4o", "q");
    b["model"] = json!("gpt-3.5-turbo");
    let (status, _, v) = with_config(&gw, &config, b).await;
    assert_eq!(status, 446, "{v}");
    let fb = &v["hook_results"]["before_request_hooks"][0]["feedback"];
    assert_eq!(fb["value"], -5);
    assert_eq!(fb["metadata"]["why"], "model");
    assert_eq!(fb["metadata"]["failedChecks"], "default.modelWhitelist");
    let text = scrape(&gw).await;
    assert_eq!(
        sample(
            &text,
            "portgate_guardrail_denials_total",
            &[("hook", "input-guardrail-id-xx")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "portgate_guardrail_checks_total",
            &[
                ("hook", "output-guardrail-id-xx"),
                ("check", "portgate.pii"),
                ("verdict", "fail")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "portgate_feedback_total", &[("kind", "guardrail")]),
        Some(1.0)
    );
    // An unknown id is a 400 naming it.
    let bad = cfg(json!({"before_request_hooks": [{"id": "nope-guardrail"}]}));
    let (status, _, v) = with_config(&gw, &bad, user_chat("gpt-4o", "q")).await;
    assert_eq!(status, 400);
    assert!(v.to_string().contains("nope-guardrail"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hook_configs_are_400_naming_the_path() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let cases = [
        (
            json!({"before_request_hooks": [{"checks": [{"id": "default.nope", "parameters": {}}]}]}),
            "path: before_request_hooks,0,checks,0,id",
        ),
        (
            json!({"before_request_hooks": [{"checks": [{"id": "default.regexMatch", "parameters": {}}]}]}),
            "path: before_request_hooks,0,checks,0,parameters,rule",
        ),
        (
            json!({"output_guardrails": [{"jsonSchema": {"schema": {"type": 12}}}]}),
            "path: output_guardrails,0,jsonSchema,schema",
        ),
        (
            json!({"before_request_hooks": [{"checks": [{"id": "default.regexMatch", "parameters": {"rule": "(unclosed"}}]}]}),
            "path: before_request_hooks,0,checks,0,parameters,rule",
        ),
    ];
    for (extra, path) in cases {
        let (status, _, v) = with_config(&gw, &cfg(extra.clone()), user_chat("gpt-4o", "q")).await;
        assert_eq!(status, 400, "{extra}");
        assert_eq!(v["status"], "failure");
        let errors = v["errors"].to_string();
        assert!(errors.contains(path), "{extra}: {errors}");
    }
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_hook_ends_a_stream_mid_way() {
    let mock = MockProvider::start().await;
    mock.script([Reply::Sse {
        events: chat_events(
            "gpt-4o",
            &["Hello ", "my ", "SECRET ", "plan ", "is ", "here"],
        ),
        delay: Duration::from_millis(5),
    }]);
    let gw = gateway_for(&mock);
    let config = cfg(json!({"after_request_hooks": [{"deny": true, "checks": [
        {"id": "default.regexMatch", "parameters": {"rule": "SECRET", "not": true}}]}]}));
    let mut b = user_chat("gpt-4o", "q");
    b["stream"] = json!(true);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-config", config)
        .json(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("Hello "), "{text}");
    let chunks: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("chat.completion.chunk"))
        .collect();
    assert_eq!(
        chunks.len(),
        2,
        "the offending chunk never reached the client: {text}"
    );
    assert!(
        !text.contains("\"plan \""),
        "no later provider bytes: {text}"
    );
    assert!(!text.contains("[DONE]"));
    let err_line = text
        .lines()
        .find(|l| l.starts_with("data: ") && l.contains("hooks_failed"))
        .expect("an error event");
    let ev: Value = serde_json::from_str(err_line.trim_start_matches("data: ")).unwrap();
    assert_eq!(ev["error"]["type"], "hooks_failed");
    assert_eq!(ev["hook_results"]["after_request_hooks"][0]["deny"], true);
    assert!(text.contains("event: error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reports_a_failing_non_deny_hook_at_the_end_when_not_strict() {
    let mock = MockProvider::start().await;
    let events = chat_events("gpt-4o", &["no ", "json ", "here"]);
    mock.script([
        Reply::Sse {
            events: events.clone(),
            delay: Duration::ZERO,
        },
        Reply::Sse {
            events,
            delay: Duration::ZERO,
        },
    ]);
    let gw = gateway_for(&mock);
    let config = cfg(json!({"output_guardrails": [{"jsonKeys": {"keys": ["a"]}}]}));
    let mut b = user_chat("gpt-4o", "q");
    b["stream"] = json!(true);
    for (strict, reported) in [("false", true), ("true", false)] {
        let text = client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-portkey-config", &config)
            .header("x-portkey-strict-open-ai-compliance", strict)
            .json(&b)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("here"), "{text}");
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        assert_eq!(text.contains("hook_results"), reported, "{text}");
        if reported {
            let at = text.find("hook_results").unwrap();
            assert!(at < text.find("[DONE]").unwrap());
        }
    }
    let metrics = scrape(&gw).await;
    assert_eq!(
        sample(
            &metrics,
            "portgate_guardrail_checks_total",
            &[
                ("hook", "after_request"),
                ("check", "default.jsonKeys"),
                ("verdict", "fail")
            ]
        ),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_are_inherited_and_replaced_down_nested_targets() {
    let (a, b, _c, gw) = three_mocks(|_| {}).await;
    let deny_all = json!([{"deny": true, "checks": [{"id": "default.regexMatch", "parameters": {"rule": "."}}]}]);
    let pass = json!([{"deny": true, "checks": [{"id": "default.notNull", "parameters": {}}]}]);
    let _ = deny_all;
    let config = json!({
        "strategy": {"mode": "fallback"},
        "before_request_hooks": [{"deny": true, "checks": [{"id": "default.regexMatch",
            "parameters": {"rule": "^$"}}]}],
        "targets": [
            {"provider": "openai", "api_key": "sk-a"},
            {"provider": "groq", "api_key": "sk-b", "before_request_hooks": pass}
        ]
    })
    .to_string();
    let (status, h, v) = with_config(&gw, &config, user_chat("gpt-4o", "hello")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        a.request_count(),
        0,
        "the first target inherited the denying hook"
    );
    assert_eq!(b.request_count(), 1, "the second replaced it");
    assert_eq!(
        header(&h, "x-portkey-last-used-option-index"),
        "config.targets[1]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_carries_verdicts_and_guardrail_feedback_never_the_text() {
    let path = std::env::temp_dir().join(format!(
        "portgate-guard-{}-{}.log",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_file(&path);
    let mock = MockProvider::start().await;
    let mut s = test_settings();
    route_to(&mut s, &mock, &["openai"]);
    s.log.access_log = path.display().to_string();
    let gw = TestGateway::start(s);
    let config = cfg(
        json!({"before_request_hooks": [{"id": "pii-gate", "deny": true,
        "checks": [{"id": "portgate.pii", "parameters": {}}],
        "on_fail": {"feedback": {"value": -10, "weight": 0.5}}}]}),
    );
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-config", &config),
            ("x-portkey-trace-id", "trace-guard-1"),
        ],
        user_chat("gpt-4o", "my card is 4111 1111 1111 1111"),
    )
    .await;
    assert_eq!(status, 446);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let v: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if v.len() >= 2 || std::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let all = serde_json::to_string(&lines).unwrap();
    assert!(
        !all.contains("4111"),
        "the examined text is never logged: {all}"
    );
    let feedback = lines
        .iter()
        .find(|l| l["event"] == "feedback")
        .expect("a feedback line");
    assert_eq!(feedback["trace_id"], "trace-guard-1");
    assert_eq!(feedback["value"], -10);
    assert_eq!(feedback["metadata"]["failedChecks"], "portgate.pii");
    let request = lines
        .iter()
        .find(|l| l["event"] == "request")
        .expect("a request line");
    assert_eq!(request["status"], 446);
    let g = &request["guardrails"][0];
    assert_eq!(g["event"], "before_request");
    assert_eq!(g["hook"], "pii-gate");
    assert_eq!(g["verdict"], false);
    assert_eq!(g["deny"], true);
    assert_eq!(
        g["checks"][0],
        json!({"id": "portgate.pii", "verdict": false, "errored": false})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_get_before_hooks_only_and_completions_read_the_prompt() {
    let mock = MockProvider::start().await;
    mock.always(Reply::json(200, json!({"object": "list", "data": [], "model": "e", "usage": {"prompt_tokens": 1, "total_tokens": 1}})));
    let gw = gateway_for(&mock);
    let config = cfg(json!({
        "before_request_hooks": [{"deny": true, "checks": [{"id": "default.regexMatch", "parameters": {"rule": "forbidden", "not": true}}]}],
        "after_request_hooks": [{"deny": true, "checks": [{"id": "default.notNull", "parameters": {}}]}]
    }));
    let (status, _, v) = chat(
        &gw,
        "/v1/embeddings",
        &[("x-portkey-config", &config)],
        json!({"model": "e", "input": ["fine", "forbidden words"]}),
    )
    .await;
    assert_eq!(status, 446, "{v}");
    let (status, _, v) = chat(
        &gw,
        "/v1/embeddings",
        &[("x-portkey-config", &config)],
        json!({"model": "e", "input": "fine"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["hook_results"]["after_request_hooks"][0]["skipped"], true);
    assert!(v["hook_results"]["after_request_hooks"][0]
        .get("verdict")
        .is_none());
    let (status, _, _) = chat(
        &gw,
        "/v1/completions",
        &[("x-portkey-config", &config)],
        json!({"model": "m", "prompt": "a forbidden prompt"}),
    )
    .await;
    assert_eq!(status, 446);
}

#[test]
fn check_validates_named_guardrails() {
    let dir = std::env::temp_dir().join(format!("portgate-guard-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |yaml: &str, name: &str| {
        let path = dir.join(name);
        std::fs::write(&path, yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portgate"))
            .arg("--check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(
        "guardrails:\n  input-guardrail-id-xx:\n    checks:\n      - id: default.regexMatch\n        parameters: {}\n",
        "bad.yaml",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("guardrails.input-guardrail-id-xx"), "{err}");
    assert!(err.contains("parameters,rule"), "{err}");
    let (code, out, err) = run(
        "guardrails:\n  hook:\n    deny: true\n    checks:\n      - id: default.webhook\n        parameters: {webhookURL: 'https://guard.example/v', headers: {x-api-key: s3cret-value}}\n",
        "good.yaml",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("guard.example"), "{out}");
    assert!(!out.contains("s3cret-value"), "{out}");
}

/// Checks read the text without parsing the whole body; a text that cannot be decoded (a lone
/// UTF-16 surrogate escape, which the gateway's scan skips over) is a 400, never an empty text
/// that a `not` check would let through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_that_cannot_be_decoded_is_a_400_not_an_empty_text() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let config = cfg(json!({"before_request_hooks": [regex_hook("password", true, true)]}));
    let raw = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"my password \ud800"}]}"#;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-config", &config)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "failure", "{v}");
    assert_eq!(mock.request_count(), 0, "the provider was never called");
}

/// An answer stored by a config without output guardrails is judged by the hooks of the config
/// it is served to: a deny is a 446 (the provider is not called again), a passing hook adds
/// its `hook_results`; the answer is still a cache hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_answer_still_passes_the_output_guardrails() {
    let mock = MockProvider::start().await;
    mock.always(Reply::chat("gpt-4o", "my SECRET plan"));
    let gw = gateway_for(&mock);
    let cache = json!({"mode": "simple"});
    let plain = cfg(json!({"cache": cache}));
    let (status, h, _) = with_config(&gw, &plain, user_chat("gpt-4o", "q")).await;
    assert_eq!(
        (status, header(&h, "x-portkey-cache-status")),
        (200, "MISS")
    );
    let guarded =
        cfg(json!({"cache": cache, "after_request_hooks": [regex_hook("SECRET", true, true)]}));
    let (status, h, v) = with_config(&gw, &guarded, user_chat("gpt-4o", "q")).await;
    assert_eq!(status, 446, "{v}");
    assert_eq!(header(&h, "x-portkey-cache-status"), "HIT");
    assert_eq!(v["hook_results"]["after_request_hooks"][0]["deny"], true);
    assert_eq!(
        mock.request_count(),
        1,
        "served from the cache, judged, denied"
    );
    // A hook the answer passes: the cached answer with its hook results.
    let passing =
        cfg(json!({"cache": cache, "after_request_hooks": [regex_hook("plan", false, true)]}));
    let (status, h, v) = with_config(&gw, &passing, user_chat("gpt-4o", "q")).await;
    assert_eq!((status, header(&h, "x-portkey-cache-status")), (200, "HIT"));
    assert_eq!(v["choices"][0]["message"]["content"], "my SECRET plan");
    assert_eq!(v["hook_results"]["after_request_hooks"][0]["verdict"], true);
    assert_eq!(mock.request_count(), 1);
}

/// The same for a stream: a cached stream is replayed through the config's stream guard,
/// which ends it before the offending chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_stream_still_passes_the_output_guardrails() {
    let mock = MockProvider::start().await;
    mock.always(Reply::Sse {
        events: chat_events("gpt-4o", &["Hello ", "my ", "SECRET ", "plan"]),
        delay: Duration::ZERO,
    });
    let gw = gateway_for(&mock);
    let cache = json!({"mode": "simple"});
    let mut b = user_chat("gpt-4o", "q");
    b["stream"] = json!(true);
    let send = |config: String| {
        let b = b.clone();
        let url = gw.url("/v1/chat/completions");
        async move {
            let resp = client()
                .post(url)
                .header("x-portkey-config", config)
                .json(&b)
                .send()
                .await
                .unwrap();
            let status = header(resp.headers(), "x-portkey-cache-status").to_string();
            (status, resp.text().await.unwrap())
        }
    };
    let (status, text) = send(cfg(json!({"cache": cache}))).await;
    assert_eq!(status, "MISS");
    assert!(text.contains("SECRET"));
    let (status, text) = send(cfg(json!({"cache": cache}))).await;
    assert_eq!(status, "HIT", "stored whole");
    assert!(text.contains("SECRET"));
    let guarded =
        cfg(json!({"cache": cache, "after_request_hooks": [regex_hook("SECRET", true, true)]}));
    let (status, text) = send(guarded).await;
    assert_eq!(status, "HIT");
    // The replay reaches the guard in one piece (an entry is read whole), so it stops before
    // any content chunk with the offending text.
    assert!(
        !text
            .lines()
            .any(|l| l.contains("chat.completion.chunk") && l.contains("SECRET")),
        "the offending chunk never reached the client: {text}"
    );
    assert!(
        text.contains("event: error") && text.contains("hooks_failed"),
        "{text}"
    );
    assert!(!text.contains("[DONE]"));
    assert_eq!(mock.request_count(), 1);
}
