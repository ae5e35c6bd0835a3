//! `portgate dataset export`: rated conversations from the log store, as fine-tuning data.
//!
//! A conversation is a stored chat, Responses or Messages request with its bodies: the
//! request's messages followed by the answer's assistant message, in OpenAI's chat fine-tuning
//! shape whatever the API (`conversation`). Only answers the client got whole and successfully
//! are used; a trace's rating is the weighted mean of its feedback values (the latest value of
//! each feedback id). Both backends are read through the same filters, so a dataset does not
//! depend on where it was stored.

use super::file::{read_all, FileLine};
use super::record::{Api, StoredRequest};
use crate::settings::log_store::{LogStoreBackend, LogStoreSettings};
use conversation::conversation;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

mod conversation;
mod postgres;

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub out: PathBuf,
    /// Keep conversations whose trace is rated at least this (unrated ones are left out).
    pub min_feedback: Option<f64>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// The model asked for or the one that served.
    pub model: Option<String>,
    pub provider: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub limit: Option<usize>,
    /// The share of conversations written to `validation_out` instead, chosen by a hash of
    /// each conversation (the same split on every run).
    pub validation_fraction: Option<f64>,
    pub validation_out: Option<PathBuf>,
}

/// What an export did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    /// Conversation requests (chat, Responses, Messages) read from the store.
    pub read: u64,
    pub exported: u64,
    /// Of `exported`, written to the validation file.
    pub validation: u64,
    /// Conversations left out, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Lines of the file backend that could not be read (a write cut short).
    pub unreadable: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} conversations read, {} exported",
            self.read, self.exported
        )?;
        if self.validation > 0 {
            write!(
                f,
                " ({} training, {} validation)",
                self.exported - self.validation,
                self.validation
            )?;
        }
        let skipped: u64 = self.skipped.values().sum();
        if skipped > 0 {
            let reasons: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            write!(f, ", {skipped} skipped ({})", reasons.join(", "))?;
        }
        if self.unreadable > 0 {
            write!(f, ", {} unreadable lines", self.unreadable)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("log store unreachable: {0}")]
    Unreachable(String),
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |err| ExportError::Io {
        path: path.display().to_string(),
        err,
    }
}

/// A trace's feedback: the latest value and weight of each feedback id.
#[derive(Default)]
pub(super) struct Ratings {
    by_id: HashMap<String, (String, i64, f64)>,
}

impl Ratings {
    pub(super) fn set(&mut self, id: String, trace: String, value: i64, weight: f64) {
        self.by_id.insert(id, (trace, value, weight));
    }

    pub(super) fn change(&mut self, id: &str, value: Option<i64>, weight: Option<f64>) {
        if let Some((_, v, w)) = self.by_id.get_mut(id) {
            *v = value.unwrap_or(*v);
            *w = weight.unwrap_or(*w);
        }
    }

    /// Trace id → weighted mean of its values (traces whose weights are all 0 are unrated).
    fn scores(&self) -> HashMap<&str, f64> {
        let mut sums: HashMap<&str, (f64, f64)> = HashMap::new();
        for (trace, value, weight) in self.by_id.values() {
            let s = sums.entry(trace.as_str()).or_default();
            s.0 += *value as f64 * weight;
            s.1 += weight;
        }
        sums.into_iter()
            .filter(|(_, (_, w))| *w > 0.0)
            .map(|(t, (sum, w))| (t, sum / w))
            .collect()
    }
}

/// An output file written under a temporary name and renamed when complete.
struct Output {
    path: PathBuf,
    tmp: PathBuf,
    /// `None` once committed.
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Output {
    fn create(path: &Path) -> Result<Output, ExportError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dataset".into());
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        Ok(Output {
            path: path.to_path_buf(),
            tmp,
            file: Some(std::io::BufWriter::new(file)),
        })
    }

    fn line(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(bytes)
            .and_then(|()| file.write_all(b"\n"))
            .map_err(io(&self.tmp))
    }

    fn commit(mut self) -> Result<(), ExportError> {
        if let Some(file) = self.file.take() {
            file.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .map_err(io(&self.tmp))?;
        }
        std::fs::rename(&self.tmp, &self.path).map_err(io(&self.path))
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Only a committed output keeps its name; an export that failed leaves nothing behind.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// The export's running state: filters, de-duplication and the outputs.
struct Exporter<'a> {
    opts: &'a ExportOptions,
    scores: HashMap<&'a str, f64>,
    seen: HashSet<[u8; 16]>,
    train: Output,
    validation: Option<Output>,
    summary: Summary,
}

impl Exporter<'_> {
    fn skip(&mut self, why: &'static str) {
        *self.summary.skipped.entry(why).or_default() += 1;
    }

    fn done(&self) -> bool {
        self.opts
            .limit
            .is_some_and(|n| self.summary.exported >= n as u64)
    }

