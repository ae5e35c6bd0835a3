//! From a parsed config to a Plan: inheritance down nested targets applied,
//! provider slugs, virtual keys and custom hosts checked once, so a request only walks it.

use super::breaker::{BreakerSpec, DEFAULT_FAILURE_CODES};
use super::retry::{RetryPolicy, DEFAULT_RETRY_CODES};
use crate::dispatch::custom_host::CustomHost;
use crate::dispatch::CustomHostPolicy;
use crate::guardrails::{LeafHooks, NamedGuardrails};
use crate::portkey::conditions::Query;
use crate::portkey::config::{BreakerConfig, CacheSpec, ConfigNode, Mode, Problems, RetrySpec};
use crate::providers::Providers;
use crate::settings::VirtualKeys;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What plan building checks references against.
pub(crate) struct PlanContext<'a> {
    pub providers: &'a Providers,
    pub virtual_keys: &'a VirtualKeys,
    pub custom_hosts: &'a CustomHostPolicy,
    pub min_cooldown: Duration,
    /// The config comes from the settings (a named config), not from the request: only then
    /// may a `custom_host` be combined with a key from the settings.
    pub from_settings: bool,
    /// Named guardrails from the settings, which hooks may reference by id.
    pub guardrails: &'a NamedGuardrails,
    /// Caps on what a config's guardrails may cost (`limits.guardrails`).
    pub limits: &'a crate::settings::GuardrailLimits,
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub root: Node,
}

#[derive(Debug)]
pub(crate) enum Node {
    Leaf(Arc<Leaf>),
    Group(Group),
}

#[derive(Debug)]
pub(crate) struct Group {
    pub path: String,
    pub mode: Mode,
    pub on_status_codes: Option<Vec<u16>>,
    /// (query, index of the target it selects)
    pub conditions: Vec<(Query, usize)>,
    pub default: Option<usize>,
    pub children: Vec<Node>,
    /// Load-balancing weights (missing = 1).
    pub weights: Vec<f64>,
    /// Sticky load balancing (`strategy.sticky`), when enabled.
    pub sticky: Option<super::sticky::Sticky>,
}

/// A target with everything it inherited.
#[derive(Debug)]
pub(crate) struct Leaf {
    /// JSON path, reported in `x-portkey-last-used-option-index`.
    pub path: String,
    /// Provider slug from the config; `None` means the request's own provider headers.
    pub provider: Option<String>,
    pub api_key: Option<crate::settings::Secret>,
    pub virtual_key: Option<String>,
    /// Shared with every sibling that inherits the same map (not cloned into each leaf).
    pub override_params: Option<Arc<Map<String, Value>>>,
    pub retry: RetryPolicy,
    pub request_timeout_ms: Option<u64>,
    pub custom_host: Option<CustomHost>,
    /// The custom host was written by the request (an inline config), so no key from the
    /// settings may be sent to it.
    pub custom_host_from_request: bool,
    pub forward_headers: Option<Vec<String>>,
    pub cache: Option<CacheSpec>,
    pub breaker: Option<BreakerSpec>,
    /// Guardrail hooks after inheritance; shared like `override_params`.
    pub hooks: Arc<LeafHooks>,
    /// Provider options from the config (`azure_resource_name`, ...), inherited key by key
    /// down nested targets; shared like `override_params`.
    pub options: Arc<BTreeMap<String, String>>,
}

impl Leaf {
    /// The model this target is sent: its `override_params` model, else the one the client
    /// asked for.
    pub(crate) fn model<'a>(&'a self, requested: Option<&'a str>) -> Option<&'a str> {
        self.override_params
            .as_ref()
            .and_then(|o| o.get("model"))
            .and_then(Value::as_str)
            .or(requested)
    }
}

/// Settings passed from a node to its targets. The potentially large parts (`override_params`,
/// hooks) are shared behind `Arc`s and copied only where a node changes them, so a wide config
/// costs memory in proportion to what it writes, not to its number of leaves.
#[derive(Clone, Default)]
struct Inherited {
    override_params: Option<Arc<Map<String, Value>>>,
    retry: Option<RetrySpec>,
    cache: Option<CacheSpec>,
    request_timeout: Option<u64>,
    custom_host: Option<String>,
    forward_headers: Option<Vec<String>>,
    cb_config: Option<BreakerConfig>,
    hooks: Arc<LeafHooks>,
    options: Arc<BTreeMap<String, String>>,
}

