//! Config forms of hooks into typed hooks, with the JSON path of every problem:
//! the full form (`before_request_hooks` / `after_request_hooks`), the shorthand
//! (`input_guardrails` / `output_guardrails`, and `input_mutators` / `output_mutators`, which
//! Portkey's code reads too), and references to named guardrails from the settings (a hook with
//! an `id` and no `checks`, or a string in a shorthand list). References are resolved when the
//! plan is built ([`inherit`]); an unknown id is a 400 naming it.

use super::checks;
use super::{CheckSpec, Event, FeedbackSpec, Hook, HookType, LeafHooks};
use crate::types::problems::Problems;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Keys of a shorthand object that are the hook's own, not checks.
const RESERVED: &[&str] = &[
    "deny",
    "on_fail",
    "on_success",
    "async",
    "id",
    "type",
    "guardrail_version_id",
    "sequential",
];

/// Fields a reference to a named guardrail may set over its definition.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub deny: Option<bool>,
    pub is_async: Option<bool>,
    pub sequential: Option<bool>,
    pub on_fail: Option<FeedbackSpec>,
    pub on_success: Option<FeedbackSpec>,
}

/// A hook as a config writes it: compiled, or the id of a named guardrail.
#[derive(Debug, Clone)]
pub enum HookRef {
    Inline {
        hook: Arc<Hook>,
        /// Where the hook was written (`config.before_request_hooks[0]`).
        path: String,
    },
    Named {
        id: String,
        /// Where the reference was written (`config.before_request_hooks[0]`).
        path: String,
        overrides: Overrides,
    },
}

/// A config node's own hooks: each list is `Some` when the node sets it (its full-form list
/// and its shorthand together), replacing the inherited one as Portkey does.
#[derive(Debug, Clone, Default)]
pub struct NodeHooks {
    pub before: Option<Vec<HookRef>>,
    pub after: Option<Vec<HookRef>>,
}

/// Guardrails defined in the settings, by id.
#[derive(Debug, Default)]
pub struct NamedGuardrails(pub HashMap<String, Arc<Hook>>);

/// Reads a node's hook fields; `None` when it has none.
pub(crate) fn node_hooks(
    obj: &Map<String, Value>,
    path: &str,
    p: &mut Problems,
) -> Option<NodeHooks> {
    let mut out = NodeHooks::default();
    let mut any = false;
    for (event, full, guardrails, mutators) in [
        (
            Event::Before,
            "before_request_hooks",
            "input_guardrails",
            "input_mutators",
        ),
        (
            Event::After,
            "after_request_hooks",
            "output_guardrails",
            "output_mutators",
        ),
    ] {
        let mut list: Option<Vec<HookRef>> = None;
        let push =
            |r: HookRef, list: &mut Option<Vec<HookRef>>| list.get_or_insert_with(Vec::new).push(r);
        if let Some(v) = obj.get(full) {
            any = true;
            let lp = format!("{path}.{full}");
            match v.as_array() {
                Some(items) => {
                    list.get_or_insert_with(Vec::new);
                    for (i, item) in items.iter().enumerate() {
                        if let Some(h) = full_hook(item, &format!("{lp}[{i}]"), event, false, p) {
                            push(h, &mut list);
                        }
                    }
                }
                None => p.push(&lp, "must be an array"),
            }
        }
        for (key, kind) in [
            (guardrails, HookType::Guardrail),
            (mutators, HookType::Mutator),
        ] {
            let Some(v) = obj.get(key) else { continue };
            any = true;
            let lp = format!("{path}.{key}");
            match v.as_array() {
                Some(items) => {
                    list.get_or_insert_with(Vec::new);
                    for (i, item) in items.iter().enumerate() {
                        let ip = format!("{lp}[{i}]");
                        if let Some(h) = shorthand(item, &ip, event, kind, false, p) {
                            push(h, &mut list);
                        }
                    }
                }
                None => p.push(&lp, "must be an array"),
            }
        }
        match event {
            Event::Before => out.before = list,
            Event::After => out.after = list,
        }
    }
    any.then_some(out)
}

