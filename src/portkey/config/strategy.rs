//! The nested objects of a config node: `strategy` (current and legacy forms), `retry`,
//! `cache` and `cb_config`, each validated with Portkey's messages.

use super::*;

pub(super) fn mode(v: &Value, path: &str, p: &mut Problems) -> Option<Mode> {
    match v.as_str() {
        Some("single") => Some(Mode::Single),
        Some("fallback") => Some(Mode::Fallback),
        Some("loadbalance") | Some("ab_test") => Some(Mode::Loadbalance),
        Some("conditional") => Some(Mode::Conditional),
        _ => {
            p.push(path, MODE_MESSAGE);
            None
        }
    }
}

pub(super) fn strategy(v: &Value, path: &str, p: &mut Problems) -> Option<StrategySpec> {
    let Some(obj) = v.as_object() else {
        p.push(path, "must be an object");
        return None;
    };
    let mut s = StrategySpec::default();
    match obj.get("mode") {
        Some(m) => s.mode = mode(m, &format!("{path}.mode"), p),
        None => p.push(&format!("{path}.mode"), "is required"),
    }
    if let Some(c) = obj.get("on_status_codes") {
        s.on_status_codes = status_codes(c, &format!("{path}.on_status_codes"), p);
    }
    s.default = string(obj, "default", path, p);
    if let Some(v) = obj.get("sticky").filter(|v| !v.is_null()) {
        s.sticky = sticky(v, &format!("{path}.sticky"), p);
    }
    s.has_conditions = obj.get("conditions").is_some_and(|c| !c.is_null());
    if let Some(list) = obj.get("conditions") {
        let lp = format!("{path}.conditions");
        match list.as_array() {
            Some(items) => {
                for (i, c) in items.iter().enumerate() {
                    let cp = format!("{lp}[{i}]");
                    let Some(co) = c.as_object() else {
                        p.push(&cp, "must be an object with query and then");
                        continue;
                    };
                    let then = string(co, "then", &cp, p);
                    if then.is_none() && !co.contains_key("then") {
                        p.push(&format!("{cp}.then"), "is required");
                    }
                    let query = match co.get("query") {
                        Some(q) => match conditions::compile(q, &format!("{cp}.query")) {
                            Ok(q) => Some(q),
                            Err(faults) => {
                                for fault in faults {
                                    match fault {
                                        conditions::Fault::Schema(ep, m) => p.push(&ep, m),
                                        conditions::Fault::Router(m) => p.push_router(m),
                                    }
                                }
                                None
                            }
                        },
                        None => {
                            p.push(&format!("{cp}.query"), "is required");
                            None
                        }
                    };
                    if let (Some(query), Some(then)) = (query, then) {
                        s.conditions.push(Condition { query, then });
                    }
                }
            }
            None => p.push(&lp, "must be an array"),
        }
    }
    Some(s)
}

/// `strategy.sticky`: validated whether enabled or not, kept only when `enabled` is true.
pub(super) fn sticky(v: &Value, path: &str, p: &mut Problems) -> Option<StickySpec> {
    let Some(obj) = v.as_object() else {
        p.push(path, "must be an object with enabled and hash_fields");
        return None;
    };
    let enabled = boolean(obj, "enabled", path, p).unwrap_or(false);
    let ttl = positive_int(obj, "ttl", path, p);
    let fp = format!("{path}.hash_fields");
    let mut fields = Vec::new();
    match obj.get("hash_fields") {
        None | Some(Value::Null) => {
            if enabled {
                p.push(&fp, "is required when sticky is enabled");
            }
        }
        Some(Value::Array(items)) if items.len() > MAX_STICKY_FIELDS => {
            p.push(&fp, format!("at most {MAX_STICKY_FIELDS} fields"));
        }
        Some(Value::Array(items)) => {
            if items.is_empty() && enabled {
                p.push(&fp, "needs at least one field");
            }
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(str::trim).ok_or(STICKY_FIELD_MESSAGE) {
                    Ok(name) => match sticky_field(name) {
                        Ok(f) => fields.push(f),
                        Err(why) => p.push(&format!("{fp}[{i}]"), why),
                    },
                    Err(why) => p.push(&format!("{fp}[{i}]"), why),
                }
            }
        }
        Some(_) => p.push(&fp, "must be an array of strings"),
    }
    enabled.then_some(StickySpec { fields, ttl })
}

const STICKY_FIELD_MESSAGE: &str =
    "must be \"metadata.<key>\", \"params.<field>\" or \"headers.<name>\"";

/// One `hash_fields` entry: its source and the name within it.
fn sticky_field(name: &str) -> Result<StickyField, &'static str> {
    let (source, rest) = name.split_once('.').ok_or(STICKY_FIELD_MESSAGE)?;
    if rest.is_empty() {
        return Err(STICKY_FIELD_MESSAGE);
    }
    match source {
        "metadata" => Ok(StickyField::Metadata(rest.to_string())),
        "params" => {
            let parts: Vec<String> = rest.split('.').map(str::to_string).collect();
            if parts.iter().any(String::is_empty) {
                return Err(STICKY_FIELD_MESSAGE);
            }
            Ok(StickyField::Params(parts))
        }
        "headers" => http::HeaderName::from_bytes(rest.to_ascii_lowercase().as_bytes())
            .map(StickyField::Header)
            .map_err(|_| "is not a valid header name"),
        _ => Err(STICKY_FIELD_MESSAGE),
    }
}

