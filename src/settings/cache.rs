//! The `cache:` section of the settings: which backend holds cached answers, how much memory
//! it may use, the bounds of a config's `max_age`, and how Redis is reached.

use crate::settings::SettingsError;
use serde::{Deserialize, Serialize};

/// Where cached answers live.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In this process, bounded by `max_entries` and `max_bytes` (least recently used first out).
    #[default]
    Memory,
    /// One Redis shared by every replica; entries expire with Redis TTLs.
    Redis,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// `false` answers every request `DISABLED`, whatever its config asks.
    pub enabled: bool,
    pub backend: Backend,
    /// Memory backend: most entries kept.
    pub max_entries: usize,
    /// Memory backend: most bytes of cached answers kept (bodies plus a small per-entry cost).
    pub max_bytes: usize,
    /// Largest answer stored (larger ones are relayed but not cached).
    pub max_entry_bytes: usize,
    /// `max_age` of a config that gives none (Portkey hosted: 7 days).
    pub default_max_age_seconds: u64,
    /// Smallest `max_age` honoured; smaller values are raised to it (Portkey hosted: 60 s).
    pub min_max_age_seconds: u64,
    /// Largest `max_age` honoured; larger values are lowered to it (Portkey hosted: 90 days).
    pub max_max_age_seconds: u64,
    pub redis: RedisSettings,
    /// The semantic cache's embedding target and index (`semantic.rs`).
    pub semantic: SemanticSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]` (`rediss://` for TLS). Printed without its password.
    pub url: Option<String>,
    /// Name of an environment variable holding the URL (e.g. from a Kubernetes Secret); used
    /// when `url` is not set.
    pub url_env: Option<String>,
    /// Longest a lookup may take; past it the request goes on uncached (counted as `error`).
    pub lookup_timeout_ms: u64,
    /// Longest a store may take (stores run after the answer was sent).
    pub store_timeout_ms: u64,
    /// Longest a (re)connection attempt may take; while Redis is unreachable, a new attempt is
    /// made at most once per `reconnect_interval_ms`, and lookups do not wait for it.
    pub connect_timeout_ms: u64,
    pub reconnect_interval_ms: u64,
    /// Prefix of every key portgate writes (several gateways may share one Redis).
    pub key_prefix: String,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: true,
            backend: Backend::Memory,
            max_entries: 10_000,
            max_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 1024 * 1024,
            default_max_age_seconds: 7 * 24 * 3600,
            min_max_age_seconds: 60,
            max_max_age_seconds: 7_776_000,
            redis: RedisSettings::default(),
            semantic: Default::default(),
        }
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: None,
            url_env: None,
            lookup_timeout_ms: 50,
            store_timeout_ms: 500,
            connect_timeout_ms: 1000,
            reconnect_interval_ms: 1000,
            key_prefix: "portgate:cache:".into(),
        }
    }
}

