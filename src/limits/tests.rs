use super::refusal::masked;
use super::*;
use crate::settings::Settings;
use serde_json::json;

fn limiter(yaml: &str) -> Arc<Limiter> {
    let s = Settings::from_yaml(yaml).unwrap();
    let m = crate::telemetry::metrics::Metrics::new(&[], 10).unwrap();
    let gauges = LimitGauges {
        used: m.limit_used.clone(),
        limit: m.limit_value.clone(),
        alerts: m.limit_alerts.clone(),
    };
    Arc::new(Limiter::from_settings(&s, &|_| None, gauges, None).unwrap())
}

const NOW: u64 = 1_796_653_782_123;

const SETTINGS: &str = "
virtual_keys:
  team-a:
    provider: openai
    rate_limits:
      - {type: requests, unit: rpm, value: 3}
      - {type: tokens, unit: rph, value: 100}
    usage_limits:
      - {type: cost, credit_limit: 0.01, periodic_reset: monthly, alert_threshold: 0.005}
  free:
    provider: openai
limits:
  policies:
    - id: per-user
      match: {metadata: _user}
      rate_limits: [{type: requests, unit: rps, value: 1}]
";

#[tokio::test]
async fn request_limits_admit_exactly_their_value_per_window() {
    let l = limiter(SETTINGS);
    let vk = l.virtual_key("team-a").unwrap();
    assert!(l.virtual_key("free").is_none(), "no limits, no scope");
    for _ in 0..3 {
        assert!(l.admit(std::slice::from_ref(&vk), NOW).await.is_ok());
    }
    let refused = l.admit(std::slice::from_ref(&vk), NOW).await.unwrap_err();
    let Refusal::Rate { retry_after, .. } = &refused else {
        panic!("{refused:?}");
    };
    // 42.123 s into the minute: 18 s to its end, rounded up.
    assert_eq!(*retry_after, 18);
    let e = refused.into_error();
    assert_eq!(e.status(), 429);
    assert_eq!(e.retry_after(), Some(18));
    assert_eq!(
        &e.body()[..],
        br#"{"error":{"message":"Portkey Virtual Key te********m-a Rate Limit Exceeded","type":"virtual_key_rate_limit_error","param":null,"code":null}}"#
    );
    // The next window starts at zero.
    assert!(l.admit(&[vk], NOW + 60_000).await.is_ok());
}

#[tokio::test]
async fn tokens_and_budgets_count_usage_after_the_answer() {
    let l = limiter(SETTINGS);
    let vk = l.virtual_key("team-a").unwrap();
    let later = |n: u64| NOW + n * 60_000;
    let charges = l.admit(std::slice::from_ref(&vk), NOW).await.unwrap();
    // 99 tokens and a cost of $0.006: under both limits.
    l.charge(charges, 99, Some(Picos(6_000_000_000)));
    let charges = l.admit(std::slice::from_ref(&vk), later(1)).await.unwrap();
    // This one crosses both: it completes (a soft cap), the next is refused.
    l.charge(charges, 10, Some(Picos(6_000_000_000)));
    let refused = l
        .admit(std::slice::from_ref(&vk), later(2))
        .await
        .unwrap_err();
    // The token window is checked first (its rule comes first).
    assert!(matches!(refused, Refusal::Rate { .. }), "{refused:?}");
    // In the next hour the token window is new, but the month's budget is spent: 412.
    let refused = l
        .admit(std::slice::from_ref(&vk), NOW + 3_600_000)
        .await
        .unwrap_err();
    let e = refused.into_error();
    assert_eq!(e.status(), 412);
    assert_eq!(
        &e.body()[..],
        br#"{"error":{"message":"Portkey Virtual Key te********m-a Usage Limit Exceeded","type":"virtual_key_exhaust_error","param":null,"code":"04"}}"#
    );
    let snapshot = l.snapshot(NOW + 3_600_000).await.unwrap();
    let cost = snapshot.iter().find(|s| s.kind == "cost").unwrap();
    assert_eq!((cost.used, cost.limit, cost.remaining), (0.012, 0.01, 0.0));
    assert_eq!(cost.window, "monthly");
    // An operator resets the key: served again.
    assert!(l.reset("vk:team-a").await.unwrap() > 0);
    assert!(l.admit(&[vk], NOW + 3_600_000).await.is_ok());
}

