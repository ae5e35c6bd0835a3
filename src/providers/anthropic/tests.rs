//! Wire samples in `tests/fixtures/anthropic/`: OpenAI request in → the expected upstream body;
//! Anthropic answer or stream in → the expected OpenAI output. Streams are fed split at every
//! byte boundary.

use super::*;
use proptest::prelude::*;

const REQUEST: &str = include_str!("../../../tests/fixtures/anthropic/chat_tools_request.json");
const REQUEST_EXPECTED: &str =
    include_str!("../../../tests/fixtures/anthropic/chat_tools_request.expected.json");
const MESSAGE: &str = include_str!("../../../tests/fixtures/anthropic/message_tools.json");
const MESSAGE_EXPECTED: &str =
    include_str!("../../../tests/fixtures/anthropic/message_tools.expected.json");
const STREAM: &str = include_str!("../../../tests/fixtures/anthropic/stream_tools.sse");
const STREAM_ERROR: &str = include_str!("../../../tests/fixtures/anthropic/stream_error.sse");
const ERROR: &str = include_str!("../../../tests/fixtures/anthropic/error.json");

fn opts(strict: bool) -> ResponseOptions<'static> {
    ResponseOptions {
        hide_usage: false,
        strict,
        created: 1_700_000_000,
        model: None,
    }
}

fn adapter() -> Anthropic {
    Anthropic::new("https://api.anthropic.com/v1", 4096).unwrap()
}

fn prepare(body: &str, headers: &http::HeaderMap, op: Operation) -> ProviderRequest {
    adapter()
        .prepare(Prepare {
            op,
            body: Bytes::from(body.to_string()),
            api_key: Some("sk-ant-1"),
            query: None,
            stream: false,
            client_headers: headers,
            options: &Default::default(),
        })
        .unwrap()
}

#[test]
fn chat_request_becomes_a_messages_request() {
    let req = prepare(REQUEST, &http::HeaderMap::new(), Operation::ChatCompletions);
    assert_eq!(req.path, "/messages");
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    let expected: Value = serde_json::from_str(REQUEST_EXPECTED).unwrap();
    assert_eq!(sent, expected);
    let header = |n: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.to_str().unwrap().to_string())
    };
    assert_eq!(header("x-api-key").as_deref(), Some("sk-ant-1"));
    assert_eq!(
        header("anthropic-version").as_deref(),
        Some(DEFAULT_VERSION)
    );
    assert_eq!(header("anthropic-beta"), None);
    assert_eq!(header("authorization"), None);
}

#[test]
fn version_and_any_beta_come_from_the_client() {
    let mut h = http::HeaderMap::new();
    h.insert("anthropic-version", HeaderValue::from_static("2024-01-01"));
    h.insert(
        "x-portkey-anthropic-beta",
        HeaderValue::from_static("some-future-beta-2031-01-01,prompt-caching-2024-07-31"),
    );
    let req = prepare(
        r#"{"model":"m","messages":[]}"#,
        &h,
        Operation::ChatCompletions,
    );
    let get = |n: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("anthropic-version").unwrap(), "2024-01-01");
    assert_eq!(
        get("anthropic-beta").unwrap(),
        "some-future-beta-2031-01-01,prompt-caching-2024-07-31"
    );
}

#[test]
fn defaults_and_small_mappings() {
    let req = prepare(
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":["a","b"],"tool_choice":{"type":"function","function":{"name":"f"}},"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
        &http::HeaderMap::new(),
        Operation::ChatCompletions,
    );
    let v: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        v["max_tokens"], 4096,
        "a default instead of Anthropic's 400"
    );
    assert_eq!(
        v["messages"][0]["content"], "hi",
        "a plain string stays a string"
    );
    assert_eq!(v["stop_sequences"], json!(["a", "b"]));
    assert_eq!(v["tool_choice"], json!({"type": "tool", "name": "f"}));
    assert_eq!(
        v["tools"][0],
        json!({"type": "web_search_20250305", "name": "web_search"}),
        "server tools pass as they are"
    );
    for (choice, expected) in [("auto", "auto"), ("none", "none"), ("required", "any")] {
        let body = format!(r#"{{"model":"m","messages":[],"tool_choice":"{choice}"}}"#);
        let req = prepare(&body, &http::HeaderMap::new(), Operation::ChatCompletions);
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["tool_choice"]["type"], expected);
    }
}

