//! W3C trace context (`traceparent`): accepted from the client, continued upstream with the
//! gateway's own span id, and written to the access log, so the gateway's hop shows up in a
//! distributed trace. Spans are `tracing` spans at debug level (`portgate::span`), so an OTLP
//! exporter layer can be added later without touching the data path.

/// A parsed `traceparent`, plus the span id of the gateway's hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The caller's span (16 hex digits).
    pub parent_id: String,
    /// The gateway's span, sent upstream as the parent (16 hex digits).
    pub span_id: String,
    /// Trace flags (2 hex digits).
    pub flags: String,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TraceContext {
    /// Parses `version-traceid-parentid-flags`; invalid or all-zero ids are ignored (`None`),
    /// as the W3C spec asks.
    pub(crate) fn parse(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if !is_hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if !is_hex(trace, 32) || !is_hex(parent, 16) || !is_hex(flags, 2) {
            return None;
        }
        if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
            return None;
        }
        Some(TraceContext {
            trace_id: trace.to_string(),
            parent_id: parent.to_string(),
            span_id: new_span_id(),
            flags: flags.to_string(),
        })
    }

    /// The `traceparent` sent upstream: same trace, the gateway's span as parent.
    pub(crate) fn outgoing(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

fn new_span_id() -> String {
    let id: u64 = rand::random_range(1..=u64::MAX);
    format!("{id:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_continues_a_trace() {
        let t =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id, "00f067aa0ba902b7");
        let out = t.outgoing();
        assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(out.ends_with("-01"));
        assert_ne!(out.get(36..52), Some("00f067aa0ba902b7"), "a new span id");
    }

    #[test]
    fn refuses_malformed_headers() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
    }
}
