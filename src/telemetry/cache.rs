//! The cache's Prometheus families, registered into the gateway's registry with the others
//! (documented in docs/caching.md and docs/observability.md). Labels are bounded: `mode` is simple or semantic, `result` one of
//! [`Result`]'s names, `backend` memory or redis.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Lookups take microseconds in memory and about a round trip in Redis.
const LOOKUP_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,
];

#[derive(Clone)]
pub struct CacheMetrics {
    /// `portgate_cache_requests_total{mode, result}`.
    pub requests: IntCounterVec,
    /// `portgate_cache_lookup_duration_seconds{backend}`.
    pub lookup: HistogramVec,
    /// `portgate_cache_saved_tokens_total{type}` (input, output).
    pub saved_tokens: IntCounterVec,
    /// In picodollars (`usd.rs`).
    pub saved_cost: IntCounter,
    pub entries: IntGauge,
    pub bytes: IntGauge,
    /// Vectors in this process's semantic index.
    pub semantic_vectors: IntGauge,
    /// Vectors the semantic index refused (empty, zero, non-finite, or of another dimension
    /// than their scope's), from this process's embeddings or another replica's stream.
    pub semantic_rejected: IntCounter,
    /// `portgate_cache_stores_total{result}`: stored, too_large, error.
    pub stores: IntCounterVec,
}

impl CacheMetrics {
    pub(crate) fn new() -> prometheus::Result<CacheMetrics> {
        Ok(CacheMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "portgate_cache_requests_total",
                    "Cache lookups by mode (simple, semantic) and result (hit, miss, refresh, error: the backend failed or timed out and the request went uncached).",
                ),
                &["mode", "result"],
            )?,
            lookup: HistogramVec::new(
                HistogramOpts::new(
                    "portgate_cache_lookup_duration_seconds",
                    "Time to look a request up in the cache, by backend.",
                )
                .buckets(LOOKUP_BUCKETS.to_vec()),
                &["backend"],
            )?,
            saved_tokens: IntCounterVec::new(
                Opts::new(
                    "portgate_cache_saved_tokens_total",
                    "Tokens of answers served from the cache instead of the provider, by type (input, output).",
                ),
                &["type"],
            )?,
            saved_cost: IntCounter::new(
                "portgate_cache_saved_cost_usd_total",
                "What the answers served from the cache would have cost, in US dollars (price catalog).",
            )?,
            entries: IntGauge::new(
                "portgate_cache_entries",
                "Entries held by the memory backend.",
            )?,
            bytes: IntGauge::new(
                "portgate_cache_bytes",
                "Bytes held by the memory backend (answers plus per-entry overhead).",
            )?,
            semantic_vectors: IntGauge::new(
                "portgate_cache_semantic_vectors",
                "Vectors in this process's semantic index (with Redis: every replica's, followed through a Redis stream).",
            )?,
            semantic_rejected: IntCounter::new(
                "portgate_cache_semantic_rejected_total",
                "Vectors the semantic index refused: empty, zero, non-finite, or of another dimension than their scope's (a different embedding model).",
            )?,
            stores: IntCounterVec::new(
                Opts::new(
                    "portgate_cache_stores_total",
                    "Answers offered to the cache, by result (stored, too_large, error).",
                ),
                &["result"],
            )?,
        })
    }

    pub(crate) fn register(&self, r: &Registry) -> prometheus::Result<()> {
        r.register(Box::new(self.requests.clone()))?;
        r.register(Box::new(self.lookup.clone()))?;
        r.register(Box::new(self.saved_tokens.clone()))?;
        r.register(Box::new(super::usd::Usd(self.saved_cost.clone())))?;
        r.register(Box::new(self.entries.clone()))?;
        r.register(Box::new(self.bytes.clone()))?;
        r.register(Box::new(self.stores.clone()))?;
        r.register(Box::new(self.semantic_vectors.clone()))?;
        r.register(Box::new(self.semantic_rejected.clone()))?;
        Ok(())
    }
}
