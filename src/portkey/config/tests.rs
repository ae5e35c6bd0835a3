use super::*;
use crate::dispatch::CustomHostPolicy;
use crate::providers::Providers;
use crate::routing::plan::{build, Node, PlanContext, PlanError};
use crate::settings::{Settings, VirtualKey, VirtualKeys};
use crate::types::problems::wire_path;
use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;

fn problems(v: Value) -> Vec<String> {
    parse(&v).err().map(|p| p.0).unwrap_or_default()
}

fn with_plan<T>(v: Value, f: impl FnOnce(Result<crate::routing::plan::Plan, PlanError>) -> T) -> T {
    let providers = Providers::from_settings(&Settings::default()).unwrap();
    let mut vks = VirtualKeys::new();
    vks.insert(
        "anthropic-virtual-key".into(),
        VirtualKey {
            provider: "openai".into(),
            api_key: None,
            custom_host: None,
            options: Default::default(),
        },
    );
    let hosts = CustomHostPolicy::new(&["localhost".into()], &[]).unwrap();
    let mut named = std::collections::BTreeMap::new();
    named.insert(
        "g".to_string(),
        json!({"checks": [{"id": "default.notNull", "parameters": {}}]}),
    );
    let guardrails = crate::guardrails::compile_named(&named).unwrap();
    let ctx = PlanContext {
        providers: &providers,
        virtual_keys: &vks,
        custom_hosts: &hosts,
        min_cooldown: Duration::from_secs(30),
        from_settings: false,
        guardrails: &guardrails,
        limits: &Default::default(),
    };
    let node = parse(&v).unwrap();
    f(build(&node, &ctx))
}

#[test]
fn current_form_parses() {
    let n = parse(&json!({
        "strategy": {"mode": "fallback", "on_status_codes": [429, 503]},
        "targets": [
            {"provider": "openai", "api_key": "sk-1", "override_params": {"model": "gpt-4o"}},
            {"virtual_key": "vk-2", "weight": 0.5, "retry": {"attempts": 9}}
        ],
        "request_timeout": 5000,
        "cache": {"mode": "simple", "max_age": 60}
    }))
    .unwrap();
    let s = n.strategy.as_ref().unwrap();
    assert_eq!(s.mode, Some(Mode::Fallback));
    assert_eq!(s.on_status_codes, Some(vec![429, 503]));
    assert_eq!(n.targets.len(), 2);
    assert_eq!(n.targets[1].path, "config.targets[1]");
    assert_eq!(
        n.targets[1].retry.as_ref().unwrap().attempts,
        5,
        "attempts capped at 5"
    );
    assert_eq!(n.request_timeout, Some(5000));
    assert_eq!(n.cache.as_ref().unwrap().max_age, Some(60));
}

#[test]
fn legacy_form_is_normalised() {
    let n = parse(&json!({
        "cache": "semantic",
        "mode": "fallback",
        "options": [
            {"provider": "anyscale", "api_key": "...", "override_params": {"model": "meta-llama/Llama-2-7b-chat-hf"}},
            {"provider": "anyscale", "api_key": "...", "override_params": {"model": "mistralai/Mistral-7B-Instruct-v0.1"}}
        ]
    }))
    .unwrap();
    assert_eq!(n.strategy.unwrap().mode, Some(Mode::Fallback));
    assert_eq!(n.targets[1].path, "config.options[1]");
    assert_eq!(n.cache.unwrap().mode, CacheMode::Semantic);
}

#[test]
fn fallback_shorthand_from_the_anthropic_guide() {
    let n = parse(&json!({
        "retry": {"attempts": 3},
        "fallback": {"targets": [{"virtual_key": "openai-virtual-key"}, {"virtual_key": "anthropic-virtual-key"}]}
    }))
    .unwrap();
    assert_eq!(n.strategy.unwrap().mode, Some(Mode::Fallback));
    assert_eq!(n.targets[0].path, "config.fallback.targets[0]");
}

