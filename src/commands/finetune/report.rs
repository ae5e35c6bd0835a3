//! What `portgate finetune` prints about jobs: a job's summary, a page of jobs, a progress line,
//! and the config that sends a share of traffic to a fine-tuned model.

use serde_json::{json, Map, Value};

/// The share of requests the canary config sends to the fine-tuned model: small enough to
/// try it on real traffic, large enough to see it in the logs within a day.
const CANARY_WEIGHT: f64 = 0.1;

/// The fields of a job worth showing, in this order; absent and null ones are left out (the
/// API returns many nulls while a job runs).
const SUMMARY_FIELDS: &[&str] = &[
    "id",
    "status",
    "model",
    "fine_tuned_model",
    "trained_tokens",
    "training_file",
    "validation_file",
    "hyperparameters",
    "created_at",
    "estimated_finish",
    "finished_at",
    "result_files",
    "error",
];

/// A job's summary as pretty JSON text.
pub(crate) fn summary(job: &Value) -> String {
    let mut out = Map::new();
    for field in SUMMARY_FIELDS {
        match job.get(*field) {
            None | Some(Value::Null) => {}
            Some(v) => {
                out.insert((*field).to_string(), v.clone());
            }
        }
    }
    serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default()
}

/// A page of `GET /fine_tuning/jobs`: one line per job (id, status, base model, fine-tuned
/// model or `-`), tab-separated for `cut` and `awk`.
pub(crate) fn job_lines(page: &Value) -> Vec<String> {
    let text = |job: &Value, field: &str| job[field].as_str().unwrap_or("-").to_string();
    let jobs = page["data"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut lines: Vec<String> = jobs
        .iter()
        .map(|job| {
            [
                text(job, "id"),
                text(job, "status"),
                text(job, "model"),
                text(job, "fine_tuned_model"),
            ]
            .join("\t")
        })
        .collect();
    if lines.is_empty() {
        lines.push("no fine-tuning jobs".into());
    }
    if page["has_more"].as_bool() == Some(true) {
        lines.push("(more jobs: ask with a larger --limit)".into());
    }
    lines
}

/// What a progress line shows of a job: its status and trained tokens so far.
pub(crate) fn progress(job: &Value) -> (String, Option<u64>) {
    (
        job["status"].as_str().unwrap_or("unknown").to_string(),
        job["trained_tokens"].as_u64(),
    )
}

pub(crate) fn progress_line(id: &str, (status, tokens): &(String, Option<u64>)) -> String {
    match tokens {
        Some(t) => format!("{id}: {status}, {t} trained tokens"),
        None => format!("{id}: {status}"),
    }
}

/// A Portkey config that load-balances between the base model and the fine-tuned one on the
/// same virtual key: most requests stay on the base model while the new one is tried.
pub(crate) fn canary_config(virtual_key: &str, base: &str, tuned: &str) -> Value {
    json!({
        "strategy": {"mode": "loadbalance"},
        "targets": [
            {
                "virtual_key": virtual_key,
                "weight": 1.0 - CANARY_WEIGHT,
                "override_params": {"model": base}
            },
            {
                "virtual_key": virtual_key,
                "weight": CANARY_WEIGHT,
                "override_params": {"model": tuned}
            }
        ]
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::portkey::config::{self, Mode};

    #[test]
    fn the_canary_is_a_valid_loadbalance_config() {
        let c = canary_config("ft-key", "gpt-4o-mini", "ft:gpt-4o-mini:org::abc");
        let node = config::parse(&c).unwrap();
        assert_eq!(
            node.strategy.as_ref().and_then(|s| s.mode),
            Some(Mode::Loadbalance)
        );
        assert_eq!(node.targets.len(), 2);
        let models: Vec<&Value> = node
            .targets
            .iter()
            .map(|t| &t.override_params.as_ref().unwrap()["model"])
            .collect();
        assert_eq!(
            models,
            [&json!("gpt-4o-mini"), &json!("ft:gpt-4o-mini:org::abc")]
        );
        assert_eq!(node.targets[0].weight, Some(0.9));
        assert_eq!(node.targets[1].weight, Some(0.1));
        assert!(node
            .targets
            .iter()
            .all(|t| t.virtual_key.as_deref() == Some("ft-key")));
    }

    #[test]
    fn summaries_and_lines_leave_out_what_is_missing() {
        let job = json!({"id": "ftjob-1", "object": "fine_tuning.job", "status": "running",
                         "model": "gpt-4o-mini", "fine_tuned_model": null, "trained_tokens": 12});
        let s: Value = serde_json::from_str(&summary(&job)).unwrap();
        assert_eq!(
            s,
            json!({"id": "ftjob-1", "status": "running", "model": "gpt-4o-mini", "trained_tokens": 12})
        );
        assert_eq!(
            progress_line("ftjob-1", &progress(&job)),
            "ftjob-1: running, 12 trained tokens"
        );
        let page = json!({"data": [job], "has_more": true});
        assert_eq!(
            job_lines(&page),
            [
                "ftjob-1\trunning\tgpt-4o-mini\t-",
                "(more jobs: ask with a larger --limit)"
            ]
        );
        assert_eq!(job_lines(&json!({"data": []})), ["no fine-tuning jobs"]);
    }
}
