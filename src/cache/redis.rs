//! The Redis backend: one Redis shared by every replica, so an answer cached by one sidecar is
//! a hit for all. Entries are `SET key value EX ttl`; Redis expires them.
//!
//! Redis is an optimisation, never a dependency of serving: every operation is bounded
//! (`lookup_timeout_ms`, `store_timeout_ms`), and an error or a timeout bypasses the cache for
//! that request. The connection is made in the background on first use (a request never waits
//! for a connect longer than its lookup bound) and, while Redis is unreachable, retried at most
//! once per `reconnect_interval_ms`; once made, `redis`'s `ConnectionManager` reconnects by
//! itself.

use super::settings::RedisSettings;
use super::Entry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OnceCell};

/// Why Redis did not answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
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
}

pub struct RedisStore {
    inner: Arc<Inner>,
}

impl RedisStore {
    pub fn new(url: &str, settings: &RedisSettings) -> Result<Self, String> {
        // The message of a bad URL may echo it: it is not included.
        let client = redis::Client::open(url).map_err(|_| "not a valid Redis URL".to_string())?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                conn: OnceCell::new(),
                connecting: AtomicBool::new(false),
                next_connect_ms: AtomicU64::new(0),
                connected: Notify::new(),
                epoch: Instant::now(),
                settings: settings.clone(),
                last_log_ms: AtomicU64::new(0),
            }),
        })
    }

    fn key(&self, key: &[u8; 32]) -> String {
        let mut s = String::with_capacity(self.inner.settings.key_prefix.len() + 64);
        s.push_str(&self.inner.settings.key_prefix);
        for b in key {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// The connection, waiting at most `bound` for one being made.
    async fn conn(&self, bound: Duration) -> Result<ConnectionManager, RedisError> {
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
            .ok_or(RedisError::NotConnected)
    }

    pub async fn get(&self, key: &[u8; 32]) -> Result<Option<Entry>, RedisError> {
        let bound = Duration::from_millis(self.inner.settings.lookup_timeout_ms);
        let started = Instant::now();
        let mut conn = self.conn(bound).await?;
        let left = bound.saturating_sub(started.elapsed());
        let cmd = redis::cmd("GET").arg(self.key(key)).to_owned();
        let got: Option<Vec<u8>> = tokio::time::timeout(left, cmd.query_async(&mut conn))
            .await
            .map_err(|_| RedisError::Timeout)??;
        Ok(got.and_then(|raw| Entry::decode(&raw)))
    }

    pub async fn put(&self, key: &[u8; 32], entry: &Entry, ttl: u64) -> Result<(), RedisError> {
        let bound = Duration::from_millis(self.inner.settings.store_timeout_ms);
        let mut conn = self.conn(bound).await?;
        let cmd = redis::cmd("SET")
            .arg(self.key(key))
            .arg(entry.encode())
            .arg("EX")
            .arg(ttl.max(1))
            .to_owned();
        tokio::time::timeout(bound, cmd.query_async::<()>(&mut conn))
            .await
            .map_err(|_| RedisError::Timeout)??;
        Ok(())
    }

    /// Logs a Redis failure, at most once per reconnect interval (a down Redis would otherwise
    /// log every request). The URL, which may hold a password, is never logged.
    pub fn log_failure(&self, op: &str, e: &RedisError) {
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
            tracing::warn!(target: "portgate::cache", op, error = %e, "redis cache unavailable: requests go uncached");
        }
    }
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
                    tracing::warn!(target: "portgate::cache", error = %e, "redis cache: cannot connect");
                    inner
                        .next_connect_ms
                        .store(inner.now_ms() + s.reconnect_interval_ms, Ordering::Relaxed);
                }
                Err(_) => {
                    tracing::warn!(target: "portgate::cache", "redis cache: connect timed out");
                    inner
                        .next_connect_ms
                        .store(inner.now_ms() + s.reconnect_interval_ms, Ordering::Relaxed);
                }
            }
            inner.connecting.store(false, Ordering::Release);
        });
    }
}
