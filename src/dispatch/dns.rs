//! Asynchronous, cached DNS for upstream hosts.
//!
//! Pingora's `HttpPeer::new` calls the blocking `getaddrinfo` on the async worker and panics when
//! it fails, so the gateway resolves here instead (tokio runs the lookup off the worker) and keeps
//! answers for `dns_ttl_seconds`. Failures are not cached, so a recovered resolver is used at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cached addresses of one `host:port`.
pub type Addrs = Arc<[SocketAddr]>;

pub struct DnsCache {
    ttl: Duration,
    entries: Mutex<HashMap<(String, u16), (Instant, Addrs)>>,
}

/// Upper bound on cached names: a sidecar talks to a handful of providers, so a bound this size
/// is only reached by abuse of custom hosts; the cache is then simply cleared.
const MAX_ENTRIES: usize = 1024;

impl DnsCache {
    pub fn new(ttl: Duration) -> Self {
        DnsCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves `host:port`, from the cache when fresh. IP literals never touch the resolver.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Addrs, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Arc::from([SocketAddr::new(ip, port)]));
        }
        let key = (host.to_ascii_lowercase(), port);
        if let Some(addrs) = self.cached(&key) {
            return Ok(addrs);
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| e.to_string())?
            .collect();
        if found.is_empty() {
            return Err("no addresses found".into());
        }
        let addrs: Addrs = Arc::from(found);
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key, (Instant::now() + self.ttl, addrs.clone()));
        }
        Ok(addrs)
    }

    fn cached(&self, key: &(String, u16)) -> Option<Addrs> {
        let map = self.entries.lock().ok()?;
        let (expires, addrs) = map.get(key)?;
        (*expires > Instant::now()).then(|| addrs.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_and_localhost_resolve() {
        let dns = DnsCache::new(Duration::from_secs(60));
        let a = dns.resolve("127.0.0.1", 80).await.unwrap();
        assert_eq!(a[0], "127.0.0.1:80".parse().unwrap());
        let b = dns.resolve("localhost", 8080).await.unwrap();
        assert!(b.iter().all(|a| a.ip().is_loopback() && a.port() == 8080));
        // Second lookup is served from the cache.
        assert!(dns.cached(&("localhost".into(), 8080)).is_some());
    }

    #[tokio::test]
    async fn unknown_names_fail_without_panicking() {
        let dns = DnsCache::new(Duration::from_secs(60));
        assert!(dns.resolve("no-such-host.invalid", 443).await.is_err());
    }
}
