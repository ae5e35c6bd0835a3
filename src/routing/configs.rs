//! Where a request's config comes from: inline JSON in `x-portkey-config`, a config id naming
//! one of the settings' `configs`, or the settings' `default_config`. Named configs are built at
//! start-up (a bad one stops the gateway); inline ones are built on first sight and kept in a
//! bounded cache keyed by the header string, so a config is not parsed per request.
//!
//! The cache is bounded in entries and in bytes: each config counts its text and the memory of
//! its compiled patterns, and the least recently used configs go first when a new one does not
//! fit. A flood of distinct configs costs re-parsing, never memory.

use super::cost::{self, Cost};
use super::plan::{self, Plan, PlanContext, PlanError};
use crate::error::GatewayError;
use crate::portkey::config;
use crate::settings::{Settings, SettingsError};
use crate::types::problems::Problems;
use lru::LruCache;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct ConfigStore {
    named: HashMap<String, Arc<Plan>>,
    default: Option<Arc<Plan>>,
    cache: Mutex<InlineCache>,
    capacity: usize,
}

/// Inline configs seen, by header string, with what each weighs: its text and its compiled
/// patterns (a plan's other memory grows with its text: nodes are capped and inherited data
/// is shared).
struct InlineCache {
    plans: LruCache<String, (Arc<Plan>, usize)>,
    bytes: usize,
}

/// The most bytes of inline configs (text and compiled patterns) kept parsed at once.
pub(crate) const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// A config's problems as the client's error: Portkey's router error when that is all there
/// is, else the schema problems.
fn invalid(p: Problems) -> GatewayError {
    match p.router_error() {
        Some(message) => GatewayError::Router(message.to_string()),
        None => GatewayError::InvalidConfig(p.0),
    }
}

/// Parses and builds one config document; also answers its cost.
pub(crate) fn build(
    value: &serde_json::Value,
    ctx: &PlanContext<'_>,
) -> Result<(Plan, Cost), GatewayError> {
    let node = config::parse(value).map_err(invalid)?;
    let cost = cost::check(&node, ctx.limits).map_err(invalid)?;
    let plan = plan::build(&node, ctx).map_err(|e| match e {
        PlanError::Invalid(p) => invalid(p),
        PlanError::UnknownVirtualKey(id) => GatewayError::UnknownVirtualKey(id),
    })?;
    Ok((plan, cost))
}

impl ConfigStore {
    pub(crate) fn new(settings: &Settings, ctx: &PlanContext<'_>) -> Result<Self, SettingsError> {
        let mut named = HashMap::new();
        for (id, value) in &settings.configs {
            let (plan, _) = build(value, ctx)
                .map_err(|e| SettingsError::new(&format!("configs.{id}"), describe(&e)))?;
            named.insert(id.clone(), Arc::new(plan));
        }
        let default = match &settings.default_config {
            Some(id) => Some(named.get(id).cloned().ok_or_else(|| {
                SettingsError::new(
                    "default_config",
                    format!("no config named {id:?} under configs"),
                )
            })?),
            None => None,
        };
        Ok(ConfigStore {
            named,
            default,
            cache: Mutex::new(InlineCache {
                plans: LruCache::unbounded(),
                bytes: 0,
            }),
            capacity: settings.config_cache_size,
        })
    }

    /// The plan for a request: from the header when present, else the default (if any).
    pub(crate) fn resolve(
        &self,
        header: Option<&str>,
        ctx: &PlanContext<'_>,
    ) -> Result<Option<Arc<Plan>>, GatewayError> {
        let Some(raw) = header.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(self.default.clone());
        };
        if !raw.starts_with('{') {
            return self
                .named
                .get(raw)
                .cloned()
                .map(Some)
                .ok_or_else(|| GatewayError::UnknownConfig(raw.to_string()));
        }
        if raw.len() > config::MAX_BYTES {
            return Err(GatewayError::InvalidConfig(vec![format!(
                "path: , message: the config is {} bytes; at most {} are accepted",
                raw.len(),
                config::MAX_BYTES
            )]));
        }
        if let Some(plan) = self
            .cache
            .lock()
            .ok()
            .and_then(|mut c| c.plans.get(raw).map(|(p, _)| p.clone()))
        {
            return Ok(Some(plan));
        }
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| GatewayError::InvalidConfigJson(e.to_string()))?;
        let (plan, cost) = build(&value, ctx)?;
        let plan = Arc::new(plan);
        let weight = raw.len() + cost.compiled_bytes;
        if let Ok(mut cache) = self.cache.lock() {
            cache.keep(raw, plan.clone(), weight, self.capacity);
        }
        Ok(Some(plan))
    }

    /// Whether requests without `x-portkey-config` get the settings' `default_config`.
    pub(crate) fn has_default(&self) -> bool {
        self.default.is_some()
    }

    /// How many inline configs are cached (for tests and the admin view).
    #[cfg(test)]
    pub(crate) fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.plans.len()).unwrap_or(0)
    }

    /// Bytes the cached inline configs weigh (text and compiled patterns).
    #[cfg(test)]
    pub(crate) fn cached_bytes(&self) -> usize {
        self.cache.lock().map(|c| c.bytes).unwrap_or(0)
    }
}

