//! Where a request goes: scheme, host, port and base path of an upstream API, and the Pingora
//! peer that connects to one of its resolved addresses.

use crate::settings::UpstreamSettings;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;

/// A parsed base URL such as `https://api.groq.com/openai/v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (`""` or `/openai/v1`).
    pub base_path: String,
    /// The `Host` header's value, made once here rather than formatted on every request.
    authority: String,
}

impl Upstream {
    /// Parses an http(s) base URL. Query strings, fragments and credentials are refused: a base
    /// URL only says where the API lives.
    pub(crate) fn parse(base_url: &str) -> Result<Upstream, String> {
        let url = url::Url::parse(base_url).map_err(|e| format!("{base_url:?}: {e}"))?;
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(format!("scheme {other:?} is not http or https")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials are not allowed in the URL".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("a base URL has no query or fragment".into());
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(h) => h.to_string(),
            None => return Err("the URL has no host".into()),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| "the URL has no port".to_string())?;
        let base_path = url.path().trim_end_matches('/').to_string();
        Ok(Upstream::new(tls, host, port, base_path))
    }

    /// An upstream at `host` (an IPv6 literal without brackets) and `port`.
    pub(crate) fn new(tls: bool, host: String, port: u16, base_path: String) -> Upstream {
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let default_port = if tls { 443 } else { 80 };
        let authority = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        Upstream {
            tls,
            host,
            port,
            base_path,
            authority,
        }
    }

    /// The value of the `Host` header: the host, plus the port when it is not the default.
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// Builds the peer for one resolved address, with SNI set to the host name and the
    /// configured timeouts. No DNS happens here (Pingora's `HttpPeer::new` would block).
    pub(crate) fn peer(&self, addr: SocketAddr, timeouts: &UpstreamSettings) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, self.tls, self.host.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(Duration::from_millis(timeouts.connect_timeout_ms));
        o.total_connection_timeout = Some(Duration::from_millis(timeouts.connect_timeout_ms));
        o.read_timeout = Some(Duration::from_millis(timeouts.read_timeout_ms));
        o.write_timeout = Some(Duration::from_millis(timeouts.write_timeout_ms));
        o.idle_timeout = Some(Duration::from_millis(timeouts.idle_timeout_ms));
        peer
    }
}

/// Header names no request the gateway sends may take from a client or a config (forwarded
/// headers, a webhook's `headers`): they would break the request's framing or name another
/// host, or forge the gateway's own headers (every `x-portkey-*` name is refused too).
const NEVER_SET: &[&str] = &[
    "x-portgate-hop",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "proxy-connection",
];

/// Whether a header name (lower-case) is one no outgoing request may take from a client or a
/// config: framing, `host`, the gateway's own headers.
pub(crate) fn never_set(lower: &str) -> bool {
    NEVER_SET.contains(&lower) || lower.starts_with("x-portkey-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let u = Upstream::parse("https://api.groq.com/openai/v1/").unwrap();
        assert_eq!(
            u,
            Upstream::new(true, "api.groq.com".into(), 443, "/openai/v1".into())
        );
        assert_eq!(u.authority(), "api.groq.com");
        let u = Upstream::parse("http://[::1]:11434").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.base_path, "");
        assert_eq!(u.authority(), "[::1]:11434");
    }

    #[test]
    fn refuses_what_is_not_a_base_url() {
        for bad in [
            "ftp://x.com",
            "http://user:pw@x.com",
            "https://x.com/v1?key=1",
            "not a url",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }
}
