//! Asynchronous, cached DNS for upstream hosts.
//!
//! Pingora's `HttpPeer::new` calls the blocking `getaddrinfo` on the async worker and panics when
//! it fails, so the gateway resolves here instead (tokio runs the lookup off the worker) and keeps
//! answers for `dns_ttl_seconds`. A lookup is bounded by `dns_timeout_ms`; a failure is
//! remembered for [`NEGATIVE_TTL`], so a broken resolver or a bad name (a client's custom host)
//! is not asked again by every request, while a recovered one is used again seconds later.
//!
//! Names come partly from requests (custom hosts, guardrail URL checks), so the cache is
//! bounded three ways: at most [`MAX_ENTRIES`] names, the least recently used evicted first; at
//! most [`MAX_CONCURRENT_LOOKUPS`] lookups in flight in the process (each takes a thread of
//! tokio's blocking pool); and one lookup per name at a time, which every concurrent asker of
//! that name awaits.

use lru::LruCache;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
#[cfg(test)]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore};

/// Cached addresses of one `host:port`.
pub(crate) type Addrs = Arc<[SocketAddr]>;

/// A cached answer and when it expires.
type Entry = (Instant, Result<Addrs, String>);

type Key = (String, u16);

/// A lookup in flight, shared by every request asking for the same name meanwhile.
type Pending = Arc<OnceCell<Result<Addrs, String>>>;

pub(crate) struct DnsCache {
    ttl: Duration,
    timeout: Duration,
    entries: Mutex<LruCache<Key, Entry>>,
    pending: Mutex<HashMap<Key, Pending>>,
    lookups: Semaphore,
    /// Lookups sent to the resolver (tests count them to see lookups merged).
    #[cfg(test)]
    asked: AtomicU64,
}

/// How long a failed lookup is answered from the cache.
pub(crate) const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Upper bound on cached names: a sidecar talks to a handful of providers, so a bound this size
/// is only reached by abuse of custom hosts; the least recently used names go first.
pub(crate) const MAX_ENTRIES: usize = 1024;

/// Lookups in flight at once in the process; more wait (within the lookup's timeout).
pub(crate) const MAX_CONCURRENT_LOOKUPS: usize = 32;

impl DnsCache {
    pub(crate) fn new(ttl: Duration, timeout: Duration) -> Self {
        DnsCache {
            ttl,
            timeout,
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
            pending: Mutex::new(HashMap::new()),
            lookups: Semaphore::new(MAX_CONCURRENT_LOOKUPS),
            #[cfg(test)]
            asked: AtomicU64::new(0),
        }
    }

