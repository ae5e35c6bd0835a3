use super::request::{effort, to_chat, Target};
use super::response::{to_message, whole};
use super::stream::MessageStream;
use super::*;
use crate::stream::{Meter, Translator};
use crate::types::usage::Usage;
use serde_json::json;

fn chat(body: Value, target: Target) -> Value {
    let Value::Object(m) = body else { panic!() };
    to_chat(&m, target).unwrap()
}

#[test]
fn a_request_with_system_images_tools_and_results() {
    let body = json!({
        "model": "gpt-4o", "max_tokens": 100, "temperature": 0.5, "top_p": 0.9,
        "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}, "stream": true,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x/a.jpg"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "t1", "name": "look", "input": {"q": 1}},
                {"type": "tool_use", "id": "t2", "name": "look", "input": {"q": 2}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "one"},
                {"type": "tool_result", "tool_use_id": "t2", "is_error": true,
                 "content": [{"type": "text", "text": "failed"}]},
                {"type": "text", "text": "And?"}]}],
        "tools": [{"name": "look", "description": "Looks.", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
    });
    let c = chat(
        body,
        Target {
            reasoning: false,
            stream_usage: true,
        },
    );
    assert_eq!(c["model"], "gpt-4o");
    assert_eq!(c["max_tokens"], 100);
    assert_eq!(c["stop"], json!(["END"]));
    assert_eq!(c["user"], "u-1");
    assert_eq!(c["stream_options"], json!({"include_usage": true}));
    let m = &c["messages"];
    assert_eq!(
        m[0],
        json!({"role": "system", "content": "Be brief.\nBe kind."})
    );
    assert_eq!(
        m[1]["content"][0],
        json!({"type": "text", "text": "What is here?"})
    );
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        "data:image/png;base64,AAAA"
    );
    assert_eq!(m[1]["content"][2]["image_url"]["url"], "https://x/a.jpg");
    assert_eq!(m[2]["content"], "Checking.");
    assert_eq!(m[2]["tool_calls"][1]["id"], "t2");
    assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], r#"{"q":1}"#);
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "t1", "content": "one"})
    );
    assert_eq!(
        m[4],
        json!({"role": "tool", "tool_call_id": "t2", "content": "Error: failed"})
    );
    assert_eq!(m[5], json!({"role": "user", "content": "And?"}));
    assert_eq!(m.as_array().unwrap().len(), 6);
    assert_eq!(c["tools"][0]["function"]["name"], "look");
    assert_eq!(c["tools"][0]["function"]["description"], "Looks.");
    assert_eq!(
        c["tools"][0]["function"]["parameters"],
        json!({"type": "object"})
    );
    assert_eq!(c["tool_choice"], "required");
    assert_eq!(c["parallel_tool_calls"], false);
}

#[test]
fn tool_choice_and_thinking() {
    let base = |choice: Value| {
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
               "tool_choice": choice, "thinking": {"type": "enabled", "budget_tokens": 8000}})
    };
    let plain = Target::default();
    assert_eq!(
        chat(base(json!({"type": "auto"})), plain)["tool_choice"],
        "auto"
    );
    assert_eq!(
        chat(base(json!({"type": "none"})), plain)["tool_choice"],
        "none"
    );
    let named = chat(base(json!({"type": "tool", "name": "f"})), plain);
    assert_eq!(
        named["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    // No reasoning on the target: thinking is ignored.
    assert!(named.get("reasoning_effort").is_none());
    assert_eq!(named["max_tokens"], 5);
    let reasoning = Target {
        reasoning: true,
        stream_usage: false,
    };
    let r = chat(base(json!({"type": "auto"})), reasoning);
    assert_eq!(r["reasoning_effort"], "medium");
    assert_eq!(r["max_completion_tokens"], 5);
    assert!(r.get("max_tokens").is_none());
    assert_eq!(
        (effort(1024), effort(4096), effort(16384)),
        ("low", "medium", "high")
    );
    // Server tools and unknown blocks are refused (400), not silently dropped.
    let server = json!({"model": "m", "messages": [],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]});
    let Value::Object(m) = server else { panic!() };
    assert!(matches!(
        to_chat(&m, plain),
        Err(GatewayError::InvalidBody(_))
    ));
}