    /// Takes one stored request; returns whether the export goes on.
    fn take(&mut self, r: &StoredRequest) -> Result<bool, ExportError> {
        let Some(api) = Api::of_route(&r.route) else {
            return Ok(true);
        };
        self.summary.read += 1;
        if !self.matches(r) {
            self.skip("filtered");
            return Ok(true);
        }
        // A denial is named as one, though its status (446) is a failure's too.
        if r.denied {
            self.skip("guardrail_denied");
            return Ok(true);
        }
        if !(200..300).contains(&r.status) {
            self.skip("failed");
            return Ok(true);
        }
        if r.error.is_some() {
            self.skip("cut_short");
            return Ok(true);
        }
        if let Some(min) = self.opts.min_feedback {
            match self.scores.get(r.trace_id.as_str()) {
                None => {
                    self.skip("unrated");
                    return Ok(true);
                }
                Some(s) if *s < min => {
                    self.skip("below_min_feedback");
                    return Ok(true);
                }
                Some(_) => {}
            }
        }
        let line = match conversation(api, r) {
            Ok(line) => line,
            Err(why) => {
                self.skip(why);
                return Ok(true);
            }
        };
        let bytes = serde_json::to_vec(&line).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        if !self.seen.insert(key) {
            self.skip("duplicate");
            return Ok(true);
        }
        let to_validation = self.opts.validation_fraction.is_some_and(|f| {
            let mut h = [0u8; 8];
            h.copy_from_slice(&digest[16..24]);
            (u64::from_be_bytes(h) as f64 / u64::MAX as f64) < f
        });
        match (&mut self.validation, to_validation) {
            (Some(v), true) => {
                v.line(&bytes)?;
                self.summary.validation += 1;
            }
            _ => self.train.line(&bytes)?,
        }
        self.summary.exported += 1;
        Ok(!self.done())
    }

    fn matches(&self, r: &StoredRequest) -> bool {
        let o = self.opts;
        if o.since.is_some() || o.until.is_some() {
            let Ok(at) = humantime::parse_rfc3339_weak(&r.timestamp) else {
                return false;
            };
            if o.since.is_some_and(|s| at < s) || o.until.is_some_and(|u| at >= u) {
                return false;
            }
        }
        if let Some(m) = &o.model {
            if r.model.as_deref() != Some(m.as_str()) && r.model_served.as_deref() != Some(m) {
                return false;
            }
        }
        if o.provider.is_some() && r.provider != o.provider {
            return false;
        }
        o.metadata
            .iter()
            .all(|(k, v)| r.metadata.get(k).and_then(Value::as_str) == Some(v.as_str()))
    }
}

/// Exports the store named by `settings`; `progress` is called every few thousand requests.
pub fn run(
    settings: &LogStoreSettings,
    env: &dyn Fn(&str) -> Option<String>,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(&Summary),
) -> Result<Summary, ExportError> {
    if let Some(f) = opts.validation_fraction {
        if !(0.0..1.0).contains(&f) {
            return Err(ExportError::Invalid(
                "--validation-fraction must be at least 0 and below 1".into(),
            ));
        }
        if opts.validation_out.is_none() {
            return Err(ExportError::Invalid(
                "--validation-fraction needs --validation-out FILE".into(),
            ));
        }
    }
    match settings.backend {
        LogStoreBackend::File => run_files(settings, opts, progress),
        LogStoreBackend::Postgres => postgres::run(settings, env, opts, progress),
    }
}

fn exporter<'a>(
    opts: &'a ExportOptions,
    ratings: &'a Ratings,
) -> Result<Exporter<'a>, ExportError> {
    Ok(Exporter {
        opts,
        scores: ratings.scores(),
        seen: HashSet::new(),
        train: Output::create(&opts.out)?,
        validation: opts
            .validation_out
            .as_deref()
            .map(Output::create)
            .transpose()?,
        summary: Summary::default(),
    })
}

fn finish(e: Exporter<'_>) -> Result<Summary, ExportError> {
    let Exporter {
        train,
        validation,
        summary,
        ..
    } = e;
    train.commit()?;
    if let Some(v) = validation {
        v.commit()?;
    }
    Ok(summary)
}

/// How often `progress` is called, in requests read.
const PROGRESS_EVERY: u64 = 5000;

fn run_files(
    settings: &LogStoreSettings,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(&Summary),
) -> Result<Summary, ExportError> {
    let dir = PathBuf::from(&settings.dir);
    let unreachable =
        |e: std::io::Error| ExportError::Unreachable(format!("{}: {e}", dir.display()));
    // Feedback first (it may come after the request it rates), then the requests.
    let mut ratings = Ratings::default();
    read_all(&dir, |line| match line {
        FileLine::Feedback(f) => ratings.set(f.feedback_id, f.trace_id, f.value, f.weight),
        FileLine::FeedbackUpdate(c) => ratings.change(&c.feedback_id, c.value, c.weight),
        FileLine::Request(_) => {}
    })
    .map_err(unreachable)?;
    let mut e = exporter(opts, &ratings)?;
    let mut failed = None;
    let mut going = true;
    let unreadable = read_all(&dir, |line| {
        if let (FileLine::Request(r), true) = (line, going) {
            match e.take(&r) {
                Ok(more) => going = more,
                Err(err) => {
                    failed = Some(err);
                    going = false;
                }
            }
            if e.summary.read % PROGRESS_EVERY == 0 {
                progress(&e.summary);
            }
        }
    })
    .map_err(unreachable)?;
    if let Some(err) = failed {
        return Err(err);
    }
    e.summary.unreadable = unreadable;
    finish(e)
}

#[cfg(test)]
mod tests;
