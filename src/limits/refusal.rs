//! A refusal as the client gets it: Portkey's status, message, `type` and `code`.

use super::*;

impl Refusal {
    /// The client's answer, in Portkey's words.
    pub(crate) fn into_error(self) -> GatewayError {
        match self {
            Refusal::Unavailable => GatewayError::LimitsUnavailable,
            Refusal::Rate { scope, retry_after } => exceeded(&scope, Some(retry_after)),
            Refusal::Budget { scope } => exceeded(&scope, None),
        }
    }

    /// The error kind of the refusal, for the attempt's record.
    pub(crate) fn error_kind(&self) -> &'static str {
        match self {
            Refusal::Rate { .. } => "rate_limited",
            Refusal::Budget { .. } => "budget_exhausted",
            Refusal::Unavailable => "limits_unavailable",
        }
    }

    /// `rate`, `budget` or `unavailable`, and whose limit, for the metric.
    pub(crate) fn labels(&self) -> (&'static str, &'static str) {
        match self {
            Refusal::Rate { scope, .. } => ("rate", scope.kind.label()),
            Refusal::Budget { scope } => ("budget", scope.kind.label()),
            Refusal::Unavailable => ("unavailable", "store"),
        }
    }
}

/// A name as Portkey shows it in these messages: its first two and last three characters.
pub(super) fn masked(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let head: String = chars.iter().take(2).collect();
    let tail: String = chars[chars.len().saturating_sub(3)..].iter().collect();
    format!("{head}********{tail}")
}

/// Portkey's refusal of a rate limit (`retry_after` given: 429) or of a budget (412).
fn exceeded(scope: &Scope, retry_after: Option<u64>) -> GatewayError {
    let rate = retry_after.is_some();
    let value = scope.value.as_deref().unwrap_or("");
    let (message, kind, code, wrapped) = match (scope.kind, rate) {
        (ScopeKind::VirtualKey, true) => (
            format!(
                "Portkey Virtual Key {} Rate Limit Exceeded",
                masked(&scope.name)
            ),
            "virtual_key_rate_limit_error",
            None,
            false,
        ),
        (ScopeKind::VirtualKey, false) => (
            format!(
                "Portkey Virtual Key {} Usage Limit Exceeded",
                masked(&scope.name)
            ),
            "virtual_key_exhaust_error",
            Some("04"),
            false,
        ),
        (ScopeKind::Policy, true) => (
            format!(
                "Portkey Rate Limit Policy {} exceeded for value key {value}",
                scope.name
            ),
            "rate_limits_policy_exhaust_error",
            None,
            false,
        ),
        (ScopeKind::Policy, false) => (
            format!(
                "Portkey Usage Limits Policy {} Exceeded for value key {value}",
                scope.name
            ),
            "usage_limits_policy_exhaust_error",
            Some("06"),
            false,
        ),
        // Portkey's own spelling of this message.
        (ScopeKind::GatewayKey, true) => (
            format!(
                "Portkey Error: apikey {} rate limit exceded. Error Code: 05",
                masked(&scope.name)
            ),
            "api_key_rate_limit_error",
            Some("05"),
            true,
        ),
        (ScopeKind::GatewayKey, false) => (
            "Portkey Error: Portkey API Key Usage Limit Exceeded. Error Code: 04".to_string(),
            "api_key_exhaust_error",
            Some("04"),
            true,
        ),
    };
    GatewayError::LimitExceeded(Box::new(Exceeded {
        status: if rate { 429 } else { 412 },
        message,
        kind,
        code,
        retry_after,
        wrapped,
        scope: scope.kind.label(),
    }))
}
