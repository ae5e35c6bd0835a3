use super::answer;
use super::request::to_chat;
use super::stream::ResponsesStream;
use super::*;
use crate::stream::Meter;
use serde_json::{json, Value};

fn chat(req: Value) -> Value {
    serde_json::from_slice(&to_chat(req.to_string().as_bytes(), false).unwrap()).unwrap()
}

fn refused(req: Value) -> String {
    let e = to_chat(req.to_string().as_bytes(), false).unwrap_err();
    assert_eq!(e.status(), 400);
    e.to_string()
}

#[test]
fn string_input_and_instructions() {
    let c = chat(json!({
        "model": "claude-x", "input": "hi", "instructions": "be brief",
        "max_output_tokens": 50, "temperature": 0.2, "top_p": 0.9,
        "metadata": {"k": "v"}, "store": false, "reasoning": {"effort": "low"},
    }));
    assert_eq!(
        c,
        json!({
            "model": "claude-x",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
            ],
            "max_tokens": 50, "temperature": 0.2, "top_p": 0.9,
            "metadata": {"k": "v"}, "reasoning_effort": "low",
        })
    );
}

#[test]
fn items_with_images_and_files() {
    let c = chat(json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
        {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,BBBB"},
    ]}]}));
    assert_eq!(
        c["messages"][0]["content"],
        json!([
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,BBBB", "filename": "a.pdf"}},
        ])
    );
    let why = refused(json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_image", "file_id": "file-1"}]}]}));
    assert!(why.contains("file_id"), "{why}");
}

#[test]
fn function_call_round_trip() {
    let c = chat(json!({"model": "m", "input": [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": "{\"city\":\"Rome\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": "rain"},
    ]}));
    assert_eq!(
        c["messages"],
        json!([
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "c2", "content": "rain"},
        ])
    );
}

#[test]
fn tools_tool_choice_and_text_format() {
    let c = chat(json!({"model": "m", "input": "x",
        "tools": [{"type": "function", "name": "f", "description": "d",
                   "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
    }));
    assert_eq!(
        c["tools"],
        json!([{"type": "function", "function": {"name": "f", "description": "d",
            "parameters": {"type": "object"}, "strict": true}}])
    );
    assert_eq!(
        c["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(
        c["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}})
    );
    let why = refused(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}));
    assert!(why.contains("web_search"), "{why}");
}

#[test]
fn stateful_requests_are_refused() {
    let why = refused(json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}));
    assert!(
        why.contains("previous_response_id") && why.contains("no conversation state"),
        "{why}"
    );
    let why = refused(json!({"model": "m", "input": "x", "store": true}));
    assert!(why.contains("store"), "{why}");
}

#[test]
fn a_stream_asks_for_usage_where_the_provider_reports_it() {
    let body = json!({"model": "m", "input": "x", "stream": true}).to_string();
    let c: Value = serde_json::from_slice(&to_chat(body.as_bytes(), true).unwrap()).unwrap();
    assert_eq!(c["stream_options"], json!({"include_usage": true}));
    let c: Value = serde_json::from_slice(&to_chat(body.as_bytes(), false).unwrap()).unwrap();
    assert!(c.get("stream_options").is_none());
}

fn whole(answer: Value) -> Value {
    let inner = Box::new(Meter::for_response(200, "application/json", false));
    let mut t = answer::whole(inner, 7);
    let out = crate::stream::translate_whole(&mut t, Bytes::from(answer.to_string()));
    assert_eq!(t.content_type(), Some("application/json"));
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn a_text_answer() {
    let r = whole(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "m1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                  "prompt_tokens_details": {"cached_tokens": 4}},
    }));
    assert_eq!(
        r,
        json!({
            "id": "resp_chatcmpl-1", "object": "response", "created_at": 5,
            "status": "completed", "error": null, "incomplete_details": null, "model": "m1",
            "output": [{"type": "message", "id": "msg_chatcmpl-1", "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello", "annotations": []}]}],
            "parallel_tool_calls": true, "store": false,
            "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4},
                "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 13},
        })
    );
}

