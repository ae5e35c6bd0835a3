//! The usage series of one label set, resolved once and kept.
//!
//! `prometheus`'s `with_label_values` hashes its label values, takes a read lock and looks the
//! hash up on every call, and a request with usage made up to twelve such
//! calls for the same provider and model: token counts and histograms by kind, then cost.
//! Here one lookup finds them all. The label values are bounded as the families' are (the
//! model labels are capped before they get here), so the cache is too.

use super::metrics::Metrics;
use crate::types::money::Picos;
use prometheus::{Histogram, IntCounter};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock, RwLock};

/// The token kinds, in the order of the series arrays.
const KINDS: [&str; 5] = [
    "input",
    "output",
    "cached_input",
    "cache_write",
    "reasoning",
];

/// The series of one (operation, provider, model, served model) label set. Each is created on
/// first use, so a kind or a cost never recorded has no series, as with `with_label_values`.
pub(crate) struct UsageSeries {
    /// operation, provider, model, served model.
    labels: [Box<str>; 4],
    /// `portgate_tokens_total`, by kind.
    tokens: [OnceLock<IntCounter>; 5],
    /// `gen_ai_client_token_usage`, by kind.
    usage: [OnceLock<Histogram>; 5],
    /// Picodollars.
    cost: OnceLock<IntCounter>,
    unpriced: OnceLock<IntCounter>,
}

impl UsageSeries {
    fn is(&self, labels: [&str; 4]) -> bool {
        self.labels.iter().map(|l| &**l).eq(labels)
    }

    fn provider(&self) -> &str {
        &self.labels[1]
    }

    fn model(&self) -> &str {
        &self.labels[2]
    }

    /// Counts `n` tokens of kind `KINDS[kind]`.
    pub(crate) fn count(&self, m: &Metrics, kind: usize, n: u64) {
        self.tokens[kind]
            .get_or_init(|| {
                m.tokens
                    .with_label_values(&[self.provider(), self.model(), KINDS[kind]])
            })
            .inc_by(n);
    }

    /// Observes `n` tokens of kind `KINDS[kind]` in the histogram.
    pub(crate) fn observe(&self, m: &Metrics, kind: usize, n: u64) {
        self.usage[kind]
            .get_or_init(|| {
                let [op, provider, model, served] = &self.labels;
                m.token_usage
                    .with_label_values(&[&**op, provider, model, served, KINDS[kind]])
            })
            .observe(n as f64);
    }

    pub(crate) fn cost(&self, m: &Metrics, cost: Picos) {
        self.cost
            .get_or_init(|| m.cost.with_label_values(&[self.provider(), self.model()]))
            .inc_by(u64::try_from(cost.0).unwrap_or(u64::MAX));
    }

    pub(crate) fn unpriced(&self, m: &Metrics) {
        self.unpriced
            .get_or_init(|| {
                m.unpriced
                    .with_label_values(&[self.provider(), self.model()])
            })
            .inc();
    }
}

/// Label sets seen so far, by a hash of their values.
#[derive(Default)]
pub struct UsageSeriesCache {
    map: RwLock<HashMap<u64, Arc<UsageSeries>, fnv::FnvBuildHasher>>,
}

impl UsageSeriesCache {
    /// The series of `[operation, provider, model, served model]`. Two label sets with the same
    /// hash take turns in the slot: each lookup still answers with its own series.
    pub(crate) fn get(&self, labels: [&str; 4]) -> Arc<UsageSeries> {
        // FNV: a tenth of SipHash's cost on these short names. A collision, chosen or not,
        // only makes two label sets take turns in one slot.
        let mut h = fnv::FnvHasher::default();
        labels.hash(&mut h);
        let key = h.finish();
        if let Ok(map) = self.map.read() {
            if let Some(s) = map.get(&key).filter(|s| s.is(labels)) {
                return s.clone();
            }
        }
        let series = Arc::new(UsageSeries {
            labels: labels.map(Box::from),
            tokens: Default::default(),
            usage: Default::default(),
            cost: OnceLock::new(),
            unpriced: OnceLock::new(),
        });
        if let Ok(mut map) = self.map.write() {
            map.insert(key, series.clone());
        }
        series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cached series count into the families as `with_label_values` does, and kinds never
    /// recorded get no series.
    #[test]
    fn cached_series_are_the_families_series() {
        let m = Metrics::new(&[], 10).unwrap();
        let labels = ["chat", "openai", "gpt-4o-mini", "gpt-4o-mini-2024"];
        for _ in 0..2 {
            let s = m.usage_series.get(labels);
            s.count(&m, 0, 17);
            s.observe(&m, 0, 17);
            s.count(&m, 2, 0);
            s.cost(&m, Picos(500_000_000_000));
        }
        assert!(Arc::ptr_eq(
            &m.usage_series.get(labels),
            &m.usage_series.get(labels)
        ));
        let other = m.usage_series.get(["chat", "openai", "gpt-4o", "gpt-4o"]);
        other.unpriced(&m);
        let tokens = m
            .tokens
            .with_label_values(&["openai", "gpt-4o-mini", "input"]);
        assert_eq!(tokens.get(), 34);
        let cached = m
            .tokens
            .with_label_values(&["openai", "gpt-4o-mini", "cached_input"]);
        assert_eq!(cached.get(), 0);
        let hist = m.token_usage.with_label_values(&[
            "chat",
            "openai",
            "gpt-4o-mini",
            "gpt-4o-mini-2024",
            "input",
        ]);
        assert_eq!(hist.get_sample_count(), 2);
        assert_eq!(hist.get_sample_sum(), 34.0);
        assert_eq!(
            m.cost.with_label_values(&["openai", "gpt-4o-mini"]).get(),
            1_000_000_000_000
        );
        assert_eq!(m.unpriced.with_label_values(&["openai", "gpt-4o"]).get(), 1);
        // No histogram series for a kind that was only counted, never observed.
        let rendered = String::from_utf8(m.render()).unwrap();
        assert!(!rendered
            .lines()
            .any(|l| l.starts_with("gen_ai_client_token_usage_count")
                && l.contains("gen_ai_token_type=\"cached_input\"")));
    }
}