    /// Resolves `host:port`, from the cache when fresh. IP literals never touch the resolver.
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> Result<Addrs, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Arc::from([SocketAddr::new(ip, port)]));
        }
        let key = (host.to_ascii_lowercase(), port);
        if let Some(answer) = self.cached(&key) {
            return answer;
        }
        let Some(pending) = self.pending_for(&key) else {
            return Err("the DNS cache is unavailable".into());
        };
        // The first asker runs the lookup; the others await its answer. When the first one is
        // cancelled, a waiting one takes over.
        let answer = pending
            .get_or_init(|| async {
                let answer = self.look_up(host, port).await;
                let ttl = if answer.is_ok() {
                    self.ttl
                } else {
                    NEGATIVE_TTL
                };
                if let Ok(mut map) = self.entries.lock() {
                    map.put(key.clone(), (Instant::now() + ttl, answer.clone()));
                }
                answer
            })
            .await
            .clone();
        if let Ok(mut map) = self.pending.lock() {
            if map.get(&key).is_some_and(|p| Arc::ptr_eq(p, &pending)) {
                map.remove(&key);
            }
        }
        answer
    }

    /// The lookup in flight for `key`, made when there is none.
    fn pending_for(&self, key: &Key) -> Option<Pending> {
        let mut map = self.pending.lock().ok()?;
        if map.len() >= MAX_ENTRIES {
            // Lookups whose askers were all cancelled leave their entry behind; drop those no
            // one awaits any more.
            map.retain(|_, p| Arc::strong_count(p) > 1);
        }
        Some(map.entry(key.clone()).or_default().clone())
    }

    /// Asks the resolver, within the timeout (waiting for a free lookup slot included).
    async fn look_up(&self, host: &str, port: u16) -> Result<Addrs, String> {
        let bounded = tokio::time::timeout(self.timeout, async {
            let _slot = self
                .lookups
                .acquire()
                .await
                .map_err(|_| std::io::Error::other("the resolver is shut down"))?;
            #[cfg(test)]
            self.asked.fetch_add(1, Ordering::Relaxed);
            tokio::net::lookup_host((host, port)).await
        });
        match bounded.await {
            Err(_) => Err(format!(
                "lookup timed out after {} ms",
                self.timeout.as_millis()
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(found)) => {
                let found: Vec<SocketAddr> = found.collect();
                if found.is_empty() {
                    Err("no addresses found".into())
                } else {
                    Ok(Arc::from(found))
                }
            }
        }
    }

    /// Lookups sent to the resolver since start.
    #[cfg(test)]
    pub(crate) fn asked(&self) -> u64 {
        self.asked.load(Ordering::Relaxed)
    }

    fn cached(&self, key: &Key) -> Option<Result<Addrs, String>> {
        let mut map = self.entries.lock().ok()?;
        let (expires, answer) = map.get(key)?;
        (*expires > Instant::now()).then(|| answer.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_and_localhost_resolve() {
        let dns = DnsCache::new(Duration::from_secs(60), Duration::from_secs(5));
        let a = dns.resolve("127.0.0.1", 80).await.unwrap();
        assert_eq!(a[0], "127.0.0.1:80".parse().unwrap());
        let b = dns.resolve("localhost", 8080).await.unwrap();
        assert!(b.iter().all(|a| a.ip().is_loopback() && a.port() == 8080));
        // Second lookup is served from the cache.
        assert!(dns.cached(&("localhost".into(), 8080)).is_some());
    }

    #[tokio::test]
    async fn unknown_names_fail_without_panicking() {
        let dns = DnsCache::new(Duration::from_secs(60), Duration::from_secs(5));
        assert!(dns.resolve("no-such-host.invalid", 443).await.is_err());
        // The failure is remembered briefly: the resolver is not asked again.
        let cached = dns.cached(&("no-such-host.invalid".into(), 443));
        assert!(matches!(cached, Some(Err(_))));
    }

    #[tokio::test]
    async fn concurrent_lookups_of_one_name_are_merged() {
        let dns = DnsCache::new(Duration::from_secs(60), Duration::from_secs(5));
        let asks: Vec<_> = (0..20).map(|_| dns.resolve("localhost", 9)).collect();
        for answer in futures_util::future::join_all(asks).await {
            assert!(answer.is_ok());
        }
        assert_eq!(dns.asked(), 1, "one lookup answered all twenty askers");
        assert!(dns.pending.lock().unwrap().is_empty());
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_used_name() {
        let dns = DnsCache::new(Duration::from_secs(60), Duration::from_secs(5));
        let later = Instant::now() + Duration::from_secs(60);
        let addrs: Addrs = Arc::from([SocketAddr::from(([192, 0, 2, 1], 443))]);
        let mut map = dns.entries.lock().unwrap();
        for i in 0..MAX_ENTRIES {
            map.put((format!("h{i}.example"), 443), (later, Ok(addrs.clone())));
        }
        // h0 is used again, so h1 is now the least recently used.
        assert!(map.get(&("h0.example".to_string(), 443)).is_some());
        map.put(("new.example".into(), 443), (later, Ok(addrs)));
        assert_eq!(map.len(), MAX_ENTRIES, "one name evicted, not all");
        assert!(map.contains(&("h0.example".to_string(), 443)));
        assert!(!map.contains(&("h1.example".to_string(), 443)));
    }
}
