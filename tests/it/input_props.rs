//! Client input never panics the parsers it reaches: the `x-portkey-*`
//! headers, the custom-host validator, `x-portkey-metadata`, and conditional-routing queries,
//! compiled and evaluated against arbitrary metadata and parameters. Each property feeds
//! arbitrary Unicode and also text from an alphabet biased towards what the parsers look at
//! (digits, dots, signs, exponents, `0x`, URL punctuation, multi-byte characters), so the
//! deeper branches are reached, not only the first rejection.

use http::{HeaderMap, HeaderName, HeaderValue};
use portgate::dispatch::CustomHostPolicy;
use portgate::portkey::conditions::{compile, QueryContext};
use portgate::portkey::{config, metadata, PortkeyHeaders};
use proptest::prelude::*;
use serde_json::Value;

/// Text near the shapes the parsers branch on.
fn tricky() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "0",
        "1",
        "9",
        "07",
        ".",
        "-",
        "+",
        "e",
        "E",
        "0x",
        "0X",
        "ff",
        ":",
        "/",
        "//",
        "@",
        "[",
        "]",
        "?",
        "#",
        "%",
        " ",
        "http://",
        "https://",
        "localhost",
        "::1",
        "127.0.0.1",
        "é",
        "日本",
        "\u{1F600}",
        "\u{200B}",
        "ß",
        "{",
        "}",
        "\"",
        ",",
        "$gt",
        "$regex",
        "metadata.",
        "params.",
        "proxy ",
        "bearer ",
        "a",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), tricky()]
}

/// Arbitrary JSON, with strings from `text()` and keys that look like query keys.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        text(),
        prop::sample::select(vec![
            "$and",
            "$or",
            "$eq",
            "$ne",
            "$gt",
            "$gte",
            "$lt",
            "$lte",
            "$in",
            "$nin",
            "$regex",
            "metadata.a",
            "metadata.a.b",
            "params.model",
            "params.n",
            "url.pathname",
        ])
        .prop_map(str::to_string),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

const PORTKEY_HEADERS: &[&str] = &[
    "x-portkey-provider",
    "x-portkey-config",
    "x-portkey-virtual-key",
    "x-portkey-trace-id",
    "x-portkey-metadata",
    "x-portkey-custom-host",
    "x-portkey-mode",
    "x-portkey-forward-headers",
    "x-portkey-request-timeout",
    "authorization",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn portkey_headers_never_panic(
        values in prop::collection::vec(
            (prop::sample::select(PORTKEY_HEADERS), prop_oneof![
                text().prop_map(String::into_bytes),
                prop::collection::vec(any::<u8>(), 0..40),
            ]),
            0..8,
        )
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in values {
            // Only bytes a header value can carry (obs-text included, so not always UTF-8).
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                headers.append(HeaderName::from_static(name), v);
            }
        }
        let _ = PortkeyHeaders::parse(&headers);
    }

    #[test]
    fn custom_host_check_never_panics(host in text(), trusted in prop::collection::vec(text(), 0..3)) {
        // Arbitrary trusted entries are refused or accepted, never a panic.
        let _ = CustomHostPolicy::new(&trusted, &[8787]);
        let policy = CustomHostPolicy::new(&["localhost:*".into(), "10.0.0.1".into()], &[8787])
            .expect("valid entries");
        let _ = policy.check(&host);
        let _ = policy.check(&format!("http://{host}"));
        let _ = policy.check(&format!("https://{host}:8000/v1"));
        let _ = policy.check_operator(&format!("http://{host}:8787"));
        for entry in &trusted {
            let _ = CustomHostPolicy::check_entry(entry);
        }
    }

    #[test]
    fn metadata_parse_never_panics(raw in text(), value in json()) {
        let _ = metadata::parse(Some(&raw));
        let _ = metadata::parse(Some(&value.to_string()));
    }

    #[test]
    fn conditions_compile_and_evaluate_never_panic(
        query in json(),
        meta in json(),
        params in json(),
        pathname in text(),
    ) {
        // The gateway only ever evaluates JSON objects (a parsed header, a parsed body).
        let as_map = |v: Value| match v {
            Value::Object(m) => m,
            other => serde_json::Map::from_iter([("v".to_string(), other)]),
        };
        let (meta, params) = (as_map(meta), as_map(params));
        if let Ok(q) = compile(&query, "query") {
            let _ = q.matches(&QueryContext {
                metadata: &meta,
                params: &params,
                pathname: &pathname,
            });
        }
    }

    #[test]
    fn numeric_operators_on_arbitrary_strings_never_panic(value in text(), bound in any::<f64>()) {
        for op in ["$gt", "$gte", "$lt", "$lte"] {
            let query = serde_json::json!({ "metadata.n": { op: bound } });
            if let Ok(q) = compile(&query, "query") {
                let meta = serde_json::Map::from_iter([("n".to_string(), Value::String(value.clone()))]);
                let _ = q.matches(&QueryContext {
                    metadata: &meta,
                    params: &serde_json::Map::new(),
                    pathname: "/v1/chat/completions",
                });
            }
        }
    }

    #[test]
    fn configs_never_panic(value in json()) {
        let _ = config::parse(&value);
    }
}
