//! The Portkey config schema, both forms, parsed from JSON into typed nodes with
//! the JSON path of every problem. The current form nests `strategy` + `targets`; the legacy
//! form (`mode` + `options`, used by the Anyscale seed) is normalised into it here, so the rest
//! of the gateway sees one shape.
//!
//! Unknown keys are ignored, as Portkey's schema ignores them (provider-specific credential
//! fields vary by provider).

use crate::portkey::conditions::{self, Query};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

mod fields;
mod strategy;

use fields::*;
pub(crate) use strategy::parse_breaker;
use strategy::*;

/// Provider settings a config target may carry (Portkey's snake_case field names), read into
/// [`ConfigNode::provider_options`] and handed to the provider adapter. The same names, with
/// dashes and the `x-portkey-` prefix, are the request headers (`portkey::headers`), and a
/// virtual key's `options` use them too. API keys are not options: they stay in `Secret`s.
/// AWS's key pair is the exception (SigV4 signs with it per target, like Azure's Entra token
/// from headers): these values are never logged, and options never reach metrics or logs.
pub(crate) const PROVIDER_OPTION_FIELDS: &[&str] = &[
    "azure_resource_name",
    "azure_deployment_id",
    "azure_api_version",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Single,
    Fallback,
    Loadbalance,
    Conditional,
}

#[derive(Debug, Clone)]
pub struct Condition {
    pub query: Query,
    pub then: String,
}

#[derive(Debug, Clone, Default)]
pub struct StrategySpec {
    pub mode: Option<Mode>,
    pub on_status_codes: Option<Vec<u16>>,
    pub conditions: Vec<Condition>,
    pub default: Option<String>,
    /// Whether `conditions` was given (an empty list is allowed: the default answers).
    pub has_conditions: bool,
    /// `sticky` with `enabled: true` (load balancing only).
    pub sticky: Option<StickySpec>,
}

/// Sticky load balancing: requests with the same values in `fields` reach the same target.
#[derive(Debug, Clone, PartialEq)]
pub struct StickySpec {
    pub fields: Vec<StickyField>,
    /// Seconds; accepted for compatibility, without effect (the choice is a hash: nothing is
    /// remembered that could expire).
    pub ttl: Option<u64>,
}

