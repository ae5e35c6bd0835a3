//! Response caching: answers stored by a key over everything that can change them
//! (see `key.rs`), in this process (`memory.rs`) or in a Redis every replica shares
//! (`redis.rs`).
//!
//! Where: the lookup runs in the attempt walk, per target, with that target's own cache config,
//! resolved provider, credential and `override_params` (Portkey looks up per target too). A
//! hit ends the walk like an answer from that target; a miss carries a [`CacheDecision`] to the relay,
//! which captures what the client is sent and stores it once the answer completed.
//!
//! What is stored: the answer exactly as the client received it (status 2xx only, never an
//! error), its content type, and the usage and model the meter read. A streamed answer is
//! stored as its SSE events once the stream ended cleanly and is replayed as those events; a
//! whole answer as its JSON. A hit is written through the same relay (`Source::Held`) as a
//! live answer, so headers, metrics, the access log and framing are the same.
//!
//! Failure: the cache never fails or holds up a request. A Redis error or timeout (bounded by
//! `cache.redis.lookup_timeout_ms`) sends the request on uncached, answered `DISABLED` and
//! counted as `result="error"`.

pub mod key;
pub mod memory;
pub mod redis;
pub mod semantic;

pub use crate::settings::cache::{Backend, CacheSettings};
pub(crate) use crate::telemetry::cache::CacheMetrics;

use crate::portkey::config::CacheMode;
use crate::routing::plan::Leaf;
use crate::routing::target::Target;
use crate::settings::SettingsError;
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Instant;

mod entry;

pub use entry::Entry;

pub(crate) const HIT: &str = "HIT";
pub(crate) const SEMANTIC_HIT: &str = "SEMANTIC HIT";
pub(crate) const MISS: &str = "MISS";
pub(crate) const SEMANTIC_MISS: &str = "SEMANTIC MISS";
pub(crate) const REFRESH: &str = "REFRESH";
pub(crate) const DISABLED: &str = "DISABLED";

/// A unit vector being computed: the embedding call's future.
pub(crate) type EmbedFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Arc<[f32]>, String>> + Send + 'a>>;

/// Computes the vector of a text for the semantic cache (the request pipeline calls the
/// embedding target named in the settings).
pub trait Embedder: Sync {
    fn embed<'a>(
        &'a self,
        s: &'a crate::settings::cache::SemanticSettings,
        text: &'a str,
    ) -> EmbedFuture<'a>;
}

/// What a lookup reads of the request besides its body.
pub(crate) struct Asked<'a> {
    pub op: crate::providers::Operation,
    pub client_headers: &'a http::HeaderMap,
    /// `x-portkey-forward-headers` (a target's own `forward_headers` replace them).
    pub forward_headers: &'a [String],
    pub query: Option<&'a str>,
    /// `x-portkey-strict-open-ai-compliance` (answers differ with it).
    pub strict: bool,
}

/// Request headers (Portkey's).
pub(crate) const NAMESPACE_HEADER: &str = "x-portkey-cache-namespace";
pub(crate) const FORCE_REFRESH_HEADER: &str = "x-portkey-cache-force-refresh";

/// What the lookup decided for a request: the `x-portkey-cache-status` it gets, and whether
/// its answer is to be stored (and under which key, for how long). Small: it travels in every
/// walk's answer.
#[derive(Debug, Clone)]
pub(crate) struct CacheDecision {
    pub status: &'static str,
    pending: Option<Box<Pending>>,
}

#[derive(Debug, Clone)]
struct Pending {
    key: [u8; 32],
    ttl: u64,
    /// Semantic mode: the scope and unit vector to index the stored answer under.
    semantic: Option<([u8; 32], Arc<[f32]>)>,
}

impl CacheDecision {
    /// No cache applies.
    pub(crate) const DISABLED: CacheDecision = CacheDecision {
        status: DISABLED,
        pending: None,
    };

    fn go(status: &'static str, pending: Option<Box<Pending>>) -> CacheDecision {
        CacheDecision { status, pending }
    }

    /// Whether the answer is to be captured and stored.
    pub(crate) fn stores(&self) -> bool {
        self.pending.is_some()
    }
}

