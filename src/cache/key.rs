//! The cache key: one SHA-256 over everything that can change an answer, so two requests share
//! an entry only when the same upstream, with the same credential, would be asked the same
//! thing and the answer would reach the client in the same form.
//!
//! Unlike Portkey's open-source gateway (whose key is the body and the endpoint only), the key
//! holds the provider and its address, a hash of the credential and provider options (never the
//! key itself: only this digest enters the key, and the key itself is a digest), and the
//! namespace. The body is hashed canonically: object members in sorted order, so key order
//! does not matter.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Top-level request fields that cannot change the answer and are left out of the key:
/// `user` is an end-user id the provider uses for abuse monitoring only. Everything else stays
/// in, `stream` and `stream_options` included: an entry is the answer as the client received
/// it (JSON, or the SSE events), so a streamed and a whole answer are separate entries.
pub(crate) const EXCLUDED: &[&str] = &["user"];

/// Request headers that change a provider's answer when the client sends them (API versions
/// and betas, the OpenAI organisation and project a key acts for): part of the key whenever
/// present, with every header the request forwards upstream.
pub(crate) const ANSWER_HEADERS: &[&str] = &[
    "anthropic-version",
    "anthropic-beta",
    "openai-organization",
    "openai-project",
    "openai-beta",
];

/// What identifies an answer besides the body.
pub(crate) struct Scope<'a> {
    /// The operation (`chat`, `messages`, ...).
    pub op: &'a str,
    /// Provider slug and upstream authority (`openai@api.openai.com:443`).
    pub target: &'a str,
    /// The upstream's base path (`/tenantA/v1` and `/tenantB/v1` on one host are different
    /// upstreams).
    pub base_path: &'a str,
    /// The query string sent upstream, empty when none.
    pub query: &'a str,
    /// Answer-changing request headers ([`ANSWER_HEADERS`] and forwarded ones), lower-case
    /// names, sorted.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// Digest of the credential and provider options ([`credential_digest`]).
    pub credential: [u8; 32],
    /// `x-portkey-cache-namespace`, empty when absent.
    pub namespace: &'a str,
    /// `x-portkey-strict-open-ai-compliance`: it changes translated answers.
    pub strict: bool,
}

/// SHA-256 of the provider key and options (both may hold credentials: an Azure AD token, AWS
/// keys). Only this digest is hashed into the key; the credential is never stored.
pub(crate) fn credential_digest<'o>(
    api_key: Option<&str>,
    options: impl Iterator<Item = (&'o String, &'o String)>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"portgate-credential\0");
    match api_key {
        Some(k) => {
            h.update(b"k");
            field(&mut h, k.as_bytes());
        }
        None => h.update(b"-"),
    }
    for (k, v) in options {
        field(&mut h, k.as_bytes());
        field(&mut h, v.as_bytes());
    }
    h.finalize().into()
}

/// The key of a request whose (override-applied) body is `body`; `None` when the body is not
/// a JSON object (it is then not cached).
pub(crate) fn key(scope: &Scope<'_>, body: &[u8]) -> Option<[u8; 32]> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let Value::Object(map) = &v else {
        return None;
    };
    let mut h = Sha256::new();
    h.update(b"portgate-cache-v1\0");
    field(&mut h, scope.op.as_bytes());
    field(&mut h, scope.target.as_bytes());
    field(&mut h, scope.base_path.as_bytes());
    field(&mut h, scope.query.as_bytes());
    h.update((scope.headers.len() as u64).to_le_bytes());
    for (name, value) in &scope.headers {
        field(&mut h, name.as_bytes());
        field(&mut h, value);
    }
    h.update(scope.credential);
    field(&mut h, scope.namespace.as_bytes());
    h.update([u8::from(scope.strict)]);
    let mut keys: Vec<&String> = map
        .keys()
        .filter(|k| !EXCLUDED.contains(&k.as_str()))
        .collect();
    keys.sort_unstable();
    h.update(b"{");
    for k in keys {
        field(&mut h, k.as_bytes());
        if let Some(v) = map.get(k) {
            value(&mut h, v);
        }
    }
    h.update(b"}");
    Some(h.finalize().into())
}

/// A length-prefixed field (no two different sequences of fields hash the same bytes).
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// A JSON value, tagged by type, object members in sorted order.
fn value(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update(b"z"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"n");
            field(h, n.to_string().as_bytes());
        }
        Value::String(s) => {
            h.update(b"s");
            field(h, s.as_bytes());
        }
        Value::Array(items) => {
            h.update(b"[");
            h.update((items.len() as u64).to_le_bytes());
            for item in items {
                value(h, item);
            }
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            h.update(b"{");
            h.update((keys.len() as u64).to_le_bytes());
            for k in keys {
                field(h, k.as_bytes());
                if let Some(v) = map.get(k) {
                    value(h, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(ns: &str, cred: [u8; 32]) -> Scope<'_> {
        Scope {
            op: "chat",
            target: "openai@api.openai.com:443",
            base_path: "/v1",
            query: "",
            headers: Vec::new(),
            credential: cred,
            namespace: ns,
            strict: true,
        }
    }

    #[test]
    fn member_order_does_not_matter_and_user_is_ignored() {
        let c = credential_digest(Some("sk-1"), std::iter::empty());
        let a = key(
            &scope("", c),
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
        );
        let b = key(
            &scope("", c),
            br#"{"temperature":0,"user":"u-7","messages":[{"content":"hi","role":"user"}],"model":"m"}"#,
        );
        assert!(a.is_some());
        assert_eq!(a, b);
    }

    #[test]
    fn scope_and_params_separate_entries() {
        let c1 = credential_digest(Some("sk-1"), std::iter::empty());
        let c2 = credential_digest(Some("sk-2"), std::iter::empty());
        let body = br#"{"model":"m","messages":[]}"#;
        let base = key(&scope("", c1), body);
        assert_ne!(base, key(&scope("", c2), body), "credential");
        assert_ne!(base, key(&scope("ns", c1), body), "namespace");
        assert_ne!(
            base,
            key(
                &scope("", c1),
                br#"{"model":"m","messages":[],"stream":true}"#
            ),
            "stream"
        );
        assert_ne!(
            base,
            key(&scope("", c1), br#"{"model":"m2","messages":[]}"#),
            "model"
        );
        assert_eq!(key(&scope("", c1), b"[1]"), None, "not an object");
        // The upstream's base path, the query sent upstream and answer-changing headers.
        let with = |f: &dyn Fn(&mut Scope)| {
            let mut s = scope("", c1);
            f(&mut s);
            key(&s, body)
        };
        assert_ne!(base, with(&|s| s.base_path = "/tenantB/v1"), "base path");
        assert_ne!(base, with(&|s| s.query = "api-version=2024-10-21"), "query");
        let beta = with(&|s| s.headers = vec![("anthropic-beta", b"tools-2024")]);
        assert_ne!(base, beta, "a header");
        assert_ne!(
            beta,
            with(&|s| s.headers = vec![("anthropic-beta", b"tools-2025")]),
            "its value"
        );
    }
}
