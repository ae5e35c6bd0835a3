//! The gauges of virtual keys' and gateway keys' limits (`portgate_limit`,
//! `portgate_limit_used`), resolved once per rule.

use super::*;

/// A limit's `portgate_limit_used` series, resolved once, and the unit it shows (1e9 for
/// dollars).
#[derive(Debug, Clone)]
pub(crate) struct Gauge {
    pub(super) used: prometheus::Gauge,
    pub(super) scale: f64,
}

/// The metric families the limiter keeps up to date.
#[derive(Clone)]
pub(crate) struct LimitGauges {
    pub used: prometheus::GaugeVec,
    pub limit: prometheus::GaugeVec,
    pub alerts: prometheus::IntCounterVec,
}

/// The gauges of a virtual key's or a gateway key's limit: its value set once, its use kept up
/// to date (a policy's values are unbounded: none).
pub(super) fn gauge(
    families: &LimitGauges,
    kind: ScopeKind,
    name: &str,
    rule: &Rule,
) -> Option<Gauge> {
    if kind == ScopeKind::Policy {
        return None;
    }
    let (what, window, scale, limit) = match *rule {
        Rule::Rate {
            kind: k,
            unit,
            limit,
        } => (kind_name(k), unit.name(), 1.0, limit),
        Rule::Budget {
            kind: k,
            period,
            limit,
            ..
        } => {
            let window = period.map_or("never", Period::name);
            match k {
                UsageKind::Cost => ("cost", window, NANOS_PER_USD, limit),
                UsageKind::Tokens => ("tokens", window, 1.0, limit),
            }
        }
    };
    let labels = [kind.label(), name, what, window];
    families
        .limit
        .with_label_values(&labels)
        .set(limit as f64 / scale);
    Some(Gauge {
        used: families.used.with_label_values(&labels),
        scale,
    })
}
