//! Asynchronous, cached DNS for upstream hosts.
//!
//! Pingora's `HttpPeer::new` calls the blocking `getaddrinfo` on the async worker and panics when
//! it fails, so the gateway resolves here instead (tokio runs the lookup off the worker) and keeps
//! answers for `dns_ttl_seconds`. A lookup is bounded by `dns_timeout_ms`; a failure is
//! remembered for [`NEGATIVE_TTL`], so a broken resolver or a bad name (a client's custom host)
//! is not asked again by every request, while a recovered one is used again seconds later.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cached addresses of one `host:port`.
pub type Addrs = Arc<[SocketAddr]>;

/// A cached answer and when it expires.
type Entry = (Instant, Result<Addrs, String>);

pub struct DnsCache {
    ttl: Duration,
    timeout: Duration,
    entries: Mutex<HashMap<(String, u16), Entry>>,
}

/// How long a failed lookup is answered from the cache.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Upper bound on cached names: a sidecar talks to a handful of providers, so a bound this size
/// is only reached by abuse of custom hosts; the cache is then simply cleared.
const MAX_ENTRIES: usize = 1024;

impl DnsCache {
    pub fn new(ttl: Duration, timeout: Duration) -> Self {
        DnsCache {
            ttl,
            timeout,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves `host:port`, from the cache when fresh. IP literals never touch the resolver.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Addrs, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Arc::from([SocketAddr::new(ip, port)]));
        }
        let key = (host.to_ascii_lowercase(), port);
        if let Some(answer) = self.cached(&key) {
            return answer;
        }
        let looked_up = tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, port)));
        let answer: Result<Addrs, String> = match looked_up.await {
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
        };
        let ttl = if answer.is_ok() {
            self.ttl
        } else {
            NEGATIVE_TTL
        };
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key, (Instant::now() + ttl, answer.clone()));
        }
        answer
    }

    fn cached(&self, key: &(String, u16)) -> Option<Result<Addrs, String>> {
        let map = self.entries.lock().ok()?;
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
}
