//! The log store: finished requests and feedback kept where datasets are made from them
//! (`portgate dataset export`), in rotated files (one process) or in PostgreSQL (every replica).
//!
//! A request never waits for the store or fails because of it: the proxy hands over what the
//! request left (its access-log line, and with `bodies` the request and the answer's chunks)
//! with a non-blocking send on a bounded queue; when the queue is full the record is dropped
//! and counted. The store's own thread decodes, redacts and writes in batches. Feedback is the
//! exception that waits, bounded by the database timeout: with PostgreSQL a feedback is written
//! before it is acknowledged, so an update reaching any replica finds it.

pub mod export;
pub mod file;
mod postgres;
pub mod record;
pub mod transcript;
mod writer;

use crate::feedback::FeedbackIndex;
use crate::settings::log_store::{LogStoreBackend, LogStoreSettings};
use crate::settings::SettingsError;
use crate::store::postgres::{Database, DbError};
use crate::telemetry::metrics::Metrics;
use record::{Entry, FeedbackChange, FeedbackRow};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TrySendError;

pub use record::{RequestRecord, StoredRequest};
pub use transcript::Transcript;

/// A queue-full warning is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

pub struct LogStore {
    tx: tokio::sync::mpsc::Sender<Entry>,
    /// Wakes the writer before its next tick (a batch is waiting, a flush is asked for).
    wake: Arc<tokio::sync::Notify>,
    batch: usize,
    bodies: bool,
    db: Option<Arc<Database>>,
    /// Feedback ids created by this process (the file backend's updates find them here).
    index: Arc<FeedbackIndex>,
    dropped: prometheus::IntCounter,
    epoch: Instant,
    last_warn_ms: AtomicU64,
}

/// Why a feedback update could not be applied.
#[derive(Debug)]
pub(crate) enum UpdateError {
    /// No feedback has the id (in the shared store, or in this process with the file backend).
    NotFound,
    /// The database did not answer and the id is not one this process created.
    Unavailable(DbError),
}

impl LogStore {
    /// Opens the backend (the file backend's directory; a PostgreSQL URL is only parsed: the
    /// database is connected to and migrated by the writer, so a database that is down does
    /// not stop the gateway) and starts the writer thread.
    pub(crate) fn start(
        settings: &LogStoreSettings,
        env: &dyn Fn(&str) -> Option<String>,
        metrics: &Metrics,
        index: Arc<FeedbackIndex>,
    ) -> Result<LogStore, SettingsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("portgate-log-store")
            .build()
            .map_err(|e| SettingsError::new("log_store", format!("runtime: {e}")))?;
        let (backend, db) = match settings.backend {
            LogStoreBackend::File => {
                let store = file::FileStore::open(settings).map_err(|e| {
                    SettingsError::new("log_store.dir", format!("{}: {e}", settings.dir))
                })?;
                (writer::Backend::File(store), None)
            }
            LogStoreBackend::Postgres => {
                let url = settings.postgres.resolve_url(env)?;
                let db = Database::new(&url, &settings.postgres, runtime.handle().clone())
                    .map_err(|e| SettingsError::new("log_store.postgres.url", e))?;
                let db = Arc::new(db);
                let backend = writer::Backend::Postgres {
                    db: db.clone(),
                    migrated: false,
                    retention_days: settings.retention_days,
                };
                (backend, Some(db))
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(settings.queue);
        let wake = Arc::new(tokio::sync::Notify::new());
        let writer = writer::Writer {
            backend,
            batch: settings.batch,
            dropped: metrics.log_store_dropped.clone(),
            records: metrics.log_store_records.clone(),
            wake: wake.clone(),
        };
        std::thread::Builder::new()
            .name("portgate-log-store".into())
            .spawn(move || runtime.block_on(writer.run(rx)))
            .map_err(|e| SettingsError::new("log_store", format!("writer thread: {e}")))?;
        Ok(LogStore {
            tx,
            wake,
            batch: settings.batch,
            bodies: settings.bodies,
            db,
            index,
            dropped: metrics.log_store_dropped.with_label_values(&["queue_full"]),
            epoch: Instant::now(),
            last_warn_ms: AtomicU64::new(0),
        })
    }

    /// Whether request and answer bodies are kept.
    pub(crate) fn bodies(&self) -> bool {
        self.bodies
    }

    /// Hands a finished request to the writer, or drops and counts it when the queue is full.
    pub(crate) fn record(&self, record: RequestRecord) {
        self.send(Entry::Request(Box::new(record)));
    }

    fn send(&self, entry: Entry) {
        match self.tx.try_send(entry) {
            Ok(()) => {
                // The writer drains the queue on its own tick; it is woken early only once a
                // batch is waiting (an atomic read per record, a wake-up per batch).
                if self.tx.max_capacity() - self.tx.capacity() >= self.batch {
                    self.wake.notify_one();
                }
            }
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.dropped.inc();
                let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
                let last = self.last_warn_ms.load(Ordering::Relaxed);
                let every = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
                if last == 0 || now.saturating_sub(last) >= every {
                    self.last_warn_ms.store(now.max(1), Ordering::Relaxed);
                    tracing::warn!(target: "portgate::log_store", "log store queue full: records dropped (portgate_log_store_dropped_total)");
                }
            }
        }
    }

    /// Records created feedback. With PostgreSQL they are written before this returns (bounded
    /// by the timeout; past it, or with the database down, they are queued like any record).
    pub(crate) async fn feedback_created(&self, rows: Vec<FeedbackRow>) {
        for r in &rows {
            self.index.insert(&r.feedback_id, &r.trace_id);
        }
        if let Some(db) = &self.db {
            match postgres::insert_feedback(db, &rows).await {
                Ok(()) => return,
                Err(e) => db.warn("log store: feedback not written at once, queued", &e),
            }
        }
        for r in rows {
            self.send(Entry::Feedback(r));
        }
    }

    /// Applies a feedback update; returns the feedback's trace id.
    pub(crate) async fn feedback_changed(
        &self,
        change: FeedbackChange,
    ) -> Result<String, UpdateError> {
        let here = self.index.trace_of(&change.feedback_id);
        let Some(db) = &self.db else {
            // The file backend: only this process's feedback is known.
            let trace = here.ok_or(UpdateError::NotFound)?;
            self.send(Entry::FeedbackChange(change));
            return Ok(trace);
        };
        match postgres::update_feedback(db, &change).await {
            Ok(Some(trace)) => Ok(trace),
            // Created here and still queued (the database was slow when it came): the change
            // follows it through the queue.
            Ok(None) | Err(_) if here.is_some() => {
                self.send(Entry::FeedbackChange(change));
                Ok(here.unwrap_or_default())
            }
            Ok(None) => Err(UpdateError::NotFound),
            Err(e) => Err(UpdateError::Unavailable(e)),
        }
    }

    /// Writes everything queued so far; `false` when that took longer than `within`.
    pub(crate) fn flush(&self, within: Duration) -> bool {
        let (done, wait) = std::sync::mpsc::channel();
        let deadline = Instant::now() + within;
        let mut entry = Entry::Flush(done);
        // The queue may be full for a moment: the writer empties it in batches.
        loop {
            match self.tx.try_send(entry) {
                Ok(()) => {
                    self.wake.notify_one();
                    break;
                }
                Err(TrySendError::Closed(_)) => return false,
                Err(TrySendError::Full(e)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    entry = e;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        wait.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}
