use super::*;
use crate::providers::{Prepare, Signing};
use bytes::Bytes;
use proptest::prelude::*;
use std::time::{Duration, UNIX_EPOCH};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/bedrock/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn opts(strict: bool, hide_usage: bool) -> ResponseOptions<'static> {
    ResponseOptions {
        hide_usage,
        strict,
        created: 1_700_000_000,
        model: Some("anthropic.claude-3-5-haiku-20241022-v1:0"),
    }
}

fn keys() -> ProviderOptions {
    [
        ("aws_access_key_id", "AKIDEXAMPLE"),
        (
            "aws_secret_access_key",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
        ("aws_region", "eu-west-3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn prepare(
    body: &Value,
    stream: bool,
    options: &ProviderOptions,
    key: Option<&str>,
) -> Result<ProviderRequest, GatewayError> {
    let headers = http::HeaderMap::new();
    Bedrock::new().prepare(Prepare {
        op: Operation::ChatCompletions,
        body: Bytes::from(body.to_string()),
        api_key: key,
        query: None,
        stream,
        client_headers: &headers,
        options,
    })
}

fn run(t: &mut dyn Translator, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        if let Some(b) = t.push(Bytes::copy_from_slice(c)) {
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = t.finish() {
        out.extend_from_slice(&b);
    }
    out
}

/// The `data:` payloads of an SSE text, JSON parsed (`[DONE]` as a string).
fn events(out: &[u8]) -> Vec<Value> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| json!(d)))
        .collect()
}

#[test]
fn a_conversation_becomes_a_converse_request() {
    let body = json!({
        "model": "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "max_tokens": 300, "temperature": 0.2, "top_p": 0.9, "stop": "END",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here and in Rome?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "t2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "18C"},
            {"role": "tool", "tool_call_id": "t2", "content": "24C"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
    });
    let req = prepare(&body, false, &keys(), None).unwrap();
    assert_eq!(
        req.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert!(req.headers.is_empty(), "access keys sign later, no bearer");
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        sent["system"],
        json!([{"text": "Be brief."}, {"text": "Use metric units."}])
    );
    assert_eq!(
        sent["inferenceConfig"],
        json!({"maxTokens": 300, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]})
    );
    let turns = sent["messages"].as_array().unwrap();
    assert_eq!(
        turns.len(),
        3,
        "the two tool results are one user turn: {sent}"
    );
    assert_eq!(
        turns[0]["content"][1],
        json!({"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}})
    );
    assert_eq!(
        turns[1]["content"][1],
        json!({"toolUse": {"toolUseId": "t2", "name": "weather", "input": {"city": "Rome"}}})
    );
    assert_eq!(turns[2]["role"], "user");
    assert_eq!(
        turns[2]["content"][1],
        json!({"toolResult": {"toolUseId": "t2", "content": [{"text": "24C"}]}})
    );
    assert_eq!(
        sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["city"]
            ["type"],
        "string"
    );
    assert_eq!(
        sent["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "weather"}})
    );
}

#[test]
fn streams_go_to_converse_stream_and_arns_are_one_path_segment() {
    let body = json!({"model": "arn:aws:bedrock:us-east-1:123:inference-profile/us.meta.llama3-2-1b-instruct-v1:0",
        "messages": [{"role": "user", "content": "Hi"}], "stream": true,
        "stream_options": {"include_usage": true}});
    let req = prepare(&body, true, &keys(), None).unwrap();
    assert_eq!(
        req.path,
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.meta.llama3-2-1b-instruct-v1%3A0/converse-stream"
    );
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    assert!(sent.get("stream").is_none() && sent.get("stream_options").is_none());
}

#[test]
fn credentials_decide_how_the_request_is_authenticated() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]});
    let none = ProviderOptions::new();
    // A Bedrock API key without access keys: a bearer, marked sensitive.
    let req = prepare(&body, false, &none, Some("bedrock-api-key")).unwrap();
    assert_eq!(req.headers[0].1, "Bearer bedrock-api-key");
    assert!(req.headers[0].1.is_sensitive());
    // Neither: a clear 400.
    let err = prepare(&body, false, &none, None).unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(err.to_string().contains("aws_access_key_id"), "{err}");
    // Half a pair is refused, not half used.
    let mut half = ProviderOptions::new();
    half.insert("aws_access_key_id".into(), "AKID".into());
    assert_eq!(
        prepare(&body, false, &half, None).unwrap_err().status(),
        400
    );
    // A region that is not one never becomes a host.
    let mut bad_region = keys();
    bad_region.insert("aws_region".into(), "evil.com/x".into());
    assert!(Bedrock::new().upstream_for(&bad_region).is_err());
    assert_eq!(
        Bedrock::new().upstream_for(&keys()).unwrap().host,
        "bedrock-runtime.eu-west-3.amazonaws.com"
    );
}

