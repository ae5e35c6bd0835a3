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
        (json!({"user_plan": "paid"}), "q.user_plan"),
        (json!({"$and": {"a": 1}}), "q.$and"),
        (json!("paid"), "q"),
    ];
    for (q, path) in cases {
        let errs = compile(&q, "q").unwrap_err();
        assert!(
            matches!(&errs[0], Fault::Schema(p, _) if p == path),
            "{q}: {errs:?}"
        );
    }
}

/// Portkey evaluates these to "no match" instead of refusing them: a comparison with what is
/// not a number (`parseFloat` gives NaN), `$in` / `$nin` with what is not a list.
#[test]
fn operands_portkey_does_not_refuse_match_nothing() {
    let m = json!({"x": "5", "n": 5});
    for q in [
        json!({"metadata.n": {"$gt": "many"}}),
        json!({"metadata.n": {"$lte": null}}),
        json!({"metadata.x": {"$in": "5"}}),
        json!({"metadata.x": {"$nin": "a"}}),
    ] {
        assert!(!eval(q.clone(), m.clone(), json!({})), "{q}");
    }
    // `parseFloat` reads a leading number from a string operand.
    assert!(eval(json!({"metadata.n": {"$gt": "4px"}}), m, json!({})));
}

/// An operator Portkey's router does not know is its router error, nested ones too.
#[test]
fn unknown_operators_are_the_routers_error() {
    for (q, op) in [
        (json!({"metadata.x": {"$like": 1}}), "$like"),
        (json!({"metadata.x": {"$exists": true}}), "$exists"),
        (json!({"params.messages": {"$length": {"$foo": 1}}}), "$foo"),
        (
            json!({"$or": [{"metadata.x": {"$unsupported": "value"}}]}),
            "$unsupported",
        ),
    ] {
        let errs = compile(&q, "q").unwrap_err();
        assert_eq!(
            errs,
            [Fault::Router(format!(
                "Unsupported operator used in the query router: {op}"
            ))],
            "{q}"
        );
    }
}

/// The `$length` cases of Portkey's router tests, with its semantics: the value must be a
/// list; a number is its length; an object applies its operators to the length.
#[test]
fn length_of_lists() {
    let three = json!({"messages": [1, 2, 3]});
    let cases = [
        (
            json!({"params.messages": {"$length": 3}}),
            three.clone(),
            true,
        ),
        (
            json!({"params.messages": {"$length": 3}}),
            json!({"messages": [1, 2]}),
            false,
        ),
        (
            json!({"params.messages": {"$length": 3}}),
            json!({"messages": "not-an-array"}),
            false,
        ),
        (
            json!({"params.messages": {"$length": {"$gt": 5}}}),
            json!({"messages": [1, 2, 3, 4, 5, 6]}),
            true,
        ),
        (
            json!({"params.messages": {"$length": {"$lt": 3}}}),
            json!({"messages": [1, 2]}),
            true,
        ),
        (
            json!({"params.messages": {"$length": {"$gte": 3}}}),
            three.clone(),
            true,
        ),
        (
            json!({"params.messages": {"$length": {"$gte": 3}}}),
            json!({"messages": [1, 2, 3, 4]}),
            true,
        ),
        (
            json!({"params.messages": {"$length": {"$lte": 3}}}),
            three.clone(),
            true,
        ),
        (
            json!({"params.messages": {"$length": {"$lte": 3}}}),
            json!({"messages": [1, 2]}),
            true,
        ),
        (
            json!({"params.messages": {"$length": {"$eq": 3}}}),
            three.clone(),
            true,
        ),
        (
            json!({"params.messages": {"$length": {"$ne": 3}}}),
            json!({"messages": [1, 2]}),
            true,
        ),
        (
            json!({"params.messages": {"$length": 0}}),
            json!({"messages": []}),
            true,
        ),
        (
            json!({"params.messages": {"$length": {"$gt": 10}}}),
            three.clone(),
            false,
        ),
        (
            json!({"params.missing": {"$length": 0}}),
            three.clone(),
            false,
        ),
        // Any other operand: no test on the length, but the value must still be a list.
        (
            json!({"params.messages": {"$length": "3"}}),
            three.clone(),
            true,
        ),
        (
            json!({"params.messages": {"$length": null}}),
            json!({"messages": {}}),
            false,
        ),
    ];
    for (q, params, want) in cases {
        assert_eq!(eval(q.clone(), json!({}), params), want, "{q}");
    }
    // `$length` inside `$and`, and on metadata lists.
    let q = json!({"$and": [{"params.messages": {"$length": {"$gt": 2}}}, {"metadata.user": {"$eq": "premium"}}]});
    assert!(eval(
        q,
        json!({"user": "premium"}),
        json!({"messages": [1, 2, 3, 4]})
    ));
    let q = json!({"metadata.tags": {"$length": 2}});
    assert!(eval(q, json!({"tags": ["tag1", "tag2"]}), json!({})));
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
