//! The counters: in this process, or in a Redis every replica shares. Both answer the same two
//! operations — read (and count a request) at admission in one step, add usage after the answer
//! — so a limit means the same on one pod as on a fleet.

use crate::store::redis::{Link, LinkError};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

/// One counter read at admission.
pub(crate) struct Read<'a> {
    pub key: &'a str,
    /// Count one (a request limit) before reading.
    pub count: bool,
    /// When the counter ends by itself (Unix ms); `None`: never.
    pub expires_at: Option<u64>,
}

/// Usage added to a counter after an answer.
#[derive(Debug, Clone)]
pub(crate) struct Add {
    pub key: String,
    pub amount: u64,
    pub expires_at: Option<u64>,
}

/// Counters in this process. Bounded: a policy keyed by a metadata value makes a counter per
/// value, so the least recently used are dropped past the bound (each is small).
pub(crate) struct Memory {
    counters: Mutex<LruCache<String, Counter>>,
}

#[derive(Clone, Copy)]
struct Counter {
    value: u64,
    expires_at: Option<u64>,
}

impl Counter {
    /// Whether the counter still counts at `now_ms` (a window or period not yet over).
    fn live(&self, now_ms: u64) -> bool {
        self.expires_at.map_or(true, |e| e > now_ms)
    }
}

/// Counters kept by the memory backend.
const MAX_COUNTERS: usize = 100_000;

