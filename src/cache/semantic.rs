//! The semantic cache: a request whose user messages mean the same as a cached one's gets that
//! answer. The user messages (system and developer messages excluded, as Portkey's hosted
//! cache does) are embedded by a target named in the settings — any virtual key whose provider
//! serves `/v1/embeddings` — called through portgate's own dispatcher. The nearest entry of the
//! same scope with cosine similarity at or above the threshold is the hit.
//!
//! Scope: everything but the user messages must match exactly — the scope digest is the cache
//! key of the body with the user messages' text removed (so provider, address, credential,
//! namespace, model, every parameter and the other messages are all in it).
//!
//! Index: per scope, the unit vectors of the entries in one contiguous `f32` array, searched
//! by brute force (a dot product per entry; see `bench/semantic_lookup.rs` for its cost at 10k
//! and 100k entries). Bounded by `cache.semantic.max_entries` across scopes: the oldest
//! indexed entries go first. With the Redis backend every replica's index follows the vectors
//! all replicas stored (`redis::vectors`).

use super::key;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

pub(crate) use crate::settings::cache::SemanticSettings;

/// The user text and scope of a request, when it can be looked up semantically.
pub struct Query {
    pub scope: [u8; 32],
    pub text: String,
}

/// Splits a (chat) body into its user text and scope; `None` when it has no user message,
/// too many, or too much text.
pub(crate) fn query(s: &SemanticSettings, scope: &key::Scope<'_>, body: &[u8]) -> Option<Query> {
    let mut v: Map<String, Value> = serde_json::from_slice(body).ok()?;
    let messages = v.get_mut("messages")?.as_array_mut()?;
    let mut text = String::new();
    let mut users = 0;
    for m in messages.iter_mut() {
        if m.get("role").and_then(Value::as_str) != Some("user") {
            continue;
        }
        users += 1;
        let content = m.get_mut("content").map(Value::take)?;
        match content {
            Value::String(s) => push_line(&mut text, &s),
            Value::Array(parts) => {
                for p in parts {
                    match p.get("text").and_then(Value::as_str) {
                        Some(t) => push_line(&mut text, t),
                        // An image or a file cannot be compared by its text.
                        None => return None,
                    }
                }
            }
            _ => return None,
        }
    }
    if users == 0 || users > s.max_messages || text.len() > s.max_input_bytes {
        return None;
    }
    // The embedding model and target are part of the scope: vectors of two models (replicas
    // with different settings sharing one Redis) are never compared.
    v.insert(
        "\u{0}embedding".into(),
        serde_json::json!([s.model, s.virtual_key]),
    );
    let rest = serde_json::to_vec(&v).ok()?;
    let scope = key::key(scope, &rest)?;
    Some(Query { scope, text })
}

fn push_line(out: &mut String, s: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(s);
}