impl RedisSettings {
    /// The URL: `url`, else the environment variable `url_env` names (looked up with `env`).
    /// `field` names the settings block in errors.
    pub(crate) fn resolve_url(
        &self,
        field: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, super::SettingsError> {
        url_or_env(field, self.url.as_deref(), self.url_env.as_deref(), env)
    }
}

/// A store's URL: `url`, else the environment variable `url_env` names (looked up with
/// `env`); `field` names the settings block in errors.
pub(crate) fn url_or_env(
    field: &str,
    url: Option<&str>,
    url_env: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, super::SettingsError> {
    match (url, url_env) {
        (Some(u), _) => Ok(u.to_string()),
        (None, Some(var)) => env(var).filter(|u| !u.is_empty()).ok_or_else(|| {
            super::SettingsError::new(
                &format!("{field}.url_env"),
                format!("environment variable {var} is not set"),
            )
        }),
        (None, None) => Err(super::SettingsError::new(
            &format!("{field}.url"),
            "not set",
        )),
    }
}

impl CacheSettings {
    pub(crate) fn validate(
        &self,
        has_virtual_key: &dyn Fn(&str) -> bool,
    ) -> Result<(), SettingsError> {
        let err = |f: &str, m: &str| Err(SettingsError::new(&format!("cache.{f}"), m));
        if self.max_entries == 0 {
            return err("max_entries", "must be at least 1");
        }
        if self.max_entry_bytes == 0 || self.max_entry_bytes > self.max_bytes {
            return err(
                "max_entry_bytes",
                "must be at least 1 and at most cache.max_bytes",
            );
        }
        if self.min_max_age_seconds == 0 || self.min_max_age_seconds > self.max_max_age_seconds {
            return err(
                "min_max_age_seconds",
                "must be at least 1 and at most cache.max_max_age_seconds",
            );
        }
        if !(self.min_max_age_seconds..=self.max_max_age_seconds)
            .contains(&self.default_max_age_seconds)
        {
            return err(
                "default_max_age_seconds",
                "must lie between cache.min_max_age_seconds and cache.max_max_age_seconds",
            );
        }
        let sem = &self.semantic;
        if !(sem.threshold > 0.0 && sem.threshold <= 1.0) {
            return err("semantic.threshold", "must be in (0, 1]");
        }
        if let Some(min) = sem.min_threshold {
            if !(min > 0.0 && min <= sem.threshold) {
                return err(
                    "semantic.min_threshold",
                    "must be in (0, cache.semantic.threshold]",
                );
            }
        }
        if let Some(vk) = &sem.virtual_key {
            if !has_virtual_key(vk) {
                return err("semantic.virtual_key", "names no entry of virtual_keys");
            }
        }
        if sem.max_entries == 0 || sem.max_messages == 0 || sem.timeout_ms == 0 {
            return err(
                "semantic",
                "max_entries, max_messages and timeout_ms must be positive",
            );
        }
        let r = &self.redis;
        if self.backend == Backend::Redis && r.url.is_none() && r.url_env.is_none() {
            return err(
                "redis.url",
                "the redis backend needs redis.url or redis.url_env",
            );
        }
        if let Some(url) = &r.url {
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://"))
            {
                return err(
                    "redis.url",
                    "must start with redis://, rediss:// or unix://",
                );
            }
        }
        for (f, v) in [
            ("redis.lookup_timeout_ms", r.lookup_timeout_ms),
            ("redis.store_timeout_ms", r.store_timeout_ms),
            ("redis.connect_timeout_ms", r.connect_timeout_ms),
            ("redis.reconnect_interval_ms", r.reconnect_interval_ms),
        ] {
            if v == 0 {
                return Err(SettingsError::new(
                    &format!("cache.{f}"),
                    "must be positive",
                ));
            }
        }
        Ok(())
    }

    /// The TTL of an entry whose config says `max_age` (seconds), clamped to the bounds.
    pub(crate) fn ttl(&self, max_age: Option<u64>) -> u64 {
        max_age
            .unwrap_or(self.default_max_age_seconds)
            .clamp(self.min_max_age_seconds, self.max_max_age_seconds)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SemanticSettings {
    /// Virtual key (from `virtual_keys`) of the embedding target. Unset: semantic mode does
    /// exact matching only.
    pub virtual_key: Option<String>,
    /// Embedding model asked for.
    pub model: String,
    /// Smallest cosine similarity that is a hit.
    pub threshold: f32,
    /// The lowest threshold a config's `cache.threshold` may ask for (`null`: `threshold`, so
    /// a config may only raise it). A client that could lower it would be served answers to
    /// other prompts.
    pub min_threshold: Option<f32>,
    /// Most entries indexed (all scopes together). Memory is entries × dimensions × 4 bytes:
    /// 10 000 vectors of 1536 dimensions hold 59 MiB.
    pub max_entries: usize,
    /// Requests with more user messages are not looked up semantically (Portkey: 4).
    pub max_messages: usize,
    /// Requests whose user text is longer (bytes) are not looked up semantically.
    pub max_input_bytes: usize,
    /// Longest the embedding call may take; past it the request goes on without it.
    pub timeout_ms: u64,
}

impl Default for SemanticSettings {
    fn default() -> Self {
        SemanticSettings {
            virtual_key: None,
            model: "text-embedding-3-small".into(),
            threshold: 0.95,
            min_threshold: None,
            max_entries: 10_000,
            max_messages: 4,
            max_input_bytes: 32 * 1024,
            timeout_ms: 2000,
        }
    }
}

impl SemanticSettings {
    /// The threshold a lookup uses: a config's own, never below the floor
    /// (`min_threshold`, else `threshold`).
    pub(crate) fn threshold_for(&self, asked: Option<f32>) -> f32 {
        let floor = self.min_threshold.unwrap_or(self.threshold);
        asked.unwrap_or(self.threshold).max(floor)
    }
}
