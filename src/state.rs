//! Everything a request needs that outlives it: validated settings, the provider table, virtual
//! keys, named and cached configs, connection pools, retry budget and circuit breakers. Built
//! and checked once at start-up; a request only reads it.

use crate::dispatch::CustomHostPolicy;
use crate::dispatch::Dispatcher;
use crate::portkey::config;
use crate::providers::Providers;
use crate::routing::breaker::{BreakerSpec, Breakers};
use crate::routing::budget::RetryBudget;
use crate::routing::configs::ConfigStore;
use crate::routing::plan::{self, PlanContext};
use crate::settings::{resolve_virtual_keys, Settings, SettingsError, VirtualKeys};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::pricing::Pricing;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

pub struct State {
    pub settings: Settings,
    pub providers: Providers,
    pub custom_hosts: CustomHostPolicy,
    pub virtual_keys: VirtualKeys,
    pub configs: ConfigStore,
    pub dispatcher: Arc<Dispatcher>,
    pub budget: Arc<RetryBudget>,
    pub breakers: Arc<Breakers>,
    /// The breaker applied to targets whose config sets none.
    pub default_breaker: Option<BreakerSpec>,
    pub metrics: Arc<Metrics>,
    /// The response cache (memory or Redis).
    pub cache: Arc<crate::cache::Cache>,
    pub pricing: Pricing,
    pub access_log: Arc<AccessLog>,
    pub feedback: Arc<crate::feedback::FeedbackIndex>,
    /// Where finished requests and feedback are kept (`log_store`), when set.
    pub log_store: Option<Arc<crate::log_store::LogStore>>,
    /// Named guardrails (`guardrails:` in the settings), compiled once.
    pub guardrails: crate::guardrails::NamedGuardrails,
    /// Request bytes buffered by all in-flight requests (`limits.max_buffered_bytes`).
    pub buffers: std::sync::Arc<crate::buffers::BufferBudget>,
    /// Guardrail checks that call out running at once (`limits.guardrails.concurrent_remote_checks`).
    pub remote_checks: Arc<tokio::sync::Semaphore>,
    /// This process's mark in `x-portgate-hop` (loop detection).
    pub instance_id: String,
    /// Rate limits and budgets, and their counters.
    pub limiter: Arc<crate::limits::Limiter>,
    /// SHA-256 digests of the accepted gateway keys.
    gateway_keys: Vec<[u8; 32]>,
}