#[test]
fn requests_are_signed_with_sigv4_deterministically() {
    let options = keys();
    let upstream = Bedrock::new().upstream_for(&options).unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
    let sign = |body: &[u8], options: &ProviderOptions| {
        Bedrock::new()
            .sign(&Signing {
                upstream: &upstream,
                path: "/model/m/converse",
                body,
                options,
                now,
            })
            .unwrap()
    };
    let headers = sign(b"{}", &options);
    let get = |h: &[(HeaderName, HeaderValue)], n: &str| {
        h.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.to_str().unwrap().to_string())
    };
    assert_eq!(get(&headers, "x-amz-date").unwrap(), "20150830T123600Z");
    let auth = get(&headers, "authorization").unwrap();
    assert!(
        auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-3/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature="
        ),
        "{auth}"
    );
    let signature = auth.rsplit('=').next().unwrap();
    assert_eq!(signature.len(), 64);
    assert!(signature.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(headers
        .iter()
        .any(|(k, v)| k == "authorization" && v.is_sensitive()));
    // Same input, same signature; another body, another one.
    assert_eq!(get(&sign(b"{}", &options), "authorization").unwrap(), auth);
    assert_ne!(
        get(&sign(b"{\"a\":1}", &options), "authorization").unwrap(),
        auth
    );
    // Temporary credentials add their token, which is signed too.
    let mut temporary = options.clone();
    temporary.insert("aws_session_token".into(), "session-token".into());
    let with_token = sign(b"{}", &temporary);
    assert_eq!(
        get(&with_token, "x-amz-security-token").unwrap(),
        "session-token"
    );
    assert!(get(&with_token, "authorization")
        .unwrap()
        .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"));
    // Computed independently (Python's hmac and hashlib, following AWS's SigV4 steps): the
    // model id's already encoded `:` is encoded again in the canonical URI (`%253A`), as AWS
    // expects for every service but S3.
    let real_path = Signing {
        upstream: &upstream,
        path: "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
        body: b"{}",
        options: &options,
        now,
    };
    let auth = get(&Bedrock::new().sign(&real_path).unwrap(), "authorization").unwrap();
    assert!(
        auth.ends_with(
            "Signature=078189c3ead484a3af75c3a360c85decce52c0e49637af5e6067504c06eb7ab2"
        ),
        "{auth}"
    );
    // Without access keys nothing is signed (the bearer key from `prepare` is used).
    assert!(Bedrock::new()
        .sign(&Signing {
            upstream: &upstream,
            path: "/",
            body: b"",
            options: &ProviderOptions::new(),
            now,
        })
        .unwrap()
        .is_empty());
}

#[test]
fn a_whole_answer_with_tools_and_cache_tokens() {
    let mut t = ConverseAnswer::translator(&opts(true, false));
    let out = run(&mut t, &[&fixture("tools_response.json")]);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "anthropic.claude-3-5-haiku-20241022-v1:0");
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], "Checking both.");
    assert_eq!(msg["tool_calls"][1]["id"], "tooluse_rome");
    assert_eq!(
        msg["tool_calls"][1]["function"]["arguments"],
        "{\"city\":\"Rome\"}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    // Input includes the cache reads and writes, each counted once.
    assert_eq!(v["usage"]["prompt_tokens"], 1220);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
    let u = t.usage().unwrap();
    assert_eq!(
        (u.input, u.output, u.cached_input, u.cache_write),
        (1220, 30, 1000, 200)
    );
    // Not strict: Bedrock's own stop reason.
    let mut raw = ConverseAnswer::translator(&opts(false, false));
    let v: Value =
        serde_json::from_slice(&run(&mut raw, &[&fixture("tools_response.json")])).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_use");
}

#[test]
fn a_stream_with_two_tools_at_every_byte_boundary() {
    let stream = fixture("tools_stream.eventstream");
    let whole = run(&mut ConverseStream::new(&opts(true, false)), &[&stream]);
    for at in 1..stream.len() {
        let split = run(
            &mut ConverseStream::new(&opts(true, false)),
            &[&stream[..at], &stream[at..]],
        );
        assert_eq!(split, whole, "split at {at}");
    }
    let out = events(&whole);
    assert_eq!(out[0]["choices"][0]["delta"]["role"], "assistant");
    let calls: Vec<&Value> = out
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls.len(), 5, "{out:?}");
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["id"], "tooluse_paris");
    assert_eq!(calls[1]["index"], 0);
    assert_eq!(calls[1]["function"]["arguments"], "{\"city\":");
    assert_eq!(
        calls[3]["index"], 1,
        "the second tool is index 1, not its block index 2"
    );
    assert_eq!(calls[3]["id"], "tooluse_rome");
    let finish: Vec<&Value> = out
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(|_| c))
        .collect();
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "tool_calls");
    let usage = &out[out.len() - 2]["usage"];
    assert_eq!(usage["prompt_tokens"], 1220);
    assert_eq!(out.last().unwrap(), &json!("[DONE]"));
}

