//! Circuit breaker per target (Portkey's hosted `cb_config`, which its open-source gateway only
//! has a hook for): after enough failures a target is *open* and skipped by fallback and load
//! balancing until its cooldown passes; then one probe request is let through (*half-open*),
//! whose result closes or re-opens it.
//!
//! Failures are counted over a window as long as the cooldown; a target opens when the count
//! reaches `failure_threshold`, or when at least `minimum_requests` were seen and the failure
//! share reaches `failure_threshold_percentage`.
//!
//! A circuit belongs to a target *and* a breaker configuration ([`circuit_key`]): a config a
//! client sends with an aggressive `cb_config` opens its own circuit, never the one every
//! other config (or the settings' default breaker) relies on. Only 429, 5xx, refused
//! connections and timeouts count as failures. A half-open probe holds a lease that expires
//! (after the cooldown) if the request carrying it never reports back, e.g. because its client
//! left and the task was dropped, so a circuit cannot stay half-open forever.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A breaker configuration (from a config's `cb_config` or the settings default).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSpec {
    pub failure_threshold: Option<u32>,
    pub failure_threshold_percentage: Option<f64>,
    pub minimum_requests: u32,
    pub cooldown: Duration,
    /// Statuses that count as failures; connect errors and timeouts always do.
    pub on_status_codes: Vec<u16>,
}

pub(crate) const DEFAULT_FAILURE_CODES: &[u16] = &[429, 500, 502, 503, 504];

/// The circuit of `target` under `spec`: the target key plus a short fingerprint of the
/// breaker configuration.
pub(crate) fn circuit_key(target: &str, spec: &BreakerSpec) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    spec.failure_threshold.hash(&mut h);
    spec.failure_threshold_percentage
        .map(f64::to_bits)
        .hash(&mut h);
    spec.minimum_requests.hash(&mut h);
    spec.cooldown.hash(&mut h);
    spec.on_status_codes.hash(&mut h);
    format!("{target}#{:08x}", h.finish() as u32)
}

impl BreakerSpec {
    /// Whether an answer with `status` counts as a failure (only a provider's own trouble can).
    pub(crate) fn fails_on(&self, status: u16) -> bool {
        (status == 429 || status >= 500) && self.on_status_codes.contains(&status)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// The value of `portgate_circuit_state` (0 closed, 1 half-open, 2 open).
    pub(crate) fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        }
    }
}

/// Whether a request may be sent to a target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Yes,
    /// Half-open: this request is the probe.
    Probe,
    No,
}

struct Circuit {
    state: State,
    window_start: Instant,
    failures: u32,
    requests: u32,
    open_until: Instant,
    /// When the current probe was let through (half-open), if one is out.
    probe_since: Option<Instant>,
    /// How long a probe may stay out before another one is let through.
    probe_lease: Duration,
}

impl Circuit {
    fn new(now: Instant) -> Self {
        Circuit {
            state: State::Closed,
            window_start: now,
            failures: 0,
            requests: 0,
            open_until: now,
            probe_since: None,
            probe_lease: Duration::from_secs(30),
        }
    }

    /// A probe is out and its lease has not expired.
    fn probing(&self, now: Instant) -> bool {
        self.probe_since
            .is_some_and(|t| now.duration_since(t) < self.probe_lease)
    }
}

/// A snapshot of one circuit, for the admin endpoint.
#[derive(Debug, Serialize)]
pub(crate) struct CircuitView {
    pub target: String,
    pub state: State,
    pub failures: u32,
    pub requests: u32,
    /// Milliseconds until an open circuit lets a probe through.
    pub retry_in_ms: u64,
}

const MAX_CIRCUITS: usize = 4096;

#[derive(Default)]
pub struct Breakers {
    circuits: Mutex<HashMap<String, Circuit>>,
}

impl Breakers {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Asks whether `target` may be sent a request now.
    pub(crate) fn admit(&self, target: &str) -> Admit {
        let now = Instant::now();
        let Ok(mut map) = self.circuits.lock() else {
            return Admit::Yes;
        };
        let Some(c) = map.get_mut(target) else {
            return Admit::Yes;
        };
        match c.state {
            State::Closed => Admit::Yes,
            State::Open if now >= c.open_until => {
                c.state = State::HalfOpen;
                c.probe_since = Some(now);
                Admit::Probe
            }
            State::Open => Admit::No,
            State::HalfOpen if !c.probing(now) => {
                c.probe_since = Some(now);
                Admit::Probe
            }
            State::HalfOpen => Admit::No,
        }
    }

    /// Whether `target` is open now (skipped by load balancing), without claiming a probe.
    pub(crate) fn is_open(&self, target: &str) -> bool {
        let now = Instant::now();
        self.circuits.lock().ok().is_some_and(|map| {
            map.get(target).is_some_and(|c| match c.state {
                State::Open => now < c.open_until,
                State::HalfOpen => c.probing(now),
                State::Closed => false,
            })
        })
    }