/// The custom-host rules of the settings: their trusted hosts, and the gateway's own ports,
/// which no custom host may name (a request would loop back into the gateway). Shared with the
/// commands that send to a virtual key's host outside a running gateway.
pub(crate) fn custom_host_policy(settings: &Settings) -> Result<CustomHostPolicy, SettingsError> {
    let own_ports: Vec<u16> = [&settings.listen, &settings.admin_listen]
        .iter()
        .filter_map(|a| a.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
        .collect();
    CustomHostPolicy::new(&settings.custom_hosts.trusted, &own_ports)
        .map_err(|e| SettingsError::new("custom_hosts.trusted", e))
}

impl State {
    pub(crate) fn new(settings: Settings) -> Result<Self, SettingsError> {
        Self::with_env(settings, &|name| std::env::var(name).ok())
    }

    /// Like `new`, reading virtual-key variables through `env`.
    pub fn with_env(
        settings: Settings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        Self::build(settings, env, None)
    }

    /// The state of new settings, keeping what outlives a reload from this one: metrics,
    /// connection pools, circuit breakers and the retry budget, the access-log writer, the
    /// feedback index, the buffer budget, the response cache (unless its settings changed) and
    /// the limit counters (unless their backend changed). Settings that only a restart applies
    /// are named in the log when they differ.
    pub fn reloaded(
        &self,
        settings: Settings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        for field in self.settings.restart_only_changes(&settings) {
            tracing::warn!(target: "portgate::settings", field, "changed setting needs a restart: the running value stays");
        }
        Self::build(settings, env, Some(self))
    }

    fn build(
        settings: Settings,
        env: &dyn Fn(&str) -> Option<String>,
        kept: Option<&State>,
    ) -> Result<Self, SettingsError> {
        settings.validate()?;
        check_links(&settings)?;
        let providers = Providers::from_settings(&settings)?;
        let custom_hosts = custom_host_policy(&settings)?;
        let virtual_keys = resolve_virtual_keys(&settings, env)?;
        let min_cooldown = Duration::from_millis(settings.circuit_breaker.min_cooldown_ms);
        let default_breaker = match &settings.circuit_breaker.default {
            None => None,
            Some(v) => Some(
                config::parse_breaker(v, "circuit_breaker.default")
                    .map_err(|p| SettingsError::new("circuit_breaker.default", p.0.join("; ")))
                    .and_then(|cb| {
                        plan::breaker_spec(&cb, min_cooldown).map_err(|m| {
                            SettingsError::new("circuit_breaker.default.cooldown_interval", m)
                        })
                    })?,
            ),
        };
        let guardrails = crate::guardrails::compile_named(&settings.guardrails)
            .map_err(|(field, reason)| SettingsError::new(&field, reason))?;
        let configs = {
            let ctx = PlanContext {
                providers: &providers,
                virtual_keys: &virtual_keys,
                custom_hosts: &custom_hosts,
                min_cooldown,
                from_settings: true,
                guardrails: &guardrails,
                limits: &settings.limits.guardrails,
            };
            ConfigStore::new(&settings, &ctx)?
        };
        let gateway_keys = settings
            .gateway_keys
            .iter()
            .filter_map(|k| crate::settings::limits::key_digest(k))
            .collect();
        let metrics = match kept {
            Some(k) => k.metrics.clone(),
            None => Arc::new(
                Metrics::new(
                    &settings.metrics.metadata_labels,
                    settings.metrics.max_model_labels,
                )
                .map_err(|e| SettingsError::new("metrics", e))?,
            ),
        };
        let pricing = Pricing::from_settings(&settings.pricing)?;
        for line in pricing.summary.lines() {
            tracing::info!("{line}");
        }
        let cache = match kept.filter(|k| k.settings.cache == settings.cache) {
            Some(k) => k.cache.clone(),
            None => Arc::new(crate::cache::Cache::new(
                &settings.cache,
                metrics.cache.clone(),
                env,
            )?),
        };
        let access_log = match kept {
            Some(k) => k.access_log.clone(),
            None => Arc::new(AccessLog::new(
                &settings.log,
                metrics.access_log_dropped.clone(),
            )?),
        };
        let gauges = crate::limits::LimitGauges {
            used: metrics.limit_used.clone(),
            limit: metrics.limit_value.clone(),
            alerts: metrics.limit_alerts.clone(),
        };
        let limiter = Arc::new(crate::limits::Limiter::from_settings(
            &settings,
            env,
            gauges,
            kept.map(|k| &*k.limiter),
        )?);
        let feedback = kept.map_or_else(Default::default, |k| k.feedback.clone());
        // The store's settings need a restart: a reload keeps the running store.
        let log_store = match (kept, &settings.log_store) {
            (Some(k), _) => k.log_store.clone(),
            (None, Some(s)) => Some(Arc::new(crate::log_store::LogStore::start(
                s,
                env,
                &metrics,
                feedback.clone(),
            )?)),
            (None, None) => None,
        };
        Ok(State {
            log_store,
            limiter,
            cache,
            metrics,
            pricing,
            access_log,
            feedback,
            guardrails,
            dispatcher: kept.map_or_else(
                || Arc::new(Dispatcher::new(&settings.upstream)),
                |k| k.dispatcher.clone(),
            ),
            budget: kept.map_or_else(
                || Arc::new(RetryBudget::new(&settings.retry.budget)),
                |k| k.budget.clone(),
            ),
            breakers: kept.map_or_else(|| Arc::new(Breakers::new()), |k| k.breakers.clone()),
            providers,
            custom_hosts,
            virtual_keys,
            configs,
            default_breaker,
            gateway_keys,
            instance_id: kept.map_or_else(crate::portkey::hop::new_instance_id, |k| {
                k.instance_id.clone()
            }),
            buffers: kept.map_or_else(
                || crate::buffers::BufferBudget::new(settings.limits.max_buffered_bytes),
                |k| k.buffers.clone(),
            ),
            remote_checks: kept.map_or_else(
                || {
                    Arc::new(tokio::sync::Semaphore::new(
                        settings.limits.guardrails.concurrent_remote_checks,
                    ))
                },
                |k| k.remote_checks.clone(),
            ),
            settings,
        })
    }

    /// What resolving a target reads.
    pub(crate) fn resolver(&self) -> crate::routing::target::Resolver<'_> {
        crate::routing::target::Resolver {
            providers: &self.providers,
            virtual_keys: &self.virtual_keys,
            custom_hosts: &self.custom_hosts,
        }
    }

    /// What building a plan from an inline config checks references against.
    pub(crate) fn plan_context(&self) -> PlanContext<'_> {
        PlanContext {
            providers: &self.providers,
            virtual_keys: &self.virtual_keys,
            custom_hosts: &self.custom_hosts,
            min_cooldown: Duration::from_millis(self.settings.circuit_breaker.min_cooldown_ms),
            from_settings: false,
            guardrails: &self.guardrails,
            limits: &self.settings.limits.guardrails,
        }
    }

    /// Checks `x-portkey-api-key` when gateway keys are configured (off by default).
    pub(crate) fn gateway_key_ok(&self, presented: Option<&str>) -> bool {
        if self.gateway_keys.is_empty() {
            return true;
        }
        let Some(key) = presented else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Compare every stored digest without stopping early.
        self.gateway_keys.iter().fold(false, |found, d| {
            found
                | (d.iter()
                    .zip(digest.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0)
        })
    }
}

