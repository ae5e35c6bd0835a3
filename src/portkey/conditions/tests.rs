use super::*;
use serde_json::json;

fn eval(query: Value, metadata: Value, params: Value) -> bool {
    let q = compile(&query, "q").unwrap();
    let (Value::Object(metadata), Value::Object(params)) = (metadata, params) else {
        panic!("metadata and params are objects");
    };
    q.matches(&QueryContext {
        metadata: &metadata,
        params: &params,
        pathname: "/v1/chat/completions",
    })
}

#[test]
fn each_operator() {
    let m = json!({"user_plan": "paid", "tier": "3", "n": 7, "tags": "a,b"});
    let p = json!({"model": "gpt-4o", "max_tokens": 500, "temperature": 0.2});
    let cases = [
        (json!({"metadata.user_plan": "paid"}), true),
        (json!({"metadata.user_plan": {"$eq": "paid"}}), true),
        (json!({"metadata.user_plan": {"$eq": "free"}}), false),
        (json!({"metadata.user_plan": {"$ne": "free"}}), true),
        (json!({"metadata.missing": {"$ne": "x"}}), true),
        (json!({"metadata.tier": {"$gt": 2}}), true),
        (json!({"metadata.tier": {"$gte": 3, "$lt": 4}}), true),
        (json!({"params.max_tokens": {"$lte": 499}}), false),
        (
            json!({"params.max_tokens": {"$lt": 1000, "$gt": 100}}),
            true,
        ),
        (
            json!({"params.model": {"$in": ["gpt-4o", "gpt-4.1"]}}),
            true,
        ),
        (json!({"params.model": {"$nin": ["gpt-4o"]}}), false),
        (json!({"params.model": {"$regex": "^gpt-4"}}), true),
        (
            json!({"params.model": {"$regex": "^claude", "$eq": "gpt-4o"}}),
            false,
        ),
        (json!({"metadata.n": {"$regex": "^7$"}}), true),
        (json!({"url.pathname": {"$regex": "chat"}}), true),
        (
            json!({"$and": [{"metadata.user_plan": "paid"}, {"params.model": "gpt-4o"}]}),
            true,
        ),
        (
            json!({"$and": [{"metadata.user_plan": "paid"}, {"params.model": "x"}]}),
            false,
        ),
        (
            json!({"$or": [{"metadata.user_plan": "free"}, {"params.model": "gpt-4o"}]}),
            true,
        ),
        (
            json!({"$or": [{"metadata.user_plan": "free"}], "params.model": "gpt-4o"}),
            false,
        ),
        (json!({}), true),
    ];
    for (q, want) in cases {
        assert_eq!(eval(q.clone(), m.clone(), p.clone()), want, "{q}");
    }
}

#[test]
fn bad_queries_name_their_path() {
    let cases = [
        (
            json!({"metadata.x": {"$regex": "("}}),
            "q.metadata.x.$regex",
        ),
        (json!({"metadata.x": {"$in": "a"}}), "q.metadata.x.$in"),
        (json!({"metadata.x": {"$gt": "many"}}), "q.metadata.x.$gt"),
        (json!({"metadata.x": {"$like": 1}}), "q.metadata.x.$like"),
        (json!({"user_plan": "paid"}), "q.user_plan"),
        (json!({"$and": {"a": 1}}), "q.$and"),
        (json!("paid"), "q"),
    ];
    for (q, path) in cases {
        let errs = compile(&q, "q").unwrap_err();
        assert_eq!(errs[0].0, path, "{q}");
    }
}

#[test]
fn huge_regexes_are_refused() {
    let q = json!({"metadata.x": {"$regex": "(a{1000}){1000}"}});
    assert!(compile(&q, "q").is_err());
}

#[test]
fn parse_float_semantics() {
    assert_eq!(to_number(&json!("12abc")), Some(12.0));
    assert_eq!(to_number(&json!(" -3.5")), Some(-3.5));
    assert_eq!(to_number(&json!("abc")), None);
    assert_eq!(to_number(&json!(true)), None);
    assert_eq!(to_number(&json!("1.2.3")), Some(1.2));
    assert_eq!(to_number(&json!("-.5x")), Some(-0.5));
    assert_eq!(to_number(&json!("7.")), Some(7.0));
    assert_eq!(to_number(&json!("1e3")), Some(1000.0));
    assert_eq!(to_number(&json!("1e")), Some(1.0));
    assert_eq!(to_number(&json!("1e+")), Some(1.0));
    assert_eq!(to_number(&json!("2E-2z")), Some(0.02));
    assert_eq!(to_number(&json!("+4")), Some(4.0));
    assert_eq!(to_number(&json!("+-1")), None);
    assert_eq!(to_number(&json!(".")), None);
    assert_eq!(to_number(&json!("-")), None);
    assert_eq!(to_number(&json!("é1")), None);
    assert_eq!(to_number(&json!("1é")), Some(1.0));
}

#[test]
fn long_numeric_strings_convert_in_one_pass() {
    // Each of these made the old prefix search try ~100 000 prefixes, each parsed in full.
    let dotted = "1.".repeat(50_000);
    assert_eq!(to_number(&json!(dotted)), Some(1.1));
    let es = format!("1{}", "e".repeat(100_000));
    assert_eq!(to_number(&json!(es)), Some(1.0));
    let digits = format!("{}x", "9".repeat(100_000));
    assert_eq!(to_number(&json!(digits)), Some(f64::INFINITY));
    let q = json!({"metadata.n": {"$gt": 1}});
    assert!(eval(q, json!({"n": dotted}), json!({})));
}

/// A pattern whose automaton would be large, or a very long pattern, is refused when the
/// config is read (the same bounds as the guardrails' patterns).
#[test]
fn regexes_are_bounded_in_size_and_length() {
    let err = |pattern: String| {
        compile(&json!({"metadata.x": {"$regex": pattern}}), "q")
            .err()
            .map(|e| format!("{e:?}"))
    };
    assert!(err(r"\w{150}".repeat(20)).is_some(), "a huge automaton");
    let long = "a".repeat(crate::types::patterns::MAX_PATTERN_BYTES + 1);
    assert!(err(long).unwrap().contains("longer than"));
    assert!(err("^gpt-4o(-mini)?$".into()).is_none());
}
