//! The Messages rows of the matrix: the cases as Anthropic Messages requests through the
//! gateway's own layer choice (`providers::prepare`: native on Anthropic and Bedrock, through
//! the chat adapter elsewhere), and each provider's recorded answers through
//! `providers::response` to an Anthropic message and event stream; errors in Anthropic's
//! envelope.

use super::responses::model_of;
use super::*;
use portgate::providers::{self, Operation, Providers};
use portgate::Settings;
use serde_json::json;

/// The cases as Messages requests, with the texts each must carry to the provider.
fn cases(model: &str) -> Vec<(&'static str, Value, &'static [&'static str])> {
    let user = |t: &str| json!({"role": "user", "content": t});
    vec![
        (
            "plain text",
            json!({"model": model, "max_tokens": 100, "messages": [user("Hi")]}),
            &["Hi"],
        ),
        (
            "system prompt",
            json!({"model": model, "max_tokens": 100, "system": "Be brief.",
                "messages": [user("Hi")]}),
            &["Be brief.", "Hi"],
        ),
        (
            "multi-turn",
            json!({"model": model, "max_tokens": 100, "messages": [user("Hi"),
                {"role": "assistant", "content": "Hello"}, user("Red and yellow?")]}),
            &["Hi", "Hello", "Red and yellow?"],
        ),
        (
            "tools",
            json!({"model": model, "max_tokens": 100, "messages": [user("Weather?"),
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "c1", "name": "w", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "18C"}]}],
              "tools": [{"name": "w",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
              "tool_choice": {"type": "auto"}}),
            &["Weather?", "Paris", "18C", "city"],
        ),
        (
            "image",
            json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                    "data": "iVBORw0KGgo="}}]}]}),
            &["What is this?", "iVBORw0KGgo="],
        ),
        (
            "stream",
            json!({"model": model, "max_tokens": 100, "stream": true, "messages": [user("Hi")]}),
            &["Hi"],
        ),
    ]
}

fn native(slug: &str) -> bool {
    slug == "anthropic" || slug == "bedrock"
}

#[test]
fn every_provider_prepares_every_messages_case() {
    let all = Providers::from_settings(&Settings::default()).unwrap();
    for slug in providers() {
        let p = &**all.get(&slug).unwrap();
        for (name, body, texts) in cases(model_of(&slug)) {
            let case = (name, Operation::Messages, &body, texts);
            let Prepared {
                req,
                sent,
                chat_path,
            } = prepare_checked(p, &slug, model_of(&slug), case);
            if native(&slug) {
                // Anthropic's own request shape, whatever the endpoint.
                assert_eq!(sent["messages"], body["messages"], "{slug} / {name}");
                assert_eq!(sent["max_tokens"], 100, "{slug} / {name}");
            } else {
                // The provider's own chat endpoint, as for a chat request.
                assert_eq!(req.path, chat_path, "{slug} / {name}");
            }
        }
    }
}

#[test]
fn every_provider_answers_an_anthropic_message() {
    let all = Providers::from_settings(&Settings::default()).unwrap();
    for slug in providers() {
        let p = &**all.get(&slug).unwrap();
        let mut t = providers::response(p, Operation::Messages, 200, "application/json", &opts());
        let out = run(t.as_mut(), &[&whole_answer(&slug, "messages")]);
        let v: Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{slug}: {e}"));
        assert_message(&slug, &v);
        assert!(v["stop_reason"].is_string(), "{slug}: {v}");
        let u = t.usage().unwrap_or_else(|| panic!("{slug}: usage read"));
        assert!(u.input > 0 && u.output > 0, "{slug}: {u:?}");
        assert_eq!(v["usage"]["output_tokens"], u.output, "{slug}");
        assert!(
            v["usage"]["input_tokens"].as_u64().unwrap() > 0,
            "{slug}: {v}"
        );
    }
}

