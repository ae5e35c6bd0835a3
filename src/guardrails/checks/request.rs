//! Checks on the request rather than its text: modelWhitelist, modelRules,
//! allowedRequestTypes, requiredMetadataKeys (before-request hooks).

use super::text::Operator;
use super::{invert, CheckOutcome, Ctx, Params};
use crate::guardrails::write::Obj;
use crate::guardrails::Event;
use serde_json::{json, Map, Value};

fn model<'a>(ctx: &'a Ctx<'_>) -> Option<&'a str> {
    ctx.model()
}

pub(crate) fn model_whitelist(ctx: &Ctx<'_>, models: &[String], not: bool) -> CheckOutcome {
    let Some(m) = model(ctx) else {
        return CheckOutcome::error(
            "Missing model in request",
            Obj::new()
                .strs("allowedModels", models.iter().map(String::as_str))
                .str(
                    "explanation",
                    "An error occurred while checking model whitelist: Missing model in request",
                )
                .bool("not", not)
                .str("requestedModel", "No model specified")
                .done(),
        );
    };
    let verdict = invert(models.iter().any(|x| x == m), not);
    let explanation = match (verdict, not) {
        (true, true) => "\" is not in the allowed list as expected.",
        (true, false) => "\" is allowed.",
        (false, true) => "\" is in the allowed list when it should not be.",
        (false, false) => "\" is not in the allowed list.",
    };
    CheckOutcome::pass(
        verdict,
        Obj::new()
            .strs("allowedModels", models.iter().map(String::as_str))
            .text("explanation", &["Model \"", m, explanation])
            .bool("not", not)
            .str("requestedModel", m)
            .bool("verdict", verdict)
            .done(),
    )
}

/// `rules: {defaults: [models], metadata: {key: {value: [models]}}}`: the models allowed for
/// the request's metadata values, else the defaults.
#[derive(Debug)]
pub(crate) struct ModelRules {
    pub defaults: Vec<String>,
    pub metadata: Map<String, Value>,
    pub not: bool,
}

impl ModelRules {
    pub(crate) fn read(q: &mut Params<'_>) -> Option<ModelRules> {
        let not = q.not();
        let Some(Value::Object(rules)) = q.map.get("rules") else {
            q.problem(
                "rules",
                "is required (an object with defaults and/or metadata)",
            );
            return None;
        };
        let defaults = rules
            .get("defaults")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let metadata = rules
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Some(ModelRules {
            defaults,
            metadata,
            not,
        })
    }

    pub(crate) fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        let Some(m) = model(ctx) else {
            return CheckOutcome::error(
                "Missing model in request",
                json!({"explanation": "An error occurred while checking model rules: Missing model in request"}),
            );
        };
        let mut allowed: Vec<String> = Vec::new();
        let mut matched: Vec<String> = Vec::new();
        for (key, mapping) in &self.metadata {
            let values: Vec<String> = match ctx.metadata.get(key) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(a)) => a.iter().map(value_string).collect(),
                Some(v) => vec![value_string(v)],
            };
            for val in values {
                if let Some(models) = mapping.get(&val).and_then(Value::as_array) {
                    matched.push(format!("{key}:{val}"));
                    for x in models.iter().filter_map(Value::as_str) {
                        if !allowed.iter().any(|a| a == x) {
                            allowed.push(x.to_string());
                        }
                    }
                }
            }
        }
        let using_defaults = allowed.is_empty();
        if using_defaults {
            allowed = self.defaults.clone();
        }
        if allowed.is_empty() {
            return CheckOutcome::error(
                "No allowed models resolved from rules",
                json!({"explanation": "An error occurred while checking model rules: No allowed models resolved from rules"}),
            );
        }
        let not = self.not;
        let verdict = invert(allowed.iter().any(|a| a == m), not);
        let mut explanation = match (verdict, not) {
            (true, true) => format!("Model \"{m}\" is not permitted by rules (blocked list)."),
            (true, false) => format!("Model \"{m}\" is allowed by rules."),
            (false, true) => format!("Model \"{m}\" is permitted by rules (in blocked list)."),
            (false, false) => format!("Model \"{m}\" is not allowed by rules."),
        };
        if verdict && !matched.is_empty() {
            explanation.push_str(&format!(" (matched rules: {})", matched.join(", ")));
        } else if verdict && using_defaults {
            explanation.push_str(" (using default models)");
        }
        CheckOutcome::pass(verdict, json!({"explanation": explanation}))
    }
}

fn value_string(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// A list given as an array or a comma-separated string.
fn list_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().map(value_string).collect(),
        Some(Value::String(s)) if !s.is_empty() => {
            s.split(',').map(|t| t.trim().to_string()).collect()
        }
        _ => Vec::new(),
    }
}

#[derive(Debug)]
pub(crate) struct AllowedTypes {
    pub allowed: Vec<String>,
    pub blocked: Vec<String>,
}

impl AllowedTypes {
    pub(crate) fn read(q: &mut Params<'_>) -> AllowedTypes {
        AllowedTypes {
            allowed: list_of(q.map.get("allowedTypes")),
            blocked: list_of(q.map.get("blockedTypes")),
        }
    }

