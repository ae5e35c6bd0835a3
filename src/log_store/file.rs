//! The embedded backend: JSON lines in numbered files under one directory
//! (`portgate-log-00000001.jsonl`, ...). A file is closed past `max_file_bytes` and the next one
//! opened; past `max_files` the oldest is deleted, and files last written before the retention
//! period are deleted too, so the directory never outgrows `max_files × max_file_bytes`.
//! One process writes a directory (give each replica its own, or use PostgreSQL).

use super::record::{FeedbackChange, FeedbackRow, StoredRequest};
use crate::settings::log_store::LogStoreSettings;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const PREFIX: &str = "portgate-log-";
const SUFFIX: &str = ".jsonl";

/// One line of a log file; `D` holds a request's JSON documents (text when written, trees when
/// read, as in [`StoredRequest`]).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileLine<D = serde_json::Value> {
    Request(Box<StoredRequest<D>>),
    Feedback(FeedbackRow),
    FeedbackUpdate(FeedbackChange),
}

/// The log files of a directory, oldest first.
fn files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?.parse().ok());
        if let Some(seq) = seq {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

fn name(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:08}{SUFFIX}"))
}

pub(crate) struct FileStore {
    dir: PathBuf,
    max_file_bytes: u64,
    max_files: usize,
    retention: Duration,
    file: File,
    seq: u64,
    size: u64,
}

impl FileStore {
    /// Opens the directory (created when missing) and the newest file for appending.
    pub(crate) fn open(settings: &LogStoreSettings) -> std::io::Result<FileStore> {
        let dir = PathBuf::from(&settings.dir);
        std::fs::create_dir_all(&dir)?;
        let seq = files(&dir)?.last().map_or(1, |(seq, _)| *seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(name(&dir, seq))?;
        let size = file.metadata()?.len();
        let mut store = FileStore {
            dir,
            max_file_bytes: settings.max_file_bytes,
            max_files: settings.max_files,
            retention: Duration::from_secs(u64::from(settings.retention_days) * 86_400),
            file,
            seq,
            size,
        };
        if store.size >= store.max_file_bytes {
            store.rotate()?;
        }
        Ok(store)
    }

    /// Appends lines (each ending in `\n`) in one write.
    pub(crate) fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        self.file.write_all(lines)?;
        self.size += lines.len() as u64;
        if self.size >= self.max_file_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.seq += 1;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(name(&self.dir, self.seq))?;
        self.size = 0;
        let all = files(&self.dir)?;
        let excess = all.len().saturating_sub(self.max_files);
        for (_, path) in all.into_iter().take(excess) {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }

    /// Deletes the files last written before the retention period (never the open one).
    pub(crate) fn expire(&mut self) -> std::io::Result<usize> {
        let Some(cutoff) = SystemTime::now().checked_sub(self.retention) else {
            return Ok(0);
        };
        let mut removed = 0;
        for (seq, path) in files(&self.dir)? {
            if seq == self.seq {
                continue;
            }
            if std::fs::metadata(&path)?.modified()? < cutoff {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Reads every line of every log file under `dir`, oldest first; returns how many lines were
/// not log lines (a line cut short by a crash, say).
pub(crate) fn read_all(dir: &Path, mut f: impl FnMut(FileLine)) -> std::io::Result<u64> {
    let mut bad = 0;
    if !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no log directory at {}", dir.display()),
        ));
    }
    for (_, path) in files(dir)? {
        let file = match File::open(&path) {
            Ok(file) => file,
            // Deleted by the writer's rotation since it was listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<FileLine>(&line) {
                Ok(l) => f(l),
                Err(_) => bad += 1,
            }
        }
    }
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> LogStoreSettings {
        LogStoreSettings {
            dir: dir.display().to_string(),
            max_file_bytes: 4096,
            max_files: 3,
            ..LogStoreSettings::default()
        }
    }

    fn feedback(i: usize) -> Vec<u8> {
        let mut line = serde_json::to_vec(&FileLine::<serde_json::Value>::Feedback(FeedbackRow {
            feedback_id: format!("f{i}"),
            trace_id: "t".into(),
            value: 1,
            weight: 1.0,
            metadata: Default::default(),
            timestamp: "2026-12-07T00:00:00Z".into(),
        }))
        .unwrap();
        line.push(b'\n');
        line
    }

    #[test]
    fn files_rotate_and_the_oldest_go() {
        let dir = std::env::temp_dir().join(format!("pg-logstore-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = FileStore::open(&settings(&dir)).unwrap();
        for i in 0..200 {
            store.write(&feedback(i)).unwrap();
        }
        let kept = files(&dir).unwrap();
        assert_eq!(kept.len(), 3, "{kept:?}");
        let total: u64 = kept
            .iter()
            .map(|(_, p)| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(total <= 3 * (4096 + 200));
        // What is left reads back in order, ending with the last line written.
        let mut ids = Vec::new();
        let bad = read_all(&dir, |l| {
            if let FileLine::Feedback(f) = l {
                ids.push(f.feedback_id)
            }
        })
        .unwrap();
        assert_eq!(bad, 0);
        assert_eq!(ids.last().map(String::as_str), Some("f199"));
        // A reopened store appends to the newest file.
        drop(store);
        let mut store = FileStore::open(&settings(&dir)).unwrap();
        store.write(&feedback(200)).unwrap();
        let mut last = None;
        read_all(&dir, |l| {
            if let FileLine::Feedback(f) = l {
                last = Some(f.feedback_id)
            }
        })
        .unwrap();
        assert_eq!(last.as_deref(), Some("f200"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_line_is_counted_not_fatal() {
        let dir = std::env::temp_dir().join(format!("pg-logstore-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = FileStore::open(&settings(&dir)).unwrap();
        store.write(&feedback(1)).unwrap();
        store.write(b"{\"kind\":\"feedback\",\"feedb\n").unwrap();
        let mut n = 0;
        assert_eq!(read_all(&dir, |_| n += 1).unwrap(), 1);
        assert_eq!(n, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
