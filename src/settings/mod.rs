//! Gateway settings: what an operator sets in `portgate.yaml`, the environment or on the command
//! line. Typed, validated at load, and immutable afterwards; the proxy only ever sees a
//! validated [`Settings`].
//!
//! Precedence (lowest to highest): built-in defaults, the YAML file, `PORTGATE_*` environment
//! variables, command-line flags.

pub mod cache;
pub mod cpu;
mod env;
pub mod limits;
pub mod log_store;
mod report;
mod secrets;
mod validate;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) use env::apply_env;
pub use secrets::{resolve_virtual_keys, Secret, VirtualKey, VirtualKeyRow, VirtualKeys};
pub use validate::{SettingsError, MAX_COOLDOWN_MS};

/// `Debug` is implemented by hand in `report.rs` and prints no key material.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address of the proxy listener the application talks to.
    pub listen: String,
    /// Address of the admin listener (`/healthz`, `/readyz`, `/metrics`, `/circuits`).
    pub admin_listen: String,
    /// Whether `/circuits` answers peers other than loopback (it names the upstreams and
    /// models the pod uses and how they fail).
    pub admin_circuits_remote: bool,
    /// Worker threads of the proxy service; 0 (the default) follows the CPU the process may
    /// use: the cgroup CPU quota, else the available cores, at least 1 (`cpu::available`).
    pub threads: usize,
    /// Longest a graceful shutdown (SIGTERM) waits for in-flight requests, streams included;
    /// portgate exits as soon as none is left (see `shutdown.rs`). Minutes by default: an
    /// agent's session streams for that long, and a rollout should not cut it.
    pub grace_period_seconds: u64,
    /// Seconds allowed for the runtimes to stop after a graceful upgrade (SIGQUIT).
    pub graceful_shutdown_timeout_seconds: u64,
    pub limits: Limits,
    pub upstream: UpstreamSettings,
    pub custom_hosts: CustomHostSettings,
    /// Extra OpenAI-compatible providers, or overrides of the built-in rows, keyed by slug.
    pub providers: BTreeMap<String, ProviderRow>,
    /// Virtual keys by id: provider plus where its key lives (env var or file).
    pub virtual_keys: BTreeMap<String, VirtualKeyRow>,
    /// Named Portkey configs, selected with `x-portkey-config: <id>`.
    pub configs: BTreeMap<String, serde_json::Value>,
    /// Named guardrails by id: a hook (`checks`, `deny`, `on_fail`, ... or the shorthand's
    /// check keys) that configs reference as `{"id": "<id>"}` or by id in `input_guardrails`.
    pub guardrails: BTreeMap<String, serde_json::Value>,
    /// Id of the config used when a request names none.
    pub default_config: Option<String>,
    /// SHA-256 digests (`sha256:<hex>`) of accepted `x-portkey-api-key` values. Empty: no check.
    pub gateway_keys: Vec<String>,
    /// How many distinct inline configs are kept parsed.
    pub config_cache_size: usize,
    pub retry: RetrySettings,
    pub circuit_breaker: BreakerSettings,
    pub metrics: MetricsSettings,
    pub pricing: PricingSettings,
    pub log: LogSettings,
    pub anthropic: AnthropicSettings,
    /// Response caching (`settings/cache.rs`: backend, bounds, `max_age` limits, Redis, semantic).
    pub cache: cache::CacheSettings,
    /// The log store of requests and feedback (`settings/log_store.rs`); absent: none.
    pub log_store: Option<log_store::LogStoreSettings>,
}

/// The Anthropic adapter (`anthropic`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnthropicSettings {
    /// Base URL of the Messages API (`/messages` is appended).
    pub base_url: String,
    /// `max_tokens` sent when an OpenAI-format request gives neither `max_tokens` nor
    /// `max_completion_tokens` (Anthropic refuses a request without it).
    pub default_max_tokens: u64,
}

