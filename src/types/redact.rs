//! Redaction of credentials in JSON documents that are shown or logged (access-log bodies,
//! `portgate --check`, `Debug` of settings).

use serde_json::Value;

/// Field names whose values are credentials, compared case-insensitively.
const SECRET_FIELDS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "x-api-key",
    "key",
    "authorization",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "secret",
    "client_secret",
    "password",
    "aws_secret_access_key",
    "aws_session_token",
    "vertex_service_account_json",
];

/// Whether a JSON document may hold a credential-like field: one of the names, quoted, anywhere
/// in it (one case-insensitive pass). `false` means `redact` would change nothing, so the bytes
/// can be kept as they are without building the document's tree.
pub(crate) fn may_hold_secrets(json: &[u8]) -> bool {
    static QUOTED: once_cell::sync::Lazy<Option<aho_corasick::AhoCorasick>> =
        once_cell::sync::Lazy::new(|| {
            aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(SECRET_FIELDS.iter().map(|f| format!("\"{f}\"")))
                .ok()
        });
    // Escaped quotes or a name written with escapes defeat the scan: such a document takes the
    // full walk.
    match &*QUOTED {
        Some(names) => names.is_match(json) || memchr::memmem::find(json, b"\\u").is_some(),
        None => true,
    }
}

/// Replaces the values of credential-like fields, at any depth, with `[redacted]`.
pub(crate) fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if SECRET_FIELDS.iter().any(|s| s.eq_ignore_ascii_case(k)) {
                    *val = Value::String("[redacted]".into());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Replaces the values of every `headers` object (webhook and log checks) with `[redacted]`:
/// they carry credentials whatever their names (`portgate --check`, `Debug`).
pub(crate) fn redact_headers(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "headers" {
                    match child {
                        Value::Object(h) => h
                            .values_mut()
                            .for_each(|x| *x = Value::String("[redacted]".into())),
                        other => *other = Value::String("[redacted]".into()),
                    }
                } else {
                    redact_headers(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_headers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_check_finds_every_name_redact_acts_on() {
        for f in SECRET_FIELDS {
            let upper = f.to_ascii_uppercase();
            let doc = format!(
                r#"{{"messages":[{{"role":"user","content":"hi"}}],"x":{{"{upper}":"v"}}}}"#
            );
            assert!(may_hold_secrets(doc.as_bytes()), "{f}");
        }
        assert!(!may_hold_secrets(
            br#"{"model":"m","messages":[{"role":"user","content":"my key is blue"}]}"#
        ));
        // A name spelled with escapes is not matched by the scan: the full walk runs.
        assert!(may_hold_secrets(br#"{"\u0074oken":"v"}"#));
    }
    use serde_json::json;

    #[test]
    fn headers_are_redacted() {
        let mut v = json!({"g": {"checks": [{"parameters": {"headers": {"x-key": "s3cret"}}}]}});
        redact_headers(&mut v);
        assert!(!v.to_string().contains("s3cret"));
    }

    #[test]
    fn redacts_credentials_but_not_token_counts() {
        let mut v = json!({"api_key": "sk-1", "max_tokens": 5, "nested": [{"Authorization": "Bearer x", "token": "t"}]});
        redact(&mut v);
        assert_eq!(
            v,
            json!({"api_key": "[redacted]", "max_tokens": 5, "nested": [{"Authorization": "[redacted]", "token": "[redacted]"}]})
        );
    }
}