#[test]
fn documents_and_pdfs() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:application/pdf;base64,JVBERi0="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/paper.pdf?x=1"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}
    ]}]})
    .to_string();
    let req = prepare(&body, &http::HeaderMap::new(), Operation::ChatCompletions);
    let v: Value = serde_json::from_slice(&req.body).unwrap();
    let parts = &v["messages"][0]["content"];
    assert_eq!(parts[0]["type"], "document");
    assert_eq!(parts[0]["source"]["media_type"], "application/pdf");
    assert_eq!(parts[1]["type"], "document");
    assert_eq!(parts[1]["source"]["type"], "url");
    assert_eq!(parts[2]["type"], "document");
}

#[test]
fn the_native_route_forwards_the_clients_bytes() {
    let body = r#"{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}]}"#;
    let req = prepare(body, &http::HeaderMap::new(), Operation::Messages);
    assert_eq!(req.body, body.as_bytes());
    let e = adapter()
        .prepare(Prepare {
            op: Operation::Embeddings,
            body: Bytes::new(),
            api_key: None,
            query: None,
            stream: false,
            client_headers: &http::HeaderMap::new(),
            options: &Default::default(),
        })
        .unwrap_err();
    assert_eq!(e.to_string(), "embed is not supported by anthropic");
}

fn run(t: &mut dyn Translator, chunks: &[&[u8]]) -> String {
    let mut out = Vec::new();
    for c in chunks {
        if let Some(b) = t.push(Bytes::copy_from_slice(c)) {
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = t.finish() {
        out.extend_from_slice(&b);
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn a_message_becomes_a_chat_completion() {
    let mut t = adapter().response(
        Operation::ChatCompletions,
        200,
        "application/json",
        &opts(true),
    );
    let out = run(t.as_mut(), &[MESSAGE.as_bytes()]);
    let got: Value = serde_json::from_str(&out).unwrap();
    let expected: Value = serde_json::from_str(MESSAGE_EXPECTED).unwrap();
    assert_eq!(got, expected);
    let u = t.usage().unwrap();
    // Input includes cache reads and writes, reported on their own as well.
    assert_eq!(
        (u.input, u.output, u.cached_input, u.cache_write),
        (3120, 40, 2000, 1000)
    );
    assert_eq!(t.model(), Some("claude-3-5-sonnet-20241022"));
    assert_eq!(t.content_type(), Some("application/json"));
}

#[test]
fn text_with_tool_calls_ends_with_tool_calls_and_raw_reasons_when_not_strict() {
    let msg = json!({"id": "m", "model": "c", "content": [
        {"type": "text", "text": "x"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}});
    let translate = |msg: &Value, strict: bool| -> Value {
        let (out, _, _) =
            to_chat_completion(msg.to_string().as_bytes(), &Opts::from(&opts(strict))).unwrap();
        serde_json::from_slice(&out).unwrap()
    };
    let out = translate(&msg, true);
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    let msg = json!({"id": "m", "model": "c", "content": [
        {"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "x"}],
        "stop_reason": "max_tokens", "usage": {}});
    let strict = translate(&msg, true);
    assert_eq!(strict["choices"][0]["finish_reason"], "length");
    assert!(strict["choices"][0]["message"]
        .get("content_blocks")
        .is_none());
    let loose = translate(&msg, false);
    assert_eq!(loose["choices"][0]["finish_reason"], "max_tokens");
    // Every non-tool block, text included, in the answer's order.
    assert_eq!(
        loose["choices"][0]["message"]["content_blocks"],
        json!([{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "x"}])
    );
    assert_eq!(loose["choices"][0]["message"]["content"], "x");
}

/// The OpenAI chunks of a translated stream, and whether it ended with `[DONE]`.
fn chunks_of(out: &str) -> (Vec<Value>, bool) {
    let mut chunks = Vec::new();
    let mut done = false;
    for event in out.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data = event
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        if data == "[DONE]" {
            done = true;
        } else {
            chunks.push(serde_json::from_str(data).unwrap());
        }
    }
    (chunks, done)
}

#[test]
fn a_stream_becomes_chat_completion_chunks() {
    let mut t = adapter().response(
        Operation::ChatCompletions,
        200,
        "text/event-stream",
        &opts(true),
    );
    let out = run(t.as_mut(), &[STREAM.as_bytes()]);
    let (chunks, done) = chunks_of(&out);
    assert!(done);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"
        && c["id"] == "msg_014p7gG3wDgGV9EUtLvnow3U"
        && c["model"] == "claude-3-5-sonnet-20241022"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Checking ü both.");
    // Two tool calls, each with its own index; arguments arrive in pieces, never merged.
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args = |i: u64| -> String {
        calls
            .iter()
            .filter(|c| c["index"] == i)
            .filter_map(|c| c["function"]["arguments"].as_str())
            .collect()
    };
    assert_eq!(args(0), "{\"city\": \"Paris\"}");
    assert_eq!(args(1), "{\"city\": \"Rome\"}");
    assert_eq!(calls.iter().filter(|c| c.get("id").is_some()).count(), 2);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(last["usage"]["prompt_tokens"], 872);
    assert_eq!(last["usage"]["completion_tokens"], 89);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 300);
    let u = t.usage().unwrap();
    assert_eq!(
        (u.input, u.output, u.cached_input, u.cache_write),
        (872, 89, 300, 100)
    );
}

#[test]
fn streams_split_at_every_byte_boundary_translate_the_same() {
    for sample in [STREAM, STREAM_ERROR] {
        let bytes = sample.as_bytes();
        let whole = {
            let mut t = adapter().response(
                Operation::ChatCompletions,
                200,
                "text/event-stream",
                &opts(true),
            );
            run(t.as_mut(), &[bytes])
        };
        for at in 1..bytes.len() {
            let mut t = adapter().response(
                Operation::ChatCompletions,
                200,
                "text/event-stream",
                &opts(true),
            );
            let split = run(t.as_mut(), &[&bytes[..at], &bytes[at..]]);
            assert_eq!(split, whole, "split at {at}");
        }
        // And byte by byte.
        let mut t = adapter().response(
            Operation::ChatCompletions,
            200,
            "text/event-stream",
            &opts(true),
        );
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(t.as_mut(), &singles), whole);
    }
}

#[test]
fn an_error_event_ends_the_stream_visibly() {
    let mut t = adapter().response(
        Operation::ChatCompletions,
        200,
        "text/event-stream",
        &opts(true),
    );
    let out = run(t.as_mut(), &[STREAM_ERROR.as_bytes()]);
    assert!(out.contains("\"content\":\"Hel\""));
    assert!(out.contains("event: error\ndata: "), "{out}");
    assert!(out.contains("anthropic error: Overloaded"));
    assert!(out.contains("overloaded_error"));
    assert!(!out.contains("[DONE]"));
}

#[test]
fn the_native_route_relays_bytes_and_reads_usage() {
    let mut t = adapter().response(Operation::Messages, 200, "text/event-stream", &opts(true));
    let out = run(t.as_mut(), &[STREAM.as_bytes()]);
    assert_eq!(out, STREAM, "byte for byte");
    assert!(!t.may_rewrite());
    let u = t.usage().unwrap();
    assert_eq!((u.input, u.output, u.cached_input), (872, 89, 300));
    let mut t = adapter().response(Operation::Messages, 200, "application/json", &opts(true));
    assert_eq!(run(t.as_mut(), &[MESSAGE.as_bytes()]), MESSAGE);
    assert_eq!(t.usage().unwrap().input, 3120);
}

#[test]
fn anthropic_errors_fit_portkeys_envelope() {
    let v: Value = serde_json::from_slice(&crate::providers::error_envelope::envelope(
        SLUG,
        400,
        ERROR.as_bytes(),
    ))
    .unwrap();
    assert_eq!(
        v,
        json!({"error": {"message": "anthropic error: max_tokens: Field required",
            "type": "invalid_request_error", "param": null, "code": null}, "provider": "anthropic"})
    );
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z_]{0,8}".prop_map(Value::String),
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("tool"),
            Just("system"),
            Just("text"),
            Just("image_url"),
            Just("function"),
            Just("data:image/png;base64,AA=="),
        ]
        .prop_map(|s| json!(s)),
    ];
    let keys = prop_oneof![
        Just("model"),
        Just("messages"),
        Just("role"),
        Just("content"),
        Just("type"),
        Just("text"),
        Just("image_url"),
        Just("url"),
        Just("tool_calls"),
        Just("function"),
        Just("arguments"),
        Just("tools"),
        Just("tool_choice"),
        Just("stop"),
        Just("temperature"),
        Just("max_tokens"),
        Just("cache_control"),
        Just("tool_call_id"),
    ];
    leaf.prop_recursive(5, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone().prop_map(String::from), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Random OpenAI-ish requests are translated or refused, never a panic.
    #[test]
    fn random_requests_never_panic(v in arb_json()) {
        let _ = to_messages(&v, 100);
    }

    /// Random bytes in a stream never panic the translator.
    #[test]
    fn random_streams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut t = adapter().response(Operation::ChatCompletions, 200, "text/event-stream", &opts(true));
        let _ = t.push(Bytes::from(bytes));
        let _ = t.finish();
    }
}
