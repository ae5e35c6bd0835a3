//! The log store, on files and on PostgreSQL with the same cases: requests and feedback
//! stored, a stream reassembled, failed and guardrail-denied answers left out of the dataset,
//! an update that moves a conversation out; Responses and Messages traffic (whole and
//! streamed, on translated providers) exported as chat conversations; two gateways on one
//! database with feedback updated through the other replica; a database that goes down under
//! traffic.

use crate::support::*;
use portgate::log_store::export::{self, ExportOptions, Summary};
use portgate::settings::log_store::{LogStoreBackend, LogStoreSettings};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn file_store(dir: &Scratch) -> LogStoreSettings {
    LogStoreSettings {
        backend: LogStoreBackend::File,
        bodies: true,
        dir: dir.0.join("store").display().to_string(),
        ..LogStoreSettings::default()
    }
}

fn pg_store(pg: &PgServer) -> LogStoreSettings {
    let mut s = LogStoreSettings {
        backend: LogStoreBackend::Postgres,
        bodies: true,
        ..LogStoreSettings::default()
    };
    s.postgres.url = Some(pg.url());
    s.postgres.reconnect_interval_ms = 200;
    s
}

/// A chat through the mock (`openai`), with extra headers.
async fn ask(gw: &TestGateway, headers: &[(&str, &str)], body: Value) -> u16 {
    let mut all = vec![
        ("x-portkey-provider", "openai"),
        ("authorization", "Bearer sk-test-secret"),
    ];
    all.extend_from_slice(headers);
    chat(gw, "/v1/chat/completions", &all, body).await.0
}

fn gateway(mock: &MockProvider, store: &LogStoreSettings) -> TestGateway {
    let mut s = test_settings();
    route_to(&mut s, mock, &["openai"]);
    s.log_store = Some(store.clone());
    TestGateway::start(s)
}

/// Exports with `opts` (the export blocks: it runs off the test's runtime).
async fn export_with(store: &LogStoreSettings, opts: ExportOptions) -> (Summary, Vec<Value>) {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let summary = export::run(&store, &|_| None, &opts, &mut |_| {}).unwrap();
        let text = std::fs::read_to_string(&opts.out).unwrap();
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (summary, lines)
    })
    .await
    .unwrap()
}