#[tokio::test]
async fn policies_count_each_value_on_its_own() {
    let l = limiter(SETTINGS);
    let meta = |user: &str| {
        json!({"_user": user, "env": "prod"})
            .as_object()
            .cloned()
            .unwrap()
    };
    let alice = l.request_scopes(None, &meta("alice"));
    let bob = l.request_scopes(None, &meta("bob"));
    assert_eq!(alice.len(), 1);
    assert!(l.admit(&alice, NOW).await.is_ok());
    assert!(l.admit(&bob, NOW).await.is_ok(), "bob has his own counter");
    let e = l.admit(&alice, NOW).await.unwrap_err().into_error();
    assert_eq!(
        &e.body()[..],
        br#"{"error":{"message":"Portkey Rate Limit Policy per-user exceeded for value key alice","type":"rate_limits_policy_exhaust_error","param":null,"code":null}}"#
    );
    // A request without the metadata key is not counted by the policy.
    let none = l.request_scopes(None, &serde_json::Map::new());
    assert!(none.is_empty());
}

#[tokio::test]
async fn gateway_keys_are_refused_in_portkeys_envelope() {
    let digest = "sha256:".to_string() + &"ab".repeat(32);
    let l = limiter(&format!(
        "gateway_keys: [\"{digest}\"]\nlimits:\n  gateway_keys:\n    - digest: \"{digest}\"\n      name: ci-bot\n      rate_limits: [{{type: requests, unit: rpd, value: 1}}]\n"
    ));
    let key = [0xabu8; 32];
    let scopes = l.request_scopes(Some(&key), &serde_json::Map::new());
    assert!(l.admit(&scopes, NOW).await.is_ok());
    let e = l.admit(&scopes, NOW).await.unwrap_err().into_error();
    assert_eq!(e.status(), 429);
    assert_eq!(
        &e.body()[..],
        br#"{"status":"failure","message":"Portkey Error: apikey ci********bot rate limit exceded. Error Code: 05","error":{"message":"Portkey Error: apikey ci********bot rate limit exceded. Error Code: 05","code":"05"}}"#
    );
}

#[test]
fn settings_are_checked() {
    for (yaml, field) in [
        (
            "virtual_keys:\n  a:\n    provider: openai\n    rate_limits: [{type: requests, unit: rpm, value: 0}]\n",
            "virtual_keys.a.rate_limits[0].value",
        ),
        (
            "virtual_keys:\n  a:\n    provider: openai\n    usage_limits: [{type: cost, credit_limit: 5, alert_threshold: 6}]\n",
            "virtual_keys.a.usage_limits[0].alert_threshold",
        ),
        (
            "limits:\n  policies: [{match: {metadata: ''}, rate_limits: []}]\n",
            "limits.policies[0].match.metadata",
        ),
        ("limits:\n  backend: redis\n", "limits.redis.url"),
        (
            "limits:\n  gateway_keys: [{digest: \"sha256:00\"}]\n",
            "limits.gateway_keys[0].digest",
        ),
    ] {
        let e = Settings::from_yaml(yaml)
            .and_then(|s| s.validate())
            .unwrap_err();
        assert_eq!(e.field, field, "{yaml}");
    }
    let e = Settings::from_yaml(
        "virtual_keys:\n  a:\n    provider: openai\n    rate_limits: [{type: requests, unit: rpw, value: 1}]\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("rpw"), "{e}");
}

#[test]
fn names_are_masked_as_portkey_masks_them() {
    assert_eq!(masked("team-a"), "te********m-a");
    assert_eq!(masked("é"), "é********é");
    assert_eq!(masked(""), "********");
}