    /// Records the outcome of a request to `target`; `failed` as decided by the caller from
    /// `spec.on_status_codes` or a connect/timeout error.
    /// Returns the circuit's state afterwards.
    pub(crate) fn record(&self, target: &str, spec: &BreakerSpec, failed: bool) -> State {
        let now = Instant::now();
        let Ok(mut map) = self.circuits.lock() else {
            return State::Closed;
        };
        if map.len() >= MAX_CIRCUITS && !map.contains_key(target) {
            map.retain(|_, c| c.state != State::Closed);
        }
        let c = map
            .entry(target.to_string())
            .or_insert_with(|| Circuit::new(now));
        c.probe_lease = spec.cooldown;
        match c.state {
            State::HalfOpen | State::Open => {
                c.probe_since = None;
                if failed {
                    c.state = State::Open;
                    c.open_until = now + spec.cooldown;
                } else {
                    *c = Circuit::new(now);
                }
            }
            State::Closed => {
                if now.duration_since(c.window_start) > spec.cooldown {
                    c.window_start = now;
                    c.failures = 0;
                    c.requests = 0;
                }
                c.requests += 1;
                if failed {
                    c.failures += 1;
                }
                let by_count = spec.failure_threshold.is_some_and(|t| c.failures >= t);
                let by_share = spec.failure_threshold_percentage.is_some_and(|p| {
                    c.requests >= spec.minimum_requests.max(1)
                        && f64::from(c.failures) * 100.0 / f64::from(c.requests) >= p
                });
                if by_count || by_share {
                    c.state = State::Open;
                    c.open_until = now + spec.cooldown;
                }
            }
        }
        c.state
    }

    /// Every known circuit, sorted by target.
    pub(crate) fn snapshot(&self) -> Vec<CircuitView> {
        let now = Instant::now();
        let mut v: Vec<CircuitView> = self
            .circuits
            .lock()
            .map(|map| {
                map.iter()
                    .map(|(t, c)| CircuitView {
                        target: t.clone(),
                        state: c.state,
                        failures: c.failures,
                        requests: c.requests,
                        retry_in_ms: match c.state {
                            State::Open => {
                                c.open_until.saturating_duration_since(now).as_millis() as u64
                            }
                            _ => 0,
                        },
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| a.target.cmp(&b.target));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(threshold: u32, cooldown_ms: u64) -> BreakerSpec {
        BreakerSpec {
            failure_threshold: Some(threshold),
            failure_threshold_percentage: None,
            minimum_requests: 1,
            cooldown: Duration::from_millis(cooldown_ms),
            on_status_codes: DEFAULT_FAILURE_CODES.to_vec(),
        }
    }

    #[test]
    fn opens_skips_probes_and_closes() {
        let b = Breakers::new();
        let s = spec(2, 50);
        assert_eq!(b.admit("t"), Admit::Yes);
        b.record("t", &s, true);
        assert_eq!(b.admit("t"), Admit::Yes);
        b.record("t", &s, true);
        assert_eq!(b.admit("t"), Admit::No);
        assert!(b.is_open("t"));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.admit("t"), Admit::Probe);
        assert_eq!(b.admit("t"), Admit::No, "one probe at a time");
        b.record("t", &s, false);
        assert_eq!(b.admit("t"), Admit::Yes);
        assert_eq!(b.snapshot()[0].state, State::Closed);
    }

    #[test]
    fn failed_probe_reopens() {
        let b = Breakers::new();
        let s = spec(1, 30);
        b.record("t", &s, true);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.admit("t"), Admit::Probe);
        b.record("t", &s, true);
        assert_eq!(b.admit("t"), Admit::No);
        assert_eq!(b.snapshot()[0].state, State::Open);
    }

    #[test]
    fn failure_share_needs_minimum_requests() {
        let b = Breakers::new();
        let s = BreakerSpec {
            failure_threshold: None,
            failure_threshold_percentage: Some(50.0),
            minimum_requests: 4,
            cooldown: Duration::from_secs(30),
            on_status_codes: vec![500],
        };
        b.record("t", &s, true);
        b.record("t", &s, true);
        assert_eq!(b.admit("t"), Admit::Yes, "only 2 requests seen");
        b.record("t", &s, false);
        b.record("t", &s, false);
        assert_eq!(b.admit("t"), Admit::No, "2 of 4 failed = 50 %");
    }

    #[test]
    fn a_lost_probe_expires() {
        let b = Breakers::new();
        let s = spec(1, 40);
        b.record("t", &s, true);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(b.admit("t"), Admit::Probe);
        // The probe's request never reports back (its task was dropped).
        assert_eq!(b.admit("t"), Admit::No);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(b.admit("t"), Admit::Probe, "the lease expired: a new probe");
    }

    #[test]
    fn only_provider_trouble_counts_and_circuits_are_per_spec() {
        let mut s = spec(1, 50);
        s.on_status_codes = vec![400, 429, 500];
        assert!(!s.fails_on(400));
        assert!(s.fails_on(429) && s.fails_on(500));
        assert!(!s.fails_on(503), "not listed");
        let other = spec(2, 50);
        assert_ne!(circuit_key("openai@x", &s), circuit_key("openai@x", &other));
        assert_eq!(
            circuit_key("openai@x", &s),
            circuit_key("openai@x", &s.clone())
        );
    }
}