#[test]
fn the_usage_chunk_only_when_asked_for() {
    let stream = fixture("matrix_stream.eventstream");
    let mut t = ConverseStream::new(&opts(true, true));
    let out = events(&run(&mut t, &[&stream]));
    assert!(out.iter().all(|c| c.get("usage").is_none()), "{out:?}");
    assert_eq!(
        t.usage().unwrap().input,
        17,
        "usage is still read for telemetry"
    );
    assert_eq!(out.last().unwrap(), &json!("[DONE]"));
}

#[test]
fn an_exception_frame_ends_the_stream_visibly() {
    let stream = fixture("exception_stream.eventstream");
    let out = events(&run(
        &mut ConverseStream::new(&opts(true, false)),
        &[&stream],
    ));
    let last = out.last().unwrap();
    assert_eq!(
        last["error"]["message"],
        "bedrock error: Too many requests, please wait before trying again."
    );
    assert_eq!(last["provider"], "bedrock");
    assert!(
        !out.contains(&json!("[DONE]")),
        "no clean end after an error"
    );
}

#[test]
fn a_corrupt_frame_is_an_error_not_garbage() {
    let mut stream = fixture("matrix_stream.eventstream");
    let at = stream.len() - 10;
    stream[at] ^= 0xff; // breaks the last frame's CRC
    let out = events(&run(
        &mut ConverseStream::new(&opts(true, false)),
        &[&stream],
    ));
    let last = out.last().unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("bedrock error: unreadable event-stream frame"),
        "{last}"
    );
}

#[test]
fn http_image_urls_are_refused_clearly() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let err = prepare(&body, false, &keys(), None).unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(err.to_string().contains("data URL"), "{err}");
}

#[test]
fn native_messages_go_to_invoke_model_untouched() {
    let headers = http::HeaderMap::new();
    let body = json!({"model": "us.anthropic.claude-3-5-haiku-20241022-v1:0", "max_tokens": 50,
        "stream": true, "stream_options": {"include_usage": true},
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hi"}]});
    let req = Bedrock::new()
        .prepare(Prepare {
            op: Operation::Messages,
            body: Bytes::from(body.to_string()),
            api_key: None,
            query: None,
            stream: true,
            client_headers: &headers,
            options: &keys(),
        })
        .unwrap();
    assert_eq!(
        req.path,
        "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke-with-response-stream"
    );
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        sent,
        json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "Hi"}]})
    );
    // Not an Anthropic model: a clear 400.
    let err = Bedrock::new()
        .prepare(Prepare {
            op: Operation::Messages,
            body: Bytes::from(json!({"model": "amazon.nova-pro-v1:0", "messages": []}).to_string()),
            api_key: None,
            query: None,
            stream: false,
            client_headers: &headers,
            options: &keys(),
        })
        .unwrap_err();
    assert_eq!(err.status(), 400);
}

#[test]
fn an_invoke_stream_becomes_anthropic_events_at_every_byte_boundary() {
    let stream = fixture("messages_stream.eventstream");
    let whole = run(&mut MessagesStream::new(), &[&stream]);
    for at in 1..stream.len() {
        let split = run(&mut MessagesStream::new(), &[&stream[..at], &stream[at..]]);
        assert_eq!(split, whole, "split at {at}");
    }
    let text = String::from_utf8(whole.clone()).unwrap();
    let names: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("event: "))
        .map(|e| e.lines().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(text.contains("\"text\":\"Orange.\""));
    assert!(
        !text.contains("invocationMetrics"),
        "Bedrock's own metrics are not Anthropic's"
    );
    let mut t = MessagesStream::new();
    run(&mut t, &[&stream]);
    let u = t.usage().unwrap();
    assert_eq!((u.input, u.output, u.cached_input), (15, 4, 5));
    assert_eq!(t.model(), Some("claude-3-5-haiku-20241022"));
}

