//! `x-portkey-custom-host` validation, as Portkey does it: http or https only,
//! no credentials, no private, loopback, link-local, CGNAT or metadata addresses, no odd IP
//! spellings, no internal-only names, unless the host is on the operator's trusted list (a
//! sidecar legitimately calls model servers in its pod or cluster).
//!
//! A public name can still resolve to a private address (DNS rebinding), so an untrusted custom
//! host also carries `public_only`, which the dispatcher applies to the resolved addresses.

use super::Upstream;
use crate::error::GatewayError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Name suffixes that only resolve inside a private network.
const INTERNAL_SUFFIXES: &[&str] = &[
    ".local",
    ".localhost",
    ".internal",
    ".localdomain",
    ".lan",
    ".home",
    ".corp",
    ".intranet",
    ".private",
    ".svc",
    ".home.arpa",
];

/// Names of cloud metadata services.
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
];

/// A validated custom host.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomHost {
    pub upstream: Upstream,
    /// Whether the resolved addresses must be public (the host was not trusted).
    pub public_only: bool,
}

/// Which ports of a trusted host are trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    /// A bare host: only its scheme's default port (80 for http, 443 for https).
    Default,
    /// `host:*`: every port (but the gateway's own).
    Any,
    /// `host:8000`.
    Exact(u16),
}

/// One entry of `custom_hosts.trusted`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Trusted {
    host: String,
    ports: Ports,
}

/// Parses `host`, `host:port`, `host:*`, `[v6]`, `[v6]:port` or a bare IPv6 address.
fn parse_trusted(entry: &str) -> Result<Trusted, String> {
    let e = entry.trim().to_ascii_lowercase();
    let bad = || format!("{entry:?} must be a host, host:port or host:* (no scheme or path)");
    if e.is_empty() || e.contains(['/', '@', ' ']) {
        return Err(bad());
    }
    let (host, port) = if let Some(rest) = e.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        (h.to_string(), after.strip_prefix(':'))
    } else if e.matches(':').count() > 1 {
        (e.clone(), None)
    } else {
        match e.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (e.clone(), None),
        }
    };
    let ports = match port {
        None => Ports::Default,
        Some("*") => Ports::Any,
        Some(p) => Ports::Exact(p.parse().map_err(|_| bad())?),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Trusted { host, ports })
}

/// The trusted-host list from settings, parsed once, and the gateway's own ports.
#[derive(Debug, Clone)]
pub struct CustomHostPolicy {
    trusted: Vec<Trusted>,
    /// The proxy's and the admin listener's ports: never an upstream on this machine, so a
    /// request cannot make the gateway call itself.
    own_ports: Vec<u16>,
}

impl CustomHostPolicy {
    /// `trusted` entries as in the settings (`custom_hosts.trusted`); a malformed entry is an
    /// error naming it.
    pub fn new(trusted: &[String], own_ports: &[u16]) -> Result<Self, String> {
        Ok(CustomHostPolicy {
            trusted: trusted
                .iter()
                .map(|t| parse_trusted(t))
                .collect::<Result<_, _>>()?,
            own_ports: own_ports.to_vec(),
        })
    }

    /// Checks one `custom_hosts.trusted` entry (settings validation).
    pub fn check_entry(entry: &str) -> Result<(), String> {
        parse_trusted(entry).map(|_| ())
    }

    fn is_trusted(&self, upstream: &Upstream, host: &str) -> bool {
        let default_port = if upstream.tls { 443 } else { 80 };
        self.trusted.iter().any(|t| {
            t.host == host
                && match t.ports {
                    Ports::Default => upstream.port == default_port,
                    Ports::Any => true,
                    Ports::Exact(p) => upstream.port == p,
                }
        })
    }

    /// Whether the URL names this machine on one of the gateway's own ports.
    fn is_self(&self, host: &str, port: u16) -> bool {
        if !self.own_ports.contains(&port) {
            return false;
        }
        host == "localhost"
            || host.ends_with(".localhost")
            || host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    }

    /// Validates a host the operator wrote in the settings (a virtual key's `custom_host`, a
    /// named config's): trusted as written — it is configuration, not input — except that the
    /// gateway's own ports are never an upstream.
    pub fn check_operator(&self, raw: &str) -> Result<CustomHost, GatewayError> {
        let upstream =
            Upstream::parse(raw).map_err(|e| GatewayError::InvalidCustomHost(e.to_string()))?;
        if self.is_self(&upstream.host.to_ascii_lowercase(), upstream.port) {
            return Err(GatewayError::InvalidCustomHost(
                "the gateway's own ports are never an upstream".into(),
            ));
        }
        Ok(CustomHost {
            upstream,
            public_only: false,
        })
    }

