//! Loop detection. Every request portgate sends upstream carries `x-portgate-hop`: the ids of
//! the portgate instances it went through, this one last. A request that arrives carrying this
//! instance's own id has come back to it (a custom host or provider row pointing at the gateway
//! itself, directly or through other gateways) and is refused with 508 instead of calling itself
//! until sockets or memory run out. Gateways chained on purpose (a sidecar in front of a central
//! portgate) have different ids and pass.

use crate::error::GatewayError;
use http::HeaderMap;

pub(crate) const HEADER: &str = "x-portgate-hop";

/// The most gateways one request may pass through.
pub(crate) const MAX_HOPS: usize = 8;

/// A new random id for this process.
pub(crate) fn new_instance_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Checks the incoming marks and returns them, to be sent on with this instance's id added.
pub(crate) fn check(headers: &HeaderMap, own_id: &str) -> Result<Option<String>, GatewayError> {
    let mut marks = Vec::new();
    for value in headers.get_all(HEADER) {
        let text = value.to_str().map_err(|_| GatewayError::InvalidHeader {
            name: HEADER,
            reason: "is not visible ASCII".into(),
        })?;
        marks.extend(text.split(',').map(str::trim).filter(|m| !m.is_empty()));
    }
    if marks.contains(&own_id) {
        return Err(GatewayError::LoopDetected);
    }
    if marks.len() >= MAX_HOPS {
        return Err(GatewayError::LoopDetected);
    }
    Ok((!marks.is_empty()).then(|| marks.join(",")))
}

/// The value to send upstream: the incoming marks, then this instance's id.
pub(crate) fn outgoing(incoming: Option<&str>, own_id: &str) -> String {
    match incoming {
        Some(marks) => format!("{marks},{own_id}"),
        None => own_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn own_mark_is_a_loop_others_pass_on() {
        assert_eq!(check(&with(&[]), "me").unwrap(), None);
        assert_eq!(
            check(&with(&["a, b"]), "me").unwrap().as_deref(),
            Some("a,b")
        );
        assert_eq!(check(&with(&["a", "me"]), "me").unwrap_err().status(), 508);
        let long: Vec<String> = (0..MAX_HOPS).map(|i| format!("g{i}")).collect();
        assert_eq!(
            check(&with(&[&long.join(",")]), "me").unwrap_err().status(),
            508
        );
        assert_eq!(outgoing(Some("a,b"), "me"), "a,b,me");
        assert_eq!(outgoing(None, "me"), "me");
        assert_ne!(new_instance_id(), new_instance_id());
    }
}