#[test]
fn a_tool_call_answer_and_a_cut_one() {
    let r = whole(json!({
        "id": "c", "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
    }));
    assert_eq!(r["status"], "completed");
    assert_eq!(
        r["output"],
        json!([{"type": "function_call", "id": "fc_c_0", "call_id": "call_1", "name": "f",
            "arguments": "{\"a\":1}", "status": "completed"}])
    );
    assert_eq!(r["usage"], Value::Null, "no usage reported: none made up");
    let r = whole(json!({"id": "c", "model": "m", "choices": [{"index": 0,
        "finish_reason": "length", "message": {"role": "assistant", "content": "Hel"}}]}));
    assert_eq!(r["status"], "incomplete");
    assert_eq!(
        r["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
}

fn sse_chunk(v: Value) -> Bytes {
    crate::stream::sse::json_event(&v)
}

fn chunk(delta: Value, finish: Option<&str>) -> Bytes {
    sse_chunk(
        json!({"id": "c9", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
    )
}

/// The events of a translated stream: (name, payload).
fn events(out: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(out).unwrap();
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            let v: Value = serde_json::from_str(data).unwrap();
            assert_eq!(v["type"], name);
            (name.to_string(), v)
        })
        .collect()
}

fn stream() -> ResponsesStream {
    ResponsesStream::new(
        Box::new(Meter::for_response(200, "text/event-stream", false)),
        11,
    )
}

#[test]
fn text_deltas_as_they_come() {
    let mut t = stream();
    let first = t
        .push(chunk(json!({"role": "assistant", "content": ""}), None))
        .expect("the first chunk gives the first events");
    let e = events(&first);
    assert_eq!(e[0].0, "response.created");
    assert_eq!(e[1].0, "response.in_progress");
    assert_eq!(e[0].1["response"]["usage"], Value::Null);
    let out = t.push(chunk(json!({"content": "Hel"}), None)).unwrap();
    let names: Vec<String> = events(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta"
        ]
    );
    let out = t
        .push(chunk(json!({"content": "lo"}), Some("stop")))
        .unwrap();
    assert_eq!(events(&out)[0].1["delta"], "lo");
    let usage = sse_chunk(json!({"id": "c9", "model": "m", "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}));
    let mut tail = Vec::new();
    tail.extend_from_slice(&usage);
    tail.extend_from_slice(b"data: [DONE]\n\n");
    let out = t.push(Bytes::from(tail)).unwrap();
    let e = events(&out);
    let names: Vec<&str> = e.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(e[0].1["text"], "Hello");
    let done = &e[3].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["usage"]["input_tokens"], 5);
    assert_eq!(done["usage"]["output_tokens"], 2);
    assert_eq!(done["usage"]["total_tokens"], 7);
    assert_eq!(e[3].1["sequence_number"], 9, "numbered in order from 0");
    assert!(t.finish().is_none());
    assert_eq!(t.usage().map(|u| u.input), Some(5));
}

#[test]
fn two_tool_calls_with_interleaved_arguments() {
    let mut t = stream();
    let mut out = Vec::new();
    let call = |index: u64, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut c = json!({"index": index, "function": {"arguments": args}});
        if let (Some(id), Some(name)) = (id, name) {
            c["id"] = json!(id);
            c["type"] = json!("function");
            c["function"]["name"] = json!(name);
        }
        chunk(json!({"tool_calls": [c]}), None)
    };
    for c in [
        chunk(json!({"role": "assistant"}), None),
        call(0, Some("call_a"), Some("f"), ""),
        call(1, Some("call_b"), Some("g"), "{\"y\""),
        call(0, None, None, "{\"x\""),
        call(1, None, None, ":2}"),
        call(0, None, None, ":1}"),
        chunk(json!({}), Some("tool_calls")),
    ] {
        out.extend_from_slice(&t.push(c).unwrap_or_default());
    }
    out.extend_from_slice(&t.finish().unwrap());
    let e = events(&out);
    let deltas: Vec<(u64, &str)> = e
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, v)| {
            (
                v["output_index"].as_u64().unwrap(),
                v["delta"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        deltas,
        [(1, "{\"y\""), (0, "{\"x\""), (1, ":2}"), (0, ":1}")]
    );
    let done: Vec<&Value> = e
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.done")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(done[0]["arguments"], "{\"x\":1}");
    assert_eq!(done[1]["arguments"], "{\"y\":2}");
    let (last, v) = e.last().unwrap();
    assert_eq!(last, "response.completed");
    let output = &v["response"]["output"];
    assert_eq!(output[0]["call_id"], "call_a");
    assert_eq!(output[0]["name"], "f");
    assert_eq!(output[1]["call_id"], "call_b");
    assert_eq!(output[1]["arguments"], "{\"y\":2}");
    assert_eq!(
        v["response"]["usage"],
        Value::Null,
        "never zeros before usage is known"
    );
}

#[test]
fn a_cut_stream_is_incomplete() {
    let mut t = stream();
    t.push(chunk(json!({"content": "a"}), Some("length")));
    let e = events(&t.push(Bytes::from_static(b"data: [DONE]\n\n")).unwrap());
    let (name, v) = e.last().unwrap();
    assert_eq!(name, "response.incomplete");
    assert_eq!(
        v["response"]["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
}

#[test]
fn native_answers_are_relayed_and_metered() {
    let body = json!({"id": "resp_1", "object": "response", "model": "gpt-x",
        "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 3},
            "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 13}})
    .to_string();
    let mut m = NativeMeter::for_response(200, "application/json");
    let out = crate::stream::translate_whole(&mut m, Bytes::from(body.clone()));
    assert_eq!(out, body.as_bytes());
    let u = m.usage().unwrap();
    assert_eq!(
        (u.input, u.output, u.cached_input, u.reasoning),
        (9, 4, 3, 1)
    );
    assert_eq!(m.model(), Some("gpt-x"));
    let mut m = NativeMeter::for_response(200, "text/event-stream");
    let stream = format!(
        "event: response.output_text.delta\ndata: {{\"delta\":\"x\"}}\n\nevent: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{body}}}\n\n"
    );
    let (a, b) = stream.as_bytes().split_at(30);
    assert_eq!(m.push(Bytes::copy_from_slice(a)).unwrap(), a);
    assert_eq!(m.push(Bytes::copy_from_slice(b)).unwrap(), b);
    assert_eq!(m.usage().map(|u| u.output), Some(4));
    assert_eq!(m.events(), 1);
}

#[test]
fn azure_and_openai_are_called_natively() {
    let headers = http::HeaderMap::new();
    let options: crate::providers::ProviderOptions = [("azure_deployment_id", "d")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = Bytes::from_static(br#"{"model":"d","input":"x","store":true}"#);
    let azure = crate::providers::AzureOpenAi::new();
    let r = prepare(
        &azure,
        Prepare {
            op: Operation::Responses,
            body: body.clone(),
            api_key: Some("k"),
            query: None,
            stream: false,
            client_headers: &headers,
            options: &options,
        },
    )
    .unwrap();
    assert_eq!(r.path, "/responses?api-version=2025-04-01-preview");
    assert_eq!(r.body, body, "the client's body, untouched");
    assert!(r.headers.iter().any(|(n, _)| n == "api-key"));
    assert!(is_native("openai") && !is_native("anthropic"));
}

#[test]
fn guardrails_read_responses_text() {
    use crate::guardrails::content::{request_part, response_part};
    let req = json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "hello there"}]}]});
    let part = request_part(req.as_object().unwrap(), Operation::Responses);
    assert_eq!(part.text(), "hello there");
    let req = json!({"model": "m", "input": "plain"});
    let part = request_part(req.as_object().unwrap(), Operation::Responses);
    assert_eq!(part.text(), "plain");
    let answer = whole(json!({"id": "c", "model": "m", "choices": [{"index": 0,
        "finish_reason": "stop", "message": {"role": "assistant", "content": "the answer"}}]}));
    assert_eq!(
        response_part(&answer, Operation::Responses).text(),
        "the answer"
    );
}

#[test]
fn a_bedrock_event_stream_becomes_responses_events() {
    // Bedrock streams AWS's binary event stream, not SSE: its chat translator makes SSE of it,
    // and that is what the Responses layer must read as a stream (it once read it as a whole
    // answer and relayed the chat chunks).
    let frames = std::fs::read(format!(
        "{}/tests/fixtures/bedrock/matrix_stream.eventstream",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let opts = ResponseOptions {
        created: 1,
        ..Default::default()
    };
    let bedrock = crate::providers::bedrock::Bedrock::new();
    let mut t = response(
        &bedrock,
        200,
        crate::providers::bedrock::EVENT_STREAM,
        &opts,
    );
    assert_eq!(t.content_type(), Some("text/event-stream"));
    let mut out = t.push(Bytes::from(frames)).unwrap_or_default().to_vec();
    out.extend_from_slice(&t.finish().unwrap_or_default());
    let e = events(&out);
    assert_eq!(e[0].0, "response.created");
    let (last, done) = e.last().unwrap();
    assert_eq!(last, "response.completed");
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        "Mixing red and yellow gives orange."
    );
    assert_eq!(done["response"]["usage"]["input_tokens"], 17);
    assert!(!String::from_utf8(out)
        .unwrap()
        .contains("chat.completion.chunk"));
}
