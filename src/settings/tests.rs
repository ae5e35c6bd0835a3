use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_valid_and_documented_values() {
    let s = Settings::load(None, env(&[])).unwrap();
    assert_eq!(s.listen, "127.0.0.1:8787");
    assert_eq!(s.admin_listen, "127.0.0.1:8788");
    // Five minutes: long enough for an agent's stream to end on its own during a rollout
    // (deploy/kubernetes/deployment.yaml's terminationGracePeriodSeconds is larger).
    assert_eq!(s.grace_period_seconds, 300);
    assert_eq!(
        s.custom_hosts.trusted,
        vec!["localhost", "127.0.0.1", "::1"]
    );
}

#[test]
fn the_shipped_settings_file_equals_the_defaults() {
    let text = include_str!("../../conf/portgate.yaml");
    assert_eq!(Settings::from_yaml(text).unwrap(), Settings::default());
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let err = Settings::from_yaml("upstream:\n  conect_timeout_ms: 5\n").unwrap_err();
    assert_eq!(err.field, "upstream.conect_timeout_ms");
    assert!(
        err.reason.contains("unknown field `conect_timeout_ms`"),
        "{err}"
    );
}

#[test]
fn wrong_types_name_the_field() {
    let err = Settings::from_yaml("limits:\n  max_request_body_bytes: lots\n").unwrap_err();
    assert_eq!(err.field, "limits.max_request_body_bytes");
}