/// Every check of the settings, as `portgate --check` runs them: the settings' own
/// ([`Settings::validate`]), those that need the layers that read them (URLs, custom-host
/// entries, provider names), and the named guardrails compiled. Building the [`State`] runs the
/// same checks once, compiling the guardrails for use.
pub fn check_settings(settings: &Settings) -> Result<Vec<String>, SettingsError> {
    settings.validate()?;
    check_links(settings)?;
    crate::guardrails::compile_named(&settings.guardrails)
        .map_err(|(field, reason)| SettingsError::new(&field, reason))?;
    let pricing = Pricing::from_settings(&settings.pricing)?;
    Ok(pricing.summary.lines())
}

/// The checks of values that another layer parses.
fn check_links(settings: &Settings) -> Result<(), SettingsError> {
    for (i, host) in settings.custom_hosts.trusted.iter().enumerate() {
        CustomHostPolicy::check_entry(host)
            .map_err(|e| SettingsError::new(&format!("custom_hosts.trusted[{i}]"), e))?;
    }
    crate::dispatch::Upstream::parse(&settings.anthropic.base_url)
        .map_err(|e| SettingsError::new("anthropic.base_url", e))?;
    for (slug, row) in &settings.providers {
        crate::dispatch::Upstream::parse(&row.base_url)
            .map_err(|e| SettingsError::new(&format!("providers.{slug}.base_url"), e))?;
    }
    for (id, row) in &settings.virtual_keys {
        if !settings.providers.contains_key(&row.provider)
            && !crate::providers::is_built_in(&row.provider)
        {
            return Err(SettingsError::new(
                &format!("virtual_keys.{id}.provider"),
                format!("unknown provider {:?}", row.provider),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_keys_are_checked_by_digest() {
        let mut s = Settings::default();
        let digest: [u8; 32] = Sha256::digest(b"pg-secret").into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        s.gateway_keys = vec![format!("sha256:{hex}")];
        let state = State::new(s).unwrap();
        assert!(state.gateway_key_ok(Some("pg-secret")));
        assert!(!state.gateway_key_ok(Some("pg-secreT")));
        assert!(!state.gateway_key_ok(None));
        let open = State::new(Settings::default()).unwrap();
        assert!(open.gateway_key_ok(None));
    }

    #[test]
    fn virtual_keys_come_from_env_or_files_and_stay_redacted() {
        let dir = std::env::temp_dir().join(format!("pg-vk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("anthropic");
        std::fs::write(&file, "sk-from-file\n").unwrap();
        let yaml = format!(
            "virtual_keys:\n  a:\n    provider: openai\n    api_key_env: VK_A\n  b:\n    provider: groq\n    api_key_file: {}\n",
            file.display()
        );
        let s = Settings::from_yaml(&yaml).unwrap();
        let env = |n: &str| (n == "VK_A").then(|| "sk-from-env".to_string());
        let state = State::with_env(s.clone(), &env).unwrap();
        assert_eq!(
            state.virtual_keys["a"].api_key.as_ref().unwrap().expose(),
            "sk-from-env"
        );
        assert_eq!(
            state.virtual_keys["b"].api_key.as_ref().unwrap().expose(),
            "sk-from-file"
        );
        assert!(!format!("{:?}", state.virtual_keys).contains("sk-from"));
        let err = State::with_env(s, &|_| None).err().unwrap();
        assert_eq!(err.field, "virtual_keys.a.api_key_env");
    }

    #[test]
    fn named_configs_are_validated_at_start_up() {
        let s = Settings::from_yaml(
            "configs:\n  bad:\n    strategy: {mode: fallback}\n    targets: [{provider: nope, api_key: k}]\n",
        )
        .unwrap();
        let err = State::new(s).err().unwrap();
        assert_eq!(err.field, "configs.bad");
        assert!(err.reason.contains("path: targets,0,provider"), "{err}");
        let s = Settings::from_yaml("default_config: missing\n").unwrap();
        assert_eq!(State::new(s).err().unwrap().field, "default_config");
    }
}