/// The hooks of a target: its own lists where it sets them, else its parent's (shared, not
/// copied), with references to named guardrails resolved.
pub(crate) fn inherit(
    parent: &Arc<LeafHooks>,
    own: Option<&NodeHooks>,
    named: &NamedGuardrails,
    p: &mut Problems,
) -> Arc<LeafHooks> {
    let Some(own) = own.filter(|o| o.before.is_some() || o.after.is_some()) else {
        return parent.clone();
    };
    let resolve = |list: &[HookRef], p: &mut Problems| -> Vec<Arc<Hook>> {
        list.iter().filter_map(|r| resolve(r, named, p)).collect()
    };
    Arc::new(LeafHooks {
        before: match &own.before {
            Some(l) => resolve(l, p),
            None => parent.before.clone(),
        },
        after: match &own.after {
            Some(l) => resolve(l, p),
            None => parent.after.clone(),
        },
    })
}

fn resolve(r: &HookRef, named: &NamedGuardrails, p: &mut Problems) -> Option<Arc<Hook>> {
    match r {
        HookRef::Inline { hook, .. } => Some(hook.clone()),
        HookRef::Named {
            id,
            path,
            overrides,
        } => {
            let Some(def) = named.0.get(id) else {
                p.push(
                    path,
                    format!(
                        "no guardrail named {id:?} (define it under guardrails: in the settings)"
                    ),
                );
                return None;
            };
            let o = overrides;
            if o.deny.is_none()
                && o.is_async.is_none()
                && o.sequential.is_none()
                && o.on_fail.is_none()
                && o.on_success.is_none()
            {
                return Some(def.clone());
            }
            Some(Arc::new(Hook {
                id: def.id.clone(),
                kind: def.kind,
                checks: def.checks.clone(),
                deny: o.deny.unwrap_or(def.deny),
                is_async: o.is_async.unwrap_or(def.is_async),
                sequential: o.sequential.unwrap_or(def.sequential),
                on_fail: o.on_fail.clone().or_else(|| def.on_fail.clone()),
                on_success: o.on_success.clone().or_else(|| def.on_success.clone()),
                label: def.label.clone(),
            }))
        }
    }
}

/// Compiles the settings' `guardrails:` map. Errors name the field (`guardrails.<id>...`).
pub(crate) fn compile_named(
    defs: &BTreeMap<String, Value>,
) -> Result<NamedGuardrails, (String, String)> {
    let mut out = HashMap::new();
    for (id, v) in defs {
        let mut p = Problems::default();
        let path = format!("guardrails.{id}");
        let Some(obj) = v.as_object() else {
            return Err((path, "must be a hook: an object with checks".into()));
        };
        let kind = hook_type(obj, &path, &mut p).unwrap_or(HookType::Guardrail);
        let hook = if obj.contains_key("checks") {
            inline_hook(obj, &path, Event::Before, true, &mut p)
        } else {
            shorthand_inline(obj, &path, Event::Before, kind, true, &mut p)
        };
        if !p.0.is_empty() {
            return Err((path, p.0.join("; ")));
        }
        let Some(mut hook) = hook else {
            return Err((path, "must have checks".into()));
        };
        hook.id = Arc::from(id.as_str());
        hook.label = Arc::from(id.as_str());
        out.insert(id.clone(), Arc::new(hook));
    }
    Ok(NamedGuardrails(out))
}

fn full_hook(
    v: &Value,
    path: &str,
    event: Event,
    trusted: bool,
    p: &mut Problems,
) -> Option<HookRef> {
    let Some(obj) = v.as_object() else {
        p.push(path, "must be an object");
        return None;
    };
    if obj.contains_key("checks") {
        return inline_hook(obj, path, event, trusted, p).map(|h| HookRef::Inline {
            hook: Arc::new(h),
            path: path.to_string(),
        });
    }
    match obj.get("id") {
        Some(Value::String(id)) if !id.trim().is_empty() => Some(HookRef::Named {
            id: id.trim().to_string(),
            path: format!("{path}.id"),
            overrides: overrides(obj, path, p),
        }),
        _ => {
            p.push(
                path,
                "a hook needs checks, or the id of a guardrail defined in the settings",
            );
            None
        }
    }
}

