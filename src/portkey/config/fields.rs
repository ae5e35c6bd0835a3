//! Readers of a config node's plain fields, each pushing a problem with its path when the
//! value has the wrong type.

use super::*;

pub(super) fn string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    p: &mut Problems,
) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Null => None,
        _ => {
            p.push(&format!("{path}.{key}"), "must be a non-empty string");
            None
        }
    }
}

pub(super) fn boolean(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    p: &mut Problems,
) -> Option<bool> {
    match obj.get(key)? {
        Value::Bool(b) => Some(*b),
        _ => {
            p.push(&format!("{path}.{key}"), "must be true or false");
            None
        }
    }
}

pub(super) fn object(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    p: &mut Problems,
) -> Option<Map<String, Value>> {
    match obj.get(key)? {
        Value::Object(m) => Some(m.clone()),
        _ => {
            p.push(&format!("{path}.{key}"), "must be an object");
            None
        }
    }
}

pub(super) fn positive_int(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    p: &mut Problems,
) -> Option<u64> {
    let v = obj.get(key)?;
    match v.as_u64() {
        Some(n) if n > 0 => Some(n),
        _ => {
            p.push(
                &format!("{path}.{key}"),
                "must be a whole number greater than 0",
            );
            None
        }
    }
}

pub(super) fn weight(obj: &Map<String, Value>, path: &str, p: &mut Problems) -> Option<f64> {
    let v = obj.get("weight")?;
    match v.as_f64() {
        Some(w) if w.is_finite() && w >= 0.0 => Some(w),
        _ => {
            p.push(&format!("{path}.weight"), "must be a number ≥ 0");
            None
        }
    }
}

pub(super) fn string_list(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    p: &mut Problems,
) -> Option<Vec<String>> {
    let v = obj.get(key)?;
    let list = v.as_array().and_then(|a| {
        a.iter()
            .map(|x| x.as_str().map(|s| s.trim().to_ascii_lowercase()))
            .collect::<Option<Vec<String>>>()
    });
    if list.is_none() {
        p.push(&format!("{path}.{key}"), "must be an array of strings");
    }
    list
}

/// `forward_headers`, each name checked by the same rule as `x-portkey-forward-headers`.
pub(super) fn forward_headers(
    obj: &Map<String, Value>,
    path: &str,
    p: &mut Problems,
) -> Option<Vec<String>> {
    let names = string_list(obj, "forward_headers", path, p)?;
    let mut ok = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        match crate::portkey::headers::forward_header_name(name) {
            Ok(n) => ok.push(n),
            Err(why) => p.push(&format!("{path}.forward_headers[{i}]"), why),
        }
    }
    Some(ok)
}

pub(super) fn status_codes(v: &Value, path: &str, p: &mut Problems) -> Option<Vec<u16>> {
    let codes = v.as_array().and_then(|a| {
        a.iter()
            .map(|x| {
                x.as_u64()
                    .filter(|c| (100..=599).contains(c))
                    .map(|c| c as u16)
            })
            .collect::<Option<Vec<u16>>>()
    });
    if codes.is_none() {
        p.push(path, "must be an array of HTTP status codes (100-599)");
    }
    codes
}
