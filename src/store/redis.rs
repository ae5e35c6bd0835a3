//! One connection to a Redis, for every part that keeps state there (the response cache, the
//! limit counters).
//!
//! Redis is never allowed to stall a request: the connection is made in the background on
//! first use (a request never waits for a connect longer than its own bound) and, while Redis
//! is unreachable, retried at most once per `reconnect_interval_ms`; once made, `redis`'s
//! `ConnectionManager` reconnects by itself. Failures are logged at most once per interval,
//! never with the URL (it may hold a password).

use crate::settings::cache::RedisSettings;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OnceCell};

/// Why Redis did not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("not connected")]
    NotConnected,
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

struct Inner {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    connecting: AtomicBool,
    /// Milliseconds since `epoch` before which no new connect is started.
    next_connect_ms: AtomicU64,
    connected: Notify,
    epoch: Instant,
    settings: RedisSettings,
    /// When an error was last logged (ms since `epoch`): at most one line per interval.
    last_log_ms: AtomicU64,
    /// The log target of the part that uses the link (`portgate::cache`, `portgate::limits`).
    target: &'static str,
}

/// A shared handle to one Redis.
#[derive(Clone)]
pub(crate) struct Link {
    inner: Arc<Inner>,
}

impl Link {
    pub(crate) fn new(
        url: &str,
        settings: &RedisSettings,
        target: &'static str,
    ) -> Result<Self, String> {
        // The message of a bad URL may echo it: it is not included.
        let client = redis::Client::open(url).map_err(|_| "not a valid Redis URL".to_string())?;
        Ok(Link {
            inner: Arc::new(Inner {
                client,
                conn: OnceCell::new(),
                connecting: AtomicBool::new(false),
                next_connect_ms: AtomicU64::new(0),
                connected: Notify::new(),
                epoch: Instant::now(),
                settings: settings.clone(),
                last_log_ms: AtomicU64::new(0),
                target,
            }),
        })
    }

    pub(crate) fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    /// The client, for a connection of its own (a blocking stream read).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.inner.client
    }

    /// The connection, waiting at most `bound` for one being made.
    pub(crate) async fn conn(&self, bound: Duration) -> Result<ConnectionManager, LinkError> {
        if let Some(c) = self.inner.conn.get() {
            return Ok(c.clone());
        }
        let notified = self.inner.connected.notified();
        Inner::start_connect(&self.inner);
        if let Some(c) = self.inner.conn.get() {
            return Ok(c.clone());
        }
        let _ = tokio::time::timeout(bound, notified).await;
        self.inner
            .conn
            .get()
            .cloned()
            .ok_or(LinkError::NotConnected)
    }

    /// Logs a failure, at most once per reconnect interval (a down Redis would otherwise log
    /// every request), with what it means for requests.
    pub(crate) fn log_failure(&self, op: &str, e: &LinkError, meaning: &str) {
        let now = self.inner.now_ms();
        let last = self.inner.last_log_ms.load(Ordering::Relaxed);
        let every = self.inner.settings.reconnect_interval_ms;
        if (last == 0 || now >= last + every)
            && self
                .inner
                .last_log_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(target: "portgate::redis", part = self.inner.target, op, error = %e, "redis unavailable: {meaning}");
        }
    }
}

/// One page of `SCAN … MATCH pattern`: the next cursor (0 at the end) and the keys.
pub(crate) async fn scan_page(
    conn: &mut impl redis::aio::ConnectionLike,
    pattern: &str,
    cursor: u64,
) -> Result<(u64, Vec<String>), redis::RedisError> {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(500)
        .query_async(conn)
        .await
}

impl Inner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Starts one background connect unless one runs or the last failed too recently.
    fn start_connect(this: &Arc<Inner>) {
        if this.now_ms() < this.next_connect_ms.load(Ordering::Relaxed)
            || this.connecting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let inner = this.clone();
        tokio::spawn(async move {
            let s = &inner.settings;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Duration::from_millis(s.connect_timeout_ms))
                .set_response_timeout(Duration::from_millis(
                    s.lookup_timeout_ms.max(s.store_timeout_ms),
                ))
                .set_number_of_retries(1)
                .set_max_delay(s.reconnect_interval_ms);
            let made = tokio::time::timeout(
                Duration::from_millis(s.connect_timeout_ms),
                inner.client.get_connection_manager_with_config(config),
            )
            .await;
            match made {
                Ok(Ok(c)) => {
                    let _ = inner.conn.set(c);
                    inner.connected.notify_waiters();
                }
                Ok(Err(e)) => {
                    tracing::warn!(target: "portgate::redis", part = inner.target, error = %e, "redis: cannot connect");
                    inner
                        .next_connect_ms
                        .store(inner.now_ms() + s.reconnect_interval_ms, Ordering::Relaxed);
                }
                Err(_) => {
                    tracing::warn!(target: "portgate::redis", part = inner.target, "redis: connect timed out");
                    inner
                        .next_connect_ms
                        .store(inner.now_ms() + s.reconnect_interval_ms, Ordering::Relaxed);
                }
            }
            inner.connecting.store(false, Ordering::Release);
        });
    }
}
