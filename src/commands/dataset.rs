//! `portgate dataset export`: fine-tuning data from the log store (see `log_store::export`).

use crate::log_store::export::{self, ExportOptions, Summary};
use crate::Settings;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

#[derive(clap::Subcommand, Debug, Clone)]
pub enum DatasetCommand {
    /// Writes rated conversations from the log store as a JSONL fine-tuning dataset.
    Export(ExportArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// The training file to write (written whole under a temporary name, then renamed).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Only conversations whose trace's feedback (weighted mean, latest value per feedback id)
    /// is at least this; unrated ones are left out.
    #[arg(long, value_name = "V", allow_negative_numbers = true)]
    pub min_feedback: Option<f64>,
    /// Only requests at or after this time (RFC 3339, or a date: 2026-12-01).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only requests before this time (RFC 3339, or a date).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only requests for this model (as asked for, or as served).
    #[arg(long)]
    pub model: Option<String>,
    /// Only requests served by this provider (its slug).
    #[arg(long)]
    pub provider: Option<String>,
    /// Only requests whose `x-portkey-metadata` has key=value (repeatable: all must match).
    #[arg(long, value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
    /// At most this many conversations.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// The share of conversations (0 to 1) written to --validation-out instead, chosen by a
    /// hash of each: the same split on every run.
    #[arg(long, value_name = "F")]
    pub validation_fraction: Option<f64>,
    #[arg(long, value_name = "FILE")]
    pub validation_out: Option<PathBuf>,
    /// The line format: openai-chat, one {"messages": [...]} per conversation.
    #[arg(long, default_value = "openai-chat", value_parser = ["openai-chat"])]
    pub format: String,
}

/// A time given on the command line: RFC 3339, or a date meaning its midnight UTC.
fn time(flag: &str, value: &str) -> Result<SystemTime, String> {
    let full = if value.len() == 10 {
        format!("{value}T00:00:00Z")
    } else {
        value.to_string()
    };
    humantime::parse_rfc3339_weak(&full).map_err(|_| {
        format!("{flag} {value:?}: not a time like 2026-12-01 or 2026-12-01T08:00:00Z")
    })
}

impl ExportArgs {
    fn options(&self) -> Result<ExportOptions, String> {
        let metadata = self
            .metadata
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
                _ => Err(format!("--metadata {kv:?}: expected KEY=VALUE")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExportOptions {
            out: self.out.clone(),
            min_feedback: self.min_feedback,
            since: self
                .since
                .as_deref()
                .map(|v| time("--since", v))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|v| time("--until", v))
                .transpose()?,
            model: self.model.clone(),
            provider: self.provider.clone(),
            metadata,
            limit: self.limit,
            validation_fraction: self.validation_fraction,
            validation_out: self.validation_out.clone(),
        })
    }
}

/// Runs a dataset command; the error is the one line to print.
pub fn run(settings: &Settings, command: &DatasetCommand) -> Result<(), String> {
    let DatasetCommand::Export(args) = command;
    let opts = args.options()?;
    let Some(store) = &settings.log_store else {
        return Err("the settings have no log_store: nothing to export".into());
    };
    let started = Instant::now();
    let mut last = Instant::now();
    let mut progress = |s: &Summary| {
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            eprintln!("portgate: {s} …");
        }
    };
    let env = |name: &str| std::env::var(name).ok();
    let summary = export::run(store, &env, &opts, &mut progress).map_err(|e| e.to_string())?;
    println!("{summary}");
    println!(
        "wrote {}{} in {:.1}s",
        opts.out.display(),
        opts.validation_out
            .as_ref()
            .map(|v| format!(" and {}", v.display()))
            .unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(metadata: &[&str]) -> ExportArgs {
        ExportArgs {
            out: "x.jsonl".into(),
            min_feedback: None,
            since: Some("2026-12-01".into()),
            until: None,
            model: None,
            provider: None,
            metadata: metadata.iter().map(|s| s.to_string()).collect(),
            limit: None,
            validation_fraction: None,
            validation_out: None,
            format: "openai-chat".into(),
        }
    }

    #[test]
    fn options_name_what_is_malformed() {
        let o = args(&["team=a", "env=prod=1"]).options().unwrap();
        assert_eq!(
            o.metadata,
            vec![("team".into(), "a".into()), ("env".into(), "prod=1".into())]
        );
        assert_eq!(
            o.since,
            Some(humantime::parse_rfc3339("2026-12-01T00:00:00Z").unwrap())
        );
        let e = args(&["team"]).options().unwrap_err();
        assert_eq!(e, "--metadata \"team\": expected KEY=VALUE");
        let mut bad = args(&[]);
        bad.until = Some("yesterday".into());
        assert!(bad
            .options()
            .unwrap_err()
            .starts_with("--until \"yesterday\""));
    }
}
