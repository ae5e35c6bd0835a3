//! What other programs write never panics the parsers that read it, and what is accepted is
//! well formed: cache entries read back from Redis, semantic vectors from the Redis stream
//! (any replica, or anything else that can write to Redis, may have put them there), webhook
//! answers, and AWS's binary event-stream frames split anywhere.

use bytes::Bytes;
use portgate::cache::redis::vectors;
use portgate::cache::Entry;
use portgate::guardrails::checks::remote::judge;
use portgate::guardrails::Event;
use portgate::providers::{Operation, Providers, ResponseOptions};
use portgate::types::usage::Usage;
use portgate::Settings;
use proptest::prelude::*;
use serde_json::{json, Value};

fn entry() -> impl Strategy<Value = Entry> {
    (
        any::<u16>(),
        ".{0,20}",
        prop::collection::vec(any::<u8>(), 0..200),
        prop::option::of(any::<[u64; 5]>()),
        prop::option::of(".{0,20}"),
        any::<u64>(),
    )
        .prop_map(
            |(status, content_type, body, usage, model, expires_at)| Entry {
                status,
                content_type,
                body: Bytes::from(body),
                usage: usage.map(|u| Usage {
                    input: u[0],
                    output: u[1],
                    cached_input: u[2],
                    cache_write: u[3],
                    reasoning: u[4],
                }),
                model,
                expires_at,
            },
        )
}

/// Floats including the ones a vector must not carry.
fn float() -> impl Strategy<Value = f32> {
    prop_oneof![
        any::<f32>(),
        Just(0.0f32),
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::MAX),
        Just(f32::MIN_POSITIVE),
        -1.0f32..1.0,
    ]
}

/// JSON a webhook might answer, near the shape it should have.
fn answer() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    let any_json = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "verdict",
                    "data",
                    "transformedData",
                    "request",
                    "response",
                    "json",
                    "x"
                ]),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    });
    prop_oneof![
        any_json.clone(),
        (any_json.clone(), any_json)
            .prop_map(|(verdict, t)| json!({"verdict": verdict, "transformedData": t})),
    ]
}

fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..=len, 0..6).prop_map(|mut v| {
        v.sort_unstable();
        v
    })
}

fn split<'a>(raw: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        out.push(&raw[at..c]);
        at = c;
    }
    out.push(&raw[at..]);
    out
}

fn bedrock_stream(chunks: &[&[u8]]) -> (Vec<u8>, Option<Usage>) {
    let all = Providers::from_settings(&Settings::default()).unwrap();
    let opts = ResponseOptions {
        hide_usage: false,
        strict: true,
        created: 1_700_000_000,
        model: Some("m"),
    };
    let mut t = all.get("bedrock").unwrap().response(
        Operation::ChatCompletions,
        200,
        "application/vnd.amazon.eventstream",
        &opts,
    );
    let mut out = Vec::new();
    for c in chunks {
        if let Some(b) = t.push(Bytes::copy_from_slice(c)) {
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = t.finish() {
        out.extend_from_slice(&b);
    }
    (out, t.usage())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cache_entries_round_trip_and_anything_else_is_a_miss(e in entry(), junk in prop::collection::vec(any::<u8>(), 0..300), cut in 0usize..400) {
        let raw = e.encode();
        let back = Entry::decode(&raw).expect("its own encoding");
        prop_assert_eq!(back.status, e.status);
        prop_assert_eq!(&back.content_type, &e.content_type);
        prop_assert_eq!(&back.body, &e.body);
        prop_assert_eq!(back.usage, e.usage);
        prop_assert_eq!(&back.model, &e.model);
        prop_assert_eq!(back.expires_at, e.expires_at);
        // Cut short, or foreign bytes: a miss or an entry, never a panic.
        let _ = Entry::decode(&raw[..cut.min(raw.len())]);
        let _ = Entry::decode(&junk);
    }

    #[test]
    fn vector_records_are_unit_vectors_or_refused(
        v in prop::collection::vec(float(), 0..40),
        expires in any::<u64>(),
        junk in prop::collection::vec(any::<u8>(), 0..200),
        cut in 0usize..300,
    ) {
        let (scope, key) = ([1u8; 32], [2u8; 32]);
        let raw = vectors::encode(&scope, &key, expires, &v);
        // Usable: not empty, every element finite, not all zero.
        let usable = !v.is_empty() && v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0);
        match vectors::decode(&raw) {
            Some((s, k, e, unit)) => {
                prop_assert!(usable, "{v:?} was accepted");
                prop_assert_eq!((s, k, e), (scope, key, expires));
                prop_assert_eq!(unit.len(), v.len());
                prop_assert!(unit.iter().all(|x| x.is_finite()));
                let norm: f64 = unit.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
                prop_assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
            }
            None => prop_assert!(!usable, "{v:?} was refused"),
        }
        if cut < raw.len() {
            prop_assert!(vectors::decode(&raw[..cut]).is_none(), "a cut record is refused");
        }
        let _ = vectors::decode(&junk);
    }

    #[test]
    fn webhook_answers_pass_only_when_they_say_so(status in 100u16..600, body in answer(), raw in prop::collection::vec(any::<u8>(), 0..64), before in any::<bool>()) {
        let event = if before { Event::Before } else { Event::After };
        let bytes = Bytes::from(body.to_string());
        let out = judge(Ok((status, bytes)), event, "https://hook.example/v", 100);
        let says_pass = body.get("verdict") == Some(&Value::Bool(true));
        prop_assert_eq!(out.verdict, (200..300).contains(&status) && says_pass);
        prop_assert_eq!(out.error.is_some(), !(200..300).contains(&status) || !body.is_object());
        let _ = judge(Ok((status, Bytes::from(raw))), event, "u", 1);
    }

    #[test]
    fn aws_event_frames_split_anywhere_read_the_same(cuts in cuts(1500), flips in prop::collection::vec((0usize..1500, any::<u8>()), 0..4)) {
        let raw = std::fs::read("tests/fixtures/bedrock/matrix_stream.eventstream").unwrap();
        let whole = bedrock_stream(&[&raw]);
        let cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(raw.len())).collect();
        prop_assert_eq!(bedrock_stream(&split(&raw, &cuts)), whole);
        // Damaged frames (a CRC no longer matches, a length lies): never a panic.
        let mut bad = raw.clone();
        for (at, byte) in flips {
            if let Some(b) = bad.get_mut(at) {
                *b ^= byte | 1;
            }
        }
        let _ = bedrock_stream(&split(&bad, &cuts));
    }
}
