//! The memory backend: entries in this process, bounded by count and bytes, least recently used
//! evicted first, expired entries dropped when read (and pushed out by eviction otherwise).
//! Sharded so that concurrent requests rarely wait on the same lock; each lock is held for a
//! map operation only (no I/O, no allocation of the answer).

use super::Entry;
use lru::LruCache;
use prometheus::IntGauge;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

struct Shard {
    lru: LruCache<[u8; 32], Arc<Entry>>,
    bytes: usize,
}

pub(crate) struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
    max_entries: usize,
    max_bytes: usize,
    entries_gauge: IntGauge,
    bytes_gauge: IntGauge,
}

impl MemoryStore {
    pub(crate) fn new(
        max_entries: usize,
        max_bytes: usize,
        entries_gauge: IntGauge,
        bytes_gauge: IntGauge,
    ) -> Self {
        MemoryStore {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        lru: LruCache::unbounded(),
                        bytes: 0,
                    })
                })
                .collect(),
            // Each shard holds its share (at least one entry).
            max_entries: max_entries.div_ceil(SHARDS).max(1),
            max_bytes: max_bytes.div_ceil(SHARDS).max(1),
            entries_gauge,
            bytes_gauge,
        }
    }

    fn shard(&self, key: &[u8; 32]) -> &Mutex<Shard> {
        // The key is a SHA-256: any byte is uniform.
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    pub(crate) fn get(&self, key: &[u8; 32], now: u64) -> Option<Arc<Entry>> {
        let mut s = self.shard(key).lock().ok()?;
        let entry = s.lru.get(key)?.clone();
        if entry.expires_at > now {
            return Some(entry);
        }
        if let Some(old) = s.lru.pop(key) {
            s.bytes -= old.weight();
            self.entries_gauge.dec();
            self.bytes_gauge.sub(old.weight() as i64);
        }
        None
    }

    pub(crate) fn put(&self, key: [u8; 32], entry: Arc<Entry>) {
        let weight = entry.weight();
        if weight > self.max_bytes {
            return;
        }
        let Ok(mut s) = self.shard(&key).lock() else {
            return;
        };
        if let Some(old) = s.lru.put(key, entry) {
            s.bytes -= old.weight();
            self.entries_gauge.dec();
            self.bytes_gauge.sub(old.weight() as i64);
        }
        s.bytes += weight;
        self.entries_gauge.inc();
        self.bytes_gauge.add(weight as i64);
        while s.bytes > self.max_bytes || s.lru.len() > self.max_entries {
            let Some((_, old)) = s.lru.pop_lru() else {
                break;
            };
            s.bytes -= old.weight();
            self.entries_gauge.dec();
            self.bytes_gauge.sub(old.weight() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(len: usize, expires_at: u64) -> Arc<Entry> {
        Arc::new(Entry {
            status: 200,
            content_type: "application/json".into(),
            body: Bytes::from(vec![b'x'; len]),
            usage: None,
            model: None,
            expires_at,
        })
    }

    fn key(i: u32) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k
    }

    #[test]
    fn bounded_by_entries_and_bytes_and_expires() {
        let g = || IntGauge::new("g", "g").unwrap();
        let (entries, bytes) = (g(), g());
        let m = MemoryStore::new(SHARDS * 2, SHARDS * 10_000, entries.clone(), bytes.clone());
        // Keys 0, 16, 32 land in shard 0, whose share is 2 entries.
        for i in [0u32, 16, 32] {
            m.put(key(i), entry(10, 100));
        }
        assert!(m.get(&key(0), 1).is_none(), "least recently used evicted");
        assert!(m.get(&key(16), 1).is_some());
        assert!(m.get(&key(32), 1).is_some());
        assert_eq!(entries.get(), 2);
        assert!(m.get(&key(16), 100).is_none(), "expired at its time");
        assert_eq!(entries.get(), 1);
        // A shard's byte share is 10 000: a second large entry pushes the first out.
        m.put(key(48), entry(6_000, 100));
        m.put(key(64), entry(6_000, 100));
        assert!(m.get(&key(48), 1).is_none());
        assert!(m.get(&key(64), 1).is_some());
        assert!(bytes.get() <= 10_000);
        m.put(key(80), entry(20_000, 100));
        assert!(
            m.get(&key(80), 1).is_none(),
            "larger than a shard: not kept"
        );
    }
}