pub(super) fn legacy(v: &Value, path: &str, p: &mut Problems) -> Option<StrategySpec> {
    let m = mode(v, path, p)?;
    if m == Mode::Conditional {
        p.push(
            path,
            "the legacy form has no conditional mode; use strategy",
        );
        return None;
    }
    Some(StrategySpec {
        mode: Some(m),
        ..Default::default()
    })
}

pub(super) fn retry(v: &Value, path: &str, p: &mut Problems) -> Option<RetrySpec> {
    let Some(obj) = v.as_object() else {
        p.push(path, "must be an object");
        return None;
    };
    let attempts = match obj.get("attempts") {
        None => 0,
        Some(a) => match a.as_u64() {
            Some(n) => n.min(u64::from(MAX_ATTEMPTS)) as u32,
            None => {
                p.push(&format!("{path}.attempts"), "must be a whole number ≥ 0");
                0
            }
        },
    };
    let on_status_codes = obj
        .get("on_status_codes")
        .and_then(|c| status_codes(c, &format!("{path}.on_status_codes"), p));
    // Portkey's open-source gateway spells it without the s, its hosted docs with it.
    let use_retry_after_header = boolean(obj, "use_retry_after_header", path, p)
        .or_else(|| boolean(obj, "use_retry_after_headers", path, p))
        .unwrap_or(false);
    Some(RetrySpec {
        attempts,
        on_status_codes,
        use_retry_after_header,
    })
}

pub(super) fn cache(v: &Value, path: &str, p: &mut Problems) -> Option<CacheSpec> {
    let mode_of = |s: &str| match s {
        "simple" => Some(CacheMode::Simple),
        "semantic" => Some(CacheMode::Semantic),
        _ => None,
    };
    match v {
        Value::String(s) => match mode_of(s) {
            Some(mode) => Some(CacheSpec {
                mode,
                max_age: None,
                threshold: None,
            }),
            None => {
                p.push(path, "must be \"simple\" or \"semantic\"");
                None
            }
        },
        Value::Object(obj) => {
            let mode = match obj.get("mode").and_then(Value::as_str).and_then(mode_of) {
                Some(m) => m,
                None => {
                    p.push(
                        &format!("{path}.mode"),
                        "must be \"simple\" or \"semantic\"",
                    );
                    return None;
                }
            };
            let threshold = match obj.get("threshold") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_f64().filter(|t| *t > 0.0 && *t <= 1.0) {
                    #[allow(clippy::cast_possible_truncation)]
                    Some(t) => Some(t as f32),
                    None => {
                        p.push(&format!("{path}.threshold"), "must be a number in (0, 1]");
                        None
                    }
                },
            };
            Some(CacheSpec {
                mode,
                max_age: positive_int(obj, "max_age", path, p),
                threshold,
            })
        }
        _ => {
            p.push(
                path,
                "must be \"simple\", \"semantic\" or an object with mode",
            );
            None
        }
    }
}

/// Parses a standalone `cb_config` (the settings' default breaker).
pub(crate) fn parse_breaker(v: &Value, path: &str) -> Result<BreakerConfig, Problems> {
    let mut p = Problems::default();
    match breaker(v, path, &mut p) {
        Some(cfg) if p.0.is_empty() => Ok(cfg),
        _ => Err(p),
    }
}

pub(super) fn breaker(v: &Value, path: &str, p: &mut Problems) -> Option<BreakerConfig> {
    let Some(obj) = v.as_object() else {
        p.push(path, "must be an object");
        return None;
    };
    let pct = obj.get("failure_threshold_percentage").and_then(|x| {
        let ok = x.as_f64().filter(|f| *f > 0.0 && *f <= 100.0);
        if ok.is_none() {
            p.push(
                &format!("{path}.failure_threshold_percentage"),
                "must be a number in (0, 100]",
            );
        }
        ok
    });
    let cfg = BreakerConfig {
        failure_threshold: positive_int(obj, "failure_threshold", path, p)
            .map(|n| n.min(u64::from(u32::MAX)) as u32),
        failure_threshold_percentage: pct,
        minimum_requests: positive_int(obj, "minimum_requests", path, p)
            .map(|n| n.min(u64::from(u32::MAX)) as u32),
        cooldown_interval: positive_int(obj, "cooldown_interval", path, p),
        on_status_codes: obj
            .get("on_status_codes")
            .and_then(|c| status_codes(c, &format!("{path}.on_status_codes"), p)),
    };
    if cfg.failure_threshold.is_none() && cfg.failure_threshold_percentage.is_none() {
        p.push(
            path,
            "needs failure_threshold or failure_threshold_percentage",
        );
    }
    Some(cfg)
}
