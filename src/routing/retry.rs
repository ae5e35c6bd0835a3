//! Retry policy: `attempts` retries (capped at 5, as Portkey's hosted gateway
//! documents), on `on_status_codes` (default 429, 500, 502, 503, 504) and on connect failures and
//! timeouts, with exponential backoff 1 s, 2 s, 4 s ... and, for 429 with
//! `use_retry_after_header`, the provider's own `retry-after-ms`, `x-ms-retry-after-ms` or
//! `retry-after` within a 60 s total wait budget.
//!
//! Unlike Portkey, the backoff has ±20 % jitter, so clients that failed together do not retry
//! together.

use http::HeaderMap;
use std::time::Duration;

pub(crate) const DEFAULT_RETRY_CODES: &[u16] = &[429, 500, 502, 503, 504];
/// Total time a request may spend waiting on `Retry-After` values.
pub(crate) const RETRY_AFTER_BUDGET: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first call (0 = none).
    pub attempts: u32,
    pub on_status_codes: Vec<u16>,
    pub use_retry_after_header: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 0,
            on_status_codes: DEFAULT_RETRY_CODES.to_vec(),
            use_retry_after_header: false,
        }
    }
}

impl RetryPolicy {
    pub(crate) fn retries_status(&self, status: u16) -> bool {
        self.on_status_codes.contains(&status)
    }

    /// The wait before retry number `n` (1-based): `base × 2^(n-1)`, ±20 % jitter.
    /// `Duration::mul_f64` panics on overflow, so the jittered value is computed fallibly and
    /// falls back to the unjittered one (only reachable with an absurd base).
    pub(crate) fn backoff(&self, n: u32, base: Duration) -> Duration {
        let exp = base.saturating_mul(1u32 << (n.saturating_sub(1)).min(16));
        let jitter: f64 = rand::random_range(0.8..1.2);
        Duration::try_from_secs_f64(exp.as_secs_f64() * jitter).unwrap_or(exp)
    }
}

/// The longest wait a provider's retry-after header is read as. Anything longer overruns the
/// 60 s wait budget either way; the clamp keeps later arithmetic on the value far from overflow.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait a 429 asks for: `retry-after-ms`, then `x-ms-retry-after-ms` (milliseconds), then
/// `retry-after` (seconds). HTTP-date values are not used.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(wait) = text(name)
            .and_then(|v| v.parse::<f64>().ok())
            .and_then(|ms| header_seconds(ms / 1000.0))
        {
            return Some(wait);
        }
    }
    header_seconds(text("retry-after")?.parse::<f64>().ok()?)
}

/// A provider's number of seconds as a wait, never panicking: NaN and negative values are
/// ignored (`None`); huge and infinite ones are clamped to [`MAX_RETRY_AFTER`].
/// (`Duration::from_secs_f64` panics on all of these.)
fn header_seconds(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    let wait = Duration::try_from_secs_f64(secs).unwrap_or(MAX_RETRY_AFTER);
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let p = RetryPolicy::default();
        let base = Duration::from_millis(1000);
        for (n, nominal) in [(1u32, 1000u64), (2, 2000), (3, 4000), (4, 8000)] {
            let d = p.backoff(n, base).as_millis() as u64;
            assert!(d >= nominal * 8 / 10 && d <= nominal * 12 / 10, "{n}: {d}");
        }
    }

    #[test]
    fn retry_after_headers_in_portkey_order() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("x-ms-retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn retry_after_values_never_panic() {
        let wait = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            retry_after(&h)
        };
        for name in ["retry-after", "retry-after-ms", "x-ms-retry-after-ms"] {
            assert_eq!(wait(name, "NaN"), None, "{name}");
            assert_eq!(wait(name, "-1"), None, "{name}");
            assert_eq!(wait(name, "-inf"), None, "{name}");
            for huge in ["inf", "1e300", "18446744073709551615", "1.8e19"] {
                assert_eq!(wait(name, huge), Some(MAX_RETRY_AFTER), "{name}: {huge}");
            }
        }
        assert_eq!(wait("retry-after", "0.5"), Some(Duration::from_millis(500)));
        // The clamp leaves room to add it to what was already spent.
        assert!(RETRY_AFTER_BUDGET.checked_add(MAX_RETRY_AFTER).is_some());
    }

    #[test]
    fn backoff_never_panics_on_a_huge_base() {
        let p = RetryPolicy::default();
        for n in [1, 5, 40] {
            let _ = p.backoff(n, Duration::MAX);
            let _ = p.backoff(n, Duration::from_secs(u64::MAX / 2));
        }
    }

    #[test]
    fn default_codes() {
        let p = RetryPolicy::default();
        assert!(p.retries_status(429) && p.retries_status(503));
        assert!(!p.retries_status(400) && !p.retries_status(408));
    }
}
