//! The Responses rows of the matrix: the cases as Responses API requests through the gateway's
//! own layer choice (`providers::prepare`: native on OpenAI and Azure OpenAI, through the chat
//! adapter elsewhere), and each provider's recorded answers through `providers::response` to
//! the Responses object and event sequence.

use super::*;
use portgate::providers::{self, Operation, Providers};
use portgate::Settings;
use serde_json::json;

/// The Bedrock model of every row: the Messages rows need an Anthropic one there.
pub(super) fn model_of(slug: &str) -> &'static str {
    if slug == "bedrock" {
        "anthropic.claude-3-5-haiku-20241022-v1:0"
    } else {
        "m"
    }
}

/// The cases as Responses requests, with the texts each must carry to the provider.
fn cases(model: &str) -> Vec<(&'static str, Value, &'static [&'static str])> {
    let user = |t: &str| json!({"role": "user", "content": t});
    vec![
        (
            "plain text",
            json!({"model": model, "input": "Hi"}),
            &["Hi"],
        ),
        (
            "system prompt",
            json!({"model": model, "instructions": "Be brief.", "input": "Hi"}),
            &["Be brief.", "Hi"],
        ),
        (
            "multi-turn",
            json!({"model": model, "input": [user("Hi"), {"role": "assistant", "content": "Hello"},
                user("Red and yellow?")]}),
            &["Hi", "Hello", "Red and yellow?"],
        ),
        (
            "tools",
            json!({"model": model, "input": [user("Weather?"),
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "18C"}],
              "tools": [{"type": "function", "name": "w",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
              "tool_choice": "auto"}),
            &["Weather?", "Paris", "18C", "city"],
        ),
        (
            "image",
            json!({"model": model, "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}]}),
            &["What is this?", "iVBORw0KGgo="],
        ),
        (
            "stream",
            json!({"model": model, "stream": true, "input": "Hi"}),
            &["Hi"],
        ),
    ]
}

fn native(slug: &str) -> bool {
    slug == "openai" || slug == "azure-openai"
}

#[test]
fn every_provider_prepares_every_responses_case() {
    let all = Providers::from_settings(&Settings::default()).unwrap();
    for slug in providers() {
        let p = &**all.get(&slug).unwrap();
        for (name, body, texts) in cases(model_of(&slug)) {
            let case = (name, Operation::Responses, &body, texts);
            let Prepared {
                req,
                sent,
                chat_path,
            } = prepare_checked(p, &slug, model_of(&slug), case);
            if native(&slug) {
                assert!(req.path.starts_with("/responses"), "{slug}: {}", req.path);
                assert_eq!(sent, body, "{slug} / {name}: sent as it came");
            } else {
                // The provider's own chat endpoint, as for a chat request.
                assert_eq!(req.path, chat_path, "{slug} / {name}");
            }
        }
    }
}

#[test]
fn every_provider_answers_in_the_responses_shape() {
    let all = Providers::from_settings(&Settings::default()).unwrap();
    for slug in providers() {
        let p = &**all.get(&slug).unwrap();
        let mut t = providers::response(p, Operation::Responses, 200, "application/json", &opts());
        let out = run(t.as_mut(), &[&whole_answer(&slug, "responses")]);
        let v: Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{slug}: {e}"));
        assert_response(&slug, &v);
        let u = t.usage().unwrap_or_else(|| panic!("{slug}: usage read"));
        assert!(u.input > 0 && u.output > 0, "{slug}: {u:?}");
        assert_eq!(v["usage"]["input_tokens"], u.input, "{slug}");
        assert_eq!(v["usage"]["output_tokens"], u.output, "{slug}");
    }
}

/// A completed Responses object: its output messages and function calls, and its usage.
fn assert_response(slug: &str, v: &Value) {
    assert_eq!(v["object"], "response", "{slug}: {v}");
    assert!(
        v["id"].as_str().unwrap().starts_with("resp_"),
        "{slug}: {v}"
    );
    assert_eq!(v["status"], "completed", "{slug}: {v}");
    let output = v["output"].as_array().unwrap();
    assert!(!output.is_empty(), "{slug}: {v}");
    for item in output {
        match item["type"].as_str() {
            Some("message") => {
                assert_eq!(item["role"], "assistant", "{slug}: {item}");
                assert_eq!(item["content"][0]["type"], "output_text", "{slug}: {item}");
                assert!(item["content"][0]["text"].is_string(), "{slug}: {item}");
            }
            Some("function_call") => {
                assert!(item["call_id"].is_string(), "{slug}: {item}");
                assert!(item["name"].is_string(), "{slug}: {item}");
                let args = item["arguments"].as_str().unwrap();
                let parsed: Value = serde_json::from_str(args).unwrap();
                assert!(parsed.is_object(), "{slug}: {item}");
            }
            _ => panic!("{slug}: an output item of another type: {item}"),
        }
    }
    assert!(
        v["usage"]["input_tokens"].as_u64().unwrap() > 0,
        "{slug}: {v}"
    );
    assert!(
        v["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{slug}: {v}"
    );
}

#[test]
fn every_provider_streams_responses_events_at_any_chunk_boundary() {
    let all = Providers::from_settings(&Settings::default()).unwrap();
    for slug in providers() {
        let p = &**all.get(&slug).unwrap();
        let (stream, content_type) = stream_answer(&slug, "responses");
        let (whole, usage) = same_at_every_split(&slug, &stream, |chunks| {
            let mut t = providers::response(p, Operation::Responses, 200, content_type, &opts());
            let out = run(t.as_mut(), chunks);
            (out, t.usage())
        });
        let text = String::from_utf8(whole).unwrap();
        assert!(!text.contains("[DONE]"), "{slug}: no chat framing: {text}");
        let events = named_events(&slug, &text);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[..2],
            ["response.created", "response.in_progress"],
            "{slug}"
        );
        assert_eq!(names.last(), Some(&"response.completed"), "{slug}");
        for (i, (name, v)) in events.iter().enumerate() {
            assert_eq!(&v["type"], name, "{slug}");
            assert_eq!(v["sequence_number"], i, "{slug}: {name}");
        }
        // Every item added is done, in order, and the deltas add up to the final text.
        let added = names
            .iter()
            .filter(|n| **n == "response.output_item.added")
            .count();
        let done = names
            .iter()
            .filter(|n| **n == "response.output_item.done")
            .count();
        assert!(added > 0 && added == done, "{slug}: {names:?}");
        let deltas: String = events
            .iter()
            .filter(|(n, _)| n == "response.output_text.delta")
            .map(|(_, v)| v["delta"].as_str().unwrap())
            .collect();
        let completed = &events.last().unwrap().1["response"];
        assert_response(&slug, completed);
        let final_text: String = completed["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "message")
            .filter_map(|i| i["content"][0]["text"].as_str())
            .collect();
        assert_eq!(deltas, final_text, "{slug}");
        let u = usage.unwrap_or_else(|| panic!("{slug}: stream usage read"));
        assert!(u.input > 0 && u.output > 0, "{slug}: {u:?}");
        assert_eq!(completed["usage"]["input_tokens"], u.input, "{slug}");
        assert_eq!(completed["usage"]["output_tokens"], u.output, "{slug}");
    }
}

#[test]
fn every_providers_error_comes_in_openais_envelope_on_responses() {
    let all = Providers::from_settings(&Settings::default()).unwrap();
    for slug in providers() {
        let p = &**all.get(&slug).unwrap();
        let raw = fixture(&slug, "matrix_error.json");
        // An error is not translated into a response: the gateway wraps it as on the chat
        // route, so the translator passes it through untouched.
        let mut t = providers::response(p, Operation::Responses, 400, "application/json", &opts());
        assert_eq!(run(t.as_mut(), &[&raw]), raw, "{slug}");
        let v: Value =
            serde_json::from_slice(&providers::error_envelope::envelope(&slug, 400, &raw)).unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{slug} error: ")), "{message}");
        assert!(message.len() > slug.len() + 8, "{slug}: {message}");
    }
}