impl Inherited {
    fn apply(&self, n: &ConfigNode) -> Inherited {
        let mut out = self.clone();
        if let Some(op) = &n.override_params {
            let mut merged = self.override_params.as_deref().cloned().unwrap_or_default();
            for (k, v) in op {
                merged.insert(k.clone(), v.clone());
            }
            out.override_params = Some(Arc::new(merged));
        }
        if n.retry.is_some() {
            out.retry = n.retry.clone();
        }
        if n.cache.is_some() {
            out.cache = n.cache.clone();
        }
        if n.request_timeout.is_some() {
            out.request_timeout = n.request_timeout;
        }
        if n.custom_host.is_some() {
            out.custom_host = n.custom_host.clone();
        }
        if n.forward_headers.is_some() {
            out.forward_headers = n.forward_headers.clone();
        }
        if n.cb_config.is_some() {
            out.cb_config = n.cb_config.clone();
        }
        if !n.provider_options.is_empty() {
            let options = Arc::make_mut(&mut out.options);
            for (k, v) in &n.provider_options {
                options.insert(k.clone(), v.clone());
            }
        }
        out
    }
}

/// Errors that are not the config's shape but its references.
#[derive(Debug)]
pub(crate) enum PlanError {
    Invalid(Problems),
    /// A virtual key id that settings do not define (answered 401).
    UnknownVirtualKey(String),
}

pub(crate) fn build(root: &ConfigNode, ctx: &PlanContext<'_>) -> Result<Plan, PlanError> {
    let mut problems = Problems::default();
    let mut unknown_vk = None;
    let node = build_node(
        root,
        &Inherited::default(),
        ctx,
        &mut problems,
        &mut unknown_vk,
    );
    if let Some(id) = unknown_vk {
        return Err(PlanError::UnknownVirtualKey(id));
    }
    if !problems.0.is_empty() {
        return Err(PlanError::Invalid(problems));
    }
    Ok(Plan { root: node })
}

fn build_node(
    n: &ConfigNode,
    parent: &Inherited,
    ctx: &PlanContext<'_>,
    p: &mut Problems,
    unknown_vk: &mut Option<String>,
) -> Node {
    let mut inherited = parent.apply(n);
    // Hooks: the node's own lists replace the inherited ones, with references
    // to named guardrails resolved (an unknown id is a problem naming it).
    inherited.hooks =
        crate::guardrails::parse::inherit(&parent.hooks, n.hooks.as_ref(), ctx.guardrails, p);
    if let (Some(strategy), false) = (&n.strategy, n.targets.is_empty()) {
        let children: Vec<Node> = n
            .targets
            .iter()
            .map(|t| build_node(t, &inherited, ctx, p, unknown_vk))
            .collect();
        let index_of = |name: &str| {
            n.targets
                .iter()
                .position(|t| t.name.as_deref() == Some(name))
        };
        let conditions = strategy
            .conditions
            .iter()
            .filter_map(|c| Some((c.query.clone(), index_of(&c.then)?)))
            .collect();
        return Node::Group(Group {
            path: n.path.clone(),
            mode: strategy.mode.unwrap_or(Mode::Single),
            on_status_codes: strategy.on_status_codes.clone(),
            conditions,
            default: strategy.default.as_deref().and_then(index_of),
            weights: n.targets.iter().map(|t| t.weight.unwrap_or(1.0)).collect(),
            sticky: strategy.sticky.as_ref().map(|s| {
                let ids = n
                    .targets
                    .iter()
                    .map(|t| {
                        super::sticky::target_id(
                            t.name.as_deref(),
                            &t.path,
                            t.provider.as_deref(),
                            t.virtual_key.as_deref(),
                        )
                    })
                    .collect();
                super::sticky::Sticky::new(s.fields.clone(), ids)
            }),
            children,
        });
    }
    if let Some(p_slug) = &n.provider {
        if ctx.providers.get(p_slug).is_none() {
            p.push(
                &format!("{}.provider", n.path),
                format!("unknown provider {p_slug:?}"),
            );
        }
    }
    if let Some(vk) = &n.virtual_key {
        if !ctx.virtual_keys.contains_key(vk) && unknown_vk.is_none() {
            *unknown_vk = Some(vk.clone());
        }
    }
    if n.virtual_key.is_some() && inherited.custom_host.is_some() && !ctx.from_settings {
        p.push(
            &format!("{}.virtual_key", n.path),
            "a virtual key's credential is sent only to its own provider's host: it cannot be \
             combined with a custom_host from the request",
        );
    }
    let custom_host = inherited.custom_host.as_deref().and_then(|raw| {
        let checked = if ctx.from_settings {
            ctx.custom_hosts.check_operator(raw)
        } else {
            ctx.custom_hosts.check(raw)
        };
        checked
            .map_err(|e| p.push(&format!("{}.custom_host", n.path), e))
            .ok()
    });
    let retry = inherited
        .retry
        .as_ref()
        .map_or_else(RetryPolicy::default, |r| RetryPolicy {
            attempts: r.attempts,
            on_status_codes: r
                .on_status_codes
                .clone()
                .unwrap_or_else(|| DEFAULT_RETRY_CODES.to_vec()),
            use_retry_after_header: r.use_retry_after_header,
        });
    let breaker = inherited.cb_config.as_ref().and_then(|cb| {
        breaker_spec(cb, ctx.min_cooldown)
            .map_err(|m| p.push(&format!("{}.cb_config.cooldown_interval", n.path), m))
            .ok()
    });
    Node::Leaf(Arc::new(Leaf {
        path: n.path.clone(),
        provider: n.provider.clone(),
        api_key: n.api_key.clone(),
        virtual_key: n.virtual_key.clone(),
        override_params: inherited.override_params.filter(|m| !m.is_empty()),
        retry,
        request_timeout_ms: inherited.request_timeout,
        custom_host_from_request: custom_host.is_some() && !ctx.from_settings,
        custom_host,
        forward_headers: inherited.forward_headers,
        cache: inherited.cache,
        breaker,
        hooks: inherited.hooks,
        options: inherited.options,
    }))
}

