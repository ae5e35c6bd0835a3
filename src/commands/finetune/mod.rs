//! `portgate finetune`: fine-tuning jobs on a virtual key's provider, with the gateway's own
//! keys, hosts and upstream code (see `api.rs`). Any OpenAI-compatible fine-tuning API works:
//! the same `/files` and `/fine_tuning/jobs` paths below the provider's base URL.

mod api;
mod multipart;
mod report;

use api::{Api, FinetuneError};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Settings;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum FinetuneCommand {
    /// Uploads the training (and validation) file and starts a fine-tuning job.
    Create(CreateArgs),
    /// Shows a job.
    Status(JobArgs),
    /// Lists the most recent jobs.
    List(ListArgs),
    /// Cancels a job.
    Cancel(JobArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// The virtual key (from the settings) whose provider and key run the job.
    #[arg(long, value_name = "VK")]
    pub virtual_key: String,
    /// The training file (JSONL, e.g. from `portgate dataset export`).
    #[arg(long, value_name = "FILE")]
    pub training_file: PathBuf,
    #[arg(long, value_name = "FILE")]
    pub validation_file: Option<PathBuf>,
    /// The base model to fine-tune.
    #[arg(long, value_name = "BASE")]
    pub model: String,
    /// Added to the fine-tuned model's name.
    #[arg(long, value_name = "S")]
    pub suffix: Option<String>,
    /// The job's hyperparameters, a JSON object such as '{"n_epochs": 3}'.
    #[arg(long, value_name = "JSON")]
    pub hyperparameters: Option<String>,
    /// Waits for the job to end, printing its progress; on success prints the fine-tuned
    /// model and a canary config for it.
    #[arg(long)]
    pub wait: bool,
    /// How often --wait asks for the job's status, in milliseconds.
    #[arg(
        long,
        hide = true,
        env = "PORTGATE_FINETUNE_POLL_MS",
        default_value_t = 5000
    )]
    pub poll_interval_ms: u64,
}

#[derive(clap::Args, Debug, Clone)]
pub struct JobArgs {
    #[arg(long, value_name = "VK")]
    pub virtual_key: String,
    /// The job's id (ftjob-...).
    pub job_id: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ListArgs {
    #[arg(long, value_name = "VK")]
    pub virtual_key: String,
    /// At most this many jobs, most recent first.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: u32,
}

/// How many status reads in a row may fail (network, 429, 5xx) before --wait gives up: a job
/// runs for hours, and one dropped connection must not end the wait.
const MAX_POLL_FAILURES: u32 = 5;

/// Runs a fine-tuning command; the error is the one line to print.
pub fn run(settings: &Settings, command: &FinetuneCommand) -> Result<(), String> {
    let env = |name: &str| std::env::var(name).ok();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FinetuneError::Runtime(e.to_string()).to_string())?;
    runtime
        .block_on(dispatch(settings, command, &env))
        .map_err(|e| one_line(&e.to_string()))
}

async fn dispatch(
    settings: &Settings,
    command: &FinetuneCommand,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), FinetuneError> {
    match command {
        FinetuneCommand::Create(args) => create(settings, args, env).await,
        FinetuneCommand::Status(args) => {
            let api = Api::resolve(settings, &args.virtual_key, env)?;
            let job = get_job(&api, &args.job_id).await?;
            println!("{}", report::summary(&job));
            Ok(())
        }
        FinetuneCommand::List(args) => {
            let api = Api::resolve(settings, &args.virtual_key, env)?;
            let path = format!("/fine_tuning/jobs?limit={}", args.limit);
            let page = api
                .json("listing jobs", "GET", &path, None, Bytes::new())
                .await?;
            for line in report::job_lines(&page) {
                println!("{line}");
            }
            Ok(())
        }
        FinetuneCommand::Cancel(args) => {
            let api = Api::resolve(settings, &args.virtual_key, env)?;
            let path = format!("/fine_tuning/jobs/{}/cancel", job_id(&args.job_id)?);
            let what = format!("cancelling job {}", args.job_id);
            let job = api.json(&what, "POST", &path, None, Bytes::new()).await?;
            let line = report::progress_line(&args.job_id, &report::progress(&job));
            println!("{line}");
            Ok(())
        }
    }
}