#[test]
fn every_problem_has_its_path() {
    let errs = problems(json!({
        "strategy": {"mode": "roundrobin"},
        "targets": [
            {"provider": 3},
            {"weight": -1, "provider": "openai"},
            {"retry": {"attempts": "x", "on_status_codes": [999]}, "provider": "openai"},
            {"request_timeout": 0, "provider": "openai"},
            {"cache": {"mode": "fuzzy"}, "provider": "openai"},
            "not an object"
        ]
    }));
    for expected in [
        "path: strategy,mode, message: Invalid 'mode' value. Must be one of: single, loadbalance, fallback, conditional",
        "path: targets,0,provider, message: must be a non-empty string",
        "path: targets,1,weight",
        "path: targets,2,retry,attempts",
        "path: targets,2,retry,on_status_codes",
        "path: targets,3,request_timeout",
        "path: targets,4,cache,mode",
        "path: targets,5, message: must be an object",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(expected)),
            "{expected} not in {errs:#?}"
        );
    }
}

#[test]
fn shape_rules() {
    assert!(problems(json!({"strategy": {"mode": "fallback"}}))[0].contains("path: targets,"));
    assert!(
        problems(json!({"targets": [{"provider": "openai", "api_key": "k"}]}))[0]
            .contains("path: strategy,")
    );
    assert_eq!(
        problems(json!({"name": "x"})),
        vec![format!("path: , message: {NODE_RULE_MESSAGE}")]
    );
    let zero = problems(json!({
        "strategy": {"mode": "loadbalance"},
        "targets": [{"provider": "openai", "api_key": "k", "weight": 0}, {"provider": "groq", "api_key": "k", "weight": 0}]
    }));
    assert!(zero[0].contains("every weight is 0"), "{zero:?}");
    // Portkey's router errors: its own message for the first unknown target name, and for
    // a strategy without conditions (an empty list is allowed: the default answers).
    let router = |v: Value| {
        parse(&v)
            .err()
            .and_then(|p| p.router_error().map(str::to_string))
    };
    let cond = router(json!({
        "strategy": {"mode": "conditional", "conditions": [{"query": {"metadata.plan": "paid"}, "then": "nope"}], "default": "also-nope"},
        "targets": [{"name": "a", "provider": "openai", "api_key": "k"}]
    }));
    assert_eq!(
        cond.as_deref(),
        Some("Invalid target name found in the query router: nope")
    );
    let default = router(json!({
        "strategy": {"mode": "conditional", "conditions": [{"query": {"metadata.plan": "paid"}, "then": "a"}], "default": "also-nope"},
        "targets": [{"name": "a", "provider": "openai", "api_key": "k"}]
    }));
    assert_eq!(
        default.as_deref(),
        Some("Invalid target name found in the query router: also-nope")
    );
    let none = router(json!({
        "strategy": {"mode": "conditional", "default": "a"},
        "targets": [{"name": "a", "provider": "openai", "api_key": "k"}]
    }));
    assert_eq!(
        none.as_deref(),
        Some("No conditions passed in the query router")
    );
    let empty = json!({
        "strategy": {"mode": "conditional", "conditions": [], "default": "a"},
        "targets": [{"name": "a", "provider": "openai", "api_key": "k"}]
    });
    assert!(parse(&empty).is_ok());
    // A schema problem comes first, as Portkey validates the config before routing.
    let both = parse(&json!({
        "strategy": {"mode": "conditional", "conditions": [{"query": {"metadata.plan": {"$nope": 1}}, "then": "a"}]},
        "targets": [{"name": "a", "provider": "openai", "api_key": "k", "weight": "x"}]
    }))
    .unwrap_err();
    assert!(
        both.router_error().is_none() && !both.0.is_empty(),
        "{both:?}"
    );
    let re = problems(json!({
        "strategy": {"mode": "conditional", "conditions": [{"query": {"params.model": {"$regex": "(["}}, "then": "a"}]},
        "targets": [{"name": "a", "provider": "openai", "api_key": "k"}]
    }));
    assert!(
        re[0].contains("path: strategy,conditions,0,query,params,model,$regex"),
        "{re:?}"
    );
}

