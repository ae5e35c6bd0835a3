//! `portgate --check` never prints key material: virtual keys show names and
//! sources, configs' inline keys and URL credentials are redacted, and a key pasted into the
//! wrong field is not echoed in the error either.

use std::process::Command;

const KEY: &str = "sk-proj-KNOWNKEY-7f3a9c1e5b";

fn check(yaml: &str, file_key: &std::path::Path) -> (i32, String, String) {
    let dir = std::env::temp_dir().join(format!("portgate-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.yaml", yaml.len()));
    std::fs::write(
        &path,
        yaml.replace("KEYFILE", &file_key.display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portgate"))
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .env("OPENAI_KEY", KEY)
        .env("PORTGATE_LOG_LEVEL", "trace")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_names_and_sources_never_keys() {
    let key_file = std::env::temp_dir().join(format!("portgate-check-key-{}", std::process::id()));
    std::fs::write(&key_file, KEY).unwrap();
    let yaml = format!(
        r#"
virtual_keys:
  openai-prod:
    provider: openai
    api_key_env: OPENAI_KEY
  openai-file:
    provider: openai
    api_key_file: KEYFILE
  in-cluster:
    provider: openai
    custom_host: "http://svc:{KEY}@vllm.ml.svc:8000/v1"
configs:
  inline:
    provider: openai
    api_key: "{KEY}"
    override_params:
      authorization: "Bearer {KEY}"
"#
    );
    let (code, stdout, stderr) = check(&yaml, &key_file);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stdout.contains(KEY), "key in stdout:\n{stdout}");
    assert!(!stderr.contains(KEY), "key in stderr:\n{stderr}");
    assert!(!stdout.contains("KNOWNKEY") && !stderr.contains("KNOWNKEY"));
    assert!(
        stdout.contains("openai-prod: openai (env OPENAI_KEY)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "openai-file: openai (file {})",
            key_file.display()
        )),
        "{stdout}"
    );
    let _ = std::fs::remove_file(&key_file);
}

#[test]
fn a_key_in_the_wrong_field_is_not_echoed() {
    let (code, stdout, stderr) = check(
        &format!("gateway_keys: \"{KEY}\"\n"),
        std::path::Path::new("/nonexistent"),
    );
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("gateway_keys"), "{stderr}");
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY), "{stderr}");
}

/// `--check` says how many models are priced and from which source, and which catalog units
/// are not applied.
#[test]
fn check_reports_where_prices_come_from() {
    let yaml = "pricing:\n  overrides:\n    ollama:\n      llama3: {input: 0, output: 0}\n";
    let (code, stdout, stderr) = check(yaml, std::path::Path::new("/nonexistent"));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("# prices: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("1 models from pricing.overrides"), "{line}");
    assert!(
        line.contains("models from the built-in catalog snapshot (Portkey-AI/models, "),
        "{line}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("# price units not applied") && l.contains("web_search")),
        "{stdout}"
    );
    // A catalog directory that holds no price file is an error naming the setting.
    let empty = std::env::temp_dir().join(format!("portgate-empty-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let yaml = format!("pricing:\n  catalog_dir: {}\n", empty.display());
    let (code, _, stderr) = check(&yaml, std::path::Path::new("/nonexistent"));
    assert_eq!(code, 2);
    assert!(stderr.contains("pricing.catalog_dir"), "{stderr}");
    let _ = std::fs::remove_dir(&empty);
}
