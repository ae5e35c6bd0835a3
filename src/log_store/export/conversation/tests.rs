use super::*;
use crate::log_store::Transcript;
use serde_json::json;

const ANTHROPIC_STREAM: &str =
    include_str!("../../../../tests/fixtures/anthropic/stream_tools.sse");

fn stored(route: &str, request: Value, answer: Value) -> StoredRequest {
    StoredRequest {
        trace_id: "t".into(),
        timestamp: "2026-12-05T10:00:00.000Z".into(),
        route: route.into(),
        status: 200,
        provider: None,
        model: None,
        model_served: None,
        stream: false,
        input_tokens: None,
        output_tokens: None,
        cost_usd: None,
        metadata: json!({}),
        error: None,
        denied: false,
        line: json!({}),
        request: Some(request),
        answer: Some(answer),
    }
}

fn convert(route: &str, request: Value, answer: Value) -> Result<Value, &'static str> {
    let api = Api::of_route(route).unwrap();
    conversation(api, &stored(route, request, answer))
}

/// A stream's bytes as the store keeps its answer.
fn streamed(api: Api, text: &str) -> Value {
    let mut t = Transcript::default();
    t.push(text.as_bytes());
    t.answer(true, api).unwrap()
}

fn weather_call(id: &str, city: &str) -> Value {
    json!({"id": id, "type": "function",
           "function": {"name": "get_weather", "arguments": format!("{{\"city\":\"{city}\"}}")}})
}

const CHAT_TOOLS: &str = r#"[{"type": "function", "function": {"name": "get_weather",
    "description": "Weather of a city", "parameters": {"type": "object"}}}]"#;

fn chat_tools() -> Value {
    serde_json::from_str(CHAT_TOOLS).unwrap()
}

/// A Responses request of a few turns, as an agent sends it.
fn responses_request() -> Value {
    json!({
        "model": "gpt-4o", "store": true, "stream": false,
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Use tools."},
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"role": "user", "content": "And Rome and Oslo?"},
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather of a city",
                   "parameters": {"type": "object"}}],
    })
}

fn responses_messages() -> Value {
    json!([
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": null, "tool_calls": [weather_call("call_1", "Paris")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "And Rome and Oslo?"},
    ])
}

fn response(status: &str) -> Value {
    json!({
        "id": "resp_1", "object": "response", "status": status,
        "output": [
            {"type": "reasoning", "id": "rs_2", "summary": []},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_2", "name": "get_weather",
             "arguments": "{\"city\":\"Rome\"}", "status": "completed"},
            {"type": "function_call", "id": "fc_2", "call_id": "call_3", "name": "get_weather",
             "arguments": "{\"city\":\"Oslo\"}", "status": "completed"},
        ],
    })
}

#[test]
fn a_responses_answer_becomes_the_chat_conversation() {
    let mut expected = responses_messages();
    expected
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "assistant", "content": "Checking.",
        "tool_calls": [weather_call("call_2", "Rome"), weather_call("call_3", "Oslo")]}));
    let expected = json!({"messages": expected, "tools": chat_tools()});
    assert_eq!(
        convert("responses", responses_request(), response("completed")),
        Ok(expected.clone())
    );
    // Cut by max_output_tokens: kept, as a chat answer cut by its length is.
    assert_eq!(
        convert("responses", responses_request(), response("incomplete")),
        Ok(expected)
    );
    assert_eq!(
        convert("responses", responses_request(), response("failed")),
        Err("failed")
    );
}

#[test]
fn a_responses_stream_is_read_from_its_closing_event() {
    let answer = json!({"id": "resp_2", "object": "response", "status": "completed", "output": [
        {"type": "function_call", "call_id": "call_9", "name": "get_weather", "arguments": "{\"city\":\"Rome\"}"},
    ]});
    let events = format!(
        "event: response.created\ndata: {}\n\n\
         event: response.function_call_arguments.delta\ndata: {}\n\n\
         event: response.completed\ndata: {}\n\n",
        json!({"type": "response.created", "response": {"id": "resp_2", "status": "in_progress", "output": []}}),
        json!({"type": "response.function_call_arguments.delta", "delta": "{\"city\""}),
        json!({"type": "response.completed", "response": answer}),
    );
    let request = json!({"model": "m", "stream": true, "input": "Weather in Rome?"});
    assert_eq!(
        convert("responses", request, streamed(Api::Responses, &events)),
        Ok(json!({"messages": [
            {"role": "user", "content": "Weather in Rome?"},
            {"role": "assistant", "tool_calls": [weather_call("call_9", "Rome")]},
        ]}))
    );
}

