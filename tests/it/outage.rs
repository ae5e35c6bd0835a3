//! A sustained outage of one model: the Anyscale guide's fallback config (Llama 2, then
//! Mistral, both on Anyscale) must answer every request from the healthy model. The retry
//! budget limits re-sends to the failing resource (provider, host, model, credential) and
//! never a fallback to another one; an exhausted budget moves on to the next target; a
//! breaker takes the failing model, and only it, out of the path.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

const LLAMA: &str = "meta-llama/Llama-2-7b-chat-hf";
const MISTRAL: &str = "mistralai/Mistral-7B-Instruct-v0.1";

/// The guide's config, verbatim (legacy `mode`/`options`).
fn seed_config() -> Value {
    json!({
        "cache": "semantic",
        "mode": "fallback",
        "options": [
            {"provider": "anyscale", "api_key": "...", "override_params": {"model": LLAMA}},
            {"provider": "anyscale", "api_key": "...", "override_params": {"model": MISTRAL}}
        ]
    })
}

/// A gateway with the guide's config saved as `CONFIG_KEY`, `anyscale` on the mock, and
/// Llama 2 answering 503 to every request. The response cache is off: every request must
/// reach the providers (a cache hit would hide the outage, not survive it).
async fn outage(tweak: impl FnOnce(&mut portgate::Settings)) -> (MockProvider, TestGateway) {
    let mock = MockProvider::start().await;
    mock.for_model(
        LLAMA,
        Reply::json(503, json!({"error": {"message": "llama overloaded"}})),
    );
    let mut s = test_settings();
    route_to(&mut s, &mock, &["anyscale"]);
    s.cache.enabled = false;
    s.retry.backoff_base_ms = 1;
    s.configs.insert("CONFIG_KEY".into(), seed_config());
    tweak(&mut s);
    (mock, TestGateway::start(s))
}

/// The guide's request to the gateway at `base`: `/v1/chatComplete`, the config by its key
/// (or inline), no model in the body, a prompt of its own. Returns the status, the model that
/// answered and the `x-portgate-retry-budget` header.
async fn ask(base: &str, config: &str, i: usize) -> (u16, String, String) {
    let data = json!({"messages": [{"role": "user",
        "content": format!("What happens when you mix red & yellow? ({i})")}]});
    let resp = client()
        .post(format!("{base}/v1/chatComplete"))
        .header("x-portkey-api-key", "PORTKEY_API_KEY")
        .header("x-portkey-config", config)
        .json(&data)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let budget = resp
        .headers()
        .get("x-portgate-retry-budget")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let model = v["model"].as_str().unwrap_or_default().to_string();
    (status, model, budget)
}

async fn guide_request(gw: &TestGateway, config: &str, i: usize) -> (u16, String, String) {
    ask(&gw.url(""), config, i).await
}

