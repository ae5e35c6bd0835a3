//! Where a request's config comes from: inline JSON in `x-portkey-config`, a config id naming
//! one of the settings' `configs`, or the settings' `default_config`. Named configs are built at
//! start-up (a bad one stops the gateway); inline ones are built on first sight and kept in a
//! bounded cache keyed by the header string, so a config is not parsed per request.

use super::plan::{self, Plan, PlanContext, PlanError};
use crate::error::GatewayError;
use crate::portkey::config;
use crate::settings::{Settings, SettingsError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct ConfigStore {
    named: HashMap<String, Arc<Plan>>,
    default: Option<Arc<Plan>>,
    cache: Mutex<InlineCache>,
    capacity: usize,
}

/// Inline configs seen, by header string. Bounded in entries and in bytes of config text (a
/// plan's memory grows with its text: nodes are capped and inherited data is shared).
#[derive(Default)]
struct InlineCache {
    plans: HashMap<String, Arc<Plan>>,
    bytes: usize,
}

/// The most bytes of inline-config text kept parsed at once.
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Parses and builds one config document.
pub fn build(value: &serde_json::Value, ctx: &PlanContext<'_>) -> Result<Plan, GatewayError> {
    let node = config::parse(value).map_err(|p| GatewayError::InvalidConfig(p.0))?;
    plan::build(&node, ctx).map_err(|e| match e {
        PlanError::Invalid(p) => GatewayError::InvalidConfig(p.0),
        PlanError::UnknownVirtualKey(id) => GatewayError::UnknownVirtualKey(id),
    })
}

impl ConfigStore {
    pub fn new(settings: &Settings, ctx: &PlanContext<'_>) -> Result<Self, SettingsError> {
        let mut named = HashMap::new();
        for (id, value) in &settings.configs {
            let plan = build(value, ctx)
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
            cache: Mutex::new(InlineCache::default()),
            capacity: settings.config_cache_size,
        })
    }

    /// The plan for a request: from the header when present, else the default (if any).
    pub fn resolve(
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
            .and_then(|c| c.plans.get(raw).cloned())
        {
            return Ok(Some(plan));
        }
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| GatewayError::InvalidConfigJson(e.to_string()))?;
        let plan = Arc::new(build(&value, ctx)?);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.plans.len() >= self.capacity || cache.bytes + raw.len() > CACHE_BYTES {
                // Bounded: a flood of distinct configs costs re-parsing, never memory.
                cache.plans.clear();
                cache.bytes = 0;
            }
            cache.bytes += raw.len();
            cache.plans.insert(raw.to_string(), plan.clone());
        }
        Ok(Some(plan))
    }

    /// Whether requests without `x-portkey-config` get the settings' `default_config`.
    pub fn has_default(&self) -> bool {
        self.default.is_some()
    }

    /// How many inline configs are cached (for tests and the admin view).
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.plans.len()).unwrap_or(0)
    }
}

fn describe(e: &GatewayError) -> String {
    match e {
        GatewayError::InvalidConfig(errors) => errors.join("; "),
        other => other.to_string(),
    }
}