fn shorthand(
    v: &Value,
    path: &str,
    event: Event,
    kind: HookType,
    trusted: bool,
    p: &mut Problems,
) -> Option<HookRef> {
    match v {
        Value::String(id) if !id.trim().is_empty() => Some(HookRef::Named {
            id: id.trim().to_string(),
            path: path.to_string(),
            overrides: Overrides::default(),
        }),
        Value::Object(obj) => {
            let has_checks = obj.keys().any(|k| !RESERVED.contains(&k.as_str()));
            match obj.get("id") {
                Some(Value::String(id)) if !has_checks && !id.trim().is_empty() => {
                    Some(HookRef::Named {
                        id: id.trim().to_string(),
                        path: format!("{path}.id"),
                        overrides: overrides(obj, path, p),
                    })
                }
                _ => {
                    shorthand_inline(obj, path, event, kind, trusted, p).map(|h| HookRef::Inline {
                        hook: Arc::new(h),
                        path: path.to_string(),
                    })
                }
            }
        }
        _ => {
            p.push(path, "must be a guardrail id or an object of checks");
            None
        }
    }
}

/// A shorthand object: reserved keys are the hook's, every other key is a check whose value
/// is its parameters.
fn shorthand_inline(
    obj: &Map<String, Value>,
    path: &str,
    event: Event,
    kind: HookType,
    trusted: bool,
    p: &mut Problems,
) -> Option<Hook> {
    let o = overrides(obj, path, p);
    let prefix = match event {
        Event::Before => "input",
        Event::After => "output",
    };
    let mut list = Vec::new();
    for (key, params) in obj.iter().filter(|(k, _)| !RESERVED.contains(&k.as_str())) {
        let cp = format!("{path}.{key}");
        let id = params
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or(key.as_str());
        let id = if id.contains('.') {
            id.to_string()
        } else {
            format!("default.{id}")
        };
        if let Some(c) = check_spec(&id, params, &cp, &cp, event, trusted, p) {
            list.push(c);
        }
    }
    if list.is_empty() {
        p.push(path, "has no checks");
        return None;
    }
    let id = match obj.get("id").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => format!("{prefix}_guardrail_{}", short_id()),
    };
    Some(Hook {
        id: Arc::from(id),
        kind,
        checks: Arc::new(list),
        deny: o.deny.unwrap_or(false),
        is_async: o.is_async.unwrap_or(false),
        sequential: o.sequential.unwrap_or(false),
        on_fail: o.on_fail,
        on_success: o.on_success,
        label: Arc::from(event.label()),
    })
}

/// Three base-36 characters, as Portkey's generated shorthand ids.
fn short_id() -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..3)
        .map(|_| char::from(DIGITS[rand::random_range(0..DIGITS.len())]))
        .collect()
}

fn inline_hook(
    obj: &Map<String, Value>,
    path: &str,
    event: Event,
    trusted: bool,
    p: &mut Problems,
) -> Option<Hook> {
    let kind = hook_type(obj, path, p).unwrap_or(HookType::Guardrail);
    let o = overrides(obj, path, p);
    let id = match obj.get("id") {
        None | Some(Value::Null) => format!("{}_{}", event.label(), short_id()),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            p.push(&format!("{path}.id"), "must be a string");
            String::new()
        }
    };
    let lp = format!("{path}.checks");
    let Some(items) = obj.get("checks").and_then(Value::as_array) else {
        p.push(&lp, "must be an array");
        return None;
    };
    let mut list = Vec::with_capacity(items.len());
    for (i, c) in items.iter().enumerate() {
        let cp = format!("{lp}[{i}]");
        let Some(co) = c.as_object() else {
            p.push(&cp, "must be an object with id and parameters");
            continue;
        };
        let Some(id) = co.get("id").and_then(Value::as_str) else {
            p.push(&format!("{cp}.id"), "is required");
            continue;
        };
        let empty = Value::Object(Map::new());
        let params = co.get("parameters").unwrap_or(&empty);
        if !params.is_object() {
            p.push(&format!("{cp}.parameters"), "must be an object");
            continue;
        }
        let enabled = co.get("is_enabled").and_then(Value::as_bool);
        if let Some(mut spec) = check_spec(
            id,
            params,
            &format!("{cp}.id"),
            &format!("{cp}.parameters"),
            event,
            trusted,
            p,
        ) {
            if let Some(e) = enabled {
                spec.enabled = e;
            }
            list.push(spec);
        }
    }
    Some(Hook {
        id: Arc::from(id),
        kind,
        checks: Arc::new(list),
        deny: o.deny.unwrap_or(false),
        is_async: o.is_async.unwrap_or(false),
        sequential: o.sequential.unwrap_or(false),
        on_fail: o.on_fail,
        on_success: o.on_success,
        label: Arc::from(event.label()),
    })
}