/// Sends `n` guide requests one after another: each must be answered 200 by Mistral, without
/// a spent budget.
async fn all_served_by_mistral(gw: &TestGateway, config: &str, n: usize) {
    for i in 0..n {
        let (status, model, budget) = guide_request(gw, config, i).await;
        assert_eq!(
            (status, model.as_str(), budget.as_str()),
            (200, MISTRAL, ""),
            "request {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_fallback_serves_every_request_of_a_sustained_outage() {
    // Default budget settings: 20 % of first sends + 1/s over 10 s. A budget kept per
    // provider and host would count each fallback as a retry of `anyscale@host`, and refuse
    // three requests in four of this run once it was used up.
    let (mock, gw) = outage(|_| {}).await;
    let n = 300;
    all_served_by_mistral(&gw, "CONFIG_KEY", n).await;
    // Each request: one send to the failing model, one to the healthy one; nothing more.
    assert_eq!(mock.model_count(LLAMA), n);
    assert_eq!(mock.model_count(MISTRAL), n);
    let text = scrape(&gw).await;
    assert!(
        !text.contains("portgate_retry_budget_exhausted_total{"),
        "no send was refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_fallback_serves_sixteen_concurrent_clients_through_an_outage() {
    let (mock, gw) = outage(|_| {}).await;
    let (clients, each) = (16, 30);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let base = gw.url("");
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..each {
                let answer = ask(&base, "CONFIG_KEY", c * each + i).await;
                if (answer.0, answer.1.as_str(), answer.2.as_str()) != (200, MISTRAL, "") {
                    failures.push(answer);
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    let n = clients * each;
    assert!(
        failures.is_empty(),
        "{} of {n} requests not served by the fallback, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert_eq!(mock.model_count(LLAMA), n);
    assert_eq!(mock.model_count(MISTRAL), n);
}

/// With retries on the failing model, the budget still caps its re-sends (20 % of its first
/// sends + 1/s over 10 s), and a refused retry moves on to the fallback at once: every
/// request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_caps_retries_of_the_failing_model_and_the_fallback_still_serves() {
    let (mock, gw) = outage(|_| {}).await;
    let mut config = seed_config();
    config["options"][0]["retry"] = json!({"attempts": 3});
    let config = config.to_string();
    let n = 200;
    all_served_by_mistral(&gw, &config, n).await;
    let llama = mock.model_count(LLAMA);
    // Unbudgeted, 4 sends a request (800). Budgeted: n first sends, at most 0.2 n + 10
    // retries (the run may span two windows: allow a second floor).
    assert!(
        llama >= n && llama <= n + n / 5 + 20,
        "{llama} sends to the failing model for {n} requests"
    );
    assert_eq!(mock.model_count(MISTRAL), n);
    // The refused retries are recorded as before.
    let text = scrape(&gw).await;
    let refused = sample(
        &text,
        "portgate_retry_budget_exhausted_total",
        &[("target", &format!("anyscale@{}", mock.addr))],
    )
    .unwrap_or(0.0);
    assert!(refused > 0.0, "refused retries are counted:\n{text}");
}

/// A single failing target keeps the budget's limit, and its failure (with the budget
/// header) is what the client gets when nothing is left to try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_failing_target_is_still_capped_by_the_budget() {
    let (mock, gw) = outage(|s| {
        s.retry.budget.ratio = 0.0;
        s.retry.budget.min_retries_per_second = 0.2; // 2 retries per 10 s window
    })
    .await;
    let config = json!({"provider": "anyscale", "api_key": "k",
        "override_params": {"model": LLAMA}, "retry": {"attempts": 3}})
    .to_string();
    let mut exhausted = 0;
    for i in 0..10 {
        let (status, _, budget) = guide_request(&gw, &config, i).await;
        assert_eq!(status, 503);
        exhausted += usize::from(budget == "exhausted");
    }
    assert_eq!(
        mock.model_count(LLAMA),
        12,
        "10 first sends + the 2 retries allowed"
    );
    assert_eq!(
        exhausted, 10,
        "each request ran out of retries the budget allowed"
    );
}

/// A fallback to the same model with the same key is a re-send to the same resource: it
/// stays budgeted (a config cannot dodge the budget by repeating a target).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_to_the_same_resource_is_still_a_re_send() {
    let (mock, gw) = outage(|s| {
        s.retry.budget.ratio = 0.0;
        s.retry.budget.min_retries_per_second = 0.0;
    })
    .await;
    let same = json!({"provider": "anyscale", "api_key": "k", "override_params": {"model": LLAMA}});
    let config = json!({"strategy": {"mode": "fallback"}, "targets": [same, same]}).to_string();
    for i in 0..3 {
        let (status, _, budget) = guide_request(&gw, &config, i).await;
        assert_eq!((status, budget.as_str()), (503, "exhausted"));
    }
    assert_eq!(
        mock.model_count(LLAMA),
        3,
        "the repeated target is never sent"
    );
    // Another credential on the same model is another resource: a first send.
    let other_key =
        json!({"provider": "anyscale", "api_key": "k2", "override_params": {"model": LLAMA}});
    let config =
        json!({"strategy": {"mode": "fallback"}, "targets": [same, other_key]}).to_string();
    let (status, _, budget) = guide_request(&gw, &config, 9).await;
    assert_eq!((status, budget.as_str()), (503, ""));
    assert_eq!(mock.model_count(LLAMA), 5);
}

/// Load balancing sends to one pick, as Portkey does; a pick whose retry the budget refuses
/// moves on to another target instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balanced_pick_with_a_spent_budget_moves_on() {
    let (mock, gw) = outage(|s| {
        s.retry.budget.ratio = 0.0;
        s.retry.budget.min_retries_per_second = 0.0;
    })
    .await;
    let config = json!({
        "strategy": {"mode": "loadbalance"},
        "retry": {"attempts": 2},
        "targets": [
            {"provider": "anyscale", "api_key": "k", "override_params": {"model": LLAMA}, "weight": 1},
            {"provider": "anyscale", "api_key": "k", "override_params": {"model": MISTRAL}, "weight": 1}
        ]
    })
    .to_string();
    all_served_by_mistral(&gw, &config, 40).await;
    let llama = mock.model_count(LLAMA);
    assert!(
        llama > 0,
        "the failing model was picked about half the time"
    );
    assert_eq!(mock.model_count(MISTRAL), 40);
    // Each Llama pick: one send, its retry refused, then Mistral.
    let text = scrape(&gw).await;
    let refused = sample(
        &text,
        "portgate_retry_budget_exhausted_total",
        &[("target", &format!("anyscale@{}", mock.addr))],
    );
    assert_eq!(refused, Some(llama as f64));
}

/// The guide's config with a breaker: the failing model's circuit opens after a few
/// failures, and while it is open requests go straight to Mistral (Llama 2 gets only the
/// half-open probes). The circuit is Llama 2's alone: Mistral's, on the same provider, host
/// and key, stays closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_takes_only_the_failing_model_out_of_the_path() {
    let (mock, gw) = outage(|s| s.circuit_breaker.min_cooldown_ms = 100).await;
    let mut config = seed_config();
    config["cb_config"] = json!({"failure_threshold": 3, "cooldown_interval": 300});
    let config = config.to_string();
    let n = 150;
    let started = std::time::Instant::now();
    all_served_by_mistral(&gw, &config, n).await;
    let probes_allowed = (started.elapsed().as_millis() / 300) as usize + 1;
    let llama = mock.model_count(LLAMA);
    assert!(
        llama >= 3 && llama <= 3 + probes_allowed,
        "{llama} sends to the failing model (3 to open it, then one probe per cooldown)"
    );
    assert_eq!(mock.model_count(MISTRAL), n);

    let circuits = circuits(&gw).await;
    let state_of = |model: &str| {
        circuits["circuits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["target"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("anyscale@{}/{model}#", mock.addr))
            })
            .map(|c| c["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state_of(LLAMA).as_deref(), Some("open"), "{circuits}");
    assert_eq!(state_of(MISTRAL).as_deref(), Some("closed"), "{circuits}");
    let text = scrape(&gw).await;
    let target = format!("anyscale@{}", mock.addr);
    assert_eq!(
        sample(
            &text,
            "portgate_circuit_state",
            &[("target", &target), ("model", LLAMA)]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "portgate_circuit_state",
            &[("target", &target), ("model", MISTRAL)]
        ),
        Some(0.0)
    );

    // Another model on the same provider and key is served directly meanwhile.
    let direct = json!({"provider": "anyscale", "api_key": "...",
        "override_params": {"model": MISTRAL}, "cb_config": config_cb()})
    .to_string();
    let (status, model, _) = guide_request(&gw, &direct, 0).await;
    assert_eq!((status, model.as_str()), (200, MISTRAL));

    // Once Llama 2 recovers, the next probe closes its circuit and it serves again.
    mock.clear_model_rules();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (status, model, _) = guide_request(&gw, &config, 0).await;
    assert_eq!((status, model.as_str()), (200, LLAMA));
}

fn config_cb() -> Value {
    json!({"failure_threshold": 3, "cooldown_interval": 300})
}
