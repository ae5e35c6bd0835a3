//! What the settings look like to a reader — `portgate --check` and `Debug` — with no key
//! material: virtual keys show their provider and where the key comes from (never the key),
//! credential-like fields of named configs are `[redacted]`, gateway key digests are counted,
//! and user:password parts of URLs are removed. Operators paste this output into tickets and
//! CI logs, so it must be safe to share.

use super::{Settings, VirtualKeyRow};
use serde_json::Value;
use std::fmt;

const REDACTED: &str = "[redacted]";

impl Settings {
    /// The settings as a JSON value with every secret replaced (see the module docs).
    pub(crate) fn redacted(&self) -> Value {
        let mut v = match serde_json::to_value(self) {
            Ok(v) => v,
            Err(e) => return Value::String(format!("settings not representable: {e}")),
        };
        redact_tree(&mut v);
        if let Some(g) = v.get_mut("guardrails") {
            // Webhook and log headers are credentials whatever their names.
            crate::types::redact::redact_headers(g);
        }
        // Inserted after the generic pass: these descriptions are already safe, and the pass
        // would take a described custom host for a malformed URL.
        if let Some(map) = v.as_object_mut() {
            let vks = self
                .virtual_keys
                .iter()
                .map(|(id, row)| (id.clone(), Value::String(describe_virtual_key(row))))
                .collect();
            map.insert("virtual_keys".into(), Value::Object(vks));
            let n = self.gateway_keys.len();
            if n > 0 {
                map.insert(
                    "gateway_keys".into(),
                    Value::String(format!("{n} sha256 digest(s), not shown")),
                );
            }
        }
        v
    }

    /// The `--check` report: the effective settings as YAML, redacted.
    pub fn check_report(&self) -> String {
        serde_yaml_ng::to_string(&self.redacted())
            .unwrap_or_else(|e| format!("settings not representable: {e}\n"))
    }
}

/// `Debug` prints the redacted form: settings hold named configs, which may carry inline
/// `api_key`s, and a derived `Debug` would print them.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Settings {}", self.redacted())
    }
}

/// `openai (env OPENAI_KEY)`, `openai (file /run/secrets/openai)`, `ollama (no key)`, plus the
/// custom host when set. Names and sources only.
fn describe_virtual_key(row: &VirtualKeyRow) -> String {
    let source = match (&row.api_key_env, &row.api_key_file) {
        (Some(var), Some(path)) => format!("env {var} and file {path}"),
        (Some(var), None) => format!("env {var}"),
        (None, Some(path)) => format!("file {path}"),
        (None, None) => "no key".to_string(),
    };
    match &row.custom_host {
        Some(host) => format!(
            "{} ({source}, custom host {})",
            row.provider,
            strip_userinfo(host)
        ),
        None => format!("{} ({source})", row.provider),
    }
}

/// Credential-like fields at any depth become `[redacted]` (the access log's list of names);
/// every string loses a URL's user:password part.
fn redact_tree(v: &mut Value) {
    crate::types::redact::redact(v);
    strip_urls(v);
}

fn strip_urls(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('@') => *s = strip_userinfo(s),
        Value::Array(items) => items.iter_mut().for_each(strip_urls),
        Value::Object(map) => map.values_mut().for_each(strip_urls),
        _ => {}
    }
}

/// `https://user:pw@host/x` → `https://[redacted]@host/x`; anything else that holds an `@`
/// before a path and does not parse as a URL is redacted whole, since it cannot be told apart
/// from a credential.
fn strip_userinfo(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            let text = u.to_string();
            match text.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://{REDACTED}@{rest}"),
                None => REDACTED.to_string(),
            }
        }
        Ok(_) => s.to_string(),
        Err(_) if s.contains("://") => REDACTED.to_string(),
        Err(_) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-live-0123456789abcdef";

    fn settings_with_secrets() -> Settings {
        let yaml = format!(
            r#"
virtual_keys:
  openai-prod:
    provider: openai
    api_key_env: OPENAI_KEY
  local:
    provider: openai
    custom_host: "http://admin:{KEY}@vllm.ml.svc:8000/v1"
configs:
  inline-key:
    provider: openai
    api_key: "{KEY}"
    targets:
      - provider: groq
        api_key: "{KEY}"
        custom_host: "https://u:{KEY}@llm.example.com/v1"
gateway_keys:
  - "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#
        );
        Settings::from_yaml(&yaml).unwrap()
    }

    #[test]
    fn redacted_forms_hold_no_key_material() {
        let s = settings_with_secrets();
        let report = s.check_report();
        let debug = format!("{s:?}");
        let pretty = format!("{s:#?}");
        for out in [&report, &debug, &pretty] {
            assert!(!out.contains(KEY), "{out}");
            assert!(!out.contains("//admin"), "{out}");
            assert!(!out.contains("0000000000000000"), "{out}");
        }
        assert!(
            report.contains("openai-prod: openai (env OPENAI_KEY)"),
            "{report}"
        );
        assert!(
            report.contains(
                "local: openai (no key, custom host http://[redacted]@vllm.ml.svc:8000/v1)"
            ),
            "{report}"
        );
        assert!(report.contains("1 sha256 digest(s), not shown"), "{report}");
        assert!(report.contains("api_key: '[redacted]'"), "{report}");
        assert!(
            report.contains("https://[redacted]@llm.example.com/v1"),
            "{report}"
        );
    }

    #[test]
    fn secrets_print_redacted() {
        let k = super::super::Secret::new(KEY.to_string());
        assert_eq!(format!("{k}"), REDACTED);
        assert_eq!(format!("{k:?}"), REDACTED);
        assert_eq!(k.expose(), KEY);
    }

    #[test]
    fn userinfo_is_stripped() {
        assert_eq!(
            strip_userinfo("https://a:b@h.example/v1"),
            "https://[redacted]@h.example/v1"
        );
        assert_eq!(
            strip_userinfo("https://h.example/v1"),
            "https://h.example/v1"
        );
        assert_eq!(strip_userinfo("http://x:y@[bad"), REDACTED);
        assert_eq!(strip_userinfo("team@example.com"), "team@example.com");
    }
}
