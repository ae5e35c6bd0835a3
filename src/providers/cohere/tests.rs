use super::*;
use bytes::Bytes;
use proptest::prelude::*;

const CREATED: u64 = 1_732_000_000;
const MODEL: &str = "command-r-plus-08-2024";

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/cohere/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sse(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/cohere/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn opts(strict: bool, hide_usage: bool) -> ResponseOptions<'static> {
    ResponseOptions {
        hide_usage,
        strict,
        created: CREATED,
        model: Some(MODEL),
    }
}

fn prepare(op: Operation, body: &Value, stream: bool) -> Result<ProviderRequest, GatewayError> {
    let headers = http::HeaderMap::new();
    Cohere::new().prepare(Prepare {
        op,
        body: Bytes::from(body.to_string()),
        api_key: Some("co-key"),
        query: None,
        stream,
        client_headers: &headers,
        options: &Default::default(),
    })
}

/// Runs a translator over `input` cut into the given pieces; returns the client bytes.
fn run(t: &mut dyn Translator, pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        if let Some(b) = t.push(Bytes::copy_from_slice(p)) {
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = t.finish() {
        out.extend_from_slice(&b);
    }
    out
}

/// The data payloads of an OpenAI-format stream, as JSON (`[DONE]` as a string).
fn events(stream: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(stream).unwrap();
    assert!(text.ends_with("\n\n"), "{text}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let d = e.strip_prefix("data: ").unwrap();
            serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string()))
        })
        .collect()
}

#[test]
fn chat_request_fixture_maps_every_field() {
    let f = fixture("chat_request.json");
    let r = prepare(Operation::ChatCompletions, &f["client_body"], false).unwrap();
    assert_eq!(r.path, f["upstream"]["path"]);
    let sent: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(sent, f["upstream"]["body"]);
    assert_eq!(r.headers[0].0, "authorization");
    assert_eq!(r.headers[0].1, "Bearer co-key");
    assert!(r.headers[0].1.is_sensitive());
}

#[test]
fn stream_flag_and_stop_list_and_tool_choice_variants() {
    let body = json!({"model": "m", "messages": [{"role": "developer", "content": "d"}],
        "stop": ["a", "b"], "tool_choice": "none", "max_completion_tokens": 5,
        "stream_options": {"include_usage": true}, "response_format": {"type": "json_object"}});
    let r = prepare(Operation::ChatCompletions, &body, true).unwrap();
    let sent: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stop_sequences"], json!(["a", "b"]));
    assert_eq!(sent["tool_choice"], "NONE");
    assert_eq!(sent["max_tokens"], 5);
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "d"})
    );
    assert_eq!(sent["response_format"], json!({"type": "json_object"}));
    assert!(sent.get("stream_options").is_none(), "not Cohere's field");
    let named =
        json!({"messages": [], "tool_choice": {"type": "function", "function": {"name": "f"}}});
    let r = prepare(Operation::ChatCompletions, &named, false).unwrap();
    let sent: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(sent["tool_choice"], "REQUIRED");
    let auto = json!({"messages": [], "tool_choice": "auto", "response_format": {"type": "text"}});
    let sent: Value = serde_json::from_slice(
        &prepare(Operation::ChatCompletions, &auto, false)
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(sent.get("tool_choice").is_none());
    assert!(sent.get("response_format").is_none());
    assert!(sent.get("stream").is_none());
}

