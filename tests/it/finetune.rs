//! `portgate finetune`: the real binary against a mock OpenAI fine-tuning API (files and jobs),
//! reached through a virtual key's custom host and key. Both sides are checked: what the
//! provider received (the multipart upload, the key, the job) and what the command printed.

use crate::support::{free_port, MockProvider, Recorded, Reply, Scratch};
use serde_json::{json, Value};
use std::time::Duration;

const KEY: &str = "sk-ft-test-0123456789";
const TUNED: &str = "ft:gpt-4o-mini:org::abc";

/// Settings with virtual key `ft` (openai at `host`, its key in `FT_TEST_KEY`) and `claude`
/// (anthropic, which has no OpenAI fine-tuning API).
fn settings(dir: &Scratch, host: &str, extra: &str) -> String {
    dir.write(
        "portgate.yaml",
        format!(
            "virtual_keys:\n  ft:\n    provider: openai\n    api_key_env: FT_TEST_KEY\n    custom_host: {host}\n  \
             claude:\n    provider: anthropic\n    api_key_env: FT_TEST_KEY\n{extra}"
        )
        .as_bytes(),
    )
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn portgate(config: &str, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portgate"))
        .args(["finetune"])
        .args(args)
        .args(["--config", config])
        .env("FT_TEST_KEY", KEY)
        .env("PORTGATE_FINETUNE_POLL_MS", "50")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("the command ends")
        .unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stdout.contains(KEY) && !run.stderr.contains(KEY),
        "the key was printed: {}{}",
        run.stdout,
        run.stderr
    );
    run
}

/// A failure: exit 1 and exactly one stderr line, which is returned.
fn one_line_failure(run: &Run) -> &str {
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    run.stderr.trim_end()
}

fn file_reply(id: &str, name: &str) -> Reply {
    Reply::json(
        200,
        json!({"id": id, "object": "file", "bytes": 10, "created_at": 1700000000,
               "filename": name, "purpose": "fine-tune", "status": "processed"}),
    )
}

fn job(status: &str, extra: Value) -> Reply {
    let mut j = json!({"id": "ftjob-1", "object": "fine_tuning.job", "model": "gpt-4o-mini",
                       "status": status, "fine_tuned_model": null, "created_at": 1700000000,
                       "training_file": "file-train", "error": null});
    for (k, v) in extra.as_object().unwrap() {
        j[k] = v.clone();
    }
    Reply::json(200, j)
}

