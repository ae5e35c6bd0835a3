//! Rate limits and budgets on virtual keys, gateway keys and metadata policies, counted in this
//! process or in a Redis every replica shares (`limits.backend`).
//!
//! A request passes every limit that applies to it — its virtual key's (per target, as each
//! target is tried), its gateway key's and each matching policy's (once per request) — or is
//! refused by the first it exceeds, before anything is sent:
//!
//! - a request limit counts the request at admission; it is refused when the window's count
//!   passes the limit (so replicas admit exactly the limit per window between them);
//! - a token limit refuses a request once the window's tokens are used up, and counts the
//!   answer's input and output tokens after it;
//! - a budget refuses a request once it is spent, and is charged the answer's cost (or tokens)
//!   after it: the request that crosses it completes (a soft cap), the next is refused.
//!
//! Answers from the cache and requests refused before a provider was called are not charged.
//! Counting after the answer happens off the client's path. When the counters cannot be read
//! within the Redis lookup bound, `limits.on_backend_error` decides: served (`allow`) or 503.

mod gauge;
mod refusal;
mod store;
mod view;
pub(crate) mod window;

pub(crate) use gauge::LimitGauges;
use gauge::{gauge, Gauge};

use crate::error::{Exceeded, GatewayError};
use crate::settings::limits::{
    LimitsBackend, OnBackendError, Period, RateKind, RateLimit, RateUnit, UsageKind, UsageLimit,
};
use crate::settings::{Settings, SettingsError};
use crate::store::redis::Link;
use crate::types::money::Picos;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Whose limit it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ScopeKind {
    VirtualKey,
    GatewayKey,
    Policy,
}

impl ScopeKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            ScopeKind::VirtualKey => "virtual_key",
            ScopeKind::GatewayKey => "gateway_key",
            ScopeKind::Policy => "policy",
        }
    }
}

/// One limit of a scope, as counted: requests, tokens or nanodollars.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rule {
    Rate {
        kind: RateKind,
        unit: RateUnit,
        limit: u64,
    },
    Budget {
        kind: UsageKind,
        period: Option<Period>,
        limit: u64,
        alert: Option<u64>,
    },
}

/// Nanodollars in a dollar: budgets are counted in whole nanodollars (a Redis integer holds
/// nine billion dollars of them; a Lua number reads them exactly up to nine million).
const NANOS_PER_USD: f64 = 1e9;

impl Rule {
    fn rate(r: &RateLimit) -> Rule {
        Rule::Rate {
            kind: r.kind,
            unit: r.unit,
            limit: r.value,
        }
    }

    fn budget(u: &UsageLimit) -> Rule {
        let scale = match u.kind {
            UsageKind::Cost => NANOS_PER_USD,
            UsageKind::Tokens => 1.0,
        };
        let amount = |v: f64| (v * scale).round().max(0.0) as u64;
        Rule::Budget {
            kind: u.kind,
            period: u.periodic_reset,
            limit: amount(u.credit_limit),
            alert: u.alert_threshold.map(amount),
        }
    }

    /// The counter's key below the scope's, and when it ends (Unix ms).
    fn counter(&self, now_ms: u64) -> (String, Option<u64>) {
        match *self {
            Rule::Rate { kind, unit, .. } => {
                let (start, end) = window::window(unit, now_ms);
                (
                    format!("{}:{}:{start}", kind_name(kind), unit.name()),
                    // Kept one window past its end: `GET /limits` may still read it.
                    Some(end + unit.window_ms()),
                )
            }
            Rule::Budget { kind, period, .. } => {
                let (name, end) = window::period(period, now_ms);
                let kind = match kind {
                    UsageKind::Cost => "cost",
                    UsageKind::Tokens => "budget-tokens",
                };
                // A period's counter is kept a day past its end.
                (format!("{kind}:{name}"), end.map(|e| e + 86_400_000))
            }
        }
    }
}

fn kind_name(kind: RateKind) -> &'static str {
    match kind {
        RateKind::Requests => "requests",
        RateKind::Tokens => "tokens",
    }
}

/// A scope's name and rules.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub kind: ScopeKind,
    /// The virtual key's id, the gateway key's name, the policy's id.
    pub name: Arc<str>,
    /// A policy's metadata value.
    pub value: Option<String>,
    pub rules: Arc<[Rule]>,
    /// Each rule's gauge (virtual and gateway keys; a policy's values are unbounded: none).
    pub gauges: Arc<[Option<Gauge>]>,
}

