//! Bounded label values. Every Prometheus label a client can influence (the model it asks for
//! or the provider reports, a custom host inside a target key, an `x-portkey-metadata` value)
//! goes through a [`LabelGuard`]: the first `max_values` distinct values are admitted and kept
//! for the life of the process, a value longer than `max_len` bytes or arriving after the set
//! is full is reported as `other`. Without it, a client sending a fresh model name or host per
//! request would grow `/metrics` (and the process) without bound: every label combination is a
//! series that Prometheus keeps and the registry never forgets.
//!
//! Why "first N, then `other`" and not least-recently-used: a series that disappears and comes
//! back resets its counters, which Prometheus reads as a counter reset; a stable set keeps every
//! admitted series monotonic.
//!
//! Lock-light: admitted values are checked under a read lock (shared by all threads); the write
//! lock is taken only while the set is still filling, at most `max_values` times, and never
//! again once `full` is set.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

/// The value reported for everything a guard does not admit.
pub(crate) const OTHER: &str = "other";

/// Longest model name used as a label (bytes). Longer names are `other`. Model names of
/// the providers we know are under 64 bytes (Bedrock ids and Fireworks paths are the longest).
pub(crate) const MAX_MODEL_LEN: usize = 64;
/// Distinct target keys (`provider@host:port`) used as labels of `portgate_circuit_state` and
/// `portgate_retry_budget_exhausted_total`.
pub(crate) const MAX_TARGETS: usize = 100;
/// Longest target key used as a label (bytes): a provider slug and a host name with port.
pub(crate) const MAX_TARGET_LEN: usize = 128;
/// Distinct values per `x-portkey-metadata` key that is a label (`metrics.metadata_labels`).
pub(crate) const MAX_METADATA_VALUES: usize = 50;
/// Longest metadata value used as a label (bytes).
pub(crate) const MAX_METADATA_LEN: usize = 64;

/// The admitted values of one label.
pub(crate) struct LabelGuard {
    max_values: usize,
    max_len: usize,
    admitted: RwLock<HashSet<Box<str>>>,
    /// Set once `admitted` holds `max_values`: from then on no write lock is taken.
    full: AtomicBool,
}

impl LabelGuard {
    pub(crate) fn new(max_values: usize, max_len: usize) -> LabelGuard {
        LabelGuard {
            max_values,
            max_len,
            admitted: RwLock::new(HashSet::new()),
            full: AtomicBool::new(max_values == 0),
        }
    }

    /// `value` when it is admitted (already, or now while there is room), else `other`. The
    /// empty value (label not applicable) is always itself.
    pub(crate) fn label<'a>(&self, value: &'a str) -> &'a str {
        if value.is_empty() {
            return value;
        }
        if value.len() > self.max_len {
            return OTHER;
        }
        // A poisoned lock only means a panic elsewhere while inserting a string: the set is
        // still a valid set.
        let known = self
            .admitted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(value);
        if known {
            return value;
        }
        if self.full.load(Ordering::Acquire) {
            return OTHER;
        }
        let mut set = self.admitted.write().unwrap_or_else(|p| p.into_inner());
        if set.contains(value) {
            return value;
        }
        if set.len() >= self.max_values {
            self.full.store(true, Ordering::Release);
            return OTHER;
        }
        set.insert(value.into());
        if set.len() >= self.max_values {
            self.full.store(true, Ordering::Release);
        }
        value
    }

    /// How many values are admitted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.admitted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_first_values_then_reports_other() {
        let g = LabelGuard::new(2, 8);
        assert_eq!(g.label("a"), "a");
        assert_eq!(g.label("b"), "b");
        assert_eq!(g.label("c"), OTHER);
        assert_eq!(g.label("a"), "a", "admitted values stay admitted");
        assert_eq!(g.label("b"), "b");
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn long_values_are_other_and_take_no_room() {
        let g = LabelGuard::new(2, 4);
        assert_eq!(g.label("abcde"), OTHER);
        assert_eq!(g.label("abcd"), "abcd");
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn the_empty_value_is_not_counted() {
        let g = LabelGuard::new(1, 4);
        assert_eq!(g.label(""), "");
        assert_eq!(g.label("x"), "x");
        assert_eq!(g.label(""), "");
    }

    #[test]
    fn bounded_under_concurrency() {
        let g = std::sync::Arc::new(LabelGuard::new(10, 16));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let g = g.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        let v = format!("{t}-{i}");
                        let _ = g.label(&v);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(g.len(), 10);
    }
}