/// An Anthropic message: its content blocks, and its usage.
fn assert_message(slug: &str, v: &Value) {
    assert_eq!(v["type"], "message", "{slug}: {v}");
    assert_eq!(v["role"], "assistant", "{slug}: {v}");
    assert!(v["id"].is_string(), "{slug}: {v}");
    assert!(v["model"].is_string(), "{slug}: {v}");
    let content = v["content"].as_array().unwrap();
    assert!(!content.is_empty(), "{slug}: {v}");
    for block in content {
        match block["type"].as_str() {
            Some("text") => assert!(block["text"].is_string(), "{slug}: {block}"),
            Some("thinking") => assert!(block["thinking"].is_string(), "{slug}: {block}"),
            Some("tool_use") => {
                assert!(block["id"].is_string(), "{slug}: {block}");
                assert!(block["name"].is_string(), "{slug}: {block}");
                assert!(block["input"].is_object(), "{slug}: {block}");
            }
            _ => panic!("{slug}: a content block of another type: {block}"),
        }
    }
    assert!(
        v["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{slug}: {v}"
    );
}

#[test]
fn every_provider_streams_anthropic_events_at_any_chunk_boundary() {
    let all = Providers::from_settings(&Settings::default()).unwrap();
    for slug in providers() {
        let p = &**all.get(&slug).unwrap();
        let (stream, content_type) = stream_answer(&slug, "messages");
        let (whole, usage) = same_at_every_split(&slug, &stream, |chunks| {
            let mut t = providers::response(p, Operation::Messages, 200, content_type, &opts());
            let out = run(t.as_mut(), chunks);
            (out, t.usage())
        });
        let text = String::from_utf8(whole).unwrap();
        assert!(!text.contains("[DONE]"), "{slug}: no chat framing");
        let events: Vec<(String, Value)> = named_events(&slug, &text)
            .into_iter()
            .filter(|(n, _)| n != "ping")
            .collect();
        for (name, v) in &events {
            assert_eq!(&v["type"], name, "{slug}");
        }
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"message_start"), "{slug}: {names:?}");
        assert_eq!(
            names[names.len() - 2..],
            ["message_delta", "message_stop"],
            "{slug}: {names:?}"
        );
        let start = &events[0].1["message"];
        assert_eq!(start["role"], "assistant", "{slug}");
        assert_eq!(start["content"], json!([]), "{slug}");
        // Blocks are numbered in the order they start, take deltas while open and each
        // closes once (tool calls stay open side by side: their arguments may interleave).
        let mut open: Vec<u64> = Vec::new();
        let mut blocks = 0;
        for (name, v) in &events[1..events.len() - 2] {
            let index = v["index"].as_u64().unwrap();
            match name.as_str() {
                "content_block_start" => {
                    assert_eq!(index, blocks, "{slug}: {names:?}");
                    open.push(index);
                    blocks += 1;
                }
                "content_block_delta" => assert!(open.contains(&index), "{slug}: {v}"),
                "content_block_stop" => {
                    assert!(open.contains(&index), "{slug}: {v}");
                    open.retain(|i| *i != index);
                }
                other => panic!("{slug}: {other} between the start and the end"),
            }
        }
        assert!(blocks > 0 && open.is_empty(), "{slug}: {names:?}");
        let text_deltas: String = events
            .iter()
            .filter_map(|(_, v)| v["delta"]["text"].as_str())
            .collect();
        assert!(!text_deltas.is_empty(), "{slug}");
        let delta = &events[events.len() - 2].1;
        assert!(delta["delta"]["stop_reason"].is_string(), "{slug}: {delta}");
        let u = usage.unwrap_or_else(|| panic!("{slug}: stream usage read"));
        assert!(u.input > 0 && u.output > 0, "{slug}: {u:?}");
        assert_eq!(delta["usage"]["output_tokens"], u.output, "{slug}: {delta}");
    }
}

#[test]
fn every_providers_error_comes_in_anthropics_envelope() {
    for slug in providers() {
        let raw = fixture(&slug, "matrix_error.json");
        let v: Value =
            serde_json::from_slice(&providers::messages::envelope(&slug, 400, &raw)).unwrap();
        assert_eq!(v["type"], "error", "{slug}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{slug}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{slug} error: ")), "{message}");
        assert!(message.len() > slug.len() + 8, "{slug}: {message}");
        assert_eq!(v.as_object().unwrap().len(), 2, "{slug}: nothing else: {v}");
    }
}