/// Exports until `read` chat requests are in the store (the writer is asynchronous).
async fn export_when(
    store: &LogStoreSettings,
    opts: ExportOptions,
    read: u64,
) -> (Summary, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = export_with(store, opts.clone()).await;
        if got.0.read >= read || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post_feedback(gw: &TestGateway, trace: &str, value: i64) -> String {
    let resp = client()
        .post(gw.url("/v1/feedback"))
        .json(&json!({"trace_id": trace, "value": value}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["feedback_ids"][0].as_str().unwrap().to_string()
}

async fn put_feedback(gw: &TestGateway, id: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .put(gw.url(&format!("/v1/feedback/{id}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

const DENY_SECRETS: &str = r#"{"before_request_hooks": [{"type": "guardrail", "id": "no-secrets", "deny": true, "checks": [{"id": "default.regexMatch", "parameters": {"rule": "secret", "not": true}}]}]}"#;

/// Four requests of four outcomes, each rated 5, then one rating lowered.
async fn the_loop(store: LogStoreSettings, other: Option<LogStoreSettings>, dir: &Scratch) {
    let mock = MockProvider::start().await;
    mock.for_model(
        "m-fail",
        Reply::json(500, json!({"error": {"message": "down"}})),
    );
    let mut events = chat_events("m-stream", &["Hel", "lo"]);
    events.insert(
        2,
        format!(
            "data: {}",
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": "m-stream",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        ),
    );
    mock.for_model(
        "m-stream",
        Reply::Sse {
            events,
            delay: Duration::from_millis(5),
        },
    );
    let gw = gateway(&mock, &store);
    let trace = |t: &'static str| ("x-portkey-trace-id", t);
    // A credential-like field in a body is redacted before it is stored.
    let mut good = user_chat("m-good", "q-good");
    good["api_key"] = json!("sk-body-secret");
    let s = ask(&gw, &[trace("t-good")], good).await;
    assert_eq!(s, 200);
    let mut streamed = user_chat("m-stream", "q-stream");
    streamed["stream"] = json!(true);
    let s = ask(&gw, &[trace("t-stream")], streamed).await;
    assert_eq!(s, 200);
    let s = ask(&gw, &[trace("t-fail")], user_chat("m-fail", "q-fail")).await;
    assert_eq!(s, 500);
    let s = ask(
        &gw,
        &[trace("t-denied"), ("x-portkey-config", DENY_SECRETS)],
        user_chat("m-good", "a secret"),
    )
    .await;
    assert_eq!(s, 446);
    // The provider saw three of them (the denied one never left).
    assert_eq!(mock.request_count(), 3);
    let mut ids = Vec::new();
    for t in ["t-good", "t-stream", "t-fail", "t-denied"] {
        ids.push(post_feedback(&gw, t, 5).await);
    }

    let opts = ExportOptions {
        out: dir.0.join("train.jsonl"),
        min_feedback: Some(1.0),
        ..ExportOptions::default()
    };
    let (summary, lines) = export_when(&store, opts.clone(), 4).await;
    assert_eq!(summary.read, 4, "{summary:?}");
    assert_eq!(summary.skipped.get("failed"), Some(&1), "{summary:?}");
    assert_eq!(
        summary.skipped.get("guardrail_denied"),
        Some(&1),
        "{summary:?}"
    );
    let mut got: Vec<Value> = lines;
    got.sort_by_key(|l| {
        l["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .to_string()
    });
    assert_eq!(
        got,
        vec![
            json!({"messages": [{"role": "user", "content": "q-good"},
                                {"role": "assistant", "content": "hello from mock"}]}),
            // The stream, reassembled from its events.
            json!({"messages": [{"role": "user", "content": "q-stream"},
                                {"role": "assistant", "content": "Hello"}]}),
        ]
    );

    // The rating of the plain answer is lowered, through the other replica when there is one.
    let second = other.as_ref().map(|o| gateway(&mock, o));
    let (status, v) = put_feedback(
        second.as_ref().unwrap_or(&gw),
        &ids[0],
        json!({"value": -4}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["feedback_ids"], json!([ids[0]]));
    let (status, v) = put_feedback(
        second.as_ref().unwrap_or(&gw),
        "no-such-id",
        json!({"value": 1}),
    )
    .await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["status"], "failure");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (summary, lines) = export_with(&store, opts.clone()).await;
        if summary.exported == 1 {
            assert_eq!(lines[0]["messages"][0]["content"], "q-stream");
            assert_eq!(summary.skipped.get("below_min_feedback"), Some(&1));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the update never applied: {summary:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_on_files() {
    let dir = Scratch::new("pg-it-store", "files");
    the_loop(file_store(&dir), None, &dir).await;
    let mut stored = String::new();
    for f in std::fs::read_dir(dir.0.join("store")).unwrap() {
        stored.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap());
    }
    assert!(stored.contains("q-good") && stored.contains("[redacted]"));
    assert!(!stored.contains("sk-body-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_on_postgres_across_two_replicas() {
    let dir = Scratch::new("pg-it-store", "pg");
    let pg = PgServer::start();
    the_loop(pg_store(&pg), Some(pg_store(&pg)), &dir).await;
    // The schema is versioned: both replicas started on it, it was migrated once.
    assert_eq!(
        pg.query("SELECT string_agg(version::text, ',' ORDER BY version) FROM portgate_log_schema"),
        "1,2"
    );
    // Credential-like fields never reach the store.
    assert_eq!(
        pg.query("SELECT count(*) FROM portgate_requests WHERE line::text LIKE '%sk-%'"),
        "0"
    );
}

const ANTHROPIC_MESSAGE: &str = include_str!("../fixtures/anthropic/message_tools.json");
const ANTHROPIC_STREAM: &str = include_str!("../fixtures/anthropic/stream_tools.sse");

/// A request to `path` with `headers`; the status and the body's text.
async fn post(
    gw: &TestGateway,
    path: &str,
    headers: &[(&str, String)],
    body: Value,
) -> (u16, String) {
    let mut req = client().post(gw.url(path)).json(&body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn call(id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

/// A chat chunk of the mock's stream.
fn chunk(delta: Value, finish: Option<&str>) -> String {
    let c = json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
        "model": "gpt-stream", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {c}")
}

/// Agent traffic: the Responses API served by a translated provider (anthropic) and the
/// Messages API on openai, each whole and streamed, exported as the chat conversations they
/// amount to.
async fn agent_apis(store: LogStoreSettings, dir: &Scratch) {
    let mock = MockProvider::start().await;
    mock.for_model(
        "claude-whole",
        Reply::Json {
            status: 200,
            body: ANTHROPIC_MESSAGE.into(),
            headers: vec![],
        },
    );
    let anthropic_events = ANTHROPIC_STREAM
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(String::from)
        .collect();
    mock.for_model(
        "claude-stream",
        Reply::Sse {
            events: anthropic_events,
            delay: Duration::from_millis(2),
        },
    );
    mock.for_model(
        "gpt-whole",
        Reply::json(
            200,
            json!({"id": "chatcmpl-w", "object": "chat.completion", "created": 1, "model": "gpt-whole",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                    "content": null, "tool_calls": [call("call_w", "weather", "{\"city\":\"Oslo\"}")]}}],
                "usage": {"prompt_tokens": 40, "completion_tokens": 7, "total_tokens": 47}}),
        ),
    );
    mock.for_model(
        "gpt-stream",
        Reply::Sse {
            events: vec![
                chunk(json!({"role": "assistant", "content": "On it."}), None),
                chunk(
                    json!({"tool_calls": [{"index": 0, "id": "call_s", "type": "function",
                        "function": {"name": "weather", "arguments": "{\"city\":"}}]}),
                    None,
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Rome\"}"}}]}),
                    None,
                ),
                chunk(json!({}), Some("tool_calls")),
                "data: [DONE]".into(),
            ],
            delay: Duration::from_millis(2),
        },
    );
    let gw = gateway(&mock, &store);

    let responses_body = |model: &str, question: &str, stream: bool| {
        json!({"model": model, "instructions": "Be brief.", "stream": stream,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": question}]}],
            "tools": [{"type": "function", "name": "get_weather", "description": "Weather of a city",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]})
    };
    let on_anthropic = anthropic_on(&mock);
    let (s, text) = post(
        &gw,
        "/v1/responses",
        &on_anthropic,
        responses_body("claude-whole", "Paris and Rome, whole?", false),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    let (s, text) = post(
        &gw,
        "/v1/responses",
        &on_anthropic,
        responses_body("claude-stream", "Paris and Rome, streamed?", true),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert!(text.contains("response.completed"), "{text}");

    let messages_body = |model: &str, question: &str, stream: bool| {
        json!({"model": model, "max_tokens": 256, "stream": stream, "system": "Be brief.",
            "messages": [{"role": "user", "content": question}],
            "tools": [{"name": "weather", "description": "Weather of a city.",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]})
    };
    let on_openai = [
        ("x-portkey-provider", "openai".to_string()),
        ("x-api-key", "sk-test".to_string()),
        ("anthropic-version", "2023-06-01".to_string()),
    ];
    let (s, text) = post(
        &gw,
        "/v1/messages",
        &on_openai,
        messages_body("gpt-whole", "Oslo, whole?", false),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    let (s, text) = post(
        &gw,
        "/v1/messages",
        &on_openai,
        messages_body("gpt-stream", "Rome, streamed?", true),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert!(text.contains("message_stop"), "{text}");

    let opts = ExportOptions {
        out: dir.0.join("agents.jsonl"),
        ..ExportOptions::default()
    };
    let (summary, mut got) = export_when(&store, opts, 4).await;
    assert_eq!((summary.read, summary.exported), (4, 4), "{summary:?}");

    let responses_tools = json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let messages_tools = json!([{"type": "function", "function": {"name": "weather",
        "description": "Weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let system = json!({"role": "system", "content": "Be brief."});
    let asked = |q: &str| json!({"role": "user", "content": [{"type": "text", "text": q}]});
    let mut expected = vec![
        json!({"messages": [system, asked("Paris and Rome, whole?"),
            {"role": "assistant", "content": "I'll check both cities.", "tool_calls": [
                call("toolu_01A", "get_weather", "{\"city\":\"Paris\"}"),
                call("toolu_01B", "get_weather", "{\"city\":\"Rome\"}")]}],
            "tools": responses_tools}),
        // The Responses stream's closing event carries the answer (arguments as streamed).
        json!({"messages": [system, asked("Paris and Rome, streamed?"),
            {"role": "assistant", "content": "Checking ü both.", "tool_calls": [
                call("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", "{\"city\": \"Paris\"}"),
                call("toolu_02", "get_weather", "{\"city\": \"Rome\"}")]}],
            "tools": responses_tools}),
        json!({"messages": [system, {"role": "user", "content": "Oslo, whole?"},
            {"role": "assistant", "tool_calls": [call("call_w", "weather", "{\"city\":\"Oslo\"}")]}],
            "tools": messages_tools}),
        // The Anthropic event stream, reassembled.
        json!({"messages": [system, {"role": "user", "content": "Rome, streamed?"},
            {"role": "assistant", "content": "On it.",
             "tool_calls": [call("call_s", "weather", "{\"city\":\"Rome\"}")]}],
            "tools": messages_tools}),
    ];
    got.sort_by_key(Value::to_string);
    expected.sort_by_key(Value::to_string);
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_apis_on_files() {
    let dir = Scratch::new("pg-it-store", "agents-files");
    agent_apis(file_store(&dir), &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_apis_on_postgres() {
    let dir = Scratch::new("pg-it-store", "agents-pg");
    let pg = PgServer::start();
    agent_apis(pg_store(&pg), &dir).await;
}

/// Waits until the table holds exactly one request (the test's first).
async fn first_request_stored(pg: &PgServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pg
        .try_query("SELECT count(*) FROM portgate_requests")
        .as_deref()
        != Some("1")
    {
        assert!(
            Instant::now() < deadline,
            "the first request was not stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_down_never_fails_a_request() {
    let mut pg = PgServer::start();
    let mock = MockProvider::start().await;
    let store = pg_store(&pg);
    let gw = gateway(&mock, &store);
    let s = ask(&gw, &[], user_chat("m", "before")).await;
    assert_eq!(s, 200);
    first_request_stored(&pg).await;
    pg.stop();
    for i in 0..20 {
        let s = ask(&gw, &[], user_chat("m", &format!("during {i}"))).await;
        assert_eq!(s, 200, "request {i} failed with the store down");
    }
    // Feedback is still accepted (queued); an update of an id nobody here knows is a 503.
    post_feedback(&gw, "t", 1).await;
    let (status, v) = put_feedback(&gw, "unknown", json!({"value": 1})).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(
        v,
        json!({"status": "failure", "message": "Feedback cannot be updated now: the log store is unavailable"})
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(&gw).await;
        let dropped = sample(
            &text,
            "portgate_log_store_dropped_total",
            &[("reason", "store_error")],
        );
        if dropped.unwrap_or(0.0) >= 20.0 {
            break;
        }
        assert!(Instant::now() < deadline, "drops not counted: {dropped:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        mock.request_count(),
        21,
        "every request reached the provider"
    );
    // Back up: the writer reconnects and stores again.
    pg.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = ask(&gw, &[], user_chat("m", "after")).await;
        assert_eq!(s, 200);
        if pg.query("SELECT count(*) FROM portgate_requests WHERE request->'messages'->0->>'content' = 'after'") != "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing stored after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Tables dropped by hand (the version table left behind): the writer notices the first failed
/// batch, makes the schema again, and stores the next requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_tables_are_made_again() {
    let pg = PgServer::start();
    let mock = MockProvider::start().await;
    let gw = gateway(&mock, &pg_store(&pg));
    assert_eq!(ask(&gw, &[], user_chat("m", "first")).await, 200);
    first_request_stored(&pg).await;
    pg.query("DROP TABLE portgate_requests, portgate_feedback");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert_eq!(ask(&gw, &[], user_chat("m", "again")).await, 200);
        let stored = pg.try_query(
            "SELECT count(*) FROM portgate_requests WHERE request->'messages'->0->>'content' = 'again'",
        );
        if stored.is_some_and(|n| n != "0") {
            break;
        }
        assert!(Instant::now() < deadline, "the tables were not made again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pg.query("SELECT string_agg(version::text, ',' ORDER BY version) FROM portgate_log_schema"),
        "1,2"
    );
    assert_eq!(
        pg.query("SELECT indexdef FROM pg_indexes WHERE indexname = 'portgate_requests_created_at'"),
        "CREATE INDEX portgate_requests_created_at ON public.portgate_requests USING brin (created_at)"
    );
}

/// `portgate dataset export` as a user runs it: a summary on success; one line naming the
/// cause and a non-zero exit otherwise, with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_command() {
    let dir = Scratch::new("pg-it-store", "cli");
    let mock = MockProvider::start().await;
    let store = file_store(&dir);
    let gw = gateway(&mock, &store);
    let s = ask(&gw, &[("x-portkey-trace-id", "t1")], user_chat("m", "q")).await;
    assert_eq!(s, 200);
    export_when(
        &store,
        ExportOptions {
            out: dir.0.join("probe.jsonl"),
            ..Default::default()
        },
        1,
    )
    .await;
    let settings = dir.0.join("portgate.yaml");
    std::fs::write(
        &settings,
        format!(
            "log_store:\n  backend: file\n  bodies: true\n  dir: {}\n",
            store.dir
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portgate"))
            .args(["dataset", "export", "--config"])
            .arg(&settings)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let out = dir.0.join("train.jsonl");
    let out_s = out.display().to_string();
    let (code, stdout, stderr) = run(&["--out", &out_s, "--metadata", "team=a"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("1 conversations read, 0 exported, 1 skipped (filtered 1)"),
        "{stdout}"
    );
    let (code, stdout, _) = run(&["--out", &out_s]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.starts_with("1 conversations read, 1 exported\n"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 1);

    let (code, _, stderr) = run(&["--out", &out_s, "--metadata", "team"]);
    assert_eq!(
        (code, stderr.as_str()),
        (
            Some(1),
            "portgate: --metadata \"team\": expected KEY=VALUE\n"
        )
    );

    // A database nobody listens on: named, not hung, nothing written.
    let unreachable = dir.0.join("pg.yaml");
    std::fs::write(
        &unreachable,
        format!(
            "log_store:\n  backend: postgres\n  postgres:\n    url: postgres://portgate:hunter2@127.0.0.1:{}/postgres\n    timeout_ms: 2000\n",
            free_port()
        ),
    )
    .unwrap();
    let gone = dir.0.join("gone.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portgate"))
        .args(["dataset", "export", "--config"])
        .arg(&unreachable)
        .arg("--out")
        .arg(&gone)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("portgate: log store unreachable: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is never printed: {stderr}"
    );
    assert!(!gone.exists());
}