/// One value a sticky choice hashes.
#[derive(Debug, Clone, PartialEq)]
pub enum StickyField {
    /// A key of `x-portkey-metadata`.
    Metadata(String),
    /// A field of the JSON body, nested objects by dotted path.
    Params(Vec<String>),
    /// A request header (names are case-insensitive).
    Header(http::HeaderName),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetrySpec {
    pub attempts: u32,
    pub on_status_codes: Option<Vec<u16>>,
    pub use_retry_after_header: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    Simple,
    Semantic,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheSpec {
    pub mode: CacheMode,
    /// Seconds (Portkey's hosted unit).
    pub max_age: Option<u64>,
    /// portgate's own: the semantic cache's cosine-similarity threshold for this config, in
    /// (0, 1] (the settings' `cache.semantic.threshold`, 0.95, otherwise).
    pub threshold: Option<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub failure_threshold: Option<u32>,
    pub failure_threshold_percentage: Option<f64>,
    pub minimum_requests: Option<u32>,
    /// Milliseconds.
    pub cooldown_interval: Option<u64>,
    pub on_status_codes: Option<Vec<u16>>,
}

/// A node's guardrail hooks, typed and compiled (`guardrails::parse`).
pub(crate) use crate::guardrails::NodeHooks as Hooks;

/// One node of a config: the root or any target.
#[derive(Debug, Clone, Default)]
pub struct ConfigNode {
    /// JSON path of the node (`config`, `config.targets[1]`, `config.options[0]`).
    pub path: String,
    pub strategy: Option<StrategySpec>,
    pub targets: Vec<ConfigNode>,
    pub name: Option<String>,
    pub provider: Option<String>,
    pub api_key: Option<crate::settings::Secret>,
    pub virtual_key: Option<String>,
    pub weight: Option<f64>,
    pub override_params: Option<Map<String, Value>>,
    pub retry: Option<RetrySpec>,
    pub request_timeout: Option<u64>,
    pub custom_host: Option<String>,
    pub forward_headers: Option<Vec<String>>,
    pub cache: Option<CacheSpec>,
    pub cb_config: Option<BreakerConfig>,
    pub strict_open_ai_compliance: Option<bool>,
    pub hooks: Option<Hooks>,
    /// The node's [`PROVIDER_OPTION_FIELDS`]; inherited by nested targets key by key.
    pub provider_options: BTreeMap<String, String>,
}

pub(crate) use crate::types::problems::Problems;

/// The most fields a sticky choice may hash.
pub(crate) const MAX_STICKY_FIELDS: usize = 16;

/// The most retry attempts a config may ask for (more are capped, as Portkey does).
pub(crate) const MAX_ATTEMPTS: u32 = 5;

/// Portkey's message for a node that does nothing it recognises (its schema's root rule).
pub(crate) const NODE_RULE_MESSAGE: &str =
    "Invalid configuration. It must have either 'provider' and \
     'api_key', or 'strategy' and 'targets', or 'cache', or 'retry', or 'request_timeout'";

/// Portkey's message for an unknown `strategy.mode`.
pub(crate) const MODE_MESSAGE: &str =
    "Invalid 'mode' value. Must be one of: single, loadbalance, fallback, conditional";

const MAX_DEPTH: usize = 8;
const MAX_TARGETS: usize = 64;
/// The most nodes (root and targets, at every depth) one config may have: depth and width caps
/// alone would allow 64^8 leaves.
pub(crate) const MAX_NODES: usize = 256;
/// The longest config document accepted, in bytes of JSON.
pub(crate) const MAX_BYTES: usize = 64 * 1024;

/// Parses a config document (already JSON) into its root node.
pub fn parse(value: &Value) -> Result<ConfigNode, Problems> {
    let mut problems = Problems::default();
    let nodes = count_nodes(value, 0);
    if nodes > MAX_NODES {
        problems.push(
            "config",
            format!("the config has more than {MAX_NODES} targets in all"),
        );
        return Err(problems);
    }
    let node = parse_node(value, "config", 0, &mut problems);
    match node {
        Some(n) if problems.is_empty() => Ok(n),
        _ => Err(problems),
    }
}

/// Counts the nodes of a config document (every object in a `targets`/`options` list, at
/// every depth), stopping early once past the cap.
fn count_nodes(value: &Value, depth: usize) -> usize {
    let mut n = 1;
    if depth > MAX_DEPTH {
        return n;
    }
    let Some(obj) = value.as_object() else {
        return n;
    };
    let lists = ["targets", "options"]
        .into_iter()
        .filter_map(|k| obj.get(k))
        .chain(obj.get("fallback").and_then(|f| f.get("targets")));
    for list in lists {
        for item in list.as_array().into_iter().flatten() {
            n += count_nodes(item, depth + 1);
            if n > MAX_NODES {
                return n;
            }
        }
    }
    n
}

fn parse_node(value: &Value, path: &str, depth: usize, p: &mut Problems) -> Option<ConfigNode> {
    if depth > MAX_DEPTH {
        p.push(path, format!("targets nest at most {MAX_DEPTH} levels"));
        return None;
    }
    let Some(obj) = value.as_object() else {
        p.push(path, "must be an object");
        return None;
    };
    let mut node = ConfigNode {
        path: path.to_string(),
        name: string(obj, "name", path, p),
        provider: string(obj, "provider", path, p).map(|s| s.to_ascii_lowercase()),
        api_key: string(obj, "api_key", path, p).map(crate::settings::Secret::new),
        virtual_key: string(obj, "virtual_key", path, p),
        weight: weight(obj, path, p),
        override_params: object(obj, "override_params", path, p),
        retry: obj
            .get("retry")
            .and_then(|v| retry(v, &format!("{path}.retry"), p)),
        request_timeout: positive_int(obj, "request_timeout", path, p),
        custom_host: string(obj, "custom_host", path, p),
        forward_headers: forward_headers(obj, path, p),
        cache: obj
            .get("cache")
            .and_then(|v| cache(v, &format!("{path}.cache"), p)),
        cb_config: obj
            .get("cb_config")
            .and_then(|v| breaker(v, &format!("{path}.cb_config"), p)),
        strict_open_ai_compliance: boolean(obj, "strict_open_ai_compliance", path, p),
        hooks: hooks(obj, path, p),
        provider_options: PROVIDER_OPTION_FIELDS
            .iter()
            .filter_map(|k| Some((k.to_string(), string(obj, k, path, p)?)))
            .collect(),
        ..Default::default()
    };
    // Current form: strategy + targets.
    if let Some(s) = obj.get("strategy") {
        node.strategy = strategy(s, &format!("{path}.strategy"), p);
    }
    let (list_key, legacy_mode) = if obj.contains_key("options") || obj.contains_key("mode") {
        ("options", obj.get("mode"))
    } else {
        ("targets", None)
    };
    if let Some(mode) = legacy_mode {
        if node.strategy.is_some() {
            p.push(
                &format!("{path}.mode"),
                "use either strategy (current form) or mode (legacy form)",
            );
        }
        node.strategy = legacy(mode, &format!("{path}.mode"), p);
    }
    // The guides' `"fallback": {"targets": [...]}` shorthand reads as a fallback strategy.
    let mut targets_value = obj.get(list_key);
    let mut targets_path = format!("{path}.{list_key}");
    if targets_value.is_none() && node.strategy.is_none() {
        if let Some(fb) = obj.get("fallback").and_then(Value::as_object) {
            if let Some(t) = fb.get("targets") {
                targets_value = Some(t);
                targets_path = format!("{path}.fallback.targets");
                node.strategy = Some(StrategySpec {
                    mode: Some(Mode::Fallback),
                    ..Default::default()
                });
            }
        }
    }
    if let Some(t) = targets_value {
        match t.as_array() {
            Some(items) if items.len() > MAX_TARGETS => {
                p.push(&targets_path, format!("at most {MAX_TARGETS} targets"))
            }
            Some(items) => {
                node.targets = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| {
                        parse_node(v, &format!("{targets_path}[{i}]"), depth + 1, p)
                    })
                    .collect();
            }
            None => p.push(&targets_path, "must be an array"),
        }
    }
    let other_credentials = has_other_credentials(obj, node.provider.as_deref());
    check_shape(&node, other_credentials, p);
    Some(node)
}

/// The alternatives of Portkey's node rule that need fields portgate does not otherwise read:
/// keyless local providers, an AWS key pair, a Vertex project and region, Azure's auth mode.
fn has_other_credentials(obj: &Map<String, Value>, provider: Option<&str>) -> bool {
    let set = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    matches!(provider, Some("ollama") | Some("triton"))
        || (set("aws_access_key_id") && set("aws_secret_access_key"))
        || (provider == Some("vertex-ai")
            && set("vertex_region")
            && (set("vertex_project_id") || set("vertex_service_account_json")))
        || (provider == Some("azure-openai") && set("azure_auth_mode"))
}

/// Node-level rules: a strategy needs targets and targets need a strategy; a node must satisfy
/// one alternative of Portkey's rule — `provider` with `api_key`, `strategy`
/// with `targets`, `cache`, `retry`, `request_timeout`, hooks, or a provider's own credential
/// fields — or, portgate's addition, name a `virtual_key` from the settings. A `provider`
/// without a key is refused: the client's `Authorization` is never handed to a provider that a
/// config names, so such a target would go out without credentials.
fn check_shape(node: &ConfigNode, other_credentials: bool, p: &mut Problems) {
    let path = &node.path;
    match (&node.strategy, node.targets.is_empty()) {
        (Some(_), true) => p.push(
            &format!("{path}.targets"),
            "a strategy needs at least one target",
        ),
        (None, false) => p.push(
            &format!("{path}.strategy"),
            "targets need a strategy (mode)",
        ),
        _ => {}
    }
    if let Some(s) = &node.strategy {
        if s.mode == Some(Mode::Conditional) {
            let names: Vec<&str> = node
                .targets
                .iter()
                .filter_map(|t| t.name.as_deref())
                .collect();
            // Portkey's router errors, found up front: a `then` or `default` naming no target
            // (Portkey finds it when the condition matches, or the default is used).
            let unknown = s
                .conditions
                .iter()
                .map(|c| c.then.as_str())
                .chain(s.default.as_deref())
                .find(|name| !names.contains(name));
            if let Some(name) = unknown {
                p.push_router(format!(
                    "Invalid target name found in the query router: {name}"
                ));
            }
            if !s.has_conditions {
                p.push_router("No conditions passed in the query router".into());
            }
        }
        if s.sticky.is_some() && s.mode != Some(Mode::Loadbalance) {
            p.push(
                &format!("{path}.strategy.sticky"),
                "applies only to mode loadbalance",
            );
        }
        if s.mode == Some(Mode::Loadbalance)
            && !node.targets.is_empty()
            && node.targets.iter().all(|t| t.weight == Some(0.0))
        {
            p.push(
                &format!("{path}.targets"),
                "every weight is 0: no target can be chosen",
            );
        }
    }
    let satisfies = (node.provider.is_some() && node.api_key.is_some())
        || node.virtual_key.is_some()
        || (node.strategy.is_some() && !node.targets.is_empty())
        || node.cache.is_some()
        || node.retry.is_some()
        || node.request_timeout.is_some()
        || node.hooks.is_some()
        || other_credentials;
    if !satisfies {
        p.push(path, NODE_RULE_MESSAGE);
    }
}

fn hooks(obj: &Map<String, Value>, path: &str, p: &mut Problems) -> Option<Hooks> {
    crate::guardrails::parse::node_hooks(obj, path, p)
}

#[cfg(test)]
mod tests;