    /// Validates a custom host URL from a request, such as `http://vllm.ml.svc:8000/v1`.
    pub fn check(&self, raw: &str) -> Result<CustomHost, GatewayError> {
        self.check_with(raw, true)
    }

    /// Validates a URL found in a request's or an answer's text (a guardrail's URL check): the
    /// rules of [`CustomHostPolicy::check`] without the trusted list, which is for hosts an
    /// operator lets clients choose, not for URLs anyone can write into a prompt.
    pub(crate) fn check_public(&self, raw: &str) -> Result<CustomHost, GatewayError> {
        self.check_with(raw, false)
    }

    fn check_with(&self, raw: &str, use_trusted: bool) -> Result<CustomHost, GatewayError> {
        let invalid = |why: &str| GatewayError::InvalidCustomHost(why.to_string());
        if raw.contains('@') {
            return Err(invalid("credentials are not allowed"));
        }
        let upstream = Upstream::parse(raw).map_err(|e| invalid(&e))?;
        let host = upstream.host.to_ascii_lowercase();
        if host.contains("api.portkey") {
            return Err(invalid("the host points back at Portkey"));
        }
        check_ip_spelling(raw)?;
        if self.is_self(&host, upstream.port) {
            return Err(invalid("the gateway's own ports are never an upstream"));
        }
        if use_trusted && self.is_trusted(&upstream, &host) {
            return Ok(CustomHost {
                upstream,
                public_only: false,
            });
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !is_public(ip) {
                return Err(invalid(
                    "private, loopback, link-local and metadata addresses are not allowed \
                     (an operator can trust the host in settings: custom_hosts.trusted)",
                ));
            }
        } else {
            let name = host.trim_end_matches('.');
            if !name.contains('.')
                || METADATA_NAMES.contains(&name)
                || INTERNAL_SUFFIXES.iter().any(|s| name.ends_with(s))
            {
                return Err(invalid(
                    "internal host names are not allowed (an operator can trust the host in \
                     settings: custom_hosts.trusted)",
                ));
            }
        }
        Ok(CustomHost {
            upstream,
            public_only: true,
        })
    }
}

/// Refuses decimal, hex and octal IPv4 spellings (`http://2130706433`, `http://0x7f.1`,
/// `http://0177.0.0.1`): URL parsers normalise them to an address, which would slip past a
/// trusted-name comparison and confuse readers of logs.
fn check_ip_spelling(raw: &str) -> Result<(), GatewayError> {
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    if authority.starts_with('[') {
        return Ok(());
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let labels: Vec<&str> = host.split('.').collect();
    let numeric_like = labels.iter().all(|l| {
        !l.is_empty()
            && (l.chars().all(|c| c.is_ascii_digit())
                || (l.len() > 2 && l.as_bytes()[..2].eq_ignore_ascii_case(b"0x")))
    });
    if !numeric_like {
        return Ok(());
    }
    let canonical = labels.len() == 4
        && labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_digit()) && (l == &"0" || !l.starts_with('0')));
    if canonical {
        Ok(())
    } else {
        Err(GatewayError::InvalidCustomHost(
            "IP addresses must be written as four decimal numbers".into(),
        ))
    }
}