#[test]
fn what_chat_cannot_hold_leaves_a_responses_conversation_out() {
    let mut earlier = responses_request();
    earlier["previous_response_id"] = json!("resp_0");
    assert_eq!(
        convert("responses", earlier, response("completed")),
        Err("unsupported")
    );
    let mut hosted = responses_request();
    hosted["tools"] = json!([{"type": "web_search"}]);
    assert_eq!(
        convert("responses", hosted, response("completed")),
        Err("unsupported")
    );
    let searched = json!({"status": "completed", "output": [
        {"type": "web_search_call", "id": "ws_1", "status": "completed"}]});
    assert_eq!(
        convert("responses", responses_request(), searched),
        Err("unsupported")
    );
    let empty = json!({"status": "completed", "output": []});
    assert_eq!(
        convert("responses", responses_request(), empty),
        Err("no_answer")
    );
}

/// A Messages request of a few turns, as Claude Code sends it.
fn messages_request() -> Value {
    json!({
        "model": "claude-sonnet-4", "max_tokens": 1024, "stream": false,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "A tool.", "signature": "s"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                {"type": "text", "text": "And Rome?"},
            ]},
        ],
        "tools": [{"name": "get_weather", "description": "Weather of a city",
                   "input_schema": {"type": "object"}}],
    })
}

fn messages_conversation(reply: Value) -> Value {
    json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [weather_call("toolu_1", "Paris")]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "user", "content": "And Rome?"},
        reply,
    ], "tools": json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Weather of a city", "parameters": {"type": "object"}}}])})
}

#[test]
fn a_messages_answer_becomes_the_chat_conversation() {
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
        "content": [
            {"type": "thinking", "thinking": "Rome next.", "signature": "s2"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
        ],
        "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 5}});
    assert_eq!(
        convert("messages", messages_request(), answer.clone()),
        Ok(messages_conversation(
            json!({"role": "assistant", "content": "Checking.",
            "tool_calls": [weather_call("toolu_2", "Rome")]})
        ))
    );
    // Cut by max_tokens: kept, as a chat answer cut by its length is.
    let mut cut = answer;
    cut["stop_reason"] = json!("max_tokens");
    assert!(convert("messages", messages_request(), cut).is_ok());
    let mut server_tool = messages_request();
    server_tool["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
    assert_eq!(
        convert("messages", server_tool, json!({"content": []})),
        Err("unsupported")
    );
    assert_eq!(
        convert("messages", messages_request(), json!({"type": "error"})),
        Err("no_answer")
    );
}

#[test]
fn a_messages_stream_is_reassembled_into_the_chat_answer() {
    let answer = streamed(Api::Messages, ANTHROPIC_STREAM);
    let calls = json!([
        {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"id": "toolu_02", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
    ]);
    assert_eq!(
        convert("messages", messages_request(), answer),
        Ok(messages_conversation(
            json!({"role": "assistant", "content": "Checking ü both.",
            "tool_calls": calls})
        ))
    );
}

#[test]
fn a_chat_answer_with_only_tool_calls_keeps_the_calls_only() {
    let request = json!({"messages": [{"role": "user", "content": "Weather?"}]});
    for content in [Value::Null, json!("")] {
        let answer = json!({"choices": [{"message": {"role": "assistant", "content": content,
            "tool_calls": [weather_call("c", "Oslo")]}}]});
        let line = convert("chat_completions", request.clone(), answer).unwrap();
        assert_eq!(
            line["messages"][1],
            json!({"role": "assistant", "tool_calls": [weather_call("c", "Oslo")]})
        );
    }
}
