use super::*;
use crate::log_store::file::FileStore;
use crate::log_store::record::{FeedbackChange, FeedbackRow};
use serde_json::json;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("pg-export-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn settings(&self) -> LogStoreSettings {
        LogStoreSettings {
            dir: self.0.join("store").display().to_string(),
            ..LogStoreSettings::default()
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn request(trace: &str, user: &str, answer: &str) -> StoredRequest {
    StoredRequest {
        trace_id: trace.into(),
        timestamp: "2026-12-05T10:00:00.000Z".into(),
        route: "chat_completions".into(),
        status: 200,
        provider: Some("openai".into()),
        model: Some("gpt-4o-mini".into()),
        model_served: Some("gpt-4o-mini-2024-07-18".into()),
        stream: false,
        input_tokens: Some(5),
        output_tokens: Some(2),
        cost_usd: None,
        metadata: json!({"team": "a"}),
        error: None,
        denied: false,
        line: json!({}),
        request: Some(json!({"model": "gpt-4o-mini", "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": user, "extra": 1},
        ]})),
        answer: Some(
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}),
        ),
    }
}

fn feedback(id: &str, trace: &str, value: i64, weight: f64) -> FileLine {
    FileLine::Feedback(FeedbackRow {
        feedback_id: id.into(),
        trace_id: trace.into(),
        value,
        weight,
        metadata: Map::new(),
        timestamp: "2026-12-05T10:00:01.000Z".into(),
    })
}

fn write(settings: &LogStoreSettings, lines: Vec<FileLine>) {
    let mut store = FileStore::open(settings).unwrap();
    let mut out = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut out, &l).unwrap();
        out.push(b'\n');
    }
    store.write(&out).unwrap();
}

fn export(settings: &LogStoreSettings, opts: &ExportOptions) -> (Summary, Vec<Value>) {
    let summary = run(settings, &|_| None, opts, &mut |_| {}).unwrap();
    let text = std::fs::read_to_string(&opts.out).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (summary, lines)
}

#[test]
fn only_whole_successful_rated_conversations_are_exported_once() {
    let dir = Dir::new("kinds");
    let s = dir.settings();
    let mut failed = request("t-failed", "q2", "a2");
    failed.status = 500;
    let mut denied = request("t-denied", "q3", "a3");
    denied.denied = true;
    let mut cut = request("t-cut", "q4", "a4");
    cut.error = Some("upstream_io".into());
    let mut bare = request("t-bare", "q5", "a5");
    bare.request = None;
    let mut embed = request("t-good", "q6", "a6");
    embed.route = "embeddings".into();
    write(
        &s,
        vec![
            FileLine::Request(Box::new(request("t-good", "q1", "a1"))),
            FileLine::Request(Box::new(failed)),
            FileLine::Request(Box::new(denied)),
            FileLine::Request(Box::new(cut)),
            FileLine::Request(Box::new(bare)),
            FileLine::Request(Box::new(request("t-good", "q1", "a1"))),
            FileLine::Request(Box::new(request("t-unrated", "q7", "a7"))),
            FileLine::Request(Box::new(embed)),
            // Feedback after the request it rates, and on every trace.
            feedback("f1", "t-good", 1, 1.0),
            feedback("f2", "t-failed", 1, 1.0),
            feedback("f3", "t-denied", 1, 1.0),
            feedback("f4", "t-cut", 1, 1.0),
            feedback("f5", "t-bare", 1, 1.0),
        ],
    );
    let opts = ExportOptions {
        out: dir.0.join("train.jsonl"),
        min_feedback: Some(1.0),
        ..ExportOptions::default()
    };
    let (summary, lines) = export(&s, &opts);
    assert_eq!(
        lines,
        vec![json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
        ]})]
    );
    assert_eq!(
        summary.read, 7,
        "the embeddings request is not a conversation"
    );
    assert_eq!(summary.exported, 1);
    let skipped: Vec<(&str, u64)> = summary.skipped.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(
        skipped,
        vec![
            ("cut_short", 1),
            ("duplicate", 1),
            ("failed", 1),
            ("guardrail_denied", 1),
            ("no_bodies", 1),
            ("unrated", 1),
        ]
    );
    assert_eq!(
        summary.to_string(),
        "7 conversations read, 1 exported, 6 skipped (cut_short 1, duplicate 1, failed 1, \
         guardrail_denied 1, no_bodies 1, unrated 1)"
    );
}

#[test]
fn an_update_moves_a_conversation_out_and_weights_count() {
    let dir = Dir::new("update");
    let s = dir.settings();
    write(
        &s,
        vec![
            FileLine::Request(Box::new(request("t1", "q1", "a1"))),
            FileLine::Request(Box::new(request("t2", "q2", "a2"))),
            feedback("f1", "t1", 8, 1.0),
            // t2: (10 × 0.25 + -2 × 1) / 1.25 = 0.4
            feedback("f2", "t2", 10, 0.25),
            feedback("f3", "t2", -2, 1.0),
        ],
    );
    let opts = ExportOptions {
        out: dir.0.join("train.jsonl"),
        min_feedback: Some(0.4),
        ..ExportOptions::default()
    };
    assert_eq!(export(&s, &opts).0.exported, 2);
    write(
        &s,
        vec![FileLine::FeedbackUpdate(FeedbackChange {
            feedback_id: "f3".into(),
            value: Some(-3),
            weight: None,
            metadata: None,
            timestamp: "2026-12-05T11:00:00.000Z".into(),
        })],
    );
    let (summary, lines) = export(&s, &opts);
    assert_eq!(summary.exported, 1);
    assert_eq!(summary.skipped.get("below_min_feedback"), Some(&1));
    assert_eq!(lines[0]["messages"][1]["content"], "q1");
}