impl Default for AnthropicSettings {
    fn default() -> Self {
        AnthropicSettings {
            base_url: "https://api.anthropic.com/v1".into(),
            default_max_tokens: 4096,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// `x-portkey-metadata` keys that become labels (`metadata_<key>`) of
    /// `portgate_requests_total`. Keep them low-cardinality (a plan, an environment).
    pub metadata_labels: Vec<String>,
    /// Distinct unpriced model names used as labels before further ones become `other`.
    pub max_model_labels: usize,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            metadata_labels: Vec::new(),
            max_model_labels: 50,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PricingSettings {
    /// A directory of price files in the catalog's format (`{provider}.json`, or a checkout
    /// of the catalog with its `pricing/` folder) replacing the built-in snapshot.
    pub catalog_dir: Option<String>,
    /// A price table in portgate's own YAML form (`conf/examples/pricing.yaml`) replacing the
    /// built-in snapshot; with `catalog_dir` too, its prices come first.
    pub file: Option<String>,
    /// Prices added to (or replacing rows of) the table: provider → model → price.
    pub overrides: BTreeMap<String, BTreeMap<String, Price>>,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Prompt tokens written to the provider's cache (defaults to `input`).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// Reasoning tokens, when priced apart from output (they count as output otherwise).
    #[serde(default)]
    pub reasoning: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// First backoff wait; later waits double (1 s, 2 s, 4 s ...), ±20 % jitter.
    pub backoff_base_ms: u64,
    pub budget: RetryBudgetSettings,
}

/// Extra sends to a target allowed in the window: `ratio × first sends + min_retries_per_second
/// × window_seconds`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetSettings {
    pub enabled: bool,
    pub ratio: f64,
    pub min_retries_per_second: f64,
    pub window_seconds: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Smallest `cooldown_interval` a config may set (Portkey: 30 s).
    pub min_cooldown_ms: u64,
    /// A `cb_config` applied to targets whose config sets none (`null`: no breaker).
    pub default: Option<serde_json::Value>,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            backoff_base_ms: 1000,
            budget: RetryBudgetSettings::default(),
        }
    }
}

impl Default for RetryBudgetSettings {
    fn default() -> Self {
        RetryBudgetSettings {
            enabled: true,
            ratio: 0.2,
            min_retries_per_second: 1.0,
            window_seconds: 10,
        }
    }
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            min_cooldown_ms: 30_000,
            default: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted on the LLM routes, which are buffered to route, rewrite
    /// and retry them. Larger bodies get 413. Passthrough routes stream and are not capped.
    pub max_request_body_bytes: usize,
    /// Bytes of request bodies all in-flight LLM requests may hold buffered at once; a request
    /// that would pass it is answered 503 with `retry-after` instead of growing the process.
    pub max_buffered_bytes: usize,
    /// Bounds on the guardrail checks a config may carry and run.
    pub guardrails: GuardrailLimits,
    /// Where rate-limit and budget counters live: this process, or a Redis every replica shares.
    pub backend: limits::LimitsBackend,
    /// The Redis of `backend: redis` (the same options as `cache.redis`).
    pub redis: cache::RedisSettings,
    /// What a request meets when the counters cannot be read within the Redis lookup bound.
    pub on_backend_error: limits::OnBackendError,
    /// Limits per distinct value of a metadata key (a user, a team).
    pub policies: Vec<limits::Policy>,
    /// Limits on gateway keys (`x-portkey-api-key`), by the digest `gateway_keys` lists.
    pub gateway_keys: Vec<limits::GatewayKeyLimits>,
}

/// What one config's guardrails may cost. Configs come from requests, so every dimension that
/// grows with the config's text is capped; a config over a cap is a 400 naming it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GuardrailLimits {
    /// Checks in one hook.
    pub checks_per_hook: usize,
    /// Checks in one config, every hook of every target counted.
    pub checks_per_config: usize,
    /// Regular expressions in one config: guardrail patterns and conditional routing's `$regex`.
    pub patterns_per_config: usize,
    /// Checks that call out (webhook, log, validUrls) in one config.
    pub remote_checks_per_config: usize,
    /// Checks that call out run for one request, across every target a fallback or retry
    /// tries; further ones end with an error (which passes unless `failOnError`).
    pub remote_checks_per_request: usize,
    /// Checks that call out running at once in the process; more wait within their timeout.
    pub concurrent_remote_checks: usize,
    /// Time the checks of one list of hooks that run on the gateway's CPU (patterns, counts,
    /// schemas, PII) may take; checks not yet started when it is spent end with an error.
    pub check_time_budget_ms: u64,
}