#[test]
fn inheritance_down_nested_targets() {
    let cfg = json!({
        "strategy": {"mode": "fallback"},
        "override_params": {"temperature": 0.1, "max_tokens": 10},
        "retry": {"attempts": 2},
        "request_timeout": 1000,
        "targets": [
            {"strategy": {"mode": "loadbalance"},
             "override_params": {"max_tokens": 20},
             "targets": [
                {"provider": "openai", "api_key": "k", "override_params": {"model": "a"}},
                {"provider": "groq", "api_key": "k", "retry": {"attempts": 1, "on_status_codes": [500]}, "request_timeout": 50}
             ]},
            {"provider": "openai", "api_key": "k"}
        ]
    });
    with_plan(cfg, |plan| {
        let plan = plan.unwrap();
        let Node::Group(root) = &plan.root else {
            panic!()
        };
        let Node::Group(lb) = &root.children[0] else {
            panic!()
        };
        let Node::Leaf(a) = &lb.children[0] else {
            panic!()
        };
        let Node::Leaf(b) = &lb.children[1] else {
            panic!()
        };
        assert_eq!(a.path, "config.targets[0].targets[0]");
        let op = a.override_params.as_ref().unwrap();
        assert_eq!(op["temperature"], json!(0.1));
        assert_eq!(op["max_tokens"], json!(20), "child keys win");
        assert_eq!(op["model"], json!("a"));
        assert_eq!(a.retry.attempts, 2);
        assert_eq!(a.retry.on_status_codes, vec![429, 500, 502, 503, 504]);
        assert_eq!(a.request_timeout_ms, Some(1000));
        assert_eq!(b.retry.attempts, 1, "a child's retry replaces the parent's");
        assert_eq!(b.retry.on_status_codes, vec![500]);
        assert_eq!(b.request_timeout_ms, Some(50));
    });
}

#[test]
fn references_are_checked() {
    with_plan(json!({"provider": "nope", "api_key": "k"}), |p| match p {
        Err(PlanError::Invalid(pr)) => assert!(pr.0[0].contains("path: provider,")),
        other => panic!("{other:?}"),
    });
    with_plan(json!({"virtual_key": "missing"}), |p| {
        assert!(matches!(p, Err(PlanError::UnknownVirtualKey(id)) if id == "missing"))
    });
    with_plan(
        json!({"provider": "openai", "api_key": "k", "custom_host": "http://10.1.2.3"}),
        |p| match p {
            Err(PlanError::Invalid(pr)) => assert!(pr.0[0].contains("path: custom_host,")),
            other => panic!("{other:?}"),
        },
    );
    with_plan(
        json!({"provider": "openai", "api_key": "k", "cb_config": {"failure_threshold": 3, "cooldown_interval": 1000}}),
        |p| match p {
            Err(PlanError::Invalid(pr)) => assert!(pr.0[0].contains("cooldown_interval")),
            other => panic!("{other:?}"),
        },
    );
    with_plan(
        json!({"virtual_key": "anthropic-virtual-key", "cache": {"mode": "semantic"}}),
        |p| assert!(p.is_ok()),
    );
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        prop_oneof![
            Just("fallback"),
            Just("loadbalance"),
            Just("conditional"),
            Just("single"),
            Just("openai"),
            Just("semantic"),
            Just("$regex"),
            Just("(["),
            Just("a")
        ]
        .prop_map(|s| json!(s)),
    ];
    let keys = prop_oneof![
        Just("strategy"),
        Just("mode"),
        Just("targets"),
        Just("options"),
        Just("provider"),
        Just("weight"),
        Just("retry"),
        Just("attempts"),
        Just("on_status_codes"),
        Just("conditions"),
        Just("query"),
        Just("then"),
        Just("default"),
        Just("name"),
        Just("override_params"),
        Just("cache"),
        Just("cb_config"),
        Just("request_timeout"),
        Just("metadata.x"),
        Just("$and"),
        Just("$or"),
        Just("$in"),
        Just("$regex"),
        Just("virtual_key"),
        Just("custom_host"),
        Just("fallback"),
        Just("failure_threshold")
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone().prop_map(String::from), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Whatever JSON arrives in the header, parsing and plan building answer, never panic.
    #[test]
    fn random_configs_never_panic(v in arb_json()) {
        if let Ok(node) = parse(&v) {
            let providers = Providers::from_settings(&Settings::default()).unwrap();
            let vks = VirtualKeys::new();
            let hosts = CustomHostPolicy::new(&[], &[]).unwrap();
            let guardrails = crate::guardrails::NamedGuardrails::default();
            let ctx = PlanContext {
                providers: &providers,
                virtual_keys: &vks,
                custom_hosts: &hosts,
                min_cooldown: Duration::from_secs(30),
                from_settings: false,
                guardrails: &guardrails,
                limits: &Default::default(),
            };
            let _ = build(&node, &ctx);
        }
    }
}