fn completion(finish: &str) -> Vec<u8> {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant",
            "content": "Sure.",
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "look", "arguments": "{\"q\":1}"}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5,
                  "prompt_tokens_details": {"cached_tokens": 4}}})
    .to_string()
    .into_bytes()
}

#[test]
fn an_answer_with_text_and_tool_use_and_each_stop_reason() {
    let usage = Usage {
        input: 10,
        output: 5,
        cached_input: 4,
        ..Default::default()
    };
    let m = to_message(&completion("tool_calls"), Some(usage), None).unwrap();
    assert_eq!(m["id"], "msg_chatcmpl-1");
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], "gpt-4o");
    assert_eq!(m["content"][0], json!({"type": "text", "text": "Sure."}));
    assert_eq!(
        m["content"][1],
        json!({"type": "tool_use", "id": "call_1", "name": "look", "input": {"q": 1}})
    );
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(m["stop_sequence"], Value::Null);
    assert_eq!(
        m["usage"],
        json!({"input_tokens": 6, "output_tokens": 5, "cache_read_input_tokens": 4})
    );
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("stop_sequence", "stop_sequence"),
        ("tool_calls", "tool_use"),
    ] {
        let m = to_message(&completion(finish), None, None).unwrap();
        assert_eq!(m["stop_reason"], stop, "{finish}");
    }
    // Through the chain: the meter reads OpenAI's usage, the client gets the message.
    let inner = Box::new(Meter::for_response(200, "application/json", false));
    let mut t = whole(inner, Some("asked"));
    let body = completion("stop");
    assert_eq!(t.push(Bytes::from(body[..20].to_vec())), None);
    assert_eq!(t.push(Bytes::from(body[20..].to_vec())), None);
    let out: Value = serde_json::from_slice(&t.finish().unwrap()).unwrap();
    assert_eq!(out["stop_reason"], "end_turn");
    assert_eq!(out["usage"]["output_tokens"], 5);
    assert_eq!(t.usage().map(|u| (u.input, u.output)), Some((10, 5)));
    assert_eq!(t.content_type(), Some("application/json"));
}

fn sse(v: Value) -> String {
    format!("data: {v}\n\n")
}

