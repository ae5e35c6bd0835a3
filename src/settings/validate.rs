//! Cross-field checks run once at load: a bad value stops start-up with the field and the reason.

use super::Settings;
use std::fmt;
use std::net::SocketAddr;

/// A settings problem: which field, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsError {
    pub field: String,
    pub reason: String,
}

impl SettingsError {
    pub(crate) fn new(field: &str, reason: impl fmt::Display) -> Self {
        SettingsError {
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid settings: {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for SettingsError {}

fn positive(field: &str, value: u64) -> Result<(), SettingsError> {
    if value == 0 {
        return Err(SettingsError::new(field, "must be greater than 0"));
    }
    Ok(())
}

/// Upper bounds checked at load. Values beyond them are mistakes (a unit mix-up, a stray digit)
/// and, left in, overflow the `Instant`/`Duration` arithmetic they feed (a cache expiry, a
/// deadline), which panics on a request path.
pub(crate) const MAX_TIMEOUT_MS: u64 = 3_600_000;
pub(crate) const MAX_CONNECT_TIMEOUT_MS: u64 = 600_000;
pub(crate) const MAX_DNS_TTL_SECONDS: u64 = 86_400;
pub(crate) const MAX_BACKOFF_BASE_MS: u64 = 60_000;
pub const MAX_COOLDOWN_MS: u64 = 86_400_000;
pub(crate) const MAX_SHUTDOWN_SECONDS: u64 = 3_600;

fn at_most(field: &str, value: u64, max: u64, unit: &str) -> Result<(), SettingsError> {
    if value > max {
        return Err(SettingsError::new(
            field,
            format!("{value} is more than the maximum of {max} {unit}")
                .trim_end()
                .to_string(),
        ));
    }
    Ok(())
}

fn socket_addr(field: &str, value: &str) -> Result<(), SettingsError> {
    value.parse::<SocketAddr>().map(|_| ()).map_err(|_| {
        SettingsError::new(
            field,
            format!("{value:?} is not an address like 127.0.0.1:8787"),
        )
    })
}

impl Settings {
    /// Checks every value the types alone cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        socket_addr("listen", &self.listen)?;
        socket_addr("admin_listen", &self.admin_listen)?;
        if let Some(store) = &self.log_store {
            store.validate()?;
        }
        if self.listen == self.admin_listen {
            return Err(SettingsError::new(
                "admin_listen",
                "must differ from listen (the admin port is exposed to Prometheus and probes)",
            ));
        }
        if self.threads > 256 {
            return Err(SettingsError::new(
                "threads",
                "must be between 1 and 256, or 0 to follow the CPU quota",
            ));
        }
        if self.limits.max_request_body_bytes < 1024 {
            return Err(SettingsError::new(
                "limits.max_request_body_bytes",
                "must be at least 1024",
            ));
        }
        if self.limits.max_buffered_bytes < self.limits.max_request_body_bytes {
            return Err(SettingsError::new(
                "limits.max_buffered_bytes",
                "must be at least limits.max_request_body_bytes (one request must fit)",
            ));
        }
        let g = &self.limits.guardrails;
        for (field, value) in [
            ("limits.guardrails.checks_per_hook", g.checks_per_hook),
            ("limits.guardrails.checks_per_config", g.checks_per_config),
            (
                "limits.guardrails.patterns_per_config",
                g.patterns_per_config,
            ),
            (
                "limits.guardrails.remote_checks_per_config",
                g.remote_checks_per_config,
            ),
            (
                "limits.guardrails.remote_checks_per_request",
                g.remote_checks_per_request,
            ),
            (
                "limits.guardrails.concurrent_remote_checks",
                g.concurrent_remote_checks,
            ),
        ] {
            positive(field, value as u64)?;
            at_most(field, value as u64, 100_000, "")?;
        }
        positive(
            "limits.guardrails.check_time_budget_ms",
            g.check_time_budget_ms,
        )?;
        at_most(
            "limits.guardrails.check_time_budget_ms",
            g.check_time_budget_ms,
            MAX_TIMEOUT_MS,
            "ms",
        )?;
        let up = &self.upstream;
        positive("upstream.connect_timeout_ms", up.connect_timeout_ms)?;
        positive("upstream.read_timeout_ms", up.read_timeout_ms)?;
        positive("upstream.write_timeout_ms", up.write_timeout_ms)?;
        positive("upstream.idle_timeout_ms", up.idle_timeout_ms)?;
        positive("upstream.dns_ttl_seconds", up.dns_ttl_seconds)?;
        at_most(
            "upstream.connect_timeout_ms",
            up.connect_timeout_ms,
            MAX_CONNECT_TIMEOUT_MS,
            "ms",
        )?;
        at_most(
            "upstream.read_timeout_ms",
            up.read_timeout_ms,
            MAX_TIMEOUT_MS,
            "ms",
        )?;
        at_most(
            "upstream.write_timeout_ms",
            up.write_timeout_ms,
            MAX_TIMEOUT_MS,
            "ms",
        )?;
        at_most(
            "upstream.idle_timeout_ms",
            up.idle_timeout_ms,
            MAX_TIMEOUT_MS,
            "ms",
        )?;
        at_most(
            "upstream.first_token_timeout_ms",
            up.first_token_timeout_ms,
            MAX_TIMEOUT_MS,
            "ms",
        )?;
        positive("upstream.request_deadline_ms", up.request_deadline_ms)?;
        positive(
            "upstream.client_write_timeout_ms",
            up.client_write_timeout_ms,
        )?;
        positive("upstream.dns_timeout_ms", up.dns_timeout_ms)?;
        for (field, value) in [
            ("upstream.request_deadline_ms", up.request_deadline_ms),
            (
                "upstream.client_write_timeout_ms",
                up.client_write_timeout_ms,
            ),
            ("upstream.dns_timeout_ms", up.dns_timeout_ms),
        ] {
            at_most(field, value, MAX_TIMEOUT_MS, "ms")?;
        }
        at_most(
            "upstream.dns_ttl_seconds",
            up.dns_ttl_seconds,
            MAX_DNS_TTL_SECONDS,
            "seconds",
        )?;
        at_most(
            "grace_period_seconds",
            self.grace_period_seconds,
            MAX_SHUTDOWN_SECONDS,
            "seconds",
        )?;
        at_most(
            "graceful_shutdown_timeout_seconds",
            self.graceful_shutdown_timeout_seconds,
            MAX_SHUTDOWN_SECONDS,
            "seconds",
        )?;
        at_most(
            "circuit_breaker.min_cooldown_ms",
            self.circuit_breaker.min_cooldown_ms,
            MAX_COOLDOWN_MS,
            "ms",
        )?;
        if up.pool_size == 0 {
            return Err(SettingsError::new(
                "upstream.pool_size",
                "must be greater than 0",
            ));
        }
        self.cache
            .validate(&|vk| self.virtual_keys.contains_key(vk))?;
        if self.anthropic.default_max_tokens == 0 {
            return Err(SettingsError::new(
                "anthropic.default_max_tokens",
                "must be greater than 0",
            ));
        }
        for (slug, row) in &self.providers {
            let field = format!("providers.{slug}");
            if slug.is_empty()
                || !slug
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err(SettingsError::new(
                    &field,
                    "a provider slug uses lowercase letters, digits, '-' and '_'",
                ));
            }
            if http::HeaderName::from_bytes(row.auth_header.as_bytes()).is_err() {
                return Err(SettingsError::new(
                    &format!("{field}.auth_header"),
                    "is not a valid header name",
                ));
            }
        }
        if self.config_cache_size == 0 {
            return Err(SettingsError::new(
                "config_cache_size",
                "must be greater than 0",
            ));
        }
        positive("retry.backoff_base_ms", self.retry.backoff_base_ms)?;
        at_most(
            "retry.backoff_base_ms",
            self.retry.backoff_base_ms,
            MAX_BACKOFF_BASE_MS,
            "ms",
        )?;
        let b = &self.retry.budget;
        if !(b.ratio.is_finite() && b.ratio >= 0.0) {
            return Err(SettingsError::new(
                "retry.budget.ratio",
                "must be a number ≥ 0",
            ));
        }
        if !(b.min_retries_per_second.is_finite() && b.min_retries_per_second >= 0.0) {
            return Err(SettingsError::new(
                "retry.budget.min_retries_per_second",
                "must be a number ≥ 0",
            ));
        }
        if b.window_seconds == 0 || b.window_seconds > 3600 {
            return Err(SettingsError::new(
                "retry.budget.window_seconds",
                "must be between 1 and 3600",
            ));
        }
        for (i, key) in self.gateway_keys.iter().enumerate() {
            if super::limits::key_digest(key).is_none() {
                return Err(SettingsError::new(
                    &format!("gateway_keys[{i}]"),
                    "must be \"sha256:<64 hex digits>\" (the digest, never the key)",
                ));
            }
        }
        for (id, row) in &self.virtual_keys {
            super::secrets::no_inline_credentials(&format!("virtual_keys.{id}"), &row.options)?;
            let field = format!("virtual_keys.{id}");
            super::limits::check(&field, &row.rate_limits, &row.usage_limits)
                .map_err(|(f, why)| SettingsError::new(&f, why))?;
        }
        self.validate_limits()?;
        for (i, key) in self.metrics.metadata_labels.iter().enumerate() {
            let ok = !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !key.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                return Err(SettingsError::new(
                    &format!("metrics.metadata_labels[{i}]"),
                    "label keys use letters, digits and _ (not first)",
                ));
            }
        }
        if self.log.access_log.trim().is_empty() {
            return Err(SettingsError::new(
                "log.access_log",
                "stdout, off, or a file path",
            ));
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return Err(SettingsError::new(
                "log.format",
                "must be \"text\" or \"json\"",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(SettingsError::new(
                "log.level",
                format!("{:?} is not a level or filter directive", self.log.level),
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// Limits: their lists, where counters live, and which keys and policies they name.
    fn validate_limits(&self) -> Result<(), SettingsError> {
        let l = &self.limits;
        let err = |f: &str, why: &str| Err(SettingsError::new(f, why));
        if l.backend == super::limits::LimitsBackend::Redis
            && l.redis.url.is_none()
            && l.redis.url_env.is_none()
        {
            return err(
                "limits.redis.url",
                "the redis backend needs redis.url or redis.url_env",
            );
        }
        if l.redis.lookup_timeout_ms == 0 || l.redis.store_timeout_ms == 0 {
            return err(
                "limits.redis",
                "lookup_timeout_ms and store_timeout_ms must be positive",
            );
        }
        for (i, p) in l.policies.iter().enumerate() {
            let field = format!("limits.policies[{i}]");
            if p.matches.metadata.is_empty() {
                return err(&format!("{field}.match.metadata"), "names a metadata key");
            }
            super::limits::check(&field, &p.rate_limits, &p.usage_limits)
                .map_err(|(f, why)| SettingsError::new(&f, why))?;
        }
        for (i, g) in l.gateway_keys.iter().enumerate() {
            let field = format!("limits.gateway_keys[{i}]");
            if g.digest_bytes().is_none() {
                return err(
                    &format!("{field}.digest"),
                    "must be \"sha256:<64 hex digits>\" (the digest, never the key)",
                );
            }
            if !self.gateway_keys.contains(&g.digest) {
                return err(&format!("{field}.digest"), "is not one of gateway_keys");
            }
            super::limits::check(&field, &g.rate_limits, &g.usage_limits)
                .map_err(|(f, why)| SettingsError::new(&f, why))?;
        }
        Ok(())
    }
}