/// The embedding a request already computed: the targets of one request (a fallback, each with
/// a semantic cache) share it instead of each calling the embedding model for the same text.
/// Boxed: it lives in every request's walk, and most requests never embed.
#[derive(Default)]
pub(crate) struct EmbeddingMemo(Option<Box<Embedded>>);

struct Embedded {
    text: String,
    /// `None`: the embedding failed (not asked again for the same request).
    vector: Option<Arc<[f32]>>,
}

pub(crate) enum Lookup {
    /// Served from the cache, with the decision saying how (`HIT`, `SEMANTIC HIT`).
    Hit(Arc<Entry>, CacheDecision),
    /// Not served from the cache: the request goes to the provider (`MISS`, `REFRESH`,
    /// `DISABLED`), its answer stored when the decision says so.
    Fetch(CacheDecision),
}

/// The answer as sent to the client, collected while it is relayed (bounded by
/// `cache.max_entry_bytes`: a larger answer is sent whole but not stored).
pub(crate) struct Capture {
    buf: BytesMut,
    limit: usize,
    overflow: bool,
}

impl Capture {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        if self.buf.len() + bytes.len() > self.limit {
            self.overflow = true;
            self.buf = BytesMut::new();
            return;
        }
        self.buf.extend_from_slice(bytes);
    }
}

pub struct Cache {
    settings: CacheSettings,
    memory: Option<memory::MemoryStore>,
    redis: Option<Arc<redis::RedisStore>>,
    index: Arc<semantic::Index>,
    pub metrics: CacheMetrics,
}

fn now_secs() -> u64 {
    crate::types::time::unix_ms() / 1000
}

fn mode_label(mode: CacheMode) -> &'static str {
    match mode {
        CacheMode::Simple => "simple",
        CacheMode::Semantic => "semantic",
    }
}

impl Cache {
    pub(crate) fn new(
        settings: &CacheSettings,
        metrics: CacheMetrics,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Cache, SettingsError> {
        let (memory, redis) = match settings.backend {
            Backend::Memory => (
                Some(memory::MemoryStore::new(
                    settings.max_entries,
                    settings.max_bytes,
                    metrics.entries.clone(),
                    metrics.bytes.clone(),
                )),
                None,
            ),
            Backend::Redis => {
                let url = settings.redis.resolve_url("cache.redis", env)?;
                let store = redis::RedisStore::new(&url, &settings.redis)
                    .map_err(|e| SettingsError::new("cache.redis.url", e))?;
                (None, Some(Arc::new(store)))
            }
        };
        Ok(Cache {
            settings: settings.clone(),
            memory,
            redis,
            index: Arc::new(semantic::Index::new(
                settings.semantic.max_entries,
                metrics.semantic_vectors.clone(),
                metrics.semantic_rejected.clone(),
            )),
            metrics,
        })
    }

    fn backend_label(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "memory"
        }
    }