/// The vector scaled to unit length (`None` for an empty or zero vector, or one with an
/// element that is not finite). The length is computed in `f64`: squares of `f32` values
/// neither overflow nor lose precision there (in `f32`, the square of an element below about
/// 1e-19 is subnormal, and the "unit" vector came out up to a percent too long).
pub fn normalise(v: Vec<f32>) -> Option<Arc<[f32]>> {
    if v.is_empty() || !v.iter().all(|x| x.is_finite()) {
        return None;
    }
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if norm == 0.0 {
        return None;
    }
    Some(v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

/// Dot product in eight independent lanes: the compiler turns the lanes into SIMD (a plain
/// `zip().sum()` must add in order and stays scalar, ~4x slower here).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() - a.len() % 8);
    let (b8, b_rest) = b.split_at(a8.len().min(b.len()));
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// One scope's vectors, contiguous, and the exact keys they stand for.
#[derive(Default)]
pub(crate) struct Slab {
    dim: usize,
    vectors: Vec<f32>,
    keys: Vec<[u8; 32]>,
    expires: Vec<u64>,
}

impl Slab {
    /// The most similar live entry: its key and similarity.
    pub(crate) fn nearest(&self, v: &[f32], now: u64) -> Option<([u8; 32], f32)> {
        if v.len() != self.dim || self.dim == 0 {
            return None;
        }
        let mut best: Option<(usize, f32)> = None;
        for (i, row) in self.vectors.chunks_exact(self.dim).enumerate() {
            let dot = dot(row, v);
            let better = match best {
                None => true,
                Some((_, b)) => dot > b,
            };
            if better && self.expires[i] > now {
                best = Some((i, dot));
            }
        }
        best.map(|(i, s)| (self.keys[i], s))
    }

    /// Adds a vector; `false` (nothing added) for an empty or non-finite one, or one of
    /// another dimension than the slab's. Every row is `dim` long, so `vectors` is always
    /// `keys.len() × dim`.
    pub(crate) fn push(&mut self, v: &[f32], key: [u8; 32], expires: u64) -> bool {
        if v.is_empty() || !v.iter().all(|x| x.is_finite()) {
            return false;
        }
        if self.dim == 0 {
            self.dim = v.len();
        }
        if v.len() != self.dim {
            return false;
        }
        self.vectors.extend_from_slice(v);
        self.keys.push(key);
        self.expires.push(expires);
        true
    }

    /// Removes a key's vector: the last row moves into its place.
    fn remove(&mut self, key: &[u8; 32]) {
        if let Some(i) = self.keys.iter().position(|k| k == key) {
            let last = self.keys.len() - 1;
            self.keys.swap_remove(i);
            self.expires.swap_remove(i);
            let dim = self.dim;
            if i != last && self.vectors.len() >= (last + 1) * dim {
                self.vectors
                    .copy_within(last * dim..(last + 1) * dim, i * dim);
            }
            self.vectors.truncate(last * dim);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Every scope's slab, bounded by entry count (oldest out first).
pub struct Index {
    /// Lookups share the lock (a scan of a large scope does not hold up other lookups);
    /// inserts take it alone.
    inner: RwLock<Inner>,
    max_entries: usize,
    /// `portgate_cache_semantic_vectors`.
    gauge: prometheus::IntGauge,
    /// `portgate_cache_semantic_rejected_total`.
    rejected: prometheus::IntCounter,
}

#[derive(Default)]
struct Inner {
    scopes: HashMap<[u8; 32], Slab>,
    order: VecDeque<([u8; 32], [u8; 32])>,
}

impl Index {
    pub fn new(
        max_entries: usize,
        gauge: prometheus::IntGauge,
        rejected: prometheus::IntCounter,
    ) -> Index {
        Index {
            inner: RwLock::new(Inner::default()),
            max_entries: max_entries.max(1),
            gauge,
            rejected,
        }
    }

    pub fn nearest(&self, scope: &[u8; 32], v: &[f32], now: u64) -> Option<([u8; 32], f32)> {
        let inner = self.inner.read().unwrap_or_else(|poisoned| {
            tracing::error!(target: "portgate::cache", "semantic index lock poisoned; recovered");
            poisoned.into_inner()
        });
        inner.scopes.get(scope)?.nearest(v, now)
    }

    /// Counts a vector refused before it reached the index (a record that did not decode).
    pub(crate) fn reject(&self) {
        self.rejected.inc();
    }

    pub fn insert(&self, scope: [u8; 32], v: &[f32], key: [u8; 32], expires: u64) {
        // The index's invariants hold between statements that cannot panic, so a lock
        // poisoned by a panic elsewhere is recovered instead of disabling the cache.
        let mut inner = self.inner.write().unwrap_or_else(|poisoned| {
            tracing::error!(target: "portgate::cache", "semantic index lock poisoned; recovered");
            poisoned.into_inner()
        });
        let slab = inner.scopes.entry(scope).or_default();
        // A refreshed entry replaces its old vector.
        slab.remove(&key);
        if !slab.push(v, key, expires) {
            if slab.is_empty() {
                inner.scopes.remove(&scope);
            }
            self.rejected.inc();
            return;
        }
        inner.order.retain(|(s, k)| !(s == &scope && k == &key));
        inner.order.push_back((scope, key));
        while inner.order.len() > self.max_entries {
            let Some((s, k)) = inner.order.pop_front() else {
                break;
            };
            if let Some(slab) = inner.scopes.get_mut(&s) {
                slab.remove(&k);
                if slab.is_empty() {
                    inner.scopes.remove(&s);
                }
            }
        }
        self.gauge.set(inner.order.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> key::Scope<'static> {
        key::Scope {
            op: "chat",
            target: "openai@x:443",
            base_path: "",
            query: "",
            headers: Vec::new(),
            credential: [0; 32],
            namespace: "",
            strict: true,
        }
    }

    #[test]
    fn query_takes_user_text_and_scopes_by_the_rest() {
        let s = SemanticSettings::default();
        let a = query(
            &s,
            &scope(),
            br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"capital of France?"}]}"#,
        )
        .unwrap();
        assert_eq!(a.text, "capital of France?");
        let b = query(
            &s,
            &scope(),
            br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"France's capital"}]}]}"#,
        )
        .unwrap();
        assert_eq!(a.scope, b.scope, "same scope, other words");
        let c = query(
            &s,
            &scope(),
            br#"{"model":"m","messages":[{"role":"system","content":"be long"},{"role":"user","content":"capital of France?"}]}"#,
        )
        .unwrap();
        assert_ne!(a.scope, c.scope, "another system prompt");
        // Another embedding model or embedding target: another vector space, another scope.
        let same = br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"capital of France?"}]}"#;
        let other_model = SemanticSettings {
            model: "text-embedding-3-large".into(),
            ..SemanticSettings::default()
        };
        assert_ne!(a.scope, query(&other_model, &scope(), same).unwrap().scope);
        let other_key = SemanticSettings {
            virtual_key: Some("embedder-2".into()),
            ..SemanticSettings::default()
        };
        assert_ne!(a.scope, query(&other_key, &scope(), same).unwrap().scope);
        let many = serde_json::json!({"model": "m", "messages": (0..5).map(|i| serde_json::json!({"role": "user", "content": i.to_string()})).collect::<Vec<_>>()});
        assert!(query(&s, &scope(), many.to_string().as_bytes()).is_none());
    }

    #[test]
    fn dot_handles_any_length() {
        for n in [1usize, 7, 8, 9, 17, 384] {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.25).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!(
                (dot(&a, &b) - naive).abs() <= naive.abs() * 1e-5 + 1e-5,
                "{n}"
            );
        }
    }

    #[test]
    fn nearest_and_bounded() {
        let idx = Index::new(
            2,
            prometheus::IntGauge::new("g", "g").unwrap(),
            prometheus::IntCounter::new("r", "r").unwrap(),
        );
        let s = [1u8; 32];
        let v = |x: f32, y: f32| normalise(vec![x, y]).unwrap();
        idx.insert(s, &v(1.0, 0.0), [1; 32], 100);
        idx.insert(s, &v(0.0, 1.0), [2; 32], 100);
        let (k, sim) = idx.nearest(&s, &v(1.0, 0.1), 1).unwrap();
        assert_eq!(k, [1; 32]);
        assert!(sim > 0.99);
        assert!(idx.nearest(&s, &v(1.0, 0.1), 100).is_none(), "expired");
        idx.insert(s, &v(-1.0, 0.0), [3; 32], 100);
        // The oldest ([1]) went out.
        let (k, _) = idx.nearest(&s, &v(1.0, 0.0), 1).unwrap();
        assert_ne!(k, [1; 32]);
        assert!(idx.nearest(&[9; 32], &v(1.0, 0.0), 1).is_none());
    }

    /// A zero-length vector once left a key without a row: the next push set the dimension,
    /// and removing that key sliced past the end (a panic that poisoned the index's lock and
    /// turned the semantic cache off until restart). Bad vectors are refused and counted.
    #[test]
    fn bad_vectors_are_refused_and_the_index_stays_whole() {
        let rejected = prometheus::IntCounter::new("r", "r").unwrap();
        let idx = Index::new(
            10,
            prometheus::IntGauge::new("g", "g").unwrap(),
            rejected.clone(),
        );
        let s = [1u8; 32];
        idx.insert(s, &[], [1; 32], 100);
        idx.insert(s, &[f32::NAN, 1.0], [2; 32], 100);
        idx.insert(s, &[f32::INFINITY, 0.0], [3; 32], 100);
        assert_eq!(rejected.get(), 3);
        let v = normalise(vec![1.0, 0.0]).unwrap();
        idx.insert(s, &v, [4; 32], 100);
        // Another dimension in the same scope: refused, the slab unchanged.
        idx.insert(s, &normalise(vec![1.0, 0.0, 0.0]).unwrap(), [5; 32], 100);
        assert_eq!(rejected.get(), 4);
        // Replacing and removing rows keeps keys and rows in step.
        idx.insert(s, &normalise(vec![0.0, 1.0]).unwrap(), [6; 32], 100);
        idx.insert(s, &v, [4; 32], 100);
        let (k, sim) = idx.nearest(&s, &v, 1).unwrap();
        assert_eq!(k, [4; 32]);
        assert!(sim > 0.99);
        let (k, _) = idx
            .nearest(&s, &normalise(vec![0.0, 1.0]).unwrap(), 1)
            .unwrap();
        assert_eq!(k, [6; 32]);

        let mut slab = Slab::default();
        assert!(!slab.push(&[], [1; 32], 1));
        assert!(slab.push(&[1.0, 0.0], [2; 32], 1));
        assert!(slab.push(&[0.0, 1.0], [3; 32], 1));
        slab.remove(&[2; 32]);
        slab.remove(&[9; 32]);
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.vectors, vec![0.0, 1.0]);
        slab.remove(&[3; 32]);
        assert!(slab.is_empty() && slab.vectors.is_empty());
    }

    /// Records from the Redis stream are validated and scaled on decode: anything that could
    /// write to the stream cannot put a bad vector in the index.
    #[test]
    fn stream_records_are_validated_on_decode() {
        use crate::cache::redis::vectors::{decode, encode};
        let (scope, key) = ([1u8; 32], [2u8; 32]);
        let (s, k, e, v) = decode(&encode(&scope, &key, 7, &[3.0, 4.0])).unwrap();
        assert_eq!((s, k, e), (scope, key, 7));
        assert!(
            (v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6,
            "{v:?}"
        );
        assert!(decode(&encode(&scope, &key, 7, &[])).is_none(), "empty");
        assert!(
            decode(&encode(&scope, &key, 7, &[0.0, 0.0])).is_none(),
            "zero"
        );
        assert!(decode(&encode(&scope, &key, 7, &[f32::NAN, 1.0])).is_none());
        let good = encode(&scope, &key, 7, &[1.0, 0.0]);
        assert!(decode(&good[..good.len() - 1]).is_none(), "cut");
        let mut long = good.clone();
        long.push(0);
        assert!(decode(&long).is_none(), "longer than it says");
        let mut huge = good;
        huge[72..76].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_none(), "a length past the record");
    }
}
