//! What `GET /limits` shows, and `POST /limits/reset`.

use super::*;

/// One limit's state, for `GET /limits`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct LimitState {
    pub scope: &'static str,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `rps` ... for rate limits, the period for budgets (`never` without one).
    pub window: &'static str,
    pub limit: f64,
    pub used: f64,
    pub remaining: f64,
    /// Unix seconds; absent for a budget that never resets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<u64>,
}

impl Limiter {
    /// Every limit with its use now, for `GET /limits` (policies: the values counted so far
    /// are not enumerable, so a policy's limits are listed without a value).
    pub(crate) async fn snapshot(&self, now_ms: u64) -> Result<Vec<LimitState>, String> {
        let mut scopes: Vec<&Scope> = self.virtual_keys.values().collect();
        scopes.extend(self.gateway_keys.values());
        scopes.sort_by(|a, b| (a.kind.label(), &a.name).cmp(&(b.kind.label(), &b.name)));
        let mut rows = Vec::new();
        let mut keys = Vec::new();
        for scope in scopes {
            let prefix = scope.key();
            for rule in scope.rules.iter() {
                let (key, _) = rule.counter(now_ms);
                keys.push(format!("{prefix}{key}"));
                rows.push((scope, *rule));
            }
        }
        let used = match &*self.backend {
            Backend::Memory(m) => m.get(&keys, now_ms),
            Backend::Redis(r) => r.get(&keys).await.map_err(|e| e.to_string())?,
        };
        let mut out: Vec<LimitState> = rows
            .into_iter()
            .zip(used)
            .map(|((scope, rule), used)| state(scope, rule, used, now_ms))
            .collect();
        for (field, policy) in &self.policies {
            for rule in policy.rules.iter() {
                let mut s = state(policy, *rule, 0, now_ms);
                s.value = Some(format!("each value of metadata.{field}"));
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Zeroes every counter of a scope (`vk:<id>`, `gk:<name>`, `policy:<id>[:<value>]`).
    pub(crate) async fn reset(&self, scope: &str) -> Result<usize, String> {
        let prefix = format!("{scope}:");
        if let Ok(mut alerted) = self.alerted.lock() {
            alerted.retain(|k, _| !k.starts_with(&prefix));
        }
        match &*self.backend {
            Backend::Memory(m) => Ok(m.reset(&prefix)),
            Backend::Redis(r) => r.reset(&prefix).await.map_err(|e| e.to_string()),
        }
    }
}

fn state(scope: &Scope, rule: Rule, used: u64, now_ms: u64) -> LimitState {
    let (kind, window, limit, used, resets_at) = match rule {
        Rule::Rate { kind, unit, limit } => {
            let (_, end) = window::window(unit, now_ms);
            (
                kind_name(kind),
                unit.name(),
                limit as f64,
                used as f64,
                Some(end / 1000),
            )
        }
        Rule::Budget {
            kind,
            period,
            limit,
            ..
        } => {
            let (_, end) = window::period(period, now_ms);
            let (kind, scale) = match kind {
                UsageKind::Cost => ("cost", NANOS_PER_USD),
                UsageKind::Tokens => ("tokens", 1.0),
            };
            (
                kind,
                period.map_or("never", Period::name),
                limit as f64 / scale,
                used as f64 / scale,
                end.map(|e| e / 1000),
            )
        }
    };
    LimitState {
        scope: scope.kind.label(),
        name: scope.name.to_string(),
        value: scope.value.clone(),
        kind,
        window,
        limit,
        used,
        remaining: (limit - used).max(0.0),
        resets_at,
    }
}