/// Turns a `cb_config` into a breaker; its cooldown must be at least `min_cooldown`.
pub(crate) fn breaker_spec(
    cb: &BreakerConfig,
    min_cooldown: Duration,
) -> Result<BreakerSpec, String> {
    let ms = cb.cooldown_interval.unwrap_or(30_000);
    // A config is client input: an absurd cooldown would overflow `Instant + cooldown` when
    // the circuit opens, so it is refused here, like the settings bound.
    if ms > crate::settings::MAX_COOLDOWN_MS {
        return Err(format!(
            "must be at most {} ms",
            crate::settings::MAX_COOLDOWN_MS
        ));
    }
    let cooldown = Duration::from_millis(ms);
    if cooldown < min_cooldown {
        return Err(format!("must be at least {} ms", min_cooldown.as_millis()));
    }
    Ok(BreakerSpec {
        failure_threshold: cb.failure_threshold,
        failure_threshold_percentage: cb.failure_threshold_percentage,
        minimum_requests: cb.minimum_requests.unwrap_or(1),
        cooldown,
        // Only a provider's own trouble may open a circuit: a 4xx other than 429 is the
        // request's fault, and would let a client take a provider away with bad requests.
        on_status_codes: cb
            .on_status_codes
            .clone()
            .unwrap_or_else(|| DEFAULT_FAILURE_CODES.to_vec())
            .into_iter()
            .filter(|c| *c == 429 || *c >= 500)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_cooldown_beyond_the_bound_is_refused_not_overflowed() {
        let cb = |ms: u64| BreakerConfig {
            failure_threshold: Some(1),
            failure_threshold_percentage: None,
            minimum_requests: None,
            cooldown_interval: Some(ms),
            on_status_codes: None,
        };
        let min = Duration::from_secs(1);
        let err = breaker_spec(&cb(u64::MAX), min).unwrap_err();
        assert!(err.contains("at most"), "{err}");
        let spec = breaker_spec(&cb(crate::settings::MAX_COOLDOWN_MS), min).unwrap();
        // The largest accepted cooldown is still far from overflowing an `Instant`.
        assert!(std::time::Instant::now()
            .checked_add(spec.cooldown)
            .is_some());
    }

    /// A model changed by `override_params` is what the target is sent (and so its resource
    /// for budgets and breakers); without one, the client's model.
    #[test]
    fn a_leaf_sends_its_override_model() {
        let mut leaf = Leaf::from_request();
        assert_eq!(leaf.model(Some("gpt-4o")), Some("gpt-4o"));
        assert_eq!(leaf.model(None), None);
        let mut o = Map::new();
        o.insert("model".into(), Value::from("mistral-7b"));
        leaf.override_params = Some(Arc::new(o));
        assert_eq!(leaf.model(Some("gpt-4o")), Some("mistral-7b"));
        assert_eq!(leaf.model(None), Some("mistral-7b"));
        let mut o = Map::new();
        o.insert("temperature".into(), Value::from(0.2));
        leaf.override_params = Some(Arc::new(o));
        assert_eq!(leaf.model(Some("gpt-4o")), Some("gpt-4o"));
    }
}
