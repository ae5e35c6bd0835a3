//! The Redis backend: one Redis shared by every replica, so an answer cached by one sidecar is
//! a hit for all. Entries are `SET key value EX ttl`; Redis expires them.
//!
//! Redis is an optimisation, never a dependency of serving: every operation is bounded
//! (`lookup_timeout_ms`, `store_timeout_ms`), and an error or a timeout bypasses the cache for
//! that request. The connection is made in the background on first use (a request never waits
//! for a connect longer than its lookup bound) and, while Redis is unreachable, retried at most
//! once per `reconnect_interval_ms`; once made, `redis`'s `ConnectionManager` reconnects by
//! itself.

use super::Entry;
use crate::settings::cache::RedisSettings;
use crate::store::redis::Link;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub(crate) use crate::store::redis::LinkError as RedisError;

struct Inner {
    link: Link,
    /// The semantic vector follower runs (`vectors`).
    following: AtomicBool,
    /// Its first full load finished.
    is_loaded: AtomicBool,
    loaded: Notify,
}

impl Inner {
    fn settings(&self) -> &RedisSettings {
        self.link.settings()
    }
}

pub(crate) struct RedisStore {
    inner: Arc<Inner>,
}

impl RedisStore {
    pub(crate) fn new(url: &str, settings: &RedisSettings) -> Result<Self, String> {
        Ok(RedisStore {
            inner: Arc::new(Inner {
                link: Link::new(url, settings, "cache")?,
                following: AtomicBool::new(false),
                is_loaded: AtomicBool::new(false),
                loaded: Notify::new(),
            }),
        })
    }