async fn create(
    settings: &Settings,
    args: &CreateArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), FinetuneError> {
    // Everything that can be checked here is, before the first byte is uploaded.
    let api = Api::resolve(settings, &args.virtual_key, env)?;
    let hyperparameters = args
        .hyperparameters
        .as_deref()
        .map(hyperparameters)
        .transpose()?;
    let files: Vec<(&'static str, &Path)> =
        std::iter::once(("--training-file", &*args.training_file))
            .chain(
                args.validation_file
                    .as_deref()
                    .map(|p| ("--validation-file", p)),
            )
            .collect();
    for (flag, path) in &files {
        readable(flag, path)?;
    }

    let mut ids = Vec::new();
    for (flag, path) in &files {
        let id = upload(&api, flag, path).await?;
        let kind = flag.trim_start_matches("--").replace('-', " ");
        println!("{kind} {}: {id}", path.display());
        ids.push(id);
    }
    let mut body = Map::new();
    body.insert("model".into(), Value::String(args.model.clone()));
    body.insert("training_file".into(), Value::String(ids[0].clone()));
    if let Some(id) = ids.get(1) {
        body.insert("validation_file".into(), Value::String(id.clone()));
    }
    if let Some(s) = &args.suffix {
        body.insert("suffix".into(), Value::String(s.clone()));
    }
    if let Some(h) = hyperparameters {
        body.insert("hyperparameters".into(), Value::Object(h));
    }
    let body = Bytes::from(Value::Object(body).to_string());
    let job = api
        .json(
            "creating the job",
            "POST",
            "/fine_tuning/jobs",
            Some("application/json"),
            body,
        )
        .await?;
    let id = text_field(&job, "id", "creating the job")?;
    println!("job {id}: {}", job["status"].as_str().unwrap_or("created"));
    if !args.wait {
        println!(
            "follow it with: portgate finetune status --virtual-key {} {id}",
            args.virtual_key
        );
        return Ok(());
    }
    let done = wait(&api, &id, Duration::from_millis(args.poll_interval_ms)).await?;
    let tuned = text_field(&done, "fine_tuned_model", "the finished job")?;
    let base = done["model"].as_str().unwrap_or(&args.model);
    println!("fine-tuned model: {tuned}");
    println!(
        "Portkey config sending 10% of requests to it (x-portkey-config, or configs: in the settings):"
    );
    let config = report::canary_config(&args.virtual_key, base, &tuned);
    println!(
        "{}",
        serde_json::to_string_pretty(&config).unwrap_or_default()
    );
    Ok(())
}

/// Polls the job until it ends; the finished job on success.
async fn wait(api: &Api, id: &str, interval: Duration) -> Result<Value, FinetuneError> {
    let mut shown = None;
    let mut failures = 0;
    loop {
        let job = match get_job(api, id).await {
            Ok(job) => {
                failures = 0;
                job
            }
            Err(e) if e.is_transient() && failures < MAX_POLL_FAILURES => {
                failures += 1;
                eprintln!("portgate: {} (asking again)", one_line(&e.to_string()));
                tokio::time::sleep(interval).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let now = report::progress(&job);
        if shown.as_ref() != Some(&now) {
            println!("{}", report::progress_line(id, &now));
        }
        match now.0.as_str() {
            "succeeded" => return Ok(job),
            "failed" => {
                let message = match &job["error"]["message"] {
                    Value::String(m) => api.scrub(m),
                    _ => "the provider gave no reason".into(),
                };
                return Err(FinetuneError::JobFailed {
                    id: id.to_string(),
                    message,
                });
            }
            "cancelled" => return Err(FinetuneError::JobCancelled(id.to_string())),
            _ => {}
        }
        shown = Some(now);
        tokio::time::sleep(interval).await;
    }
}

async fn get_job(api: &Api, id: &str) -> Result<Value, FinetuneError> {
    let path = format!("/fine_tuning/jobs/{}", job_id(id)?);
    let what = format!("reading job {id}");
    api.json(&what, "GET", &path, None, Bytes::new()).await
}

/// Uploads one file with `purpose=fine-tune`; its id.
async fn upload(api: &Api, flag: &'static str, path: &Path) -> Result<String, FinetuneError> {
    let form = multipart::read_file("fine-tune", path).map_err(|e| FinetuneError::File {
        flag,
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let what = format!("uploading {}", path.display());
    let file = api
        .json(&what, "POST", "/files", Some(&form.content_type), form.body)
        .await?;
    text_field(&file, "id", &what)
}

/// Refuses a file that does not exist or is not a readable regular file.
fn readable(flag: &'static str, path: &Path) -> Result<(), FinetuneError> {
    let fail = |detail: String| FinetuneError::File {
        flag,
        path: path.display().to_string(),
        detail,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a file".into()));
    }
    std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// `--hyperparameters`: a JSON object.
fn hyperparameters(text: &str) -> Result<Map<String, Value>, FinetuneError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(FinetuneError::Usage(
            "--hyperparameters: expected a JSON object such as {\"n_epochs\": 3}".into(),
        )),
        Err(e) => Err(FinetuneError::Usage(format!(
            "--hyperparameters: not JSON ({e})"
        ))),
    }
}

/// A job id as a path segment: the characters provider ids use, nothing that could change
/// the path.
fn job_id(id: &str) -> Result<&str, FinetuneError> {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        && id != "."
        && id != "..";
    if ok {
        Ok(id)
    } else {
        Err(FinetuneError::Usage(format!(
            "job id {id:?}: expected letters, digits, '-', '_', '.' or ':'"
        )))
    }
}

/// A text field the API always returns (`id`, `fine_tuned_model`).
fn text_field(v: &Value, field: &str, what: &str) -> Result<String, FinetuneError> {
    v[field]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| FinetuneError::BadAnswer {
            what: what.to_string(),
            detail: format!("no {field:?}"),
        })
}

/// One line: a provider's message or an I/O error may hold line breaks.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_are_checked_before_anything_is_sent() {
        assert_eq!(
            hyperparameters(r#"{"n_epochs": 3}"#).unwrap()["n_epochs"],
            3
        );
        let e = hyperparameters("[1]").unwrap_err().to_string();
        assert!(
            e.starts_with("--hyperparameters: expected a JSON object"),
            "{e}"
        );
        let e = hyperparameters("{n_epochs: 3").unwrap_err().to_string();
        assert!(e.starts_with("--hyperparameters: not JSON ("), "{e}");
        assert_eq!(job_id("ftjob-abc_1").unwrap(), "ftjob-abc_1");
        for bad in ["", "..", "a/b", "a?b", "a b"] {
            assert!(job_id(bad).is_err(), "{bad}");
        }
        let e = readable("--training-file", Path::new("/nonexistent/train.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--training-file /nonexistent/train.jsonl: "),
            "{e}"
        );
        assert_eq!(one_line("a\n  b\r\nc"), "a b c");
    }
}
