//! `POST /v1/responses` as the OpenAI SDK sends it (`client.responses.create`): translated
//! both ways for Anthropic, Gemini, Bedrock and Cohere (whole, streamed, with tools), passed
//! through unchanged to OpenAI, errors in OpenAI's envelope, tokens metered and labelled
//! `responses`.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

const STREAM: &str = include_str!("../fixtures/anthropic/stream_tools.sse");
const MESSAGE: &str = include_str!("../fixtures/anthropic/message_tools.json");

async fn create(
    gw: &TestGateway,
    headers: &[(&'static str, String)],
    body: Value,
) -> reqwest::Response {
    let mut req = client().post(gw.url("/v1/responses")).json(&body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

/// What the SDK sends for `responses.create(model=..., instructions=..., input=..., tools=[...])`.
fn sdk_body(stream: bool) -> Value {
    json!({
        "model": "claude-3-5-sonnet-20241022",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris and Rome?"}]}],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather of a city",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                   "strict": true}],
        "max_output_tokens": 300,
        "stream": stream,
    })
}

/// The events of an SSE body: (event name, payload).
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_string();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_serves_a_responses_request_with_tools() {
    let mock = MockProvider::start().await;
    mock.always(Reply::Json {
        status: 200,
        body: MESSAGE.into(),
        headers: vec![],
    });
    let gw = TestGateway::start(test_settings());
    let resp = create(&gw, &anthropic_on(&mock), sdk_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("application/json"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(
        v["output"][0]["content"][0]["text"],
        "I'll check both cities."
    );
    assert_eq!(v["output"][1]["type"], "function_call");
    assert_eq!(v["output"][1]["call_id"], "toolu_01A");
    assert_eq!(v["output"][2]["arguments"], "{\"city\":\"Rome\"}");
    assert_eq!(v["usage"]["input_tokens"], 3120);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 2000);
    assert_eq!(v["usage"]["output_tokens"], 40);
    // Anthropic got a Messages request.
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1/messages");
    let sent = r.json();
    assert_eq!(sent["system"][0]["text"], "Be brief.");
    assert_eq!(
        sent["messages"][0]["content"][0]["text"],
        "Weather in Paris and Rome?"
    );
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["max_tokens"], 300);

    // The tool results go back as function_call / function_call_output items.
    let mut next = sdk_body(false);
    next["input"] = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": "toolu_01A", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call_output", "call_id": "toolu_01A", "output": "sunny"},
    ]);
    let resp = create(&gw, &anthropic_on(&mock), next).await;
    assert_eq!(resp.status(), 200);
    let sent = mock.requests()[1].json();
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(
        sent["messages"][2]["content"][0]["tool_use_id"],
        "toolu_01A"
    );

    // Tokens and cost are metered as for a chat, under the route `responses`.
    let m = scrape(&gw).await;
    assert_eq!(provider_tokens(&m, "anthropic", "output"), Some(80.0));
    assert_eq!(
        sample(
            &m,
            "portgate_requests_total",
            &[("route", "responses"), ("status_class", "2xx")]
        ),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_stream_becomes_responses_events() {
    let mock = MockProvider::start().await;
    let events_in: Vec<String> = STREAM
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(String::from)
        .collect();
    mock.always(Reply::Sse {
        events: events_in,
        delay: Duration::from_millis(5),
    });
    let gw = TestGateway::start(test_settings());
    let resp = create(&gw, &anthropic_on(&mock), sdk_body(true)).await;
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    let e = events(&text);
    assert_eq!(e[0].0, "response.created");
    assert_eq!(e[1].0, "response.in_progress");
    for (i, (name, v)) in e.iter().enumerate() {
        assert_eq!(&v["type"], name);
        assert_eq!(v["sequence_number"], i);
    }
    let text_deltas: String = e
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text_deltas, "Checking ü both.");
    let (last, done) = e.last().unwrap();
    assert_eq!(last, "response.completed");
    let r = &done["response"];
    assert_eq!(r["output"][1]["name"], "get_weather");
    assert_eq!(r["output"][1]["arguments"], "{\"city\": \"Paris\"}");
    assert_eq!(r["output"][2]["arguments"], "{\"city\": \"Rome\"}");
    assert_eq!(r["usage"]["input_tokens"], 872);
    assert_eq!(r["usage"]["output_tokens"], 89);
    assert!(
        !text.contains("[DONE]"),
        "no chat framing reaches the client"
    );
    assert_eq!(mock.requests()[0].json()["stream"], true);
    let m = scrape(&gw).await;
    assert_eq!(provider_tokens(&m, "anthropic", "input"), Some(872.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_gets_the_request_unchanged_and_is_metered() {
    let mock = MockProvider::start().await;
    let answer = json!({
        "id": "resp_abc", "object": "response", "created_at": 1, "status": "completed",
        "model": "gpt-4o-2024-08-06",
        "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "hi", "annotations": []}]}],
        "usage": {"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 200},
                  "output_tokens": 500, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": 1500},
    });
    mock.always(Reply::json(200, answer.clone()));
    let gw = gateway_for(&mock);
    let body =
        json!({"model": "gpt-4o", "input": "hi", "previous_response_id": "resp_0", "store": true});
    let resp = create(
        &gw,
        &[
            ("x-portkey-provider", "openai".into()),
            ("authorization", "Bearer sk-x".into()),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, answer, "relayed as it came");
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1/responses");
    assert_eq!(r.json(), body, "sent as it came, state fields included");
    let m = scrape(&gw).await;
    let t = |ty| tokens(&m, "openai", "gpt-4o", ty);
    assert_eq!(t("input"), Some(1000.0));
    assert_eq!(t("output"), Some(500.0));
    assert_eq!(t("cached_input"), Some(200.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_in_openais_envelope() {
    let mock = MockProvider::start().await;
    mock.always(Reply::json(
        400,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}),
    ));
    let gw = TestGateway::start(test_settings());
    let resp = create(&gw, &anthropic_on(&mock), sdk_body(false)).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["message"], "anthropic error: bad");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    // The gateway keeps no conversation state: refused before anything is sent.
    let sent = mock.request_count();
    let mut body = sdk_body(false);
    body["previous_response_id"] = json!("resp_1");
    let resp = create(&gw, &anthropic_on(&mock), body).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    // The gateway's own validation error, shaped as every other one it gives.
    assert_eq!(v["status"], "failure");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("previous_response_id"), "{v}");
    assert_eq!(mock.request_count(), sent);
}

/// The events of an SSE fixture, one string each, as the mock writes them.
fn sse_fixture(slug: &str, name: &str) -> Vec<String> {
    String::from_utf8(provider_fixture(slug, name))
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(String::from)
        .collect()
}

/// `sdk_body` for another model.
fn body_for(model: &str, stream: bool) -> Value {
    let mut b = sdk_body(stream);
    b["model"] = json!(model);
    b
}

/// The function calls of a response's output: (name, arguments).
fn calls(response: &Value) -> Vec<(String, Value)> {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "function_call")
        .map(|i| {
            assert!(i["call_id"].as_str().is_some_and(|c| !c.is_empty()), "{i}");
            (
                i["name"].as_str().unwrap().to_string(),
                serde_json::from_str(i["arguments"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// The text of a response's output messages.
fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .filter_map(|i| i["content"][0]["text"].as_str())
        .collect()
}

/// A streamed response's events, checked in order (`response.created` first, sequence numbers
/// counting up, `response.completed` last), and the completed response; the text deltas add up
/// to its text.
fn completed_stream(text: &str) -> Value {
    assert!(!text.contains("[DONE]"), "no chat framing: {text}");
    let e = events(text);
    assert_eq!(e[0].0, "response.created", "{text}");
    assert_eq!(e[1].0, "response.in_progress");
    for (i, (name, v)) in e.iter().enumerate() {
        assert_eq!(&v["type"], name);
        assert_eq!(v["sequence_number"], i);
    }
    let (last, done) = e.last().unwrap();
    assert_eq!(last, "response.completed", "{text}");
    let deltas: String = e
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap())
        .collect();
    let r = done["response"].clone();
    assert_eq!(deltas, output_text(&r));
    assert_eq!(r["status"], "completed");
    r
}

/// Headers naming Gemini with the mock as its host.
fn gemini_on(mock: &MockProvider) -> Vec<(&'static str, String)> {
    vec![
        ("x-portkey-provider", "google".into()),
        ("x-portkey-custom-host", format!("http://{}", mock.addr)),
        ("authorization", "Bearer AIza-test".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_serves_a_responses_request_with_tools() {
    let mock = MockProvider::start().await;
    mock.always(Reply::Json {
        status: 200,
        body: String::from_utf8(provider_fixture("google", "matrix_response.json")).unwrap(),
        headers: vec![],
    });
    let gw = TestGateway::start(test_settings());
    let resp = create(&gw, &gemini_on(&mock), body_for("gemini-2.5-flash", false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(output_text(&v), "Checking both cities.");
    assert_eq!(
        calls(&v),
        [
            ("get_weather".into(), json!({"city": "Paris"})),
            ("get_time".into(), json!({"city": "Rome"}))
        ]
    );
    assert_eq!(v["usage"]["input_tokens"], 120);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 64);
    assert_eq!(v["usage"]["output_tokens"], 55);
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 25);
    // Gemini got a generateContent request, the key in its header.
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(r.header("x-goog-api-key"), Some("AIza-test"));
    let sent = r.json();
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(
        sent["contents"][0]["parts"][0]["text"],
        "Weather in Paris and Rome?"
    );
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 300);
    let m = scrape(&gw).await;
    assert_eq!(
        tokens(&m, "google", "gemini-2.5-flash", "output"),
        Some(55.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_stream_becomes_responses_events() {
    let mock = MockProvider::start().await;
    mock.always(Reply::Sse {
        events: sse_fixture("google", "stream.gemini.sse"),
        delay: Duration::from_millis(2),
    });
    let gw = TestGateway::start(test_settings());
    let resp = create(&gw, &gemini_on(&mock), body_for("gemini-2.0-flash", true)).await;
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    let r = completed_stream(&resp.text().await.unwrap());
    assert_eq!(output_text(&r), "Hello, Zürich 👋");
    assert_eq!(
        calls(&r),
        [
            ("get_weather".into(), json!({"city": "Zürich"})),
            ("get_time".into(), json!({})),
            ("get_news".into(), json!({"topic": "ski"}))
        ]
    );
    assert_eq!(r["usage"]["input_tokens"], 12);
    assert_eq!(r["usage"]["output_tokens"], 28);
    let seen = &mock.requests()[0];
    assert_eq!(
        seen.path,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
}

/// Headers naming Bedrock with AWS keys and the mock as its host.
fn bedrock_on(mock: &MockProvider) -> Vec<(&'static str, String)> {
    vec![
        ("x-portkey-provider", "bedrock".into()),
        ("x-portkey-aws-access-key-id", "AKIDEXAMPLE".into()),
        ("x-portkey-aws-secret-access-key", "secret".into()),
        ("x-portkey-aws-region", "eu-west-3".into()),
        (
            "x-portkey-custom-host",
            mock.base_url().trim_end_matches("/v1").into(),
        ),
    ]
}

const BEDROCK_MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";

fn assert_signed(r: &Recorded) {
    let auth = r.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && auth.contains("/eu-west-3/bedrock/aws4_request"),
        "{auth}"
    );
    assert!(r.headers.iter().all(|(k, _)| !k.starts_with("x-portkey-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_serves_a_responses_request_whole_and_with_tools() {
    let mock = MockProvider::start().await;
    let text_answer: Value =
        serde_json::from_slice(&provider_fixture("bedrock", "matrix_response.json")).unwrap();
    let tool_answer: Value =
        serde_json::from_slice(&provider_fixture("bedrock", "tools_response.json")).unwrap();
    mock.script([Reply::json(200, text_answer), Reply::json(200, tool_answer)]);
    let gw = TestGateway::start(test_settings());

    let mut plain = body_for(BEDROCK_MODEL, false);
    plain.as_object_mut().unwrap().remove("tools");
    let resp = create(&gw, &bedrock_on(&mock), plain).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(output_text(&v), "Mixing red and yellow gives orange.");
    assert!(calls(&v).is_empty());
    assert_eq!(v["usage"]["input_tokens"], 17);
    assert_eq!(v["usage"]["output_tokens"], 8);
    let r = &mock.requests()[0];
    assert_eq!(
        r.path,
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
    assert_signed(r);
    let sent = r.json();
    assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"text": "Weather in Paris and Rome?"}]}])
    );
    assert_eq!(sent["inferenceConfig"]["maxTokens"], 300);
    assert!(sent.get("toolConfig").is_none());

    let resp = create(&gw, &bedrock_on(&mock), body_for(BEDROCK_MODEL, false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(output_text(&v), "Checking both.");
    assert_eq!(
        calls(&v),
        [
            ("weather".into(), json!({"city": "Paris"})),
            ("weather".into(), json!({"city": "Rome"}))
        ]
    );
    assert_eq!(v["output"][1]["call_id"], "tooluse_paris");
    // Cache reads and writes are input tokens too.
    assert_eq!(v["usage"]["input_tokens"], 1220);
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 1000);
    let sent = mock.requests()[1].json();
    assert_eq!(
        sent["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "get_weather"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bedrock_stream_with_tool_calls_becomes_responses_events() {
    let mock = MockProvider::start().await;
    mock.always(Reply::Bytes {
        content_type: "application/vnd.amazon.eventstream".into(),
        body: provider_fixture("bedrock", "tools_stream.eventstream"),
        piece: 7,
        delay: Duration::ZERO,
    });
    let gw = TestGateway::start(test_settings());
    let resp = create(&gw, &bedrock_on(&mock), body_for(BEDROCK_MODEL, true)).await;
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    let r = completed_stream(&resp.text().await.unwrap());
    assert_eq!(output_text(&r), "Checking both.");
    assert_eq!(
        calls(&r),
        [
            ("weather".into(), json!({"city": "Paris"})),
            ("weather".into(), json!({"city": "Rome"}))
        ]
    );
    assert_eq!(r["usage"]["input_tokens"], 1220);
    assert_eq!(r["usage"]["output_tokens"], 30);
    let seen = &mock.requests()[0];
    assert_eq!(
        seen.path,
        "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
    );
    assert_signed(seen);
    let m = scrape(&gw).await;
    assert_eq!(tokens(&m, "bedrock", BEDROCK_MODEL, "input"), Some(1220.0));
}

/// Headers naming Cohere with the mock as its host.
fn cohere_on(mock: &MockProvider) -> Vec<(&'static str, String)> {
    vec![
        ("x-portkey-provider", "cohere".into()),
        (
            "x-portkey-custom-host",
            mock.base_url().trim_end_matches("/v1").into(),
        ),
        ("authorization", "Bearer co-key".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohere_serves_a_responses_request_whole_and_with_tools() {
    let mock = MockProvider::start().await;
    let fixture = |name| fixture_upstream("cohere", name);
    mock.script([
        Reply::json(200, fixture("chat_response.json")),
        Reply::json(200, fixture("chat_tool_response.json")),
    ]);
    let gw = TestGateway::start(test_settings());
    let resp = create(&gw, &cohere_on(&mock), body_for("command-r-plus", false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "response");
    // Cohere names no model: the one asked for.
    assert_eq!(v["model"], "command-r-plus");
    assert!(!output_text(&v).is_empty());
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v2/chat");
    assert_eq!(r.header("authorization"), Some("Bearer co-key"));
    let sent = r.json();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["messages"][1]["role"], "user");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent["max_tokens"], 300);

    let resp = create(&gw, &cohere_on(&mock), body_for("command-r-plus", false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        calls(&v),
        [
            ("get_weather".into(), json!({"city": "Paris"})),
            ("get_weather".into(), json!({"city": "Lyon"}))
        ]
    );
    assert_eq!(v["output"][0]["call_id"], "get_weather_abc");
    assert_eq!(v["usage"]["input_tokens"], 30);
    assert_eq!(v["usage"]["output_tokens"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohere_streams_become_responses_events() {
    let mock = MockProvider::start().await;
    mock.script([
        Reply::Sse {
            events: sse_fixture("cohere", "chat_stream.sse"),
            delay: Duration::from_millis(2),
        },
        Reply::Sse {
            events: sse_fixture("cohere", "chat_tool_stream.sse"),
            delay: Duration::from_millis(2),
        },
    ]);
    let gw = TestGateway::start(test_settings());
    let resp = create(&gw, &cohere_on(&mock), body_for("command-r-plus", true)).await;
    assert_eq!(resp.status(), 200);
    let r = completed_stream(&resp.text().await.unwrap());
    assert_eq!(output_text(&r), "Héllo 👋 world");
    assert!(calls(&r).is_empty());
    assert!(r["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r["usage"]["output_tokens"], 3);
    assert_eq!(mock.requests()[0].json()["stream"], true);

    let resp = create(&gw, &cohere_on(&mock), body_for("command-r-plus", true)).await;
    assert_eq!(resp.status(), 200);
    let r = completed_stream(&resp.text().await.unwrap());
    assert_eq!(
        calls(&r),
        [
            ("get_weather".into(), json!({"city": "Paris"})),
            ("get_weather".into(), json!({"city": "Lyon"}))
        ]
    );
    assert_eq!(r["usage"]["input_tokens"], 40);
    assert_eq!(r["usage"]["output_tokens"], 20);
}