    fn key(&self, key: &[u8; 32]) -> String {
        let prefix = &self.inner.settings().key_prefix;
        let mut s = String::with_capacity(prefix.len() + 64);
        s.push_str(prefix);
        for b in key {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub(crate) async fn get(&self, key: &[u8; 32]) -> Result<Option<Entry>, RedisError> {
        let bound = Duration::from_millis(self.inner.settings().lookup_timeout_ms);
        let started = Instant::now();
        let mut conn = self.inner.link.conn(bound).await?;
        let left = bound.saturating_sub(started.elapsed());
        let cmd = redis::cmd("GET").arg(self.key(key)).to_owned();
        let got: Option<Vec<u8>> = tokio::time::timeout(left, cmd.query_async(&mut conn))
            .await
            .map_err(|_| RedisError::Timeout)??;
        Ok(got.and_then(|raw| Entry::decode(&raw)))
    }

    pub(crate) async fn put(
        &self,
        key: &[u8; 32],
        entry: &Entry,
        ttl: u64,
    ) -> Result<(), RedisError> {
        let bound = Duration::from_millis(self.inner.settings().store_timeout_ms);
        let mut conn = self.inner.link.conn(bound).await?;
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

    /// Logs a Redis failure, at most once per reconnect interval.
    pub(crate) fn log_failure(&self, op: &str, e: &RedisError) {
        self.inner.link.log_failure(op, e, "requests go uncached");
    }
}

/// Semantic vectors shared through Redis: each stored answer's vector is kept under
/// `<prefix>vec:<key>` with the answer's TTL and announced on the stream `<prefix>vectors`
/// (trimmed to about `max_entries`). Every replica loads all vectors once (`SCAN`) and then
/// follows the stream, so its local index holds the vectors every replica stored, including
/// those stored before it started. Consistency: eventual — a vector reaches the other replicas'
/// indexes within one stream read (normally milliseconds) after its store; while Redis is
/// unreachable, replicas keep the index they have and reload everything when it is back.
pub mod vectors {
    use super::super::semantic::Index;
    use super::{Inner, RedisError, RedisStore};
    use redis::streams::{StreamRangeReply, StreamReadReply};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    /// One vector record: scope, key, expiry (unix s), the unit vector.
    pub fn encode(scope: &[u8; 32], key: &[u8; 32], expires: u64, v: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(76 + v.len() * 4);
        out.extend_from_slice(scope);
        out.extend_from_slice(key);
        out.extend_from_slice(&expires.to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    /// A record read back from the stream, which any replica (or anything else that can write
    /// to Redis) may have written: the vector is validated and scaled to unit length, `None`
    /// for a record that is cut, longer than it says, or whose vector is empty, zero or not
    /// finite.
    #[allow(clippy::type_complexity)]
    pub fn decode(raw: &[u8]) -> Option<([u8; 32], [u8; 32], u64, Arc<[f32]>)> {
        let scope: [u8; 32] = raw.get(..32)?.try_into().ok()?;
        let key: [u8; 32] = raw.get(32..64)?.try_into().ok()?;
        let expires = u64::from_le_bytes(raw.get(64..72)?.try_into().ok()?);
        let n = u32::from_le_bytes(raw.get(72..76)?.try_into().ok()?) as usize;
        let end = n.checked_mul(4)?.checked_add(76)?;
        if raw.len() != end {
            return None;
        }
        let v: Vec<f32> = raw
            .get(76..end)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let v = crate::cache::semantic::normalise(v)?;
        Some((scope, key, expires, v))
    }

    fn stream(inner: &Inner) -> String {
        format!("{}vectors", inner.settings().key_prefix)
    }

    fn hex(key: &[u8; 32]) -> String {
        key.iter().map(|b| format!("{b:02x}")).collect()
    }

    impl RedisStore {
        /// Stores a vector record and announces it to every replica.
        pub(crate) async fn put_vector(
            &self,
            record: Vec<u8>,
            key: &[u8; 32],
            ttl: u64,
            max_entries: usize,
        ) -> Result<(), RedisError> {
            let bound = Duration::from_millis(self.inner.settings().store_timeout_ms);
            let mut conn = self.inner.link.conn(bound).await?;
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(format!(
                    "{}vec:{}",
                    self.inner.settings().key_prefix,
                    hex(key)
                ))
                .arg(&record)
                .arg("EX")
                .arg(ttl.max(1))
                .ignore()
                .cmd("XADD")
                .arg(stream(&self.inner))
                .arg("MAXLEN")
                .arg("~")
                .arg(max_entries)
                .arg("*")
                .arg("v")
                .arg(&record)
                .ignore();
            tokio::time::timeout(bound, pipe.query_async::<()>(&mut conn))
                .await
                .map_err(|_| RedisError::Timeout)??;
            Ok(())
        }

        /// Starts (once) the task that keeps `index` in step with the vectors in Redis.
        pub(crate) fn follow_vectors(&self, index: Arc<Index>) {
            if self.inner.following.swap(true, Ordering::AcqRel) {
                return;
            }
            let inner = self.inner.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = follow(&inner, &index).await {
                        tracing::warn!(target: "portgate::cache", error = %e, "semantic cache: following Redis vectors failed, retrying");
                    }
                    let wait = Duration::from_millis(inner.settings().reconnect_interval_ms);
                    tokio::time::sleep(wait).await;
                }
            });
        }

        /// Waits at most `bound` for the first full load of the vectors.
        pub(crate) async fn vectors_loaded(&self, bound: Duration) {
            let notified = self.inner.loaded.notified();
            if self.inner.is_loaded.load(Ordering::Acquire) {
                return;
            }
            let _ = tokio::time::timeout(bound, notified).await;
        }
    }

    fn insert(index: &Index, raw: &[u8], now: u64) {
        match decode(raw) {
            Some((scope, key, expires, v)) if expires > now => {
                index.insert(scope, &v, key, expires)
            }
            Some(_) => {}
            None => index.reject(),
        }
    }

    /// Loads every vector, then reads the stream from the entry that was last before the load
    /// (an entry seen twice is inserted once: the index replaces a key's vector).
    async fn follow(inner: &Arc<Inner>, index: &Index) -> Result<(), RedisError> {
        let s = inner.settings();
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_millis(s.connect_timeout_ms))
            .set_response_timeout(Duration::from_secs(30));
        let mut conn = inner
            .link
            .client()
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let stream = stream(inner);
        let last: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        let mut from = last
            .ids
            .first()
            .map_or_else(|| "0-0".to_string(), |i| i.id.clone());
        let now = super::super::now_secs();
        let pattern = format!("{}vec:*", s.key_prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys) = crate::store::redis::scan_page(&mut conn, &pattern, cursor).await?;
            if !keys.is_empty() {
                let values: Vec<Option<Vec<u8>>> =
                    redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
                for raw in values.iter().flatten() {
                    insert(index, raw, now);
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        inner.is_loaded.store(true, Ordering::Release);
        inner.loaded.notify_waiters();
        loop {
            let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(5000)
                .arg("COUNT")
                .arg(512)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&from)
                .query_async(&mut conn)
                .await?;
            let now = super::super::now_secs();
            for key in reply.into_iter().flat_map(|r| r.keys) {
                for entry in key.ids {
                    if let Some(redis::Value::BulkString(raw)) = entry.map.get("v") {
                        insert(index, raw, now);
                    }
                    from = entry.id;
                }
            }
        }
    }
}