#[test]
fn bad_requests_are_400s() {
    for body in [
        json!([1]),
        json!({"messages": "hi"}),
        json!({"messages": [{"content": "no role"}]}),
        json!({"messages": [{"role": "function", "content": "x"}]}),
        json!({"messages": [{"role": "tool", "content": "x"}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
        json!({"messages": [], "tools": [{"type": "retrieval"}]}),
        json!({"messages": [], "stop": 3}),
    ] {
        let e = prepare(Operation::ChatCompletions, &body, false).unwrap_err();
        assert_eq!(e.status(), 400, "{body}");
    }
    let e = prepare(Operation::Completions, &json!({"prompt": "x"}), false).unwrap_err();
    assert_eq!(e.status(), 400);
    let e = prepare(Operation::Embeddings, &json!({"input": [1, 2]}), false).unwrap_err();
    assert_eq!(e.status(), 400);
}

#[test]
fn embed_request_and_response_fixture() {
    let f = fixture("embed.json");
    let r = prepare(Operation::Embeddings, &f["client_body"], false).unwrap();
    assert_eq!(r.path, f["upstream_request"]["path"]);
    let sent: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(sent, f["upstream_request"]["body"]);
    let one = prepare(
        Operation::Embeddings,
        &json!({"model": "m", "input": "x", "input_type": "search_query"}),
        false,
    )
    .unwrap();
    let sent: Value = serde_json::from_slice(&one.body).unwrap();
    assert_eq!(sent["texts"], json!(["x"]));
    assert_eq!(sent["input_type"], "search_query");

    let body = f["upstream_response"].to_string();
    let mut t = Cohere::new().response(
        Operation::Embeddings,
        200,
        "application/json",
        &opts(true, false),
    );
    let out = run(t.as_mut(), &[body.as_bytes()]);
    let out: Value = serde_json::from_slice(&out).unwrap();
    let mut expected = f["expected"].clone();
    expected["model"] = json!(MODEL);
    assert_eq!(out, expected);
    assert_eq!(t.usage().unwrap().input, 3);
    assert_eq!(t.content_type(), Some("application/json"));
}

#[test]
fn chat_response_fixtures_at_every_split() {
    for name in ["chat_response.json", "chat_tool_response.json"] {
        let f = fixture(name);
        let body = f["upstream"].to_string();
        let b = body.as_bytes();
        for cut in 0..=b.len() {
            let mut t = Cohere::new().response(
                Operation::ChatCompletions,
                200,
                "application/json",
                &opts(true, false),
            );
            let out = run(t.as_mut(), &[&b[..cut], &b[cut..]]);
            let out: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(out, f["expected"], "{name} cut at {cut}");
            let u = t.usage().unwrap();
            assert_eq!(
                u.input + u.output,
                f["expected"]["usage"]["total_tokens"].as_u64().unwrap()
            );
            assert_eq!(t.model(), Some(MODEL));
            assert_eq!(t.json_body().unwrap(), f["expected"]);
        }
    }
}

#[test]
fn finish_reasons_map_and_raw_when_not_strict() {
    for (cohere, openai) in [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TOOL_CALL", "tool_calls"),
        ("ERROR", "stop"),
    ] {
        assert_eq!(finish_reason(cohere, true), json!(openai));
        assert_eq!(finish_reason(cohere, false), json!(cohere));
    }
    let v = json!({"id": "x", "finish_reason": "MAX_TOKENS", "message": {"content": [{"type": "text", "text": "a"}]}});
    let out = chat_response(&v, &opts(false, false));
    assert_eq!(out["choices"][0]["finish_reason"], "MAX_TOKENS");
    assert_eq!(out["provider"], "cohere");
    let out = chat_response(&v, &opts(true, false));
    assert!(out.get("provider").is_none());
    assert!(out.get("usage").is_none(), "no usage, no field");
}

#[test]
fn usage_prefers_billed_units_and_reads_floats() {
    let u = usage(Some(
        &json!({"billed_units": {"input_tokens": 12.0, "output_tokens": 3},
        "tokens": {"input_tokens": 80, "output_tokens": 3}}),
    ))
    .unwrap();
    assert_eq!((u.input, u.output), (12, 3));
    let u = usage(Some(
        &json!({"tokens": {"input_tokens": 80, "output_tokens": 4}}),
    ))
    .unwrap();
    assert_eq!((u.input, u.output), (80, 4));
    assert!(usage(Some(&json!({}))).is_none());
    assert!(usage(None).is_none());
}

#[test]
fn a_body_that_is_not_cohere_json_is_relayed_as_is() {
    let mut t = Cohere::new().response(
        Operation::ChatCompletions,
        200,
        "application/json",
        &opts(true, false),
    );
    let out = run(t.as_mut(), &[b"not ", b"json"]);
    assert_eq!(out, b"not json");
    // Errors and unknown types go to the default meter untouched.
    let mut t = Cohere::new().response(
        Operation::ChatCompletions,
        500,
        "application/json",
        &opts(true, false),
    );
    assert_eq!(run(t.as_mut(), &[b"{}"]), b"{}");
}

fn check_stream(sse_name: &str, expected_name: &str, hide_usage: bool) {
    let input = sse(sse_name);
    let expected = fixture(expected_name)["events"].clone();
    // Whole, then cut at every byte boundary (inside events, lines and UTF-8 characters).
    for cut in 0..=input.len() {
        let mut t = Cohere::new().response(
            Operation::ChatCompletions,
            200,
            "text/event-stream",
            &opts(true, hide_usage),
        );
        let out = run(t.as_mut(), &[&input[..cut], &input[cut..]]);
        assert_eq!(
            Value::Array(events(&out)),
            expected,
            "{sse_name} cut at {cut}"
        );
        assert!(t.usage().is_some());
        assert!(t.may_rewrite());
        assert_eq!(t.content_type(), Some("text/event-stream"));
    }
    // One byte at a time.
    let mut t = Cohere::new().response(
        Operation::ChatCompletions,
        200,
        "text/event-stream",
        &opts(true, hide_usage),
    );
    let pieces: Vec<&[u8]> = input.chunks(1).collect();
    let out = run(t.as_mut(), &pieces);
    assert_eq!(Value::Array(events(&out)), expected);
}

#[test]
fn text_stream_at_every_byte_boundary() {
    check_stream("chat_stream.sse", "chat_stream.expected.json", false);
    let mut t = CohereStream::new(&opts(true, false));
    run(&mut t, &[&sse("chat_stream.sse")]);
    assert_eq!(t.usage().unwrap().input, 5);
    assert_eq!(t.usage().unwrap().output, 3);
    assert_eq!(t.events(), 3);
}

#[test]
fn tool_stream_at_every_byte_boundary_without_usage_chunk() {
    check_stream(
        "chat_tool_stream.sse",
        "chat_tool_stream.expected.json",
        true,
    );
}

#[test]
fn hidden_usage_is_still_metered_and_raw_reason_when_not_strict() {
    let input = sse("chat_stream.sse");
    let mut t = CohereStream::new(&opts(false, true));
    let out = events(&run(&mut t, &[&input]));
    assert!(out.iter().all(|e| e.get("usage").is_none()));
    assert_eq!(
        out[out.len() - 2]["choices"][0]["finish_reason"],
        "COMPLETE"
    );
    assert_eq!(t.usage().unwrap().output, 3);
}

#[test]
fn an_unterminated_last_event_is_translated_and_crlf_events_too() {
    let input = String::from_utf8(sse("chat_stream.sse")).unwrap();
    let crlf = input.replace('\n', "\r\n");
    let trimmed = input.trim_end_matches('\n');
    for s in [crlf.as_str(), trimmed] {
        let mut t = CohereStream::new(&opts(true, false));
        let out = events(&run(&mut t, &[s.as_bytes()]));
        assert_eq!(out.last().unwrap(), &json!("[DONE]"));
        assert_eq!(out.len(), 6);
    }
}

proptest! {
    /// Random OpenAI-ish request bodies: prepare answers or refuses, never panics.
    #[test]
    fn prepare_never_panics(body in openai_ish(), stream in any::<bool>()) {
        for op in [Operation::ChatCompletions, Operation::Embeddings, Operation::Completions] {
            let _ = prepare(op, &body, stream);
        }
    }

    /// Random bytes as a stream or a JSON answer: the translators never panic.
    #[test]
    fn translators_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut t = CohereStream::new(&opts(true, false));
        run(&mut t, &[&bytes]);
        let mut j = CohereAnswer::translator(Operation::ChatCompletions, &opts(true, false));
        run(&mut j, &[&bytes]);
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "\\PC{0,8}".prop_map(Value::String),
        prop::sample::select(vec![
            "user",
            "assistant",
            "system",
            "tool",
            "text",
            "image_url",
            "function",
            "required",
            "none",
            "json_schema"
        ])
        .prop_map(|s| json!(s)),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "role",
                    "content",
                    "type",
                    "text",
                    "image_url",
                    "tool_calls",
                    "tool_call_id",
                    "function",
                    "name",
                    "arguments",
                    "parameters",
                    "id",
                    "json_schema",
                    "schema",
                ])
                .prop_map(str::to_string),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies with OpenAI's top-level keys holding anything.
fn openai_ish() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(vec![
            "model",
            "messages",
            "temperature",
            "max_tokens",
            "stop",
            "seed",
            "top_p",
            "top_k",
            "tools",
            "tool_choice",
            "response_format",
            "input",
            "input_type",
            "stream",
        ])
        .prop_map(str::to_string),
        any_json(),
        0..8,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}