impl Scope {
    /// The prefix of the scope's counters.
    pub(crate) fn key(&self) -> String {
        let kind = match self.kind {
            ScopeKind::VirtualKey => "vk",
            ScopeKind::GatewayKey => "gk",
            ScopeKind::Policy => "policy",
        };
        match &self.value {
            Some(v) => format!("{kind}:{}:{v}:", self.name),
            None => format!("{kind}:{}:", self.name),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// A rate limit: 429, to try again in `retry_after` seconds.
    Rate { scope: Scope, retry_after: u64 },
    /// A spent budget: 412.
    Budget { scope: Scope },
    /// The counters could not be read and `on_backend_error` is `deny`: 503.
    Unavailable,
}

/// What an admitted request is charged after its answer.
#[derive(Debug, Default, Clone)]
pub(crate) struct Charges {
    items: Vec<Charge>,
    /// When the request was admitted (Unix ms): its usage counts in the windows and periods
    /// of that moment, whose counters' keys it holds.
    at_ms: u64,
}

#[derive(Debug, Clone)]
struct Charge {
    key: String,
    what: Counted,
    expires_at: Option<u64>,
    /// A budget's alert: (threshold, the scope's name for the log).
    alert: Option<(u64, String)>,
    /// The gauge of a virtual key's or gateway key's limit.
    gauge: Option<Gauge>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    Tokens,
    Nanodollars,
}

impl Charges {
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds another scope's charges (a target's virtual key to the request's).
    pub(crate) fn add(&mut self, other: Charges) {
        self.items.extend(other.items);
        self.at_ms = self.at_ms.max(other.at_ms);
    }
}

enum Backend {
    Memory(store::Memory),
    Redis(store::Redis),
}

/// The limits of every scope, and their counters.
pub struct Limiter {
    /// Shared with the limiter of reloaded settings (on the same backend): counters survive.
    backend: Arc<Backend>,
    /// What the backend was built from, to tell whether a reload may keep it.
    backend_settings: (LimitsBackend, crate::settings::cache::RedisSettings),
    on_error: OnBackendError,
    virtual_keys: HashMap<String, Scope>,
    /// By SHA-256 digest of the key.
    gateway_keys: HashMap<[u8; 32], Scope>,
    /// (metadata key, scope without its value).
    policies: Vec<(String, Scope)>,
    /// Alerts already logged: counter key → threshold crossed (one line per period).
    alerted: Mutex<HashMap<String, u64>>,
    gauges: LimitGauges,
}

impl Limiter {
    pub(crate) fn from_settings(
        s: &Settings,
        env: &dyn Fn(&str) -> Option<String>,
        gauges: LimitGauges,
        previous: Option<&Limiter>,
    ) -> Result<Limiter, SettingsError> {
        let rules = |rates: &[RateLimit], usage: &[UsageLimit]| -> Arc<[Rule]> {
            rates
                .iter()
                .map(Rule::rate)
                .chain(usage.iter().map(Rule::budget))
                .collect()
        };
        let scope = |kind, name: &str, rules: Arc<[Rule]>| {
            let gauges = rules
                .iter()
                .map(|rule| gauge(&gauges, kind, name, rule))
                .collect();
            Scope {
                kind,
                name: Arc::from(name),
                value: None,
                rules,
                gauges,
            }
        };
        let virtual_keys = s
            .virtual_keys
            .iter()
            .filter(|(_, row)| !row.rate_limits.is_empty() || !row.usage_limits.is_empty())
            .map(|(id, row)| {
                let r = rules(&row.rate_limits, &row.usage_limits);
                (id.clone(), scope(ScopeKind::VirtualKey, id, r))
            })
            .collect();
        let gateway_keys = s
            .limits
            .gateway_keys
            .iter()
            .filter_map(|g| {
                let r = rules(&g.rate_limits, &g.usage_limits);
                Some((
                    g.digest_bytes()?,
                    scope(ScopeKind::GatewayKey, &g.label(), r),
                ))
            })
            .collect();
        let policies = s
            .limits
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let id = p.id.clone().unwrap_or_else(|| format!("policy-{i}"));
                let r = rules(&p.rate_limits, &p.usage_limits);
                (p.matches.metadata.clone(), scope(ScopeKind::Policy, &id, r))
            })
            .collect();
        let backend_settings = (s.limits.backend, s.limits.redis.clone());
        let backend = match previous.filter(|p| p.backend_settings == backend_settings) {
            Some(p) => p.backend.clone(),
            None => Arc::new(match s.limits.backend {
                LimitsBackend::Memory => Backend::Memory(store::Memory::new()),
                LimitsBackend::Redis => {
                    let mut r = s.limits.redis.clone();
                    // `redis: {url: …}` fills the other fields with `cache.redis`'s defaults:
                    // its key prefix is the cache's, which the counters do not share.
                    if r.key_prefix == crate::settings::cache::RedisSettings::default().key_prefix {
                        r.key_prefix = crate::settings::limits::default_redis().key_prefix;
                    }
                    let url = r.resolve_url("limits.redis", env)?;
                    let link = Link::new(&url, &r, "limits")
                        .map_err(|e| SettingsError::new("limits.redis.url", e))?;
                    Backend::Redis(store::Redis::new(link))
                }
            }),
        };
        let limiter = Limiter {
            backend,
            backend_settings,
            on_error: s.limits.on_backend_error,
            virtual_keys,
            gateway_keys,
            policies,
            alerted: Mutex::new(HashMap::new()),
            gauges,
        };
        Ok(limiter)
    }

