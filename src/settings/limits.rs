//! Rate limits and budgets: the lists a virtual key, a gateway key or a metadata policy carry
//! (the shape of Portkey's `rate_limits` and `usage_limits`), and where their counters live.

use super::cache::RedisSettings;
use serde::{Deserialize, Serialize};

/// What a rate limit counts.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RateKind {
    /// One per request, at admission.
    Requests,
    /// The request's input and output tokens, after its answer.
    Tokens,
}

/// A fixed window, aligned to the clock (a minute window starts on the minute, UTC).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RateUnit {
    Rps,
    Rpm,
    Rph,
    Rpd,
}

impl RateUnit {
    pub fn window_ms(self) -> u64 {
        match self {
            RateUnit::Rps => 1_000,
            RateUnit::Rpm => 60_000,
            RateUnit::Rph => 3_600_000,
            RateUnit::Rpd => 86_400_000,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RateUnit::Rps => "rps",
            RateUnit::Rpm => "rpm",
            RateUnit::Rph => "rph",
            RateUnit::Rpd => "rpd",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(rename = "type")]
    pub kind: RateKind,
    pub unit: RateUnit,
    pub value: u64,
}

/// What a budget spends.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum UsageKind {
    /// US dollars, from the price catalog.
    Cost,
    /// Input and output tokens.
    Tokens,
}

/// When a budget starts again (UTC calendar: midnight, Monday, the first of the month).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
}

impl Period {
    pub fn name(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsageLimit {
    #[serde(rename = "type")]
    pub kind: UsageKind,
    /// Dollars (`cost`) or tokens.
    pub credit_limit: f64,
    /// Absent: the budget lasts until reset by hand (`POST /limits/reset`).
    #[serde(default)]
    pub periodic_reset: Option<Period>,
    /// Dollars or tokens used at which an alert is logged (once per period) and counted.
    #[serde(default)]
    pub alert_threshold: Option<f64>,
}

/// Where counters live.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LimitsBackend {
    /// In this process: exact for one replica.
    #[default]
    Memory,
    /// In Redis, shared by every replica.
    Redis,
}

/// What a request meets when the counters cannot be read in time.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    /// Served, unlimited (counted and logged).
    #[default]
    Allow,
    /// Refused with 503.
    Deny,
}

/// Which requests a policy counts, and by what: one counter per distinct value.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyMatch {
    /// A key of `x-portkey-metadata` (e.g. `_user`); requests without it are not counted.
    pub metadata: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy's name in messages, `/limits` and metrics (default: `policy-<n>`).
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "match")]
    pub matches: PolicyMatch,
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
    #[serde(default)]
    pub usage_limits: Vec<UsageLimit>,
}

/// A gateway key's digest as written in the settings, `sha256:<64 hex digits>`, as bytes.
pub fn key_digest(written: &str) -> Option<[u8; 32]> {
    let hex = written.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Limits on a gateway key (one of `gateway_keys`, by the same digest).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewayKeyLimits {
    /// `sha256:<hex>` of the key, as in `gateway_keys`.
    pub digest: String,
    /// The key's name in messages, `/limits` and metrics (default: the digest's first 8 hex).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
    #[serde(default)]
    pub usage_limits: Vec<UsageLimit>,
}

impl GatewayKeyLimits {
    /// The digest's bytes (`None` when it is not `sha256:` and 64 hex digits).
    pub fn digest_bytes(&self) -> Option<[u8; 32]> {
        key_digest(&self.digest)
    }

    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.digest.chars().skip(7).take(8).collect())
    }
}

/// Checks the lists of one scope; `field` names it in errors.
pub(crate) fn check(
    field: &str,
    rates: &[RateLimit],
    usage: &[UsageLimit],
) -> Result<(), (String, String)> {
    for (i, r) in rates.iter().enumerate() {
        if r.value == 0 {
            return Err((
                format!("{field}.rate_limits[{i}].value"),
                "must be at least 1".into(),
            ));
        }
    }
    for (i, u) in usage.iter().enumerate() {
        let at = |k: &str| format!("{field}.usage_limits[{i}].{k}");
        if !(u.credit_limit.is_finite() && u.credit_limit > 0.0) {
            return Err((at("credit_limit"), "must be a number above 0".into()));
        }
        if let Some(a) = u.alert_threshold {
            if !(a.is_finite() && a > 0.0 && a <= u.credit_limit) {
                return Err((
                    at("alert_threshold"),
                    "must be above 0 and at most credit_limit".into(),
                ));
            }
        }
    }
    Ok(())
}

/// The Redis of `limits.backend: redis`: `cache.redis`'s options, its own key prefix.
pub fn default_redis() -> RedisSettings {
    RedisSettings {
        key_prefix: "portgate:limits:".into(),
        ..RedisSettings::default()
    }
}
