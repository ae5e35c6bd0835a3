//! The store's own thread: every `FLUSH_EVERY`, or as soon as a batch is waiting, takes entries
//! off the queue in batches (up to `batch`), decodes them and writes each batch in one go: one
//! append to the file, or one `COPY` to PostgreSQL. A batch that cannot be written is dropped
//! and counted; the writer never waits for the database beyond its timeout, so the queue keeps
//! moving.
//!
//! The writer is not woken for each record: a wake-up is a system call and a context switch
//! on the request's path, which is most of what a record would otherwise cost a request. The
//! queue is drained on a timer, and a sender wakes the writer only when a whole batch waits.

use super::file::{FileLine, FileStore};
use super::postgres as pg;
use super::record::{Entry, FeedbackChange, FeedbackRow, RequestRow};
use crate::store::postgres::Database;
use prometheus::IntCounterVec;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

/// How often old records are deleted.
const EXPIRE_EVERY: Duration = Duration::from_secs(3600);
/// The longest a record waits in the queue when fewer than a batch are waiting.
pub(super) const FLUSH_EVERY: Duration = Duration::from_millis(50);

pub(super) enum Backend {
    File(FileStore),
    Postgres {
        db: Arc<Database>,
        migrated: bool,
        retention_days: u32,
    },
}

pub(super) struct Writer {
    pub(super) backend: Backend,
    pub(super) batch: usize,
    pub(super) dropped: IntCounterVec,
    pub(super) records: IntCounterVec,
    /// Rung by a sender when a batch is waiting (or a flush is asked for).
    pub(super) wake: Arc<tokio::sync::Notify>,
}

/// One batch, sorted by kind.
#[derive(Default)]
struct Batch {
    requests: Vec<RequestRow>,
    feedback: Vec<FeedbackRow>,
    changes: Vec<FeedbackChange>,
    /// Callers of `flush`, answered once the batch is written.
    flushed: Vec<std::sync::mpsc::Sender<()>>,
}

impl Batch {
    fn add(&mut self, entry: Entry) {
        match entry {
            Entry::Request(r) => {
                if let Some(r) = RequestRow::from_record(*r) {
                    self.requests.push(r);
                }
            }
            Entry::Feedback(f) => self.feedback.push(f),
            Entry::FeedbackChange(c) => self.changes.push(c),
            Entry::Flush(tx) => self.flushed.push(tx),
        }
    }

    fn len(&self) -> usize {
        self.requests.len() + self.feedback.len() + self.changes.len()
    }
}

