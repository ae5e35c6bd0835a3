//! The chat rows of the matrix: OpenAI chat requests through each adapter's `prepare`, and
//! each provider's recorded answers through its chat translator, checked in OpenAI's shape.

use super::*;
use portgate::providers::{Operation, Prepare, Providers};
use portgate::Settings;
use serde_json::json;

fn cases() -> Vec<(&'static str, Value)> {
    let user = |t: &str| json!({"role": "user", "content": t});
    vec![
        (
            "plain text",
            json!({"model": "m", "messages": [user("Hi")]}),
        ),
        (
            "system prompt",
            json!({"model": "m", "messages": [{"role": "system", "content": "Be brief."}, user("Hi")]}),
        ),
        (
            "multi-turn",
            json!({"model": "m", "messages": [user("Hi"), {"role": "assistant", "content": "Hello"}, user("Red and yellow?")]}),
        ),
        (
            "tools",
            json!({"model": "m", "messages": [user("Weather?"),
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                  "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "18C"}],
              "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
              "tool_choice": "auto"}),
        ),
        (
            "image",
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}),
        ),
        (
            "stream",
            json!({"model": "m", "stream": true, "messages": [user("Hi")]}),
        ),
    ]
}

#[test]
fn every_provider_prepares_every_case() {
    let all = Providers::from_settings(&Settings::default()).unwrap();
    let headers = http::HeaderMap::new();
    for slug in providers() {
        let p = all
            .get(&slug)
            .unwrap_or_else(|| panic!("{slug} is not a provider"));
        let options = options(&slug);
        for (name, body) in cases() {
            let req = p
                .prepare(Prepare {
                    op: Operation::ChatCompletions,
                    body: Bytes::from(body.to_string()),
                    api_key: Some("k"),
                    query: None,
                    stream: body["stream"] == true,
                    client_headers: &headers,
                    options: &options,
                })
                .unwrap_or_else(|e| panic!("{slug} / {name}: {e}"));
            assert!(req.path.starts_with('/'), "{slug} / {name}: {}", req.path);
            let sent: Value = serde_json::from_slice(&req.body)
                .unwrap_or_else(|e| panic!("{slug} / {name}: the upstream body is JSON: {e}"));
            assert!(sent.is_object(), "{slug} / {name}");
            assert!(!req.headers.is_empty(), "{slug} / {name}: the key is sent");
            assert!(
                req.headers.iter().any(|(_, v)| v.is_sensitive()),
                "{slug} / {name}: the key header is marked sensitive"
            );
        }
    }
}

#[test]
fn every_provider_answers_in_openai_shape() {
    let all = Providers::from_settings(&Settings::default()).unwrap();
    for slug in providers() {
        let p = all.get(&slug).unwrap();
        let mut t = p.response(Operation::ChatCompletions, 200, "application/json", &opts());
        let out = run(t.as_mut(), &[&fixture(&slug, "matrix_response.json")]);
        let v: Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{slug}: {e}"));
        assert_eq!(v["object"], "chat.completion", "{slug}");
        assert_eq!(v["choices"][0]["message"]["role"], "assistant", "{slug}");
        assert!(v["choices"][0]["message"]["content"].is_string(), "{slug}");
        assert!(v["choices"][0]["finish_reason"].is_string(), "{slug}");
        let u = t.usage().unwrap_or_else(|| panic!("{slug}: usage read"));
        assert!(u.input > 0 && u.output > 0, "{slug}: {u:?}");
        assert_eq!(v["usage"]["prompt_tokens"], u.input, "{slug}");
        assert_eq!(v["usage"]["completion_tokens"], u.output, "{slug}");
        assert_usage_shape(&slug, &v["usage"]);
        assert!(t.model().is_some(), "{slug}: model read");
    }
}

/// The one `usage` shape of every translated answer: OpenAI's fields and both detail objects,
/// the total their sum; only Anthropic adds its prompt-cache counts. OpenAI and Azure OpenAI
/// answer in OpenAI's format already: their `usage` is relayed as it came.
fn assert_usage_shape(slug: &str, u: &Value) {
    if slug == "openai" || slug == "azure-openai" {
        return;
    }
    let mut keys: Vec<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
    keys.retain(|k| !(slug == "anthropic" && k.starts_with("cache_")));
    keys.sort();
    assert_eq!(
        keys,
        [
            "completion_tokens",
            "completion_tokens_details",
            "prompt_tokens",
            "prompt_tokens_details",
            "total_tokens"
        ],
        "{slug}: {u}"
    );
    assert!(
        u["prompt_tokens_details"]["cached_tokens"].is_u64(),
        "{slug}: {u}"
    );
    assert!(
        u["completion_tokens_details"]["reasoning_tokens"].is_u64(),
        "{slug}: {u}"
    );
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()),
        "{slug}: {u}"
    );
}

#[test]
fn every_provider_streams_in_openai_shape_at_any_chunk_boundary() {
    let all = Providers::from_settings(&Settings::default()).unwrap();
    for slug in providers() {
        let p = all.get(&slug).unwrap();
        let (stream, content_type) = stream_answer(&slug, "chat");
        let (whole, usage) = same_at_every_split(&slug, &stream, |chunks| {
            let mut t = p.response(Operation::ChatCompletions, 200, content_type, &opts());
            let out = run(t.as_mut(), chunks);
            (out, t.usage())
        });
        let text = String::from_utf8(whole).unwrap();
        let datas: Vec<&str> = text
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .collect();
        assert_eq!(datas.last(), Some(&"[DONE]"), "{slug}: ends with [DONE]");
        let chunks: Vec<Value> = datas
            .iter()
            .filter(|d| **d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        // Chunks with choices are OpenAI chunks (Azure leads with a filter-results chunk of
        // its own, relayed as it is), and the first of them carries the role.
        let with_choices: Vec<&Value> = chunks
            .iter()
            .filter(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty()))
            .collect();
        assert!(
            with_choices
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk"),
            "{slug}"
        );
        assert_eq!(
            with_choices[0]["choices"][0]["delta"]["role"], "assistant",
            "{slug}: the role comes first"
        );
        assert!(
            chunks
                .iter()
                .any(|c| c["choices"][0]["finish_reason"].is_string()),
            "{slug}: a finish reason"
        );
        let u = usage.unwrap_or_else(|| panic!("{slug}: stream usage read"));
        assert!(u.input > 0 && u.output > 0, "{slug}: {u:?}");
        let sent = chunks
            .iter()
            .rev()
            .find(|c| c["usage"].is_object())
            .unwrap_or_else(|| panic!("{slug}: a chunk with usage"));
        assert_usage_shape(&slug, &sent["usage"]);
    }
}

#[test]
fn every_providers_error_fits_portkeys_envelope() {
    for slug in providers() {
        let raw = fixture(&slug, "matrix_error.json");
        let v: Value = serde_json::from_slice(&portgate::providers::error_envelope::envelope(
            &slug, 400, &raw,
        ))
        .unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{slug} error: ")), "{message}");
        assert!(
            message.len() > slug.len() + 8,
            "{slug}: the provider's message kept"
        );
        assert_eq!(v["provider"], slug.as_str());
    }
}