/// The events of an Anthropic stream: (name, payload).
fn events(out: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8_lossy(out)
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_string();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[test]
fn a_stream_with_text_and_two_interleaved_tool_calls() {
    let c = |delta: Value, finish: Value| {
        sse(
            json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let call = |i: u64, id: Option<&str>, args: &str| {
        let mut tc = json!({"index": i, "function": {"arguments": args}});
        if let Some(id) = id {
            tc["id"] = json!(id);
            tc["type"] = json!("function");
            tc["function"]["name"] = json!(format!("f{i}"));
        }
        json!({"tool_calls": [tc]})
    };
    let stream = [
        c(json!({"role": "assistant", "content": ""}), Value::Null),
        c(json!({"content": "Let me "}), Value::Null),
        c(json!({"content": "check."}), Value::Null),
        c(call(0, Some("call_a"), ""), Value::Null),
        c(call(1, Some("call_b"), "{\"x\""), Value::Null),
        c(call(0, None, "{\"y\":1}"), Value::Null),
        c(call(1, None, ":2}"), Value::Null),
        c(json!({}), json!("tool_calls")),
        sse(
            json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "model": "gpt-4o",
            "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12}}),
        ),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let run = |pieces: &[&[u8]]| {
        let inner = Box::new(Meter::for_response(200, "text/event-stream", false));
        let mut t = MessageStream::new(inner, None);
        let mut out = Vec::new();
        for p in pieces {
            if let Some(b) = t.push(Bytes::copy_from_slice(p)) {
                out.extend_from_slice(&b);
            }
        }
        if let Some(b) = t.finish() {
            out.extend_from_slice(&b);
        }
        (out, t.usage())
    };
    let (out, usage) = run(&[stream.as_bytes()]);
    assert_eq!(usage.map(|u| (u.input, u.output)), Some((30, 12)));
    let ev = events(&out);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(ev[0].1["message"]["id"], "msg_chatcmpl-9");
    assert_eq!(ev[0].1["message"]["model"], "gpt-4o");
    assert_eq!(
        ev[2].1["delta"],
        json!({"type": "text_delta", "text": "Let me "})
    );
    assert_eq!(ev[5].1["content_block"]["id"], "call_a");
    assert_eq!(ev[5].1["index"], 1);
    assert_eq!(ev[6].1["content_block"]["name"], "f1");
    assert_eq!(ev[6].1["index"], 2);
    assert_eq!(
        ev[7].1["delta"],
        json!({"type": "input_json_delta", "partial_json": "{\"x\""})
    );
    assert_eq!(ev[7].1["index"], 2);
    assert_eq!(ev[8].1["index"], 1);
    assert_eq!(ev[9].1["index"], 2);
    assert_eq!(ev[12].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(ev[12].1["usage"]["output_tokens"], 12);
    assert_eq!(ev[12].1["usage"]["input_tokens"], 30);
    // Any chunking gives the same events.
    for at in [1, 7, 100, stream.len() / 2, stream.len() - 3] {
        let (split, _) = run(&[&stream.as_bytes()[..at], &stream.as_bytes()[at..]]);
        assert_eq!(events(&split), ev, "split at {at}");
    }
}

#[test]
fn errors_in_anthropics_envelope() {
    let v: Value = serde_json::from_slice(&envelope(
        "openai",
        429,
        br#"{"error":{"message":"slow down","type":"requests"}}"#,
    ))
    .unwrap();
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "rate_limit_error",
            "message": "openai error: slow down"}})
    );
    // Byte for byte as Anthropic writes it: `type` first, at both levels.
    assert_eq!(
        String::from_utf8(envelope("google", 500, b"boom")).unwrap(),
        r#"{"type":"error","error":{"type":"api_error","message":"google error: boom"}}"#
    );
    // A type of Anthropic's own is kept.
    let v: Value = serde_json::from_slice(&envelope(
        "x",
        400,
        br#"{"error":{"message":"m","type":"overloaded_error"}}"#,
    ))
    .unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
}

#[test]
fn count_tokens_estimates() {
    let body = |model: &str| {
        json!({"model": model, "system": "You are terse.",
               "messages": [{"role": "user", "content": "Hello, world!"}]})
        .to_string()
    };
    let (n, method) = estimate(body("gpt-4o").as_bytes()).unwrap();
    assert_eq!(method, count::Method::Tokenizer);
    // "You are terse." is 4 tokens, "Hello, world!" 4, plus 4 per message.
    assert_eq!(n, 16);
    let (n, method) = estimate(body("gemini-1.5-pro").as_bytes()).unwrap();
    assert_eq!(method, count::Method::Heuristic);
    // 14 and 13 characters: 4 + 4, plus 4 per message.
    assert_eq!(n, 16);
    assert!(estimate(b"{}").is_err());
}

#[test]
fn azures_leading_filter_chunk_does_not_start_the_message() {
    let stream = [
        sse(
            json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}),
        ),
        sse(
            json!({"id": "chatcmpl-AZ", "object": "chat.completion.chunk", "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                         "finish_reason": "stop"}]}),
        ),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let inner = Box::new(Meter::for_response(200, "text/event-stream", false));
    let mut t = MessageStream::new(inner, Some("asked"));
    let mut out = t
        .push(Bytes::from(stream))
        .map(|b| b.to_vec())
        .unwrap_or_default();
    out.extend_from_slice(&t.finish().unwrap_or_default());
    let ev = events(&out);
    assert_eq!(ev[0].0, "message_start");
    assert_eq!(ev[0].1["message"]["id"], "msg_chatcmpl-AZ");
    assert_eq!(ev[0].1["message"]["model"], "gpt-4o");
    assert_eq!(ev[2].1["delta"]["text"], "Hi");
}