impl Memory {
    pub(crate) fn new() -> Self {
        Memory {
            counters: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_COUNTERS).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    pub(crate) fn read(&self, reads: &[Read<'_>], now_ms: u64) -> Vec<u64> {
        let Ok(mut counters) = self.counters.lock() else {
            return vec![0; reads.len()];
        };
        reads
            .iter()
            .map(|r| {
                let live = counters.get(r.key).filter(|c| c.live(now_ms)).copied();
                let mut c = live.unwrap_or(Counter {
                    value: 0,
                    expires_at: r.expires_at,
                });
                if r.count {
                    c.value += 1;
                    counters.put(r.key.to_string(), c);
                }
                c.value
            })
            .collect()
    }

    /// Adds usage; answers each counter's new total.
    pub(crate) fn add(&self, adds: &[Add], now_ms: u64) -> Vec<u64> {
        let Ok(mut counters) = self.counters.lock() else {
            return vec![0; adds.len()];
        };
        let mut totals = Vec::with_capacity(adds.len());
        for a in adds {
            let live = counters.get(&a.key).filter(|c| c.live(now_ms)).copied();
            let mut c = live.unwrap_or(Counter {
                value: 0,
                expires_at: a.expires_at,
            });
            c.value = c.value.saturating_add(a.amount);
            counters.put(a.key.clone(), c);
            totals.push(c.value);
        }
        totals
    }

    pub(crate) fn get(&self, keys: &[String], now_ms: u64) -> Vec<u64> {
        let Ok(mut counters) = self.counters.lock() else {
            return vec![0; keys.len()];
        };
        keys.iter()
            .map(|k| {
                counters
                    .get(k)
                    .filter(|c| c.live(now_ms))
                    .map_or(0, |c| c.value)
            })
            .collect()
    }

    pub(crate) fn reset(&self, prefix: &str) -> usize {
        let Ok(mut counters) = self.counters.lock() else {
            return 0;
        };
        let gone: Vec<String> = counters
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            counters.pop(k);
        }
        gone.len()
    }
}

/// Reads counters, counting request limits, in one round trip: one script, so replicas that
/// count at once never read the same value (no read-then-write race).
const READ: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local count = ARGV[2 * i - 1]
  local expires = tonumber(ARGV[2 * i])
  local used
  if count == '1' then
    used = redis.call('INCR', key)
    if used == 1 and expires > 0 then redis.call('PEXPIREAT', key, expires) end
  else
    used = tonumber(redis.call('GET', key) or '0')
  end
  out[i] = used
end
return out
";

/// Counters in Redis, shared by every replica.
pub(crate) struct Redis {
    link: Link,
    script: redis::Script,
}

impl Redis {
    pub(crate) fn new(link: Link) -> Self {
        Redis {
            link,
            script: redis::Script::new(READ),
        }
    }

    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.link.settings().key_prefix)
    }

    pub(crate) async fn read(&self, reads: &[Read<'_>]) -> Result<Vec<u64>, LinkError> {
        let bound = Duration::from_millis(self.link.settings().lookup_timeout_ms);
        let started = std::time::Instant::now();
        let mut conn = self.link.conn(bound).await?;
        let mut call = self.script.prepare_invoke();
        for r in reads {
            call.key(self.key(r.key));
            call.arg(if r.count { "1" } else { "0" });
            call.arg(r.expires_at.unwrap_or(0));
        }
        let left = bound.saturating_sub(started.elapsed());
        let used: Vec<i64> = tokio::time::timeout(left, call.invoke_async(&mut conn))
            .await
            .map_err(|_| LinkError::Timeout)??;
        Ok(used.into_iter().map(|n| n.max(0) as u64).collect())
    }

    /// Adds usage in one round trip; answers each counter's new total.
    pub(crate) async fn add(&self, adds: &[Add]) -> Result<Vec<u64>, LinkError> {
        let bound = Duration::from_millis(self.link.settings().store_timeout_ms);
        let mut conn = self.link.conn(bound).await?;
        let mut pipe = redis::pipe();
        for a in adds {
            let key = self.key(&a.key);
            pipe.cmd("INCRBY").arg(&key).arg(a.amount);
            if let Some(at) = a.expires_at {
                pipe.cmd("PEXPIREAT").arg(&key).arg(at).ignore();
            }
        }
        let totals: Vec<i64> = tokio::time::timeout(bound, pipe.query_async(&mut conn))
            .await
            .map_err(|_| LinkError::Timeout)??;
        Ok(totals.into_iter().map(|n| n.max(0) as u64).collect())
    }

    pub(crate) async fn get(&self, keys: &[String]) -> Result<Vec<u64>, LinkError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let bound = Duration::from_millis(self.link.settings().lookup_timeout_ms.max(500));
        let mut conn = self.link.conn(bound).await?;
        let full: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let got: Vec<Option<i64>> =
            tokio::time::timeout(bound, redis::cmd("MGET").arg(&full).query_async(&mut conn))
                .await
                .map_err(|_| LinkError::Timeout)??;
        Ok(got
            .into_iter()
            .map(|n| n.unwrap_or(0).max(0) as u64)
            .collect())
    }

    /// Deletes a scope's counters (`SCAN` for its prefix, then `UNLINK`).
    pub(crate) async fn reset(&self, prefix: &str) -> Result<usize, LinkError> {
        let bound = Duration::from_millis(self.link.settings().store_timeout_ms.max(1_000));
        let mut conn = self.link.conn(bound).await?;
        let pattern = format!("{}*", self.key(prefix));
        let scan = async {
            let mut cursor: u64 = 0;
            let mut gone = 0;
            loop {
                let (next, keys) =
                    crate::store::redis::scan_page(&mut conn, &pattern, cursor).await?;
                if !keys.is_empty() {
                    gone += keys.len();
                    redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async::<()>(&mut conn)
                        .await?;
                }
                if next == 0 {
                    return Ok::<usize, redis::RedisError>(gone);
                }
                cursor = next;
            }
        };
        Ok(tokio::time::timeout(bound, scan)
            .await
            .map_err(|_| LinkError::Timeout)??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_counts_requests_adds_usage_and_expires() {
        let m = Memory::new();
        let read = |count| Read {
            key: "vk:a:rpm:0",
            count,
            expires_at: Some(60_000),
        };
        assert_eq!(m.read(&[read(true)], 1), [1]);
        assert_eq!(m.read(&[read(true), read(false)], 2), [2, 2]);
        m.add(
            &[Add {
                key: "vk:a:rpm:0".into(),
                amount: 5,
                expires_at: Some(60_000),
            }],
            3,
        );
        assert_eq!(m.get(&["vk:a:rpm:0".into()], 4), [7]);
        // Past its end the counter starts again.
        assert_eq!(m.read(&[read(false)], 60_000), [0]);
        assert_eq!(m.reset("vk:a:"), 1);
        assert_eq!(m.get(&["vk:a:rpm:0".into()], 5), [0]);
    }
}