    pub(crate) fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        let mut allowed = self.allowed.clone();
        let mut blocked = self.blocked.clone();
        let from_params = !allowed.is_empty() || !blocked.is_empty();
        if allowed.is_empty() {
            allowed = list_of(ctx.metadata.get("supported_endpoints"));
        }
        if blocked.is_empty() {
            blocked = list_of(ctx.metadata.get("blocked_endpoints"));
        }
        let current = ctx.request_type();
        let conflicts: Vec<&String> = allowed.iter().filter(|t| blocked.contains(t)).collect();
        if !conflicts.is_empty() {
            let list: Vec<&str> = conflicts.iter().map(|s| s.as_str()).collect();
            let msg = format!("Conflict detected: The following types appear in both allowedTypes and blockedTypes: {}. Please remove them from one list.", list.join(", "));
            return CheckOutcome::error(
                msg.clone(),
                json!({"explanation": format!("An error occurred while checking allowed request types: {msg}"),
                       "currentRequestType": current, "allowedTypes": allowed, "blockedTypes": blocked}),
            );
        }
        let is = |l: &[String]| l.iter().any(|t| t == current);
        let (verdict, mode) = match (allowed.is_empty(), blocked.is_empty()) {
            (true, true) => (true, "unrestricted"),
            (true, false) => (!is(&blocked), "blocklist"),
            (false, true) => (is(&allowed), "allowlist"),
            (false, false) => (!is(&blocked) && is(&allowed), "combined"),
        };
        let explanation = match (mode, verdict) {
            ("combined", false) if is(&blocked) => {
                format!("Request type \"{current}\" is explicitly blocked.")
            }
            ("combined", false) => format!(
                "Request type \"{current}\" is not in the allowed list. Allowed types (excluding blocked): {}",
                allowed.iter().filter(|t| !blocked.contains(t)).cloned().collect::<Vec<_>>().join(", ")
            ),
            ("combined", true) => {
                format!("Request type \"{current}\" is allowed (in allowlist and not blocked).")
            }
            ("blocklist", true) => format!("Request type \"{current}\" is allowed (not in blocklist)."),
            ("blocklist", false) => format!("Request type \"{current}\" is blocked."),
            ("allowlist", true) => format!("Request type \"{current}\" is allowed."),
            ("allowlist", false) => format!(
                "Request type \"{current}\" is not allowed. Allowed types are: {}",
                allowed.join(", ")
            ),
            _ => format!("Request type \"{current}\" is allowed (no restrictions configured)."),
        };
        let mut data = Map::new();
        data.insert("currentRequestType".into(), json!(current));
        if !allowed.is_empty() {
            data.insert("allowedTypes".into(), json!(allowed));
        } else if mode == "unrestricted" {
            data.insert("allowedTypes".into(), json!(["all"]));
        }
        if !blocked.is_empty() {
            data.insert("blockedTypes".into(), json!(blocked));
        }
        data.insert("verdict".into(), json!(verdict));
        data.insert("explanation".into(), json!(explanation));
        let source = if from_params {
            "parameters"
        } else if mode != "unrestricted" {
            "metadata"
        } else {
            "default"
        };
        data.insert("source".into(), json!(source));
        data.insert("mode".into(), json!(mode));
        CheckOutcome::pass(verdict, Value::Object(data))
    }
}

#[derive(Debug)]
pub(crate) struct MetadataKeys {
    pub keys: Vec<String>,
    pub operator: Operator,
}

impl MetadataKeys {
    pub(crate) fn read(q: &mut Params<'_>) -> Option<MetadataKeys> {
        let keys = q.strings("metadataKeys", true);
        let operator = q.operator(Operator::All);
        Some(MetadataKeys {
            keys: keys?,
            operator,
        })
    }

    pub(crate) fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        if ctx.event != Event::Before {
            let mut o = CheckOutcome::error(
                "This plugin only works for before_request_hooks",
                Value::Null,
            );
            o.verdict = true;
            return o;
        }
        let (found, missing): (Vec<&String>, Vec<&String>) = self
            .keys
            .iter()
            .partition(|k| ctx.metadata.contains_key(k.as_str()));
        let verdict = self.operator.holds(found.len(), self.keys.len());
        let op = self.operator.name();
        let tail = match (verdict, self.operator) {
            (true, Operator::Any) => "At least one metadata key was found.",
            (true, Operator::All) => "All metadata keys were found.",
            (true, Operator::None) => "No metadata keys were found.",
            (false, Operator::Any) => "No metadata keys were found.",
            (false, Operator::All) => "Some metadata keys were missing.",
            (false, Operator::None) => "Some metadata keys were found.",
        };
        let status = if verdict { "passed" } else { "failed" };
        CheckOutcome::pass(
            verdict,
            json!({"explanation": format!("Check {status} for '{op}' metadata keys. {tail}"),
                   "missing_metadata_keys": missing, "found_metadata_keys": found, "operator": op}),
        )
    }
}
