use super::*;
use proptest::prelude::*;

const CHAT_REQUEST: &str = include_str!("../../../tests/fixtures/google/chat_request.openai.json");
const CHAT_REQUEST_GEMINI: &str =
    include_str!("../../../tests/fixtures/google/chat_request.gemini.json");
const CHAT_RESPONSE: &str =
    include_str!("../../../tests/fixtures/google/chat_response.gemini.json");
const CHAT_RESPONSE_OPENAI: &str =
    include_str!("../../../tests/fixtures/google/chat_response.openai.json");
const STREAM: &str = include_str!("../../../tests/fixtures/google/stream.gemini.sse");
const STREAM_OPENAI: &str = include_str!("../../../tests/fixtures/google/stream.openai.sse");
const EMBED_BATCH: &str = include_str!("../../../tests/fixtures/google/embed_batch.gemini.json");
const EMBED_BATCH_OPENAI: &str =
    include_str!("../../../tests/fixtures/google/embed_batch.openai.json");

const OPTS: ResponseOptions<'static> = ResponseOptions {
    hide_usage: false,
    strict: true,
    created: 1_700_000_000,
    model: None,
};

fn google() -> Google {
    Google::new(BASE_URL).unwrap()
}

fn prepare(op: Operation, body: &str, stream: bool) -> Result<ProviderRequest, GatewayError> {
    let headers = http::HeaderMap::new();
    google().prepare(Prepare {
        op,
        body: Bytes::from(body.to_string()),
        api_key: Some("AIza-test"),
        query: Some("api-version=1"),
        stream,
        client_headers: &headers,
        options: &Default::default(),
    })
}

fn chat(body: Value) -> Value {
    let req = prepare(Operation::ChatCompletions, &body.to_string(), false).unwrap();
    serde_json::from_slice(&req.body).unwrap()
}

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

/// Runs a whole answer through a translator fed in the given pieces.
fn run(t: &mut dyn Translator, pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        out.extend(t.push(Bytes::copy_from_slice(p)).unwrap_or_default());
    }
    out.extend(t.finish().unwrap_or_default());
    out
}

fn translate(
    op: Operation,
    ct: &str,
    opts: &ResponseOptions,
    body: &str,
) -> (Vec<u8>, Box<dyn Translator>) {
    let mut t = stream::translator(op, 200, ct, opts);
    let out = run(t.as_mut(), &[body.as_bytes()]);
    (out, t)
}

/// The `data:` payloads of an SSE text, parsed (`[DONE]` as a string).
fn events(sse: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(sse).unwrap();
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let d = e.strip_prefix("data: ").unwrap();
            serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string()))
        })
        .collect()
}

#[test]
fn chat_request_matches_the_recorded_gemini_body() {
    let req = prepare(Operation::ChatCompletions, CHAT_REQUEST, false).unwrap();
    assert_eq!(req.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body, parse(CHAT_REQUEST_GEMINI));
    assert_eq!(req.headers.len(), 1);
    assert_eq!(req.headers[0].0, "x-goog-api-key");
    assert_eq!(req.headers[0].1, "AIza-test");
    assert!(req.headers[0].1.is_sensitive());
    assert!(!req.path.contains("key="), "the key never goes in the URL");
}

#[test]
fn stream_path_asks_for_sse_and_models_prefix_is_stripped() {
    let body = r#"{"model":"models/gemini-2.0-flash","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    let req = prepare(Operation::ChatCompletions, body, true).unwrap();
    assert_eq!(
        req.path,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
    let v: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        v,
        json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}]})
    );
}

