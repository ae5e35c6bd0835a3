//! One conformance matrix for every provider, for each API the gateway serves on all of them:
//! OpenAI chat (`chat`), OpenAI's Responses API (`responses`) and Anthropic's Messages API
//! (`messages`). The same cases (plain text, system prompt, multi-turn, tools, image, stream),
//! written in each API's own request shape, go through the step the gateway builds upstream
//! requests with, and each provider's recorded answers (`tests/fixtures/<slug>/matrix_*` —
//! whole, streamed and split at every byte boundary, and an error) through the translator the
//! gateway picks; the same shape invariants are checked for all. Provider-specific wire
//! details are tested in each adapter's own fixtures.
//!
//! A provider that serves an API natively answers it in that API's own format, so its
//! recorded answers for that API are separate fixtures (`matrix_responses*` for OpenAI and
//! Azure OpenAI, `matrix_messages*` for Bedrock; Anthropic's chat fixtures already are
//! Messages answers).

mod chat;
mod messages;
mod responses;

use bytes::Bytes;
use portgate::providers::{ProviderOptions, ResponseOptions};
use portgate::stream::Translator;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The providers of the matrix: every adapter with fixtures.
fn providers() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("tests/fixtures")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("matrix_response.json").exists())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

fn fixture_path(slug: &str, name: &str) -> PathBuf {
    Path::new("tests/fixtures").join(slug).join(name)
}

fn fixture(slug: &str, name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(slug, name)).unwrap()
}

/// A provider's own settings (an Azure resource and deployment), when it needs them.
fn options(slug: &str) -> ProviderOptions {
    std::fs::read(fixture_path(slug, "matrix_options.json"))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or_default()
}

/// The recorded whole answer of `slug` to `api` (`responses`, `messages`): the API's own
/// fixture where the provider serves it natively, else the chat one.
fn whole_answer(slug: &str, api: &str) -> Vec<u8> {
    let own = format!("matrix_{api}.json");
    if fixture_path(slug, &own).exists() {
        fixture(slug, &own)
    } else {
        fixture(slug, "matrix_response.json")
    }
}

/// The recorded stream of `slug` to `api` and its content type: SSE, or AWS's binary event
/// stream.
fn stream_answer(slug: &str, api: &str) -> (Vec<u8>, &'static str) {
    for prefix in [format!("matrix_{api}_stream"), "matrix_stream".to_string()] {
        let binary = format!("{prefix}.eventstream");
        if fixture_path(slug, &binary).exists() {
            return (fixture(slug, &binary), "application/vnd.amazon.eventstream");
        }
        let sse = format!("{prefix}.sse");
        if fixture_path(slug, &sse).exists() {
            return (fixture(slug, &sse), "text/event-stream");
        }
    }
    panic!("{slug}: no matrix stream");
}

fn opts() -> ResponseOptions<'static> {
    ResponseOptions {
        hide_usage: false,
        strict: true,
        created: 1_700_000_000,
        model: Some("m"),
    }
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

/// The output of `translate` for the whole stream, checked to be the same when the stream
/// arrives cut in two at any byte.
fn same_at_every_split<T>(
    slug: &str,
    stream: &[u8],
    translate: impl Fn(&[&[u8]]) -> (Vec<u8>, T),
) -> (Vec<u8>, T) {
    let whole = translate(&[stream]);
    for at in 1..stream.len() {
        let (split, _) = translate(&[&stream[..at], &stream[at..]]);
        assert!(split == whole.0, "{slug}: split at {at}");
    }
    whole
}

/// The named events of an SSE body: (event name, payload).
fn named_events(slug: &str, text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("{slug}: an event without a name: {e}"));
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("{slug}: an event without data: {e}"));
            let v =
                serde_json::from_str(data).unwrap_or_else(|err| panic!("{slug}: {err}: {data}"));
            (name.to_string(), v)
        })
        .collect()
}

/// Whether the upstream request asks for a stream: in the body (`stream: true`) or in the
/// path (Gemini's `:streamGenerateContent`, Bedrock's `converse-stream` and
/// `invoke-with-response-stream`).
fn asks_for_a_stream(path: &str, sent: &Value) -> bool {
    sent["stream"] == true || path.to_ascii_lowercase().contains("stream")
}

/// One case of an agent API prepared for one provider by the gateway's own layer choice
/// (`providers::prepare`), with what every provider request must hold checked: a JSON object
/// body, the key sent and marked sensitive, each of the case's texts on the wire, and a stream
/// asked for exactly when the client asked. `chat_path` is where the provider's own chat
/// request of the same kind goes (a translated API must go there too).
pub(super) struct Prepared {
    pub req: portgate::providers::ProviderRequest,
    pub sent: Value,
    pub chat_path: String,
}

pub(super) fn prepare_checked(
    p: &dyn portgate::providers::Provider,
    slug: &str,
    model: &str,
    (name, op, body, texts): (&str, portgate::providers::Operation, &Value, &[&str]),
) -> Prepared {
    use portgate::providers::{prepare, Operation, Prepare};
    let headers = http::HeaderMap::new();
    let options = options(slug);
    let stream = body["stream"] == true;
    let run = |op, body: &Value| {
        prepare(
            p,
            Prepare {
                op,
                body: Bytes::from(body.to_string()),
                api_key: Some("k"),
                query: None,
                stream,
                client_headers: &headers,
                options: &options,
            },
        )
    };
    let req = run(op, body).unwrap_or_else(|e| panic!("{slug} / {name}: {e}"));
    let sent: Value = serde_json::from_slice(&req.body)
        .unwrap_or_else(|e| panic!("{slug} / {name}: the upstream body is JSON: {e}"));
    assert!(sent.is_object(), "{slug} / {name}");
    assert!(
        req.headers.iter().any(|(_, v)| v.is_sensitive()),
        "{slug} / {name}: the key is sent, marked sensitive"
    );
    let wire = String::from_utf8(req.body.to_vec()).unwrap();
    for t in texts {
        assert!(
            wire.contains(t),
            "{slug} / {name}: {t:?} reaches it: {wire}"
        );
    }
    assert_eq!(
        asks_for_a_stream(&req.path, &sent),
        stream,
        "{slug} / {name}: {} {sent}",
        req.path
    );
    let chat = serde_json::json!({
        "model": model, "stream": stream,
        "messages": [{"role": "user", "content": "Hi"}]});
    let chat_path = run(Operation::ChatCompletions, &chat).unwrap().path;
    Prepared {
        req,
        sent,
        chat_path,
    }
}