#[test]
fn env_overrides_the_file() {
    let s = Settings::load(
        None,
        env(&[
            ("PORTGATE_LISTEN", "0.0.0.0:9000"),
            ("PORTGATE_THREADS", "4"),
            ("PORTGATE_TRUSTED_CUSTOM_HOSTS", "vllm.default.svc, ollama"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    assert_eq!(s.listen, "0.0.0.0:9000");
    assert_eq!(s.threads, 4);
    assert_eq!(s.custom_hosts.trusted, vec!["vllm.default.svc", "ollama"]);
}

#[test]
fn bad_env_values_name_the_field() {
    let err = Settings::load(None, env(&[("PORTGATE_THREADS", "many")])).unwrap_err();
    assert_eq!(err.field, "threads");
}

#[test]
fn validation_names_field_and_reason() {
    let cases = [
        ("listen: nowhere\n", "listen"),
        ("admin_listen: 127.0.0.1:8787\n", "admin_listen"),
        ("threads: 257\n", "threads"),
        (
            "upstream:\n  read_timeout_ms: 0\n",
            "upstream.read_timeout_ms",
        ),
        ("log:\n  format: xml\n", "log.format"),
        (
            "providers:\n  mine:\n    base_url: ftp://x\n",
            "providers.mine.base_url",
        ),
        (
            "custom_hosts:\n  trusted: ['http://x/']\n",
            "custom_hosts.trusted[0]",
        ),
    ];
    for (yaml, field) in cases {
        let err = Settings::from_yaml(yaml)
            .and_then(|s| crate::state::check_settings(&s).map(|_| s))
            .unwrap_err();
        assert_eq!(err.field, field, "{yaml}");
        assert!(!err.reason.is_empty());
    }
}

#[test]
fn provider_rows_extend_the_table() {
    let s =
        Settings::from_yaml("providers:\n  vllm:\n    base_url: http://vllm.default.svc:8000/v1\n")
            .unwrap();
    s.validate().unwrap();
    assert_eq!(s.providers["vllm"].auth_header, "authorization");
}

#[test]
fn durations_have_upper_bounds() {
    let big = u64::MAX;
    let cases = [
        (
            format!("upstream:\n  dns_ttl_seconds: {big}\n"),
            "upstream.dns_ttl_seconds",
        ),
        (
            "upstream:\n  dns_ttl_seconds: 86401\n".to_string(),
            "upstream.dns_ttl_seconds",
        ),
        (
            format!("upstream:\n  connect_timeout_ms: {big}\n"),
            "upstream.connect_timeout_ms",
        ),
        (
            format!("upstream:\n  read_timeout_ms: {big}\n"),
            "upstream.read_timeout_ms",
        ),
        (
            format!("upstream:\n  write_timeout_ms: {big}\n"),
            "upstream.write_timeout_ms",
        ),
        (
            format!("upstream:\n  idle_timeout_ms: {big}\n"),
            "upstream.idle_timeout_ms",
        ),
        (
            format!("upstream:\n  first_token_timeout_ms: {big}\n"),
            "upstream.first_token_timeout_ms",
        ),
        (
            format!("retry:\n  backoff_base_ms: {big}\n"),
            "retry.backoff_base_ms",
        ),
        (
            "retry:\n  backoff_base_ms: 60001\n".to_string(),
            "retry.backoff_base_ms",
        ),
        (
            format!("circuit_breaker:\n  min_cooldown_ms: {big}\n"),
            "circuit_breaker.min_cooldown_ms",
        ),
        (
            format!("grace_period_seconds: {big}\n"),
            "grace_period_seconds",
        ),
        (
            format!("graceful_shutdown_timeout_seconds: {big}\n"),
            "graceful_shutdown_timeout_seconds",
        ),
    ];
    for (yaml, field) in cases {
        let err = Settings::from_yaml(&yaml)
            .and_then(|s| s.validate().map(|_| s))
            .unwrap_err();
        assert_eq!(err.field, field, "{yaml}");
        assert!(err.reason.contains("maximum"), "{err}");
    }
    // The bounds themselves are accepted.
    let s = Settings::from_yaml(
        "upstream:\n  dns_ttl_seconds: 86400\n  read_timeout_ms: 3600000\nretry:\n  backoff_base_ms: 60000\n",
    )
    .unwrap();
    s.validate().unwrap();
}

#[test]
fn type_errors_do_not_echo_the_value() {
    let err = Settings::from_yaml("gateway_keys: \"sk-live-abc\\\"def\"\n").unwrap_err();
    assert_eq!(err.field, "gateway_keys");
    let text = err.to_string();
    assert!(!text.contains("sk-live") && !text.contains("def"), "{text}");
    assert!(text.contains("(value not shown)"), "{text}");
    assert_eq!(
        without_quoted_values(r#"a "x\"y" b "z"#),
        "a (value not shown) b (value not shown)"
    );
}

#[test]
fn virtual_key_options_are_read_and_shared() {
    let s = Settings::from_yaml(
        "virtual_keys:\n  azure-prod:\n    provider: azure-openai\n    api_key_env: AZ\n    options:\n      azure_resource_name: contoso-eastus\n      azure_deployment_id: gpt-4o-prod\n      azure_api_version: \"2024-10-21\"\n",
    )
    .unwrap();
    let vks = super::resolve_virtual_keys(&s, &|_| Some("k".into())).unwrap();
    let vk = &vks["azure-prod"];
    assert_eq!(vk.options["azure_resource_name"], "contoso-eastus");
    assert_eq!(vk.options["azure_api_version"], "2024-10-21");
    assert_eq!(vk.options.len(), 3);
    // A key without options has an empty map, and the YAML of the defaults has no `options`.
    let s = Settings::from_yaml("virtual_keys:\n  o:\n    provider: openai\n").unwrap();
    assert!(s.virtual_keys["o"].options.is_empty());
}

/// A virtual key may name a translating built-in provider (not only a row of the
/// OpenAI-compatible table); an unknown slug is still refused.
#[test]
fn virtual_keys_may_name_translating_providers() {
    let ok = Settings::from_yaml(
        "virtual_keys:\n  gemini-vk:\n    provider: google\n    custom_host: http://localhost:9000\n",
    )
    .and_then(|s| crate::state::check_settings(&s));
    assert!(ok.is_ok(), "{:?}", ok.err());
    let err = Settings::from_yaml(
        "virtual_keys:\n  x:\n    provider: no-such-provider\n    custom_host: http://localhost:9000\n",
    )
    .and_then(|s| crate::state::check_settings(&s));
    assert!(err.is_err());
}

/// A credential option (AWS keys, a token) is named by where it lives, like a key; written in
/// the settings themselves it is refused by `--check` and at start-up, without echoing it.
#[test]
fn credential_options_live_in_env_or_files() {
    let inline = Settings::from_yaml(
        "virtual_keys:\n  b:\n    provider: bedrock\n    options:\n      aws_access_key_id_env: AWS_ID\n      aws_secret_access_key: wJalrXUtnFEMI\n",
    )
    .unwrap();
    let err = inline.validate().unwrap_err().to_string();
    assert!(
        err.contains("virtual_keys.b.options.aws_secret_access_key")
            && err.contains("aws_secret_access_key_env")
            && !err.contains("wJalrXUtnFEMI"),
        "{err}"
    );
    assert!(super::resolve_virtual_keys(&inline, &|_| Some("x".into())).is_err());

    let dir = std::env::temp_dir().join(format!("portgate-opt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    std::fs::write(&path, "session-token\n").unwrap();
    let s = Settings::from_yaml(&format!(
        "virtual_keys:\n  b:\n    provider: bedrock\n    options:\n      aws_access_key_id_env: AWS_ID\n      aws_secret_access_key_env: AWS_SECRET\n      aws_session_token_file: {}\n      aws_region: eu-west-1\n",
        path.display()
    ))
    .unwrap();
    s.validate().unwrap();
    let env = |var: &str| match var {
        "AWS_ID" => Some("AKIA1".to_string()),
        "AWS_SECRET" => Some("s3cr3t".to_string()),
        _ => None,
    };
    let vks = super::resolve_virtual_keys(&s, &env).unwrap();
    let vk = &vks["b"];
    assert_eq!(vk.options["aws_access_key_id"], "AKIA1");
    assert_eq!(vk.options["aws_secret_access_key"], "s3cr3t");
    assert_eq!(vk.options["aws_session_token"], "session-token");
    assert_eq!(vk.options["aws_region"], "eu-west-1");
    assert_eq!(vk.options.len(), 4);
    assert!(vk.carries_credential() && vk.api_key.is_none());
    let printed = format!("{vk:?}");
    assert!(
        !printed.contains("s3cr3t") && !printed.contains("session-token"),
        "{printed}"
    );
    assert!(printed.contains("eu-west-1"));
    // A variable that is not set names itself, not a value.
    let err = super::resolve_virtual_keys(&s, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("AWS_ID is not set"), "{err}");
    // The same option twice (inline and from a variable) is refused.
    let twice = Settings::from_yaml(
        "virtual_keys:\n  a:\n    provider: azure-openai\n    options:\n      azure_resource_name: x\n      azure_resource_name_env: RES\n",
    )
    .unwrap();
    let err = super::resolve_virtual_keys(&twice, &|_| Some("y".into()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("set more than once"), "{err}");
}

/// A config may raise the semantic threshold, and lower it only down to the operator's floor.
#[test]
fn the_semantic_threshold_has_a_floor() {
    let mut s = Settings::default();
    let sem = &s.cache.semantic;
    assert_eq!(sem.threshold_for(None), 0.95);
    assert_eq!(sem.threshold_for(Some(0.01)), 0.95);
    assert_eq!(sem.threshold_for(Some(0.99)), 0.99);
    s.cache.semantic.min_threshold = Some(0.8);
    let sem = &s.cache.semantic;
    assert_eq!(sem.threshold_for(Some(0.85)), 0.85);
    assert_eq!(sem.threshold_for(Some(0.01)), 0.8);
    assert!(s.validate().is_ok());
    s.cache.semantic.min_threshold = Some(0.99);
    let err = s.validate().unwrap_err();
    assert_eq!(err.field, "cache.semantic.min_threshold");
}

#[test]
fn guardrail_limits_must_be_positive_and_bounded() {
    for (yaml, field) in [
        (
            "limits:\n  guardrails:\n    checks_per_hook: 0\n",
            "limits.guardrails.checks_per_hook",
        ),
        (
            "limits:\n  guardrails:\n    concurrent_remote_checks: 100001\n",
            "limits.guardrails.concurrent_remote_checks",
        ),
        (
            "limits:\n  guardrails:\n    check_time_budget_ms: 0\n",
            "limits.guardrails.check_time_budget_ms",
        ),
    ] {
        let err = Settings::from_yaml(yaml).unwrap().validate().unwrap_err();
        assert_eq!(err.field, field, "{err}");
    }
}

#[test]
fn settings_only_a_restart_applies_are_named() {
    let old = Settings::default();
    let new = Settings {
        listen: "127.0.0.1:9999".into(),
        threads: 3,
        ..Default::default()
    };
    assert_eq!(old.restart_only_changes(&new), ["listen", "threads"]);
    assert!(old.restart_only_changes(&old.clone()).is_empty());
}