impl InlineCache {
    /// Keeps a plan that weighs `weight` bytes, evicting the least recently used ones until it
    /// fits; one heavier than the whole budget is not kept.
    fn keep(&mut self, raw: &str, plan: Arc<Plan>, weight: usize, capacity: usize) {
        if weight > CACHE_BYTES || capacity == 0 {
            return;
        }
        while self.plans.len() >= capacity || self.bytes + weight > CACHE_BYTES {
            match self.plans.pop_lru() {
                Some((_, (_, w))) => self.bytes = self.bytes.saturating_sub(w),
                None => break,
            }
        }
        if let Some((_, w)) = self.plans.put(raw.to_string(), (plan, weight)) {
            self.bytes = self.bytes.saturating_sub(w);
        }
        self.bytes += weight;
    }
}

fn describe(e: &GatewayError) -> String {
    match e {
        GatewayError::InvalidConfig(errors) => errors.join("; "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::CustomHostPolicy;
    use crate::providers::Providers;
    use crate::settings::VirtualKeys;
    use serde_json::json;
    use std::time::Duration;

    fn with_store(capacity: usize, f: impl FnOnce(&ConfigStore, &PlanContext<'_>)) {
        let settings = Settings {
            config_cache_size: capacity,
            ..Settings::default()
        };
        let providers = Providers::from_settings(&settings).unwrap();
        let vks = VirtualKeys::new();
        let hosts = CustomHostPolicy::new(&[], &[]).unwrap();
        let guardrails = crate::guardrails::NamedGuardrails::default();
        let ctx = PlanContext {
            providers: &providers,
            virtual_keys: &vks,
            custom_hosts: &hosts,
            min_cooldown: Duration::from_secs(30),
            from_settings: false,
            guardrails: &guardrails,
            limits: &settings.limits.guardrails,
        };
        let store = ConfigStore::new(&settings, &ctx).unwrap();
        f(&store, &ctx);
    }

    fn config(rule: &str, n: usize) -> String {
        let checks: Vec<_> = (0..n)
            .map(|i| json!({"id": "default.regexMatch", "parameters": {"rule": format!("{rule}{i}")}}))
            .collect();
        json!({"provider": "openai", "api_key": "sk-x",
               "before_request_hooks": [{"checks": checks}]})
        .to_string()
    }

    #[test]
    fn a_config_weighs_its_text_and_its_compiled_patterns() {
        with_store(8, |store, ctx| {
            let light = config("word", 4);
            store.resolve(Some(&light), ctx).unwrap();
            let light_bytes = store.cached_bytes();
            let heavy = config(r"\w{10}", 4);
            store.resolve(Some(&heavy), ctx).unwrap();
            let heavy_bytes = store.cached_bytes() - light_bytes;
            assert!(light_bytes > light.len(), "{light_bytes}");
            // Text of the same length, but each pattern compiles to a large automaton.
            assert!(
                heavy_bytes > 10 * light_bytes,
                "{heavy_bytes} vs {light_bytes}"
            );
            assert!(heavy_bytes <= CACHE_BYTES);
        });
    }

    #[test]
    fn a_full_cache_drops_the_least_recently_used_config() {
        with_store(3, |store, ctx| {
            let [a, b, c, d] = ["a", "b", "c", "d"].map(|w| config(w, 1));
            for raw in [&a, &b, &c, &a, &d] {
                store.resolve(Some(raw), ctx).unwrap();
            }
            let cache = store.cache.lock().unwrap();
            assert_eq!(cache.plans.len(), 3, "one evicted, not all");
            assert!(cache.plans.contains(&a) && cache.plans.contains(&d));
            assert!(!cache.plans.contains(&b), "b was the least recently used");
            let weights: usize = cache.plans.iter().map(|(_, (_, w))| w).sum();
            assert_eq!(cache.bytes, weights);
        });
    }

    #[test]
    fn configs_over_a_cap_are_refused_naming_it() {
        with_store(8, |store, ctx| {
            let e = store.resolve(Some(&config("w", 33)), ctx).unwrap_err();
            let GatewayError::InvalidConfig(p) = e else {
                panic!("{e:?}")
            };
            assert!(
                p[0].contains("before_request_hooks,0")
                    && p[0].contains("limits.guardrails.checks_per_hook"),
                "{p:?}"
            );
            assert_eq!(store.cached(), 0);
        });
    }
}