impl Default for GuardrailLimits {
    fn default() -> Self {
        GuardrailLimits {
            checks_per_hook: 32,
            checks_per_config: 128,
            patterns_per_config: 32,
            remote_checks_per_config: 16,
            remote_checks_per_request: 32,
            concurrent_remote_checks: 64,
            check_time_budget_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSettings {
    /// TCP + TLS connect timeout.
    pub connect_timeout_ms: u64,
    /// Longest silence between two reads from the upstream (the response header or any body
    /// chunk). Exceeding it answers 504, or ends a started stream with an error event.
    pub read_timeout_ms: u64,
    /// Longest time one write to the upstream may take.
    pub write_timeout_ms: u64,
    /// How long an idle pooled upstream connection is kept.
    pub idle_timeout_ms: u64,
    /// Pooled idle connections kept per upstream address.
    pub pool_size: usize,
    /// How long a resolved upstream address is reused before resolving again.
    pub dns_ttl_seconds: u64,
    /// For streams: longest wait for the first body chunk after the response header; exceeded
    /// counts as a timeout (408) that retries and fallbacks act on. 0 = off.
    pub first_token_timeout_ms: u64,
    /// Deadline of a whole request across every attempt, retry, backoff and fallback, until
    /// the answer that is relayed is chosen. Exceeded: 504, and no further upstream send.
    pub request_deadline_ms: u64,
    /// Longest time one write to the client may block (a client that stopped reading a stream
    /// is cut off instead of holding the upstream connection and its buffers).
    pub client_write_timeout_ms: u64,
    /// Longest wait for one DNS lookup; a failed lookup is remembered for a few seconds so a
    /// broken resolver is not asked again by every request.
    pub dns_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CustomHostSettings {
    /// Hosts that `x-portkey-custom-host` may name although they are private or loopback
    /// addresses (in-pod or in-cluster model servers such as vLLM or Ollama). Exact host names
    /// or IP addresses, compared case-insensitively.
    pub trusted: Vec<String>,
}

/// One row of the provider table: an OpenAI-compatible API reachable at `base_url`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderRow {
    /// Base URL the OpenAI paths are appended to, e.g. `https://api.groq.com/openai/v1`.
    pub base_url: String,
    /// Header carrying the key: `authorization` (sent as `Bearer <key>`) or another header
    /// name that carries the bare key (e.g. `api-key`).
    #[serde(default = "default_auth_header")]
    pub auth_header: String,
    /// Whether the API accepts `stream_options.include_usage` (the gateway asks streams for
    /// usage to count tokens exactly). Turn off for servers that reject the field.
    #[serde(default = "default_true")]
    pub stream_usage: bool,
}

fn default_true() -> bool {
    true
}

fn default_auth_header() -> String {
    "authorization".to_string()
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a full `tracing` filter directive.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
    /// Where the access log (one JSON line per request and per feedback) goes: `stdout`, `off`,
    /// or a file path (appended to).
    pub access_log: String,
    /// Adds request and response bodies (JSON, keys redacted) to access-log lines, e.g. to build
    /// fine-tuning data. Off by default.
    pub log_bodies: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8787".into(),
            admin_listen: "127.0.0.1:8788".into(),
            admin_circuits_remote: false,
            threads: 0,
            grace_period_seconds: 300,
            graceful_shutdown_timeout_seconds: 5,
            limits: Limits::default(),
            upstream: UpstreamSettings::default(),
            custom_hosts: CustomHostSettings::default(),
            providers: BTreeMap::new(),
            virtual_keys: BTreeMap::new(),
            configs: BTreeMap::new(),
            guardrails: BTreeMap::new(),
            default_config: None,
            gateway_keys: Vec::new(),
            config_cache_size: 256,
            retry: RetrySettings::default(),
            circuit_breaker: BreakerSettings::default(),
            metrics: MetricsSettings::default(),
            pricing: PricingSettings::default(),
            log: LogSettings::default(),
            anthropic: AnthropicSettings::default(),
            cache: cache::CacheSettings::default(),
            log_store: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body_bytes: 8 * 1024 * 1024,
            max_buffered_bytes: 48 * 1024 * 1024,
            guardrails: GuardrailLimits::default(),
            backend: limits::LimitsBackend::Memory,
            redis: limits::default_redis(),
            on_backend_error: limits::OnBackendError::Allow,
            policies: Vec::new(),
            gateway_keys: Vec::new(),
        }
    }
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout_ms: 10_000,
            read_timeout_ms: 300_000,
            write_timeout_ms: 60_000,
            idle_timeout_ms: 90_000,
            pool_size: 128,
            dns_ttl_seconds: 60,
            first_token_timeout_ms: 0,
            request_deadline_ms: 600_000,
            client_write_timeout_ms: 60_000,
            dns_timeout_ms: 5_000,
        }
    }
}