impl Writer {
    pub(super) async fn run(mut self, mut rx: Receiver<Entry>) {
        // The schema is made at start-up, so that it exists as soon as the gateway serves (a
        // database that is down is tried again before each batch).
        self.migrated().await;
        let mut expire = tokio::time::interval(EXPIRE_EVERY);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let wake = self.wake.clone();
        loop {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tick.tick() => {}
                _ = expire.tick() => {
                    self.expire().await;
                    continue;
                }
            }
            // Everything waiting, in batches; entries that arrive meanwhile join the next.
            loop {
                let mut batch = Batch::default();
                let mut closed = false;
                while batch.len() < self.batch {
                    match rx.try_recv() {
                        Ok(entry) => batch.add(entry),
                        Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                let full = batch.len() >= self.batch;
                self.write(&mut batch).await;
                for tx in batch.flushed.drain(..) {
                    let _ = tx.send(());
                }
                if closed {
                    return;
                }
                if !full {
                    break;
                }
            }
        }
    }

    fn count(&self, kind: &str, n: usize) {
        if n > 0 {
            self.records.with_label_values(&[kind]).inc_by(n as u64);
        }
    }

    fn drop_all(&self, n: usize) {
        if n > 0 {
            self.dropped
                .with_label_values(&["store_error"])
                .inc_by(n as u64);
        }
    }

    async fn write(&mut self, batch: &mut Batch) {
        if batch.len() == 0 {
            return;
        }
        match &mut self.backend {
            Backend::File(store) => {
                let mut out = Vec::with_capacity(1024 * batch.len());
                let mut kinds = [0usize; 3];
                // A record that cannot be written as JSON (never the case for what the proxy
                // hands over) is left out of the append, not left half-written in it.
                let mut line =
                    |out: &mut Vec<u8>, start: usize, kind: usize, w: serde_json::Result<()>| {
                        if w.is_ok() {
                            out.push(b'\n');
                            kinds[kind] += 1;
                        } else {
                            out.truncate(start);
                        }
                    };
                for r in batch.requests.drain(..) {
                    let start = out.len();
                    let w = serde_json::to_writer(&mut out, &FileLine::Request(Box::new(r)));
                    line(&mut out, start, 0, w);
                }
                for f in batch.feedback.drain(..) {
                    let start = out.len();
                    let w = serde_json::to_writer(&mut out, &FileLine::<Value>::Feedback(f));
                    line(&mut out, start, 1, w);
                }
                for c in batch.changes.drain(..) {
                    let start = out.len();
                    let w = serde_json::to_writer(&mut out, &FileLine::<Value>::FeedbackUpdate(c));
                    line(&mut out, start, 2, w);
                }
                let n = kinds.iter().sum();
                match store.write(&out) {
                    Ok(()) => {
                        self.count("request", kinds[0]);
                        self.count("feedback", kinds[1]);
                        self.count("feedback_update", kinds[2]);
                    }
                    Err(e) => {
                        tracing::warn!(target: "portgate::log_store", error = %e, "log store write failed");
                        self.drop_all(n);
                    }
                }
            }
            Backend::Postgres { db, .. } => {
                let db = db.clone();
                if !self.migrated().await {
                    self.drop_all(batch.len());
                    return;
                }
                // Feedback first: a request and the feedback on it may share a batch, and the
                // order does not matter to a reader, but a change must follow its creation.
                let written = async {
                    if !batch.feedback.is_empty() {
                        pg::insert_feedback(&db, &batch.feedback).await?;
                    }
                    for c in &batch.changes {
                        pg::update_feedback(&db, c).await?;
                    }
                    if !batch.requests.is_empty() {
                        pg::insert_requests(&db, &batch.requests).await?;
                    }
                    Ok::<_, crate::store::postgres::DbError>(())
                }
                .await;
                match written {
                    Ok(()) => {
                        self.count("request", batch.requests.len());
                        self.count("feedback", batch.feedback.len());
                        self.count("feedback_update", batch.changes.len());
                    }
                    Err(e) => {
                        db.warn("log store: batch not written, records dropped", &e);
                        self.drop_all(batch.len());
                        // Tables gone (a database restored from an old backup, or dropped by
                        // hand): migrate again before the next batch.
                        if e.is_undefined_table() {
                            if let Backend::Postgres { migrated, .. } = &mut self.backend {
                                *migrated = false;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Whether the schema is current, migrating it first when it is not known to be.
    async fn migrated(&mut self) -> bool {
        let Backend::Postgres { db, migrated, .. } = &mut self.backend else {
            return true;
        };
        if *migrated {
            return true;
        }
        // The shared connection keeps to the reconnect interval: a database that is down is
        // not dialled for every batch.
        if let Err(e) = db.client().await {
            db.warn("log store: cannot reach the database", &e);
            return false;
        }
        match pg::migrate(db).await {
            Ok(_) => *migrated = true,
            Err(e) => db.warn("log store: cannot reach or migrate the database", &e),
        }
        *migrated
    }

    async fn expire(&mut self) {
        match &mut self.backend {
            Backend::File(store) => {
                if let Err(e) = store.expire() {
                    tracing::warn!(target: "portgate::log_store", error = %e, "log store: expiring old files failed");
                }
            }
            Backend::Postgres {
                db,
                migrated: true,
                retention_days,
            } => {
                if let Err(e) = pg::expire(db, *retention_days).await {
                    db.warn("log store: deleting old rows failed", &e);
                }
            }
            Backend::Postgres { .. } => {}
        }
    }
}