#[test]
fn node_rule_is_portkeys_plus_virtual_keys() {
    let rule = format!("message: {NODE_RULE_MESSAGE}");
    // A provider without a key: refused, naming 'provider' and 'api_key'.
    let errs = problems(json!({
        "strategy": {"mode": "fallback"},
        "targets": [{"provider": "openai", "api_key": "k"}, {"provider": "groq"}]
    }));
    assert_eq!(errs, vec![format!("path: targets,1, {rule}")]);
    assert!(errs[0].contains("'provider' and 'api_key'"));
    // override_params, custom_host or a breaker alone do nothing Portkey recognises.
    for lone in [
        json!({"override_params": {"model": "m"}}),
        json!({"custom_host": "http://localhost:1/v1"}),
        json!({"provider": "openai", "override_params": {"model": "m"}}),
    ] {
        assert_eq!(
            problems(lone.clone()),
            vec![format!("path: , {rule}")],
            "{lone}"
        );
    }
    // Every alternative of the rule passes alone, and so does a virtual key (portgate's own).
    for ok in [
        json!({"provider": "openai", "api_key": "k"}),
        json!({"virtual_key": "vk"}),
        json!({"retry": {"attempts": 1}}),
        json!({"cache": {"mode": "simple"}}),
        json!({"request_timeout": 100}),
        json!({"before_request_hooks": []}),
        json!({"input_guardrails": ["g"]}),
        json!({"provider": "ollama"}),
        json!({"provider": "bedrock", "aws_access_key_id": "a", "aws_secret_access_key": "s"}),
        json!({"provider": "vertex-ai", "vertex_region": "r", "vertex_project_id": "p"}),
        json!({"provider": "azure-openai", "azure_auth_mode": "managed"}),
    ] {
        assert!(problems(ok.clone()).is_empty(), "{ok}");
    }
}

#[test]
fn unknown_mode_is_portkeys_message() {
    let errs = problems(json!({
        "strategy": {"mode": "round-robin"},
        "targets": [{"provider": "openai", "api_key": "k"}]
    }));
    assert_eq!(
        errs,
        vec![format!("path: strategy,mode, message: {MODE_MESSAGE}")]
    );
}

#[test]
fn wire_paths_are_zod_style() {
    assert_eq!(wire_path("config"), "");
    assert_eq!(
        wire_path("config.targets[0].targets[12].retry"),
        "targets,0,targets,12,retry"
    );
    assert_eq!(
        wire_path("config.strategy.conditions[0].query.metadata.plan"),
        "strategy,conditions,0,query,metadata,plan"
    );
}

#[test]
fn inherited_data_is_shared_not_cloned() {
    let cfg = json!({
        "strategy": {"mode": "fallback"},
        "override_params": {"temperature": 0.1},
        "before_request_hooks": [{"id": "g"}],
        "targets": [
            {"provider": "openai", "api_key": "k"},
            {"provider": "groq", "api_key": "k"},
            {"provider": "groq", "api_key": "k", "override_params": {"model": "x"}}
        ]
    });
    with_plan(cfg, |plan| {
        let plan = plan.unwrap();
        let Node::Group(root) = &plan.root else {
            panic!()
        };
        let leaf = |i: usize| match &root.children[i] {
            Node::Leaf(l) => l.clone(),
            Node::Group(_) => panic!(),
        };
        let (a, b, c) = (leaf(0), leaf(1), leaf(2));
        let (pa, pb, pc) = (
            a.override_params.as_ref().unwrap(),
            b.override_params.as_ref().unwrap(),
            c.override_params.as_ref().unwrap(),
        );
        assert!(
            std::sync::Arc::ptr_eq(pa, pb),
            "siblings share the parent's map"
        );
        assert!(
            !std::sync::Arc::ptr_eq(pa, pc),
            "a child that adds keys has its own"
        );
        assert_eq!(pc["temperature"], json!(0.1));
        assert!(std::sync::Arc::ptr_eq(&a.hooks, &c.hooks));
    });
}