impl Default for CustomHostSettings {
    fn default() -> Self {
        CustomHostSettings {
            trusted: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: "text".into(),
            access_log: "stdout".into(),
            log_bodies: false,
        }
    }
}

impl Settings {
    /// Parses YAML settings; unknown keys are errors naming their path.
    pub(crate) fn from_yaml(text: &str) -> Result<Settings, SettingsError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let reason = without_quoted_values(&e.into_inner().to_string());
            SettingsError::new(if path == "." { "settings" } else { &path }, reason)
        })
    }

    /// Loads a settings file (defaults for everything it leaves out).
    pub(crate) fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SettingsError::new("--config", format!("{}: {e}", path.display())))?;
        Self::from_yaml(&text)
    }

    /// The full load sequence: file (or defaults), environment, then validation.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let mut settings = match path {
            Some(p) => Self::from_file(p)?,
            None => Settings::default(),
        };
        apply_env(&mut settings, env)?;
        settings.validate()?;
        Ok(settings)
    }
}

/// Drops the values serde quotes in its messages (`invalid type: string "sk-…", expected a
/// sequence`): a key pasted into the wrong field must not be echoed to the terminal or a CI
/// log. The field path and the expected type still say what is wrong.
fn without_quoted_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in msg.chars() {
        if quoted {
            if c == '"' && !escaped {
                quoted = false;
            }
            escaped = c == '\\' && !escaped;
        } else if c == '"' {
            quoted = true;
            out.push_str("(value not shown)");
        } else {
            out.push(c);
        }
    }
    out
}

impl Settings {
    /// The settings a running gateway cannot change (listeners, threads, pools, metric labels,
    /// logging, the retry budget, process-wide bounds) that differ in `new`: a reload keeps
    /// their running values.
    pub fn restart_only_changes(&self, new: &Settings) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut differs = |field, changed: bool| {
            if changed {
                out.push(field);
            }
        };
        differs("listen", self.listen != new.listen);
        differs("admin_listen", self.admin_listen != new.admin_listen);
        differs("threads", self.threads != new.threads);
        differs(
            "grace_period_seconds",
            self.grace_period_seconds != new.grace_period_seconds,
        );
        differs("upstream", self.upstream != new.upstream);
        differs("metrics", self.metrics != new.metrics);
        differs("log", self.log != new.log);
        differs("log_store", self.log_store != new.log_store);
        differs("retry.budget", self.retry.budget != new.retry.budget);
        differs(
            "limits.max_buffered_bytes",
            self.limits.max_buffered_bytes != new.limits.max_buffered_bytes,
        );
        differs(
            "limits.guardrails.concurrent_remote_checks",
            self.limits.guardrails.concurrent_remote_checks
                != new.limits.guardrails.concurrent_remote_checks,
        );
        out
    }
}

#[cfg(test)]
mod tests;