fn openai_ish() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(|n| json!(n)),
        "\\PC{0,6}".prop_map(Value::String),
        prop::sample::select(vec![
            "user",
            "assistant",
            "system",
            "tool",
            "text",
            "image_url",
            "required",
            "auto",
            "data:image/png;base64,AAAA",
            "data:x;base64,",
            "{\"a\":1}",
        ])
        .prop_map(|s| json!(s)),
    ];
    let any = leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "role",
                    "content",
                    "type",
                    "text",
                    "image_url",
                    "url",
                    "tool_calls",
                    "id",
                    "function",
                    "name",
                    "arguments",
                    "tool_call_id",
                    "parameters",
                ]),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    });
    (prop::collection::vec(any.clone(), 0..4), any).prop_map(|(messages, extra)| {
        json!({"model": "m", "messages": messages, "tools": extra.clone(), "tool_choice": extra,
               "stop": ["x"], "max_tokens": 5})
    })
}

proptest! {
    /// Random OpenAI-ish bodies: prepare answers or refuses, never panics.
    #[test]
    fn prepare_never_panics(body in openai_ish(), stream in any::<bool>()) {
        let _ = prepare(&body, stream, &keys(), Some("k"));
    }

    /// Random bytes as a stream or a JSON answer: the translators never panic.
    #[test]
    fn translators_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        run(&mut ConverseStream::new(&opts(true, false)), &[&bytes]);
        run(&mut ConverseAnswer::translator(&opts(true, false)), &[&bytes]);
        run(&mut MessagesStream::new(), &[&bytes]);
    }
}

#[test]
fn count_tokens_asks_bedrock_with_the_invoke_body_of_an_anthropic_model() {
    let body = json!({"model": "anthropic.claude-3-5-haiku-20241022-v1:0", "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "w", "input_schema": {"type": "object"}}]});
    let req = Bedrock::new()
        .count_tokens(body.to_string().as_bytes(), None, &keys())
        .unwrap()
        .unwrap();
    assert_eq!(
        req.path,
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/count-tokens"
    );
    assert!(req.headers.is_empty(), "signed, not a bearer key");
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    let b64 = sent["input"]["invokeModel"]["body"].as_str().unwrap();
    let invoke: Value =
        serde_json::from_slice(&aws_smithy_types::base64::decode(b64).unwrap()).unwrap();
    assert_eq!(
        invoke,
        json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1,
            "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}],
            "tools": [{"name": "w", "input_schema": {"type": "object"}}]})
    );
    assert_eq!(sent.as_object().unwrap().len(), 1);
}

#[test]
fn count_tokens_counts_a_profiles_foundation_model_and_no_other_model() {
    let p = Bedrock::new();
    let ask = |model: &str| {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]});
        p.count_tokens(
            body.to_string().as_bytes(),
            Some("bedrock-api-key"),
            &ProviderOptions::new(),
        )
        .unwrap()
    };
    // A cross-region inference profile is counted with the model it routes to.
    let req = ask("us.anthropic.claude-sonnet-4-20250514-v1:0").unwrap();
    assert_eq!(
        req.path,
        "/model/anthropic.claude-sonnet-4-20250514-v1%3A0/count-tokens"
    );
    assert_eq!(req.headers[0].1, "Bearer bedrock-api-key");
    // The client's max_tokens is kept.
    let body = json!({"model": "anthropic.claude-3-5-haiku-20241022-v1:0", "max_tokens": 9,
        "messages": []});
    let req = p
        .count_tokens(
            body.to_string().as_bytes(),
            Some("k"),
            &ProviderOptions::new(),
        )
        .unwrap()
        .unwrap();
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    let b64 = sent["input"]["invokeModel"]["body"].as_str().unwrap();
    let invoke: Value =
        serde_json::from_slice(&aws_smithy_types::base64::decode(b64).unwrap()).unwrap();
    assert_eq!(invoke["max_tokens"], 9);
    // Not counted by Bedrock: the gateway estimates.
    for model in [
        "meta.llama3-70b-instruct-v1:0",
        "amazon.nova-pro-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/anthropic.claude-x",
    ] {
        assert!(ask(model).is_none(), "{model}");
    }
    // A body that is not one is refused, as the estimate would.
    let bad = p.count_tokens(
        b"{\"model\": \"anthropic.claude-x\"}",
        Some("k"),
        &ProviderOptions::new(),
    );
    assert_eq!(bad.unwrap_err().status(), 400);
    let no_keys = p.count_tokens(b"{}", None, &ProviderOptions::new());
    assert_eq!(no_keys.unwrap_err().status(), 400);
}

#[test]
fn count_tokens_reads_input_tokens() {
    let p = Bedrock::new();
    assert_eq!(p.counted_tokens(b"{\"inputTokens\": 42}"), Some(42));
    assert_eq!(p.counted_tokens(b"{\"input_tokens\": 42}"), None);
    assert_eq!(p.counted_tokens(b"not json"), None);
}