#[test]
fn provider_options_are_parsed_and_inherited_key_by_key() {
    let cfg = json!({
        "strategy": {"mode": "fallback"},
        "azure_api_version": "2024-06-01",
        "azure_resource_name": "parent",
        "targets": [
            {"provider": "azure-openai", "api_key": "k", "azure_resource_name": "child",
             "azure_deployment_id": "d1", "unknown_field": "ignored"},
            {"provider": "azure-openai", "api_key": "k", "azure_api_version": "2024-10-21"}
        ]
    });
    let bad =
        problems(json!({"provider": "azure-openai", "api_key": "k", "azure_deployment_id": 3}));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("azure_deployment_id"), "{bad:?}");
    with_plan(cfg, |plan| {
        let plan = plan.unwrap();
        let Node::Group(root) = &plan.root else {
            panic!()
        };
        let leaf = |i: usize| match &root.children[i] {
            Node::Leaf(l) => l.clone(),
            Node::Group(_) => panic!(),
        };
        let (a, b) = (leaf(0), leaf(1));
        assert_eq!(a.options["azure_resource_name"], "child", "child keys win");
        assert_eq!(a.options["azure_deployment_id"], "d1");
        assert_eq!(a.options["azure_api_version"], "2024-06-01", "inherited");
        assert!(!a.options.contains_key("unknown_field"));
        assert_eq!(b.options["azure_resource_name"], "parent");
        assert_eq!(b.options["azure_api_version"], "2024-10-21");
        assert!(!b.options.contains_key("azure_deployment_id"));
    });
}

#[test]
fn a_semantic_threshold_is_read_and_checked() {
    let n = parse(&json!({"provider": "openai", "cache": {"mode": "semantic", "threshold": 0.9}}))
        .unwrap();
    assert_eq!(n.cache.as_ref().unwrap().threshold, Some(0.9));
    let n = parse(&json!({"provider": "openai", "cache": "semantic"})).unwrap();
    assert_eq!(n.cache.as_ref().unwrap().threshold, None);
    for bad in [json!(0), json!(1.01), json!("high")] {
        let errs = problems(
            json!({"provider": "openai", "cache": {"mode": "semantic", "threshold": bad}}),
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("threshold") && e.contains("(0, 1]")),
            "{errs:?}"
        );
    }
}

#[test]
fn sticky_load_balancing_is_parsed_and_checked() {
    let n = parse(&json!({
        "strategy": {"mode": "loadbalance", "sticky": {
            "enabled": true,
            "hash_fields": ["metadata.session", "params.metadata.user", "headers.X-Session-Id"],
            "ttl": 3600}},
        "targets": [{"virtual_key": "a"}, {"virtual_key": "b"}]
    }))
    .unwrap();
    let sticky = n.strategy.unwrap().sticky.unwrap();
    assert_eq!(sticky.ttl, Some(3600));
    assert_eq!(
        sticky.fields,
        vec![
            StickyField::Metadata("session".into()),
            StickyField::Params(vec!["metadata".into(), "user".into()]),
            StickyField::Header(http::HeaderName::from_static("x-session-id")),
        ]
    );
    // Disabled: validated, not kept.
    let n = parse(&json!({
        "strategy": {"mode": "loadbalance", "sticky": {"enabled": false, "hash_fields": []}},
        "targets": [{"virtual_key": "a"}]
    }))
    .unwrap();
    assert!(n.strategy.unwrap().sticky.is_none());
}

#[test]
fn invalid_sticky_settings_name_their_path() {
    let problems = |sticky: Value, mode: &str| {
        parse(&json!({
            "strategy": {"mode": mode, "sticky": sticky},
            "targets": [{"virtual_key": "a"}]
        }))
        .unwrap_err()
        .0
        .join("\n")
    };
    let p = problems(json!({"enabled": true}), "loadbalance");
    assert!(
        p.contains("strategy,sticky,hash_fields") && p.contains("required"),
        "{p}"
    );
    let p = problems(json!({"enabled": true, "hash_fields": []}), "loadbalance");
    assert!(p.contains("at least one field"), "{p}");
    let p = problems(
        json!({"enabled": true, "hash_fields": ["user", "metadata.", "headers.a b", 3]}),
        "loadbalance",
    );
    for i in 0..4 {
        assert!(p.contains(&format!("hash_fields,{i}")), "{p}");
    }
    let p = problems(
        json!({"enabled": true, "hash_fields": ["metadata.s"], "ttl": 0}),
        "loadbalance",
    );
    assert!(p.contains("strategy,sticky,ttl"), "{p}");
    let p = problems(
        json!({"enabled": "yes", "hash_fields": ["metadata.s"]}),
        "loadbalance",
    );
    assert!(p.contains("strategy,sticky,enabled"), "{p}");
    let p = problems(
        json!({"enabled": true, "hash_fields": ["metadata.s"]}),
        "fallback",
    );
    assert!(
        p.contains("strategy,sticky") && p.contains("loadbalance"),
        "{p}"
    );
    let p = problems(json!("on"), "loadbalance");
    assert!(p.contains("strategy,sticky"), "{p}");
}