    /// Sets a limit's use on its gauge.
    fn show(&self, gauge: &Option<Gauge>, used: u64) {
        if let Some(g) = gauge {
            g.used.set(used as f64 / g.scale);
        }
    }

    /// Whether any limit is configured (when none, admission costs nothing).
    pub(crate) fn is_active(&self) -> bool {
        !self.virtual_keys.is_empty() || !self.gateway_keys.is_empty() || !self.policies.is_empty()
    }

    /// The scopes a request meets once: its gateway key's and each matching policy's.
    pub(crate) fn request_scopes(
        &self,
        gateway_key: Option<&[u8; 32]>,
        metadata: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<Scope> {
        let mut out = Vec::new();
        if let Some(s) = gateway_key.and_then(|d| self.gateway_keys.get(d)) {
            out.push(s.clone());
        }
        for (field, policy) in &self.policies {
            let value = match metadata.get(field) {
                Some(serde_json::Value::String(v)) => v.clone(),
                Some(serde_json::Value::Null) | None => continue,
                Some(other) => other.to_string(),
            };
            out.push(Scope {
                value: Some(value),
                ..policy.clone()
            });
        }
        out
    }

    /// The scope of a virtual key, when it has limits.
    pub(crate) fn virtual_key(&self, id: &str) -> Option<Scope> {
        self.virtual_keys.get(id).cloned()
    }

    /// Admits a request against `scopes` (one round trip to the counters), or says why not.
    pub(crate) async fn admit(&self, scopes: &[Scope], now_ms: u64) -> Result<Charges, Refusal> {
        let mut keys: Vec<(usize, usize, String, Option<u64>)> = Vec::new();
        for (si, scope) in scopes.iter().enumerate() {
            let prefix = scope.key();
            for (ri, rule) in scope.rules.iter().enumerate() {
                let (key, expires_at) = rule.counter(now_ms);
                keys.push((si, ri, format!("{prefix}{key}"), expires_at));
            }
        }
        if keys.is_empty() {
            return Ok(Charges::default());
        }
        let reads: Vec<store::Read<'_>> = keys
            .iter()
            .map(|(si, ri, key, expires_at)| store::Read {
                key,
                count: matches!(
                    scopes[*si].rules[*ri],
                    Rule::Rate {
                        kind: RateKind::Requests,
                        ..
                    }
                ),
                expires_at: *expires_at,
            })
            .collect();
        let used = match &*self.backend {
            Backend::Memory(m) => Ok(m.read(&reads, now_ms)),
            Backend::Redis(r) => r.read(&reads).await.map_err(|e| {
                r.link().log_failure(
                    "admit",
                    &e,
                    match self.on_error {
                        OnBackendError::Allow => "requests are served without limits",
                        OnBackendError::Deny => "requests are refused (503)",
                    },
                );
            }),
        };
        let used = match used {
            Ok(u) => u,
            Err(()) => {
                return match self.on_error {
                    OnBackendError::Allow => Ok(Charges::default()),
                    OnBackendError::Deny => Err(Refusal::Unavailable),
                }
            }
        };
        let mut charges = Charges {
            items: Vec::new(),
            at_ms: now_ms,
        };
        for ((si, ri, key, expires_at), used) in keys.into_iter().zip(used) {
            let scope = &scopes[si];
            let gauge = scope.gauges[ri].clone();
            self.show(&gauge, used);
            match scope.rules[ri] {
                Rule::Rate {
                    kind: RateKind::Requests,
                    unit,
                    limit,
                } => {
                    if used > limit {
                        return Err(rate_refusal(scope, unit, now_ms));
                    }
                }
                Rule::Rate {
                    kind: RateKind::Tokens,
                    unit,
                    limit,
                } => {
                    if used >= limit {
                        return Err(rate_refusal(scope, unit, now_ms));
                    }
                    charges.items.push(Charge {
                        key,
                        what: Counted::Tokens,
                        expires_at,
                        alert: None,
                        gauge,
                    });
                }
                Rule::Budget {
                    kind, limit, alert, ..
                } => {
                    if used >= limit {
                        return Err(Refusal::Budget {
                            scope: scope.clone(),
                        });
                    }
                    let what = match kind {
                        UsageKind::Cost => Counted::Nanodollars,
                        UsageKind::Tokens => Counted::Tokens,
                    };
                    charges.items.push(Charge {
                        alert: alert.map(|a| (a, scope_label(scope))),
                        key,
                        what,
                        expires_at,
                        gauge,
                    });
                }
            }
        }
        Ok(charges)
    }

    /// Charges an answer's usage: tokens (input + output) and cost. Off the client's path:
    /// with Redis, the counting runs in a task of its own.
    pub(crate) fn charge(self: &Arc<Self>, charges: Charges, tokens: u64, cost: Option<Picos>) {
        let nanos = cost.map(|c| u64::try_from((c.0 + 500) / 1000).unwrap_or(u64::MAX));
        let charged: Vec<(store::Add, Charge)> = charges
            .items
            .into_iter()
            .filter_map(|c| {
                let amount = match c.what {
                    Counted::Tokens => tokens,
                    Counted::Nanodollars => nanos?,
                };
                let add = store::Add {
                    key: c.key.clone(),
                    amount,
                    expires_at: c.expires_at,
                };
                (amount > 0).then_some((add, c))
            })
            .collect();
        if charged.is_empty() {
            return;
        }
        let now = charges.at_ms;
        match &*self.backend {
            Backend::Memory(m) => {
                let adds: Vec<store::Add> = charged.iter().map(|(a, _)| a.clone()).collect();
                let totals = m.add(&adds, now);
                self.counted(&charged, &totals);
            }
            Backend::Redis(_) => {
                let this = self.clone();
                tokio::spawn(async move {
                    let Backend::Redis(r) = &*this.backend else {
                        return;
                    };
                    let adds: Vec<store::Add> = charged.iter().map(|(a, _)| a.clone()).collect();
                    match r.add(&adds).await {
                        Ok(totals) => this.counted(&charged, &totals),
                        Err(e) => r.link().log_failure(
                            "charge",
                            &e,
                            "usage is not counted against limits",
                        ),
                    }
                });
            }
        }
    }

    /// After a charge: each counter's new total on its gauge, and an alert (logged and
    /// counted once per period) for each budget that crossed its threshold.
    fn counted(&self, charged: &[(store::Add, Charge)], totals: &[u64]) {
        for ((_, c), total) in charged.iter().zip(totals) {
            self.show(&c.gauge, *total);
            let Some((threshold, scope)) = &c.alert else {
                continue;
            };
            if total < threshold {
                continue;
            }
            let first = self
                .alerted
                .lock()
                .map(|mut a| {
                    // Bounded: past periods' entries go when the map grows.
                    if a.len() > 10_000 {
                        a.clear();
                    }
                    a.insert(c.key.clone(), *threshold).is_none()
                })
                .unwrap_or(false);
            if first {
                tracing::warn!(target: "portgate::limits", scope = %scope, counter = %c.key, used = total, threshold, "budget alert threshold crossed");
                let (kind, name) = scope.split_once(' ').unwrap_or((scope.as_str(), ""));
                let name = name.split(' ').next().unwrap_or(name);
                self.gauges.alerts.with_label_values(&[kind, name]).inc();
            }
        }
    }
}

fn rate_refusal(scope: &Scope, unit: RateUnit, now_ms: u64) -> Refusal {
    let (_, end) = window::window(unit, now_ms);
    Refusal::Rate {
        scope: scope.clone(),
        retry_after: end.saturating_sub(now_ms).div_ceil(1000).max(1),
    }
}

fn scope_label(scope: &Scope) -> String {
    match &scope.value {
        Some(v) => format!("{} {} {v}", scope.kind.label(), scope.name),
        None => format!("{} {}", scope.kind.label(), scope.name),
    }
}

#[cfg(test)]
mod tests;