/// The parts of a `multipart/form-data` body: each part's header block and content.
fn parts(req: &Recorded) -> Vec<(String, Vec<u8>)> {
    let ct = req.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    // The first delimiter has no CRLF before it.
    let mut body = b"\r\n".to_vec();
    body.extend_from_slice(&req.body);
    let mut out = Vec::new();
    let mut rest = &body[..];
    loop {
        let at = find(rest, &delimiter).expect("a delimiter");
        let after = &rest[at + delimiter.len()..];
        if after.starts_with(b"--") {
            assert_eq!(after, b"--\r\n", "the close delimiter ends the body");
            return out;
        }
        let after = after.strip_prefix(b"\r\n").unwrap();
        let next = find(after, &delimiter).expect("a next delimiter");
        let part = &after[..next];
        let head_end = find(part, b"\r\n\r\n").unwrap();
        out.push((
            String::from_utf8_lossy(&part[..head_end]).into_owned(),
            part[head_end + 4..].to_vec(),
        ));
        rest = &after[next..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Checks an upload: purpose fine-tune, the file's name and its exact bytes, the key.
fn assert_upload(req: &Recorded, name: &str, bytes: &[u8]) {
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/files")
    );
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let p = parts(req);
    assert_eq!(p.len(), 2);
    assert_eq!(
        p[0],
        (
            "Content-Disposition: form-data; name=\"purpose\"".to_string(),
            b"fine-tune".to_vec()
        )
    );
    assert!(
        p[1].0.starts_with(&format!(
            "Content-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        )),
        "{}",
        p[1].0
    );
    assert_eq!(p[1].1, bytes);
}

/// The happy path: both files uploaded, the job created with every flag, progress while it
/// runs, and on success the fine-tuned model and a canary config that portgate itself accepts.
#[tokio::test]
async fn create_uploads_waits_and_prints_a_canary_config() {
    let dir = Scratch::new("pg-it-ft", "ok");
    let mock = MockProvider::start().await;
    let config = settings(&dir, &mock.base_url(), "");
    // Bytes a careless encoder would mangle: a boundary-like line, CRLF, non-UTF-8.
    let train: &[u8] = b"{\"messages\":[{\"role\":\"user\",\"content\":\"h\xc3\xa9\"}]}\r\n--portgate-x\n\xff\x00\n";
    let valid: &[u8] = b"{\"messages\":[]}\n";
    let train_path = dir.write("train.jsonl", train);
    let valid_path = dir.write("valid.jsonl", valid);
    mock.script([
        file_reply("file-train", "train.jsonl"),
        file_reply("file-valid", "valid.jsonl"),
        job("validating_files", json!({})),
        job("running", json!({})),
        job("running", json!({"trained_tokens": 1200})),
        job("running", json!({"trained_tokens": 1200})),
        job(
            "succeeded",
            json!({"trained_tokens": 5000, "fine_tuned_model": TUNED}),
        ),
    ]);
    let run = portgate(
        &config,
        &[
            "create",
            "--virtual-key",
            "ft",
            "--training-file",
            &train_path,
            "--validation-file",
            &valid_path,
            "--model",
            "gpt-4o-mini",
            "--suffix",
            "support",
            "--hyperparameters",
            r#"{"n_epochs": 2}"#,
            "--wait",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 7);
    assert_upload(&reqs[0], "train.jsonl", train);
    assert_upload(&reqs[1], "valid.jsonl", valid);
    assert_eq!(
        (reqs[2].method.as_str(), reqs[2].path.as_str()),
        ("POST", "/v1/fine_tuning/jobs")
    );
    assert_eq!(reqs[2].header("content-type"), Some("application/json"));
    assert_eq!(
        reqs[2].json(),
        json!({"model": "gpt-4o-mini", "training_file": "file-train",
               "validation_file": "file-valid", "suffix": "support",
               "hyperparameters": {"n_epochs": 2}})
    );
    for r in &reqs[3..] {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("GET", "/v1/fine_tuning/jobs/ftjob-1")
        );
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }

    let (head, snippet) = run
        .stdout
        .split_once("\n{")
        .expect("a JSON config at the end");
    let lines: Vec<&str> = head.lines().collect();
    assert_eq!(
        lines[..7],
        [
            format!("training file {train_path}: file-train"),
            format!("validation file {valid_path}: file-valid"),
            "job ftjob-1: validating_files".to_string(),
            "ftjob-1: running".to_string(),
            "ftjob-1: running, 1200 trained tokens".to_string(),
            "ftjob-1: succeeded, 5000 trained tokens".to_string(),
            format!("fine-tuned model: {TUNED}"),
        ],
        "{}",
        run.stdout
    );
    let snippet: Value = serde_json::from_str(&format!("{{{snippet}")).unwrap();
    let node = portgate::portkey::config::parse(&snippet).unwrap();
    assert_eq!(
        node.strategy.and_then(|s| s.mode),
        Some(portgate::portkey::config::Mode::Loadbalance)
    );
    let targets: Vec<(Option<String>, Option<f64>, Value)> = node
        .targets
        .into_iter()
        .map(|t| {
            (
                t.virtual_key,
                t.weight,
                t.override_params.unwrap()["model"].clone(),
            )
        })
        .collect();
    assert_eq!(
        targets,
        [
            (Some("ft".into()), Some(0.9), json!("gpt-4o-mini")),
            (Some("ft".into()), Some(0.1), json!(TUNED)),
        ]
    );
}

/// A job that fails: non-zero exit with the provider's reason, on one line.
#[tokio::test]
async fn a_failed_job_exits_with_the_providers_reason() {
    let dir = Scratch::new("pg-it-ft", "failed");
    let mock = MockProvider::start().await;
    let config = settings(&dir, &mock.base_url(), "");
    let train = dir.write("train.jsonl", b"{}\n");
    mock.script([
        file_reply("file-train", "train.jsonl"),
        job("validating_files", json!({})),
        job(
            "failed",
            json!({"error": {"code": "invalid_training_file",
                             "message": "Training file has 1 example;\nat least 10 are required.",
                             "param": "training_file"}}),
        ),
    ]);
    let run = portgate(
        &config,
        &[
            "create",
            "--virtual-key",
            "ft",
            "--training-file",
            &train,
            "--model",
            "gpt-4o-mini",
            "--wait",
        ],
    )
    .await;
    assert_eq!(
        one_line_failure(&run),
        "portgate: fine-tuning job ftjob-1 failed: Training file has 1 example; at least 10 are required."
    );
    assert!(run.stdout.contains("ftjob-1: failed\n"), "{}", run.stdout);
    assert!(!run.stdout.contains("loadbalance"));
}

/// Bad input is named on one line before anything is sent.
#[tokio::test]
async fn bad_input_is_one_line_and_sends_nothing() {
    let dir = Scratch::new("pg-it-ft", "input");
    let mock = MockProvider::start().await;
    let config = settings(&dir, &mock.base_url(), "");
    let train = dir.write("train.jsonl", b"{}\n");
    let missing = dir.0.join("missing.jsonl").display().to_string();
    let create = |vk: &'static str, file: String, hyper: &'static str| {
        let config = config.clone();
        async move {
            portgate(
                &config,
                &[
                    "create",
                    "--virtual-key",
                    vk,
                    "--training-file",
                    &file,
                    "--model",
                    "gpt-4o-mini",
                    "--hyperparameters",
                    hyper,
                ],
            )
            .await
        }
    };
    let run = create("x", train.clone(), "{}").await;
    assert_eq!(
        one_line_failure(&run),
        "portgate: unknown virtual key \"x\""
    );
    let run = create("ft", missing.clone(), "{}").await;
    assert_eq!(
        one_line_failure(&run),
        format!("portgate: --training-file {missing}: No such file or directory (os error 2)")
    );
    let run = create("ft", train.clone(), "{\"n_epochs\": ").await;
    assert!(
        one_line_failure(&run).starts_with("portgate: --hyperparameters: not JSON ("),
        "{}",
        run.stderr
    );
    let run = create("ft", train.clone(), "[3]").await;
    assert!(
        one_line_failure(&run).starts_with("portgate: --hyperparameters: expected a JSON object")
    );
    let run = create("claude", train.clone(), "{}").await;
    assert!(
        one_line_failure(&run).starts_with(
            "portgate: provider \"anthropic\" has no OpenAI-compatible fine-tuning API"
        ),
        "{}",
        run.stderr
    );
    let run = portgate(&config, &["status", "--virtual-key", "ft", "../files"]).await;
    assert!(one_line_failure(&run).starts_with("portgate: job id \"../files\""));
    assert_eq!(mock.request_count(), 0);
}

/// A refused upload: the provider's status and message, no job created, and a key the
/// provider quotes back is not printed.
#[tokio::test]
async fn a_refused_file_names_status_and_message() {
    let dir = Scratch::new("pg-it-ft", "refused");
    let mock = MockProvider::start().await;
    let config = settings(&dir, &mock.base_url(), "");
    let train = dir.write("train.jsonl", b"not json\n");
    mock.script([Reply::json(
        400,
        json!({"error": {"message": format!("Invalid file format for key {KEY}."),
                         "type": "invalid_request_error", "param": "file", "code": null}}),
    )]);
    let run = portgate(
        &config,
        &[
            "create",
            "--virtual-key",
            "ft",
            "--training-file",
            &train,
            "--model",
            "gpt-4o-mini",
        ],
    )
    .await;
    assert_eq!(
        one_line_failure(&run),
        format!(
            "portgate: openai answered 400 to uploading {train}: Invalid file format for key [redacted]."
        )
    );
    assert_eq!(mock.request_count(), 1);
}

/// `status`, `list` and `cancel`: their requests and what they print.
#[tokio::test]
async fn status_list_and_cancel() {
    let dir = Scratch::new("pg-it-ft", "jobs");
    let mock = MockProvider::start().await;
    let config = settings(&dir, &mock.base_url(), "");
    mock.script([
        job("running", json!({"trained_tokens": 10})),
        Reply::json(
            200,
            json!({"object": "list", "has_more": false, "data": [
                {"id": "ftjob-2", "status": "succeeded", "model": "gpt-4o-mini", "fine_tuned_model": TUNED},
                {"id": "ftjob-1", "status": "running", "model": "gpt-4o-mini", "fine_tuned_model": null}
            ]}),
        ),
        job("cancelled", json!({})),
    ]);
    let run = portgate(&config, &["status", "--virtual-key", "ft", "ftjob-1"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["status"], "running");
    assert_eq!(summary["trained_tokens"], 10);
    assert!(summary.get("fine_tuned_model").is_none());

    let run = portgate(&config, &["list", "--virtual-key", "ft", "--limit", "2"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        format!("ftjob-2\tsucceeded\tgpt-4o-mini\t{TUNED}\nftjob-1\trunning\tgpt-4o-mini\t-\n")
    );

    let run = portgate(&config, &["cancel", "--virtual-key", "ft", "ftjob-1"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "ftjob-1: cancelled\n");

    let seen: Vec<(String, String)> = mock
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let expected = [
        ("GET", "/v1/fine_tuning/jobs/ftjob-1"),
        ("GET", "/v1/fine_tuning/jobs?limit=2"),
        ("POST", "/v1/fine_tuning/jobs/ftjob-1/cancel"),
    ]
    .map(|(m, p)| (m.to_string(), p.to_string()));
    assert_eq!(seen, expected);
    assert!(mock
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some(format!("Bearer {KEY}").as_str())));
}

/// A provider nobody listens on, and one that does not answer within the settings' read
/// timeout: one line each, named as the gateway names them.
#[tokio::test]
async fn unreachable_and_silent_providers_are_one_line() {
    let dir = Scratch::new("pg-it-ft", "down");
    let config = settings(&dir, &format!("http://127.0.0.1:{}/v1", free_port()), "");
    let run = portgate(&config, &["list", "--virtual-key", "ft"]).await;
    assert!(
        one_line_failure(&run).starts_with("portgate: could not connect to openai upstream"),
        "{}",
        run.stderr
    );

    let mock = MockProvider::start().await;
    mock.always(Reply::Slow {
        delay: Duration::from_secs(5),
        then: Box::new(Reply::json(200, json!({"data": []}))),
    });
    let config = settings(
        &dir,
        &mock.base_url(),
        "upstream:\n  read_timeout_ms: 300\n",
    );
    let run = portgate(&config, &["list", "--virtual-key", "ft"]).await;
    assert!(
        one_line_failure(&run).starts_with("portgate: openai upstream timed out"),
        "{}",
        run.stderr
    );
}