#[test]
fn no_key_no_header() {
    let headers = http::HeaderMap::new();
    let req = google()
        .prepare(Prepare {
            op: Operation::ChatCompletions,
            body: Bytes::from_static(br#"{"model":"gemini-pro"}"#),
            api_key: None,
            query: None,
            stream: false,
            client_headers: &headers,
            options: &Default::default(),
        })
        .unwrap();
    assert!(req.headers.is_empty());
    assert!(google().auth_headers("bad\nkey").is_err());
}

#[test]
fn bad_requests_are_400s() {
    for (op, body) in [
        (Operation::ChatCompletions, r#"{"messages":[]}"#),
        (
            Operation::ChatCompletions,
            r#"{"model":"../../v1/files","messages":[]}"#,
        ),
        (Operation::ChatCompletions, r#"{"model":"gemini:x?key=1"}"#),
        (Operation::ChatCompletions, r#"{"model":""}"#),
        (Operation::ChatCompletions, r#"[1,2]"#),
        (
            Operation::ChatCompletions,
            r#"{"model":"g","messages":"hi"}"#,
        ),
        (
            Operation::ChatCompletions,
            r#"{"model":"g","messages":["hi"]}"#,
        ),
        (
            Operation::Completions,
            r#"{"model":"gemini-pro","prompt":"hi"}"#,
        ),
        (
            Operation::Embeddings,
            r#"{"model":"text-embedding-004","input":[[1,2]]}"#,
        ),
        (Operation::Embeddings, r#"{"model":"text-embedding-004"}"#),
    ] {
        let e = prepare(op, body, false).unwrap_err();
        assert_eq!(e.status(), 400, "{body}: {e}");
    }
}

#[test]
fn generation_config_variants() {
    let v = chat(
        json!({"model":"g","messages":[],"stop":["a","b"],"max_tokens":5,
        "max_completion_tokens":9,"response_format":{"type":"json_object"},"temperature":null,
        "n":2}),
    );
    assert_eq!(
        v["generationConfig"],
        json!({"stopSequences":["a","b"],"maxOutputTokens":9,
               "responseMimeType":"application/json","candidateCount":2})
    );
    let v = chat(json!({"model":"g","messages":[],"response_format":{"type":"text"}}));
    assert!(v.get("generationConfig").is_none());
}

#[test]
fn tool_choice_modes() {
    for (choice, expected) in [
        (json!("none"), Some(json!({"mode":"NONE"}))),
        (json!("auto"), Some(json!({"mode":"AUTO"}))),
        (json!("required"), Some(json!({"mode":"ANY"}))),
        (
            json!({"type":"function","function":{"name":"f"}}),
            Some(json!({"mode":"ANY","allowedFunctionNames":["f"]})),
        ),
        (json!("sometimes"), None),
        (json!(3), None),
    ] {
        let v = chat(json!({"model":"g","messages":[],"tool_choice":choice}));
        assert_eq!(
            v.get("toolConfig").cloned(),
            expected.map(|c| json!({"functionCallingConfig": c}))
        );
    }
}

#[test]
fn message_mapping_edge_cases() {
    let v = chat(json!({"model":"g","messages":[
        {"role":"user","content":""},
        {"content":"no role is a user"},
        {"role":"user","content":[{"type":"text","text":"a"},{"type":"input_audio","input_audio":{"data":"UklG","format":"mp3"}},
                                   {"type":"image_url","image_url":"http://x/y"},{"type":"refusal"}]},
        {"role":"assistant","content":null},
        {"role":"assistant","content":"sure","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"not json"}}]},
        {"role":"tool","tool_call_id":"unknown","name":"g","content":[{"type":"text","text":"[1,2]"}]},
        {"role":"function","name":"h","content":null}
    ]}));
    assert_eq!(
        v["contents"],
        json!([
            {"role":"user","parts":[{"text":"no role is a user"},{"text":"a"},
                {"inlineData":{"mimeType":"audio/mp3","data":"UklG"}},
                {"fileData":{"mimeType":"image/jpeg","fileUri":"http://x/y"}}]},
            {"role":"model","parts":[{"text":"sure"},{"functionCall":{"name":"f","args":{}}}]},
            {"role":"user","parts":[
                {"functionResponse":{"name":"g","response":{"content":"[1,2]"}}},
                {"functionResponse":{"name":"h","response":{"content":""}}}]}
        ])
    );
}

#[test]
fn mime_types_are_guessed_from_the_extension() {
    assert_eq!(guess_mime("https://x/a.PNG"), "image/png");
    assert_eq!(guess_mime("https://x/a.pdf#p=2"), "application/pdf");
    assert_eq!(guess_mime("https://x/a.gif?x=1.webp"), "image/gif");
    assert_eq!(guess_mime("https://x/photo"), "image/jpeg");
    assert_eq!(
        media_part("data:;base64,AAA="),
        json!({"inlineData":{"mimeType":"image/jpeg","data":"AAA="}})
    );
}

#[test]
fn embeddings_requests() {
    let req = prepare(
        Operation::Embeddings,
        r#"{"model":"text-embedding-004","input":"hello","dimensions":256,"encoding_format":"float"}"#,
        false,
    )
    .unwrap();
    assert_eq!(req.path, "/v1beta/models/text-embedding-004:embedContent");
    let v: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        v,
        json!({"content":{"parts":[{"text":"hello"}]},"outputDimensionality":256})
    );
    let req = prepare(
        Operation::Embeddings,
        r#"{"model":"models/text-embedding-004","input":["a","b"]}"#,
        false,
    )
    .unwrap();
    assert_eq!(
        req.path,
        "/v1beta/models/text-embedding-004:batchEmbedContents"
    );
    let v: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        v,
        json!({"requests":[
            {"model":"models/text-embedding-004","content":{"parts":[{"text":"a"}]}},
            {"model":"models/text-embedding-004","content":{"parts":[{"text":"b"}]}}
        ]})
    );
}

#[test]
fn chat_response_matches_the_recorded_openai_body() {
    let (out, t) = translate(
        Operation::ChatCompletions,
        "application/json; charset=UTF-8",
        &OPTS,
        CHAT_RESPONSE,
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v, parse(CHAT_RESPONSE_OPENAI));
    assert_eq!(t.json_body(), Some(v));
    assert_eq!(
        t.usage(),
        Some(Usage {
            input: 120,
            output: 55,
            cached_input: 64,
            cache_write: 0,
            reasoning: 25
        })
    );
    assert_eq!(t.model(), Some("gemini-2.5-flash"));
    assert_eq!(t.content_type(), Some("application/json"));
    assert!(t.may_rewrite());
    assert!(!t.overflowed());
}

#[test]
fn json_answer_split_anywhere_gives_the_same_body() {
    let whole = translate(
        Operation::ChatCompletions,
        "application/json",
        &OPTS,
        CHAT_RESPONSE,
    )
    .0;
    let b = CHAT_RESPONSE.as_bytes();
    for at in 0..=b.len() {
        let mut t = stream::translator(Operation::ChatCompletions, 200, "application/json", &OPTS);
        assert_eq!(
            run(t.as_mut(), &[&b[..at], &b[at..]]),
            whole,
            "split at {at}"
        );
    }
}

#[test]
fn finish_reasons() {
    for (raw, calls, strict, expected) in [
        ("STOP", false, true, "stop"),
        ("STOP", true, true, "tool_calls"),
        ("MAX_TOKENS", false, true, "length"),
        ("SAFETY", false, true, "content_filter"),
        ("RECITATION", false, true, "content_filter"),
        ("BLOCKLIST", false, true, "content_filter"),
        ("PROHIBITED_CONTENT", false, true, "content_filter"),
        ("SPII", false, true, "content_filter"),
        ("MALFORMED_FUNCTION_CALL", false, true, "stop"),
        ("OTHER", false, true, "stop"),
        ("MAX_TOKENS", false, false, "MAX_TOKENS"),
        ("STOP", true, false, "STOP"),
    ] {
        assert_eq!(finish_reason(raw, calls, strict), json!(expected), "{raw}");
    }
}

#[test]
fn answers_without_text_blocked_prompts_and_non_strict_mode() {
    let body = r#"{"candidates":[{"content":{"parts":[],"role":"model"},"finishReason":"MAX_TOKENS"},
                   {"content":{"parts":[{"text":"b"}]},"finishReason":"STOP","index":1}]}"#;
    let lax = ResponseOptions {
        strict: false,
        ..OPTS
    };
    let (out, t) = translate(Operation::ChatCompletions, "application/json", &lax, body);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["id"], "gemini-1700000000");
    assert_eq!(v["model"], "");
    assert_eq!(v["choices"][0]["message"]["content"], "");
    assert_eq!(v["choices"][0]["finish_reason"], "MAX_TOKENS");
    assert_eq!(v["choices"][1]["index"], 1);
    assert_eq!(v["choices"][1]["message"]["content"], "b");
    assert!(v.get("usage").is_none());
    assert!(t.usage().is_none());
    assert!(t.model().is_none());

    let blocked = r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8}}"#;
    let (out, t) = translate(
        Operation::ChatCompletions,
        "application/json",
        &OPTS,
        blocked,
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(v["choices"][0]["message"]["content"], "");
    assert_eq!(v["usage"]["total_tokens"], 8);
    assert_eq!(t.usage().unwrap().input, 8);
}

#[test]
fn a_body_that_is_not_json_is_relayed_as_is() {
    let (out, t) = translate(
        Operation::ChatCompletions,
        "application/json",
        &OPTS,
        "oops",
    );
    assert_eq!(out, b"oops");
    assert!(t.json_body().is_none());
    let (out, t) = translate(Operation::ChatCompletions, "text/plain", &OPTS, "plain");
    assert_eq!(out, b"plain");
    assert!(!t.may_rewrite());
    assert!(t.content_type().is_none());
    let mut err = stream::translator(Operation::ChatCompletions, 500, "application/json", &OPTS);
    assert_eq!(run(err.as_mut(), &[b"{}"]), b"{}");
}

#[test]
fn embeddings_answers() {
    let (out, _) = translate(
        Operation::Embeddings,
        "application/json",
        &OPTS,
        EMBED_BATCH,
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v, parse(EMBED_BATCH_OPENAI));
    let (out, t) = translate(
        Operation::Embeddings,
        "application/json",
        &OPTS,
        r#"{"embedding":{"values":[1.5,2]}}"#,
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["data"],
        json!([{"object":"embedding","index":0,"embedding":[1.5,2]}])
    );
    assert!(t.usage().is_none());
}

#[test]
fn stream_matches_the_recorded_openai_events() {
    let mut t = stream::translator(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
    let out = run(t.as_mut(), &[STREAM.as_bytes()]);
    assert_eq!(events(&out), events(STREAM_OPENAI.as_bytes()));
    assert_eq!(
        t.usage(),
        Some(Usage {
            input: 12,
            output: 28,
            cached_input: 8,
            cache_write: 0,
            reasoning: 8
        })
    );
    assert_eq!(t.model(), Some("gemini-2.0-flash"));
    assert_eq!(t.events(), 4);
    assert_eq!(t.content_type(), Some("text/event-stream"));
    assert!(t.may_rewrite());
}

#[test]
fn stream_split_at_every_byte_gives_identical_output() {
    let b = STREAM.as_bytes();
    let mut whole = stream::translator(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
    let expected = run(whole.as_mut(), &[b]);
    for at in 0..=b.len() {
        let mut t = stream::translator(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
        assert_eq!(
            run(t.as_mut(), &[&b[..at], &b[at..]]),
            expected,
            "split at {at}"
        );
        assert_eq!(t.usage(), whole.usage());
    }
    // And one byte at a time.
    let pieces: Vec<&[u8]> = b.chunks(1).collect();
    let mut t = stream::translator(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
    assert_eq!(run(t.as_mut(), &pieces), expected);
}

#[test]
fn crlf_events_and_an_unterminated_last_event() {
    let crlf = STREAM.replace("\n\n", "\r\n\r\n");
    let cut = STREAM.trim_end();
    let mut t = stream::translator(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
    let expected = run(t.as_mut(), &[STREAM.as_bytes()]);
    for s in [crlf.as_str(), cut] {
        let mut t = stream::translator(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
        assert_eq!(run(t.as_mut(), &[s.as_bytes()]), expected);
    }
}

#[test]
fn hidden_usage_is_read_but_not_sent() {
    let opts = ResponseOptions {
        hide_usage: true,
        ..OPTS
    };
    let mut t = stream::translator(Operation::ChatCompletions, 200, "text/event-stream", &opts);
    let out = run(t.as_mut(), &[STREAM.as_bytes()]);
    let got = events(&out);
    let mut expected = events(STREAM_OPENAI.as_bytes());
    expected.remove(expected.len() - 2);
    assert_eq!(got, expected);
    assert!(!String::from_utf8(out).unwrap().contains("usage"));
    assert_eq!(t.usage().unwrap().output, 28);
}

#[test]
fn stream_with_two_candidates_an_error_and_raw_finish_reasons() {
    let s = concat!(
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]},\"index\":0},{\"content\":{\"parts\":[{\"text\":\"b\"}]},\"index\":1}]}\n\n",
        ": keep-alive comment\n\n",
        "data: not json\n\n",
        "data: {\"candidates\":[{\"finishReason\":\"MAX_TOKENS\",\"index\":1}]}\n\n",
        "data: {\"error\":{\"code\":503,\"message\":\"overloaded\",\"status\":\"UNAVAILABLE\"}}\n\n",
    );
    let lax = ResponseOptions {
        strict: false,
        hide_usage: true,
        ..OPTS
    };
    let mut t = stream::translator(Operation::ChatCompletions, 200, "text/event-stream", &lax);
    let got = events(&run(t.as_mut(), &[s.as_bytes()]));
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(
        got[0]["choices"][0]["delta"],
        json!({"role":"assistant","content":"a"})
    );
    assert_eq!(
        got[0]["choices"][1]["delta"],
        json!({"role":"assistant","content":"b"})
    );
    assert_eq!(got[0]["id"], "gemini-1700000000");
    assert_eq!(
        got[1]["choices"],
        json!([{"index":1,"delta":{},"logprobs":null,"finish_reason":"MAX_TOKENS"}])
    );
    assert_eq!(got[2]["error"]["message"], "google error: overloaded");
    assert_eq!(got[2]["provider"], "google");
    assert_eq!(got[3], json!("[DONE]"));
    assert!(t.usage().is_none());
}

#[test]
fn a_json_answer_too_large_to_translate_is_relayed_as_it_came() {
    let mut t = stream::translator(Operation::ChatCompletions, 200, "application/json", &OPTS);
    assert!(t.push(Bytes::from(vec![b' '; MAX_JSON])).is_none());
    // Past the limit: what was held, then this chunk, in order; no SSE error in a JSON
    // body, and every later chunk as it comes.
    let out = t.push(Bytes::from_static(b"{}")).unwrap();
    assert_eq!(out.len(), MAX_JSON + 2);
    assert_eq!(out.get(MAX_JSON..), Some(&b"{}"[..]));
    assert!(!t.overflowed());
    assert_eq!(t.push(Bytes::from_static(b"x")).as_deref(), Some(&b"x"[..]));
    assert!(t.finish().is_none());
}

#[test]
fn registered_as_a_built_in_and_replaced_by_a_settings_row() {
    use crate::providers::{is_built_in, Providers};
    use crate::settings::Settings;
    let p = Providers::from_settings(&Settings::default()).unwrap();
    let g = p.get("google").unwrap();
    assert_eq!(g.upstream().host, "generativelanguage.googleapis.com");
    assert!(g.upstream().tls);
    assert_eq!(g.upstream().base_path, "");
    assert!(g.stream_usage());
    assert!(is_built_in("google") && is_built_in("groq") && !is_built_in("nope"));
    let s = Settings::from_yaml(
        "providers:\n  google:\n    base_url: https://generativelanguage.googleapis.com/v1beta/openai\n",
    )
    .unwrap();
    let p = Providers::from_settings(&s).unwrap();
    assert_eq!(
        p.get("google").unwrap().upstream().base_path,
        "/v1beta/openai"
    );
}

#[test]
fn an_empty_stream_still_ends_with_done() {
    let mut t = stream::translator(Operation::ChatCompletions, 200, "text/event-stream", &OPTS);
    assert_eq!(run(t.as_mut(), &[]), b"data: [DONE]\n\n");
}

#[test]
fn schemas_keep_property_names() {
    let s = json!({"type":"object","additionalProperties":{"type":"string"},
        "properties":{"$schema":{"type":"string","$id":"x"}},
        "anyOf":[{"additionalProperties":true}],"items":[{"$comment":"c"}]});
    assert_eq!(
        clean_schema(&s),
        json!({"type":"object","properties":{"$schema":{"type":"string"}},"anyOf":[{}],"items":[{}]})
    );
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "user",
            "assistant",
            "tool",
            "system",
            "developer",
            "function",
            "text",
            "image_url",
            "input_audio",
            "none",
            "auto",
            "required",
            "json_schema",
            "json_object",
            "data:image/png;base64,AA",
            "http://x/a.png",
            "{\"a\":1}",
            "",
            "gemini-pro",
            "models/gemini-pro",
            "call_1",
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "model",
                    "messages",
                    "role",
                    "content",
                    "tool_calls",
                    "tool_call_id",
                    "function",
                    "name",
                    "arguments",
                    "type",
                    "text",
                    "image_url",
                    "url",
                    "tools",
                    "tool_choice",
                    "stop",
                    "response_format",
                    "json_schema",
                    "schema",
                    "properties",
                    "items",
                    "input",
                    "max_tokens",
                    "parameters",
                    "input_audio",
                    "data",
                    "format",
                    "dimensions",
                ]),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

proptest! {
    /// Whatever OpenAI-ish JSON a client sends, `prepare` answers a request or an error,
    /// never a panic.
    #[test]
    fn prepare_never_panics(mut body in arb_json(), stream in any::<bool>(), model in any::<bool>()) {
        if model {
            if let Value::Object(o) = &mut body {
                o.insert("model".into(), json!("gemini-pro"));
            }
        }
        for op in [Operation::ChatCompletions, Operation::Embeddings, Operation::Completions] {
            let _ = prepare(op, &body.to_string(), stream);
        }
    }
}