    /// Looks the request up for one target (`body` is its body after `override_params`).
    pub(crate) async fn lookup(
        &self,
        embedder: &dyn Embedder,
        leaf: &Leaf,
        req: &Asked<'_>,
        target: &Target,
        body: &[u8],
        memo: &mut EmbeddingMemo,
    ) -> Lookup {
        let Some(spec) = leaf.cache.as_ref().filter(|_| self.settings.enabled) else {
            return Lookup::Fetch(CacheDecision::DISABLED);
        };
        let mode = mode_label(spec.mode);
        let header = |name: &str| {
            req.client_headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let refresh = header(FORCE_REFRESH_HEADER).eq_ignore_ascii_case("true");
        let target_key = target.key();
        let mut headers: Vec<(&str, &[u8])> = key::ANSWER_HEADERS
            .iter()
            .copied()
            .chain(
                (leaf.forward_headers.as_ref())
                    .map_or(req.forward_headers, Vec::as_slice)
                    .iter()
                    .map(String::as_str),
            )
            .filter_map(|name| {
                let value = req.client_headers.get(name)?;
                Some((name, value.as_bytes()))
            })
            .collect();
        headers.sort_unstable();
        headers.dedup();
        let scope = key::Scope {
            op: req.op.name(),
            target: target_key,
            base_path: &target.upstream.base_path,
            query: req.query.unwrap_or(""),
            headers,
            credential: key::credential_digest(
                target.api_key.as_ref().map(|k| k.expose()),
                target.options.iter(),
            ),
            namespace: header(NAMESPACE_HEADER),
            strict: req.strict,
        };
        let Some(key) = key::key(&scope, body) else {
            // Not a JSON object: the provider will refuse it; nothing to cache.
            self.count(mode, "uncacheable");
            return Lookup::Fetch(CacheDecision::DISABLED);
        };
        let mut pending = Box::new(Pending {
            key,
            ttl: self.settings.ttl(spec.max_age),
            semantic: None,
        });
        let semantic = spec.mode == CacheMode::Semantic
            && self.settings.semantic.virtual_key.is_some()
            && req.op == crate::providers::Operation::ChatCompletions;
        if refresh {
            self.count(mode, "refresh");
            if semantic {
                pending.semantic = self.embed(embedder, mode, &scope, body, memo).await;
            }
            return Lookup::Fetch(CacheDecision::go(REFRESH, Some(pending)));
        }
        match self.get(&key).await {
            Ok(Some(entry)) => {
                self.count(mode, "hit");
                return Lookup::Hit(entry, CacheDecision::go(HIT, None));
            }
            Ok(None) => {}
            Err(()) => {
                // Redis is down or slow: go on uncached, and do not try to store either.
                self.count(mode, "error");
                return Lookup::Fetch(CacheDecision::DISABLED);
            }
        }
        if !semantic {
            self.count(mode, "miss");
            let status = match spec.mode {
                CacheMode::Simple => MISS,
                CacheMode::Semantic => SEMANTIC_MISS,
            };
            return Lookup::Fetch(CacheDecision::go(status, Some(pending)));
        }
        pending.semantic = self.embed(embedder, mode, &scope, body, memo).await;
        if let (Some(r), true) = (&self.redis, pending.semantic.is_some()) {
            // Vectors other replicas stored: follow them (started once; the first lookup
            // waits at most its bound for the initial load).
            r.follow_vectors(self.index.clone());
            let bound = std::time::Duration::from_millis(self.settings.redis.lookup_timeout_ms);
            r.vectors_loaded(bound).await;
        }
        if let Some((scope_digest, v)) = &pending.semantic {
            let now = now_secs();
            let near = self.index.nearest(scope_digest, v, now);
            let threshold = self.settings.semantic.threshold_for(spec.threshold);
            if let Some((near_key, _)) = near.filter(|(_, sim)| *sim >= threshold) {
                if let Ok(Some(entry)) = self.get(&near_key).await {
                    self.count(mode, "semantic_hit");
                    return Lookup::Hit(entry, CacheDecision::go(SEMANTIC_HIT, None));
                }
            }
        }
        self.count(mode, "miss");
        Lookup::Fetch(CacheDecision::go(SEMANTIC_MISS, Some(pending)))
    }

    /// The entry under `key`, from the backend (`Err` when Redis failed or timed out).
    async fn get(&self, key: &[u8; 32]) -> Result<Option<Arc<Entry>>, ()> {
        let started = Instant::now();
        let now = now_secs();
        let found = match (&self.memory, &self.redis) {
            (Some(m), _) => Ok(m.get(key, now)),
            (None, Some(r)) => r
                .get(key)
                .await
                .map(|e| e.filter(|e| e.expires_at > now).map(Arc::new))
                .map_err(|e| r.log_failure("lookup", &e)),
            (None, None) => Ok(None),
        };
        self.metrics
            .lookup
            .with_label_values(&[self.backend_label()])
            .observe(started.elapsed().as_secs_f64());
        found
    }

    /// The request's semantic scope and unit vector; `None` (counted) when the request does
    /// not qualify or the embedding failed: the request then goes on with the exact cache only.
    async fn embed(
        &self,
        embedder: &dyn Embedder,
        mode: &str,
        scope: &key::Scope<'_>,
        body: &[u8],
        memo: &mut EmbeddingMemo,
    ) -> Option<([u8; 32], Arc<[f32]>)> {
        let s = &self.settings.semantic;
        let Some(q) = semantic::query(s, scope, body) else {
            self.count(mode, "semantic_skipped");
            return None;
        };
        if let Some(known) = memo.0.as_deref().filter(|e| e.text == q.text) {
            // This request embedded the same text for an earlier target (or failed to).
            return known.vector.clone().map(|v| (q.scope, v));
        }
        let vector = self.embed_text(embedder, mode, &q.text).await;
        let found = vector.clone().map(|v| (q.scope, v));
        memo.0 = Some(Box::new(Embedded {
            text: q.text,
            vector,
        }));
        found
    }

    async fn embed_text(
        &self,
        embedder: &dyn Embedder,
        mode: &str,
        text: &str,
    ) -> Option<Arc<[f32]>> {
        let s = &self.settings.semantic;
        let started = Instant::now();
        let embedded = embedder.embed(s, text).await;
        self.metrics
            .lookup
            .with_label_values(&["embedding"])
            .observe(started.elapsed().as_secs_f64());
        match embedded {
            Ok(v) => Some(v),
            Err(e) => {
                self.count(mode, "embedding_error");
                tracing::warn!(target: "portgate::cache", error = %e, "semantic cache: embedding failed, exact match only");
                None
            }
        }
    }

    fn count(&self, mode: &str, result: &str) {
        self.metrics
            .requests
            .with_label_values(&[mode, result])
            .inc();
    }

    /// A capture for an answer the note says to store.
    pub(crate) fn capture(&self, note: &CacheDecision) -> Option<Capture> {
        note.stores().then(|| Capture {
            buf: BytesMut::new(),
            limit: self.settings.max_entry_bytes,
            overflow: false,
        })
    }

    /// Stores a relayed answer that completed: only a 2xx, only when captured whole. The Redis
    /// write runs in the background (the client already has its answer).
    pub(crate) fn store(
        &self,
        note: &CacheDecision,
        capture: Capture,
        status: u16,
        content_type: &str,
        usage: Option<Usage>,
        model: Option<String>,
    ) {
        let Some(p) = note.pending.as_deref() else {
            return;
        };
        if !(200..300).contains(&status) {
            return;
        }
        if capture.overflow {
            self.metrics.stores.with_label_values(&["too_large"]).inc();
            return;
        }
        let entry = Entry {
            status,
            content_type: content_type.to_string(),
            body: capture.buf.freeze(),
            usage,
            model,
            expires_at: now_secs().saturating_add(p.ttl),
        };
        let mut vector = None;
        if let Some((scope, v)) = &p.semantic {
            self.index.insert(*scope, v, p.key, entry.expires_at);
            vector = Some(redis::vectors::encode(scope, &p.key, entry.expires_at, v));
        }
        if let Some(m) = &self.memory {
            m.put(p.key, Arc::new(entry));
            self.metrics.stores.with_label_values(&["stored"]).inc();
        } else if let Some(r) = &self.redis {
            let r = r.clone();
            let stores = self.metrics.stores.clone();
            let (key, ttl) = (p.key, p.ttl);
            let max_vectors = self.settings.semantic.max_entries;
            tokio::spawn(async move {
                let mut stored = r.put(&key, &entry, ttl).await;
                if let (Ok(()), Some(record)) = (&stored, vector) {
                    stored = r.put_vector(record, &key, ttl, max_vectors).await;
                }
                match stored {
                    Ok(()) => stores.with_label_values(&["stored"]).inc(),
                    Err(e) => {
                        r.log_failure("store", &e);
                        stores.with_label_values(&["error"]).inc();
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_the_redis_encoding() {
        let e = Entry {
            status: 200,
            content_type: "text/event-stream".into(),
            body: Bytes::from_static(b"data: {}\n\ndata: [DONE]\n\n"),
            usage: Some(Usage {
                input: 9,
                output: 3,
                cached_input: 1,
                cache_write: 0,
                reasoning: 2,
            }),
            model: Some("gpt-4o".into()),
            expires_at: 1_700_000_000,
        };
        assert_eq!(Entry::decode(&e.encode()), Some(e.clone()));
        let bare = Entry {
            usage: None,
            model: None,
            ..e
        };
        assert_eq!(Entry::decode(&bare.encode()), Some(bare));
        assert_eq!(Entry::decode(b"PGC1\x01"), None);
        assert_eq!(Entry::decode(b"something else"), None);
    }

    #[test]
    fn capture_stops_past_its_limit() {
        let mut c = Capture {
            buf: BytesMut::new(),
            limit: 4,
            overflow: false,
        };
        c.push(b"ab");
        c.push(b"cd");
        assert!(!c.overflow);
        c.push(b"e");
        assert!(c.overflow);
    }
}
