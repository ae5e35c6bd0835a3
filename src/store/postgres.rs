//! One connection to a PostgreSQL database, shared by the log store's writer and its feedback
//! writes, made and remade in the background.
//!
//! The connection's I/O runs on the runtime handed in (the log store's own thread): a request
//! that writes feedback only sends on a channel and waits, bounded by `timeout_ms`, so the
//! proxy's worker threads never drive the database socket. While the database is unreachable a
//! new connection is tried at most once per `reconnect_interval_ms`; errors are logged at most
//! once per interval, never with the URL (it may hold a password).

use crate::settings::log_store::PostgresSettings;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

/// Why the database did not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error("not connected (next attempt within {0} ms)")]
    NotConnected(u64),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("{0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Runtime(String),
}

impl DbError {
    /// Whether a statement named a table that does not exist.
    pub(crate) fn is_undefined_table(&self) -> bool {
        match self {
            DbError::Postgres(e) => e
                .as_db_error()
                .is_some_and(|d| d.code() == &tokio_postgres::error::SqlState::UNDEFINED_TABLE),
            _ => false,
        }
    }
}

/// A shared handle to one database.
pub(crate) struct Database {
    config: tokio_postgres::Config,
    /// Where connections run (their I/O future is spawned there).
    runtime: tokio::runtime::Handle,
    client: Mutex<Option<Arc<Client>>>,
    /// Serialises connects: one attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    epoch: Instant,
    /// Milliseconds since `epoch` before which no new connect is started.
    next_connect_ms: AtomicU64,
    last_log_ms: AtomicU64,
    timeout: Duration,
    reconnect: Duration,
}

impl Database {
    pub(crate) fn new(
        url: &str,
        settings: &PostgresSettings,
        runtime: tokio::runtime::Handle,
    ) -> Result<Database, String> {
        // The parser's message may quote the URL: it is not passed on.
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| "not a valid PostgreSQL URL".to_string())?;
        let timeout = Duration::from_millis(settings.timeout_ms);
        config.connect_timeout(timeout);
        config.application_name("portgate");
        Ok(Database {
            config,
            runtime,
            client: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            epoch: Instant::now(),
            next_connect_ms: AtomicU64::new(0),
            last_log_ms: AtomicU64::new(0),
            timeout,
            reconnect: Duration::from_millis(settings.reconnect_interval_ms),
        })
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn current(&self) -> Option<Arc<Client>> {
        let guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// The connected client, connecting first when there is none and the reconnect interval
    /// allows; `DbError::NotConnected` otherwise, without waiting.
    pub(crate) async fn client(&self) -> Result<Arc<Client>, DbError> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let now = self.now_ms();
        let next = self.next_connect_ms.load(Ordering::Relaxed);
        if now < next {
            return Err(DbError::NotConnected(next - now));
        }
        self.next_connect_ms.store(
            now + u64::try_from(self.reconnect.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let client = Arc::new(self.connect().await?);
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
        Ok(client)
    }

    /// A connection of the caller's own (not shared): for a transaction, which must not take
    /// in other users' statements.
    pub(crate) async fn connect(&self) -> Result<Client, DbError> {
        let config = self.config.clone();
        let connect = self.runtime.spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                // Ends when the client is dropped or the server goes away; the next use
                // sees `is_closed` and connects again.
                let _ = connection.await;
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        match tokio::time::timeout(self.timeout, connect).await {
            Err(_) => Err(DbError::Timeout(self.timeout_ms())),
            Ok(Err(e)) => Err(DbError::Runtime(e.to_string())),
            Ok(Ok(r)) => Ok(r?),
        }
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `f` on the client, bounded by `timeout_ms`; a failure drops the connection when it
    /// is the connection's (the next call connects again).
    pub(crate) async fn with<T, F, Fut>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let client = self.client().await?;
        match tokio::time::timeout(self.timeout, f(client.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_closed() || client.is_closed() {
                    self.forget(&client);
                }
                Err(DbError::Postgres(e))
            }
            Err(_) => {
                // A statement that timed out may still be running on this connection: the
                // next use starts on a fresh one.
                self.forget(&client);
                Err(DbError::Timeout(self.timeout_ms()))
            }
        }
    }

    fn forget(&self, client: &Arc<Client>) {
        let mut guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(|c| Arc::ptr_eq(c, client)) {
            *guard = None;
        }
    }

    /// Logs `what` failed, at most once per reconnect interval (a database that is down would
    /// otherwise log once per batch).
    pub(crate) fn warn(&self, what: &str, err: &DbError) {
        let now = self.now_ms();
        let last = self.last_log_ms.load(Ordering::Relaxed);
        let every = u64::try_from(self.reconnect.as_millis())
            .unwrap_or(u64::MAX)
            .max(10_000);
        if last != 0 && now.saturating_sub(last) < every {
            return;
        }
        self.last_log_ms.store(now.max(1), Ordering::Relaxed);
        tracing::warn!(target: "portgate::log_store", error = %err, "{what}");
    }
}