#[test]
fn filters_limit_and_a_stable_split() {
    let dir = Dir::new("filters");
    let s = dir.settings();
    let mut lines = Vec::new();
    for i in 0..200 {
        let mut r = request(&format!("t{i}"), &format!("q{i}"), "a");
        if i % 2 == 1 {
            r.provider = Some("anthropic".into());
            r.model = Some("claude".into());
            r.model_served = None;
        }
        if i % 4 == 0 {
            r.metadata = json!({"team": "b"});
        }
        if i >= 100 {
            r.timestamp = "2026-12-06T10:00:00.000Z".into();
        }
        lines.push(FileLine::Request(Box::new(r)));
    }
    write(&s, lines);
    let base = ExportOptions {
        out: dir.0.join("train.jsonl"),
        ..ExportOptions::default()
    };
    let count = |o: &ExportOptions| export(&s, o).0.exported;
    assert_eq!(count(&base), 200);
    let by_model = ExportOptions {
        model: Some("gpt-4o-mini-2024-07-18".into()),
        ..base.clone()
    };
    assert_eq!(count(&by_model), 100, "the served model matches too");
    let by_provider = ExportOptions {
        provider: Some("anthropic".into()),
        metadata: vec![("team".into(), "a".into())],
        ..base.clone()
    };
    assert_eq!(count(&by_provider), 100);
    let by_team = ExportOptions {
        metadata: vec![("team".into(), "b".into())],
        ..base.clone()
    };
    assert_eq!(count(&by_team), 50);
    let by_time = ExportOptions {
        since: humantime::parse_rfc3339("2026-12-06T00:00:00Z").ok(),
        until: humantime::parse_rfc3339("2026-12-07T00:00:00Z").ok(),
        ..base.clone()
    };
    let (summary, _) = export(&s, &by_time);
    assert_eq!(
        (summary.exported, summary.skipped.get("filtered")),
        (100, Some(&100))
    );
    let limited = ExportOptions {
        limit: Some(7),
        ..base.clone()
    };
    assert_eq!(count(&limited), 7);

    let split = ExportOptions {
        validation_fraction: Some(0.2),
        validation_out: Some(dir.0.join("valid.jsonl")),
        ..base.clone()
    };
    let (first, train) = export(&s, &split);
    let valid = std::fs::read_to_string(dir.0.join("valid.jsonl")).unwrap();
    assert_eq!(valid.lines().count() as u64, first.validation);
    assert_eq!(train.len() as u64 + first.validation, 200);
    assert!((20..=60).contains(&first.validation), "{first:?}");
    let (second, _) = export(&s, &split);
    assert_eq!(first, second, "the split is the same on every run");
    assert_eq!(
        std::fs::read_to_string(dir.0.join("valid.jsonl")).unwrap(),
        valid
    );
}

#[test]
fn tool_calls_keep_the_fine_tuning_shape() {
    let dir = Dir::new("tools");
    let s = dir.settings();
    let mut r = request("t", "weather?", "");
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    r.request = Some(json!({"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ], "tools": tools}));
    r.answer = Some(
        json!({"choices": [{"message": {"role": "assistant", "content": null,
        "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}]}),
    );
    write(&s, vec![FileLine::Request(Box::new(r))]);
    let opts = ExportOptions {
        out: dir.0.join("train.jsonl"),
        ..ExportOptions::default()
    };
    let (_, lines) = export(&s, &opts);
    assert_eq!(lines[0]["tools"], tools);
    let last = &lines[0]["messages"][3];
    assert_eq!(
        last["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert!(last.get("content").is_none());
    assert_eq!(lines[0]["messages"][2]["tool_call_id"], "c1");
}

#[test]
fn a_failed_export_leaves_nothing_that_looks_complete() {
    let dir = Dir::new("fail");
    let missing = LogStoreSettings {
        dir: dir.0.join("nowhere").display().to_string(),
        ..LogStoreSettings::default()
    };
    let out = dir.0.join("train.jsonl");
    std::fs::write(&out, "old\n").unwrap();
    let opts = ExportOptions {
        out: out.clone(),
        ..ExportOptions::default()
    };
    let e = run(&missing, &|_| None, &opts, &mut |_| {}).unwrap_err();
    assert!(matches!(e, ExportError::Unreachable(_)), "{e}");
    assert!(e.to_string().starts_with("log store unreachable: "), "{e}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "old\n",
        "left as it was"
    );
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    let bad_split = ExportOptions {
        validation_fraction: Some(0.1),
        ..opts
    };
    assert!(run(&dir.settings(), &|_| None, &bad_split, &mut |_| {})
        .unwrap_err()
        .to_string()
        .contains("--validation-out"));
}
