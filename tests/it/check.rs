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