/// Whether an address is reachable on the public internet (not loopback, private, link-local,
/// CGNAT, documentation, benchmarking, multicast or reserved space).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still routed)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 and 64:ff9b:1::/48
                // Addresses that carry an IPv4 address a stack may reach: IPv4-compatible
                // ::a.b.c.d (deprecated), 6to4 2002::/16 and Teredo 2001::/32.
                || s[..6] == [0; 6]
                || s[0] == 0x2002
                || (s[0] == 0x2001 && s[1] == 0)
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0))
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local() // includes 169.254.169.254 metadata
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CustomHostPolicy {
        CustomHostPolicy::new(
            &[
                "localhost:11434".into(),
                "127.0.0.1:8000".into(),
                "[::1]".into(),
                "127.0.0.2:*".into(),
            ],
            &[8787, 8788],
        )
        .unwrap()
    }

    #[test]
    fn public_hosts_pass_and_must_resolve_publicly() {
        let h = policy().check("https://llm.example.com/v1").unwrap();
        assert!(h.public_only);
        assert_eq!(h.upstream.base_path, "/v1");
        let h = policy().check("http://8.8.8.8:8000").unwrap();
        assert!(h.public_only);
    }

    #[test]
    fn trusted_hosts_pass_even_when_private() {
        for ok in [
            "http://localhost:11434/v1",
            "http://127.0.0.1:8000",
            "http://[::1]:80/v1",
            "https://[::1]/v1",
            "http://127.0.0.2:9999",
        ] {
            let h = policy().check(ok).unwrap();
            assert!(!h.public_only, "{ok}");
        }
        let p = CustomHostPolicy::new(&["vllm.ml.svc:8000".into()], &[]).unwrap();
        assert!(p.check("http://VLLM.ml.svc:8000/v1").is_ok());
    }

    #[test]
    fn trust_is_per_port() {
        // A trusted host is trusted on its listed port (bare: the scheme's default) only.
        for bad in [
            "http://localhost:11435/v1",
            "http://127.0.0.1:8001",
            "http://[::1]:8080",
            "http://127.0.0.1",
        ] {
            assert_eq!(policy().check(bad).unwrap_err().status(), 400, "{bad}");
        }
        // The gateway's own ports never, even on a host trusted on every port.
        for own in [
            "http://127.0.0.2:8787",
            "http://localhost:8788",
            "http://0.0.0.0:8787",
        ] {
            let e = policy().check(own).unwrap_err();
            assert_eq!(
                e.detail(),
                Some("the gateway's own ports are never an upstream"),
                "{own}"
            );
        }
        for entry in ["http://x", "x/y", "x:port", "[::1", ""] {
            assert!(CustomHostPolicy::check_entry(entry).is_err(), "{entry}");
        }
        for entry in ["x", "x:1", "x:*", "[::1]:80", "::1", "10.0.0.1:*"] {
            assert!(CustomHostPolicy::check_entry(entry).is_ok(), "{entry}");
        }
    }

    #[test]
    fn refuses_what_portkey_refuses() {
        for bad in [
            "ftp://example.com",
            "http://user:pw@example.com",
            "http://example.com@evil.com",
            "http://10.0.0.5",
            "http://192.168.1.1:8080",
            "http://172.16.0.1",
            "http://169.254.169.254/latest",
            "http://100.64.0.1",
            "http://0.0.0.0",
            "http://[fd00::1]",
            "http://[fe80::1]",
            "http://[::ffff:10.0.0.1]",
            "http://2130706433",
            "http://0x7f000001",
            "http://0177.0.0.1",
            "http://127.1",
            "http://metadata.google.internal",
            "http://printer.local",
            "http://kubernetes.default.svc",
            "http://intranet",
            "https://api.portkey.ai/v1",
            "not a url",
        ] {
            let err = policy().check(bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
        }
    }

    #[test]
    fn multi_byte_hosts_never_panic() {
        // `http://1.2.3.aé/` once sliced the label "aé" inside the "é".
        for host in [
            "http://1.2.3.é/",
            "http://1.2.3.aé/",
            "http://aé.example.com/",
            "http://0é.1/",
            "http://é:80/",
            "http://日本.example/v1",
        ] {
            let _ = policy().check(host);
        }
        assert!(policy()
            .check("http://1.2.3.aé/")
            .is_ok_and(|h| h.public_only));
    }

    #[test]
    fn public_address_classification() {
        assert!(is_public("1.1.1.1".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
        assert!(!is_public("127.0.0.1".parse().unwrap()));
        assert!(!is_public("::1".parse().unwrap()));
        assert!(!is_public("198.18.0.1".parse().unwrap()));
        // IPv6 forms that carry or reach a private IPv4 address, and deprecated local ranges.
        for private in [
            "::7f00:1",           // IPv4-compatible ::127.0.0.1
            "::a9fe:a9fe",        // ::169.254.169.254
            "::ffff:10.0.0.1",    // IPv4-mapped
            "64:ff9b::a00:1",     // NAT64 well-known prefix
            "64:ff9b:1::a00:1",   // NAT64 local-use prefix
            "2002:a00:1::1",      // 6to4 of 10.0.0.1
            "2001:0:4136:e378::", // Teredo
            "fec0::1",            // site-local
            "fd00::1",
            "fe80::1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(!is_public(ip), "{private}");
        }
        assert!(is_public("2001:4860:4860::8888".parse().unwrap()));
    }
}
