//! `x-portkey-custom-host` validation, as Portkey does it (reference §2.1): http or https only,
//! no credentials, no private, loopback, link-local, CGNAT or metadata addresses, no odd IP
//! spellings, no internal-only names, unless the host is on the operator's trusted list (a
//! sidecar legitimately calls model servers in its pod or cluster).
//!
//! A public name can still resolve to a private address (DNS rebinding), so an untrusted custom
//! host also carries `public_only`, which the dispatcher applies to the resolved addresses.

use crate::dispatch::Upstream;
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

/// The trusted-host list from settings, lower-cased once.
#[derive(Debug, Clone)]
pub struct CustomHostPolicy {
    trusted: Vec<String>,
}

impl CustomHostPolicy {
    pub fn new(trusted: &[String]) -> Self {
        CustomHostPolicy {
            trusted: trusted
                .iter()
                .map(|h| h.trim().trim_matches(['[', ']']).to_ascii_lowercase())
                .collect(),
        }
    }

    fn is_trusted(&self, host: &str) -> bool {
        self.trusted.iter().any(|t| t == host)
    }

    /// Validates a custom host URL, such as `http://vllm.ml.svc:8000/v1`.
    pub fn check(&self, raw: &str) -> Result<CustomHost, GatewayError> {
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
        if self.is_trusted(&host) {
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
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 to IPv4
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
        CustomHostPolicy::new(&["localhost".into(), "127.0.0.1".into(), "::1".into()])
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
        ] {
            let h = policy().check(ok).unwrap();
            assert!(!h.public_only, "{ok}");
        }
        let p = CustomHostPolicy::new(&["vllm.ml.svc".into()]);
        assert!(p.check("http://VLLM.ml.svc:8000/v1").is_ok());
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
    }
}