fn check_spec(
    id: &str,
    params: &Value,
    id_path: &str,
    params_path: &str,
    event: Event,
    trusted: bool,
    p: &mut Problems,
) -> Option<CheckSpec> {
    let empty = Map::new();
    let map = params.as_object().unwrap_or(&empty);
    let check = checks::compile(id, map, id_path, params_path, event, trusted, p)?;
    Some(CheckSpec {
        id: Arc::from(id),
        enabled: map
            .get("is_enabled")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        fail_on_error: map
            .get("failOnError")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        check,
        handles: Arc::default(),
    })
}

fn hook_type(obj: &Map<String, Value>, path: &str, p: &mut Problems) -> Option<HookType> {
    match obj.get("type")? {
        Value::String(s) if s == "guardrail" => Some(HookType::Guardrail),
        Value::String(s) if s == "mutator" => Some(HookType::Mutator),
        _ => {
            p.push(
                &format!("{path}.type"),
                "must be \"guardrail\" or \"mutator\"",
            );
            None
        }
    }
}

fn overrides(obj: &Map<String, Value>, path: &str, p: &mut Problems) -> Overrides {
    let mut flag = |key: &str| match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            p.push(&format!("{path}.{key}"), "must be true or false");
            None
        }
    };
    let deny = flag("deny");
    let is_async = flag("async");
    let sequential = flag("sequential");
    Overrides {
        deny,
        is_async,
        sequential,
        on_fail: feedback(obj, "on_fail", path, p),
        on_success: feedback(obj, "on_success", path, p),
    }
}

/// `on_fail: {feedback: {value, weight?, metadata?}}`.
fn feedback(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    p: &mut Problems,
) -> Option<FeedbackSpec> {
    let v = obj.get(key)?;
    let fp = format!("{path}.{key}.feedback");
    let Some(f) = v.get("feedback").and_then(Value::as_object) else {
        if !v.is_null() && v.get("feedback").is_some() {
            p.push(&fp, "must be an object with value");
        }
        return None;
    };
    let value = match f.get("value").and_then(Value::as_i64) {
        Some(n) if (-10..=10).contains(&n) => n,
        _ => {
            p.push(&format!("{fp}.value"), "must be an integer from -10 to 10");
            return None;
        }
    };
    let weight = match f.get("weight") {
        None | Some(Value::Null) => 1.0,
        Some(w) => match w.as_f64() {
            Some(w) if (0.0..=1.0).contains(&w) => w,
            _ => {
                p.push(&format!("{fp}.weight"), "must be a number from 0 to 1");
                return None;
            }
        },
    };
    let metadata = match f.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            p.push(&format!("{fp}.metadata"), "must be an object");
            return None;
        }
    };
    Some(FeedbackSpec {
        value,
        weight,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_guardrails_compile_and_report_their_path() {
        let mut defs = BTreeMap::new();
        defs.insert(
            "ok".to_string(),
            json!({"deny": true, "checks": [{"id": "default.wordCount", "parameters": {"maxWords": 5}}]}),
        );
        defs.insert("short".to_string(), json!({"regexMatch": {"rule": "x"}}));
        let named = compile_named(&defs).unwrap();
        assert!(named.0["ok"].deny);
        assert_eq!(&*named.0["short"].label, "short");
        assert_eq!(&*named.0["short"].checks[0].id, "default.regexMatch");
        defs.insert(
            "bad".to_string(),
            json!({"checks": [{"id": "default.regexMatch", "parameters": {}}]}),
        );
        let (field, reason) = compile_named(&defs).unwrap_err();
        assert_eq!(field, "guardrails.bad");
        assert!(reason.contains("checks,0,parameters,rule"), "{reason}");
    }
}
