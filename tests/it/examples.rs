//! Every ready-made config in `conf/examples/` loads as a named config, so none can rot.

use portgate::settings::{Settings, VirtualKeyRow};
use portgate::state::State;

#[test]
fn every_example_config_loads() {
    let mut s = Settings::default();
    for (id, provider) in [
        ("openai-vk", "openai"),
        ("groq-vk", "groq"),
        ("together-vk", "together-ai"),
        ("anyscale-vk", "anyscale"),
    ] {
        s.virtual_keys.insert(
            id.into(),
            VirtualKeyRow {
                provider: provider.into(),
                api_key_env: Some(format!("EXAMPLE_{}", id.replace('-', "_").to_uppercase())),
                api_key_file: None,
                custom_host: None,
                options: Default::default(),
                rate_limits: Vec::new(),
                usage_limits: Vec::new(),
            },
        );
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir("conf/examples").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        s.configs.insert(name.clone(), value);
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "conditional-user-plan",
            "fallback",
            "guardrails",
            "legacy-semantic-fallback",
            "loadbalance-70-30",
            "loadbalance-sticky",
            "nested",
            "retry-after"
        ]
    );
    let env = |name: &str| {
        name.starts_with("EXAMPLE_")
            .then(|| "sk-example".to_string())
    };
    State::with_env(s, &env).unwrap_or_else(|e| panic!("{e}"));
}
