//! The feedback API (Portkey's hosted `/v1/feedback`): feedback is validated, given
//! an id, counted in metrics and written as an access-log line joinable with the request's line
//! by trace id. The gateway keeps no database: the log is the record. A bounded index of recent
//! ids lets `PUT /v1/feedback/{id}` find the trace it belongs to.

use crate::error::GatewayError;
use crate::portkey::headers::MAX_TRACE_ID_LEN;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Ids remembered for updates; older ones are forgotten first.
const INDEX_SIZE: usize = 10_000;
const MAX_ITEMS: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Feedback {
    pub trace_id: String,
    pub value: i64,
    pub weight: f64,
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Update {
    pub value: Option<i64>,
    pub weight: Option<f64>,
    pub metadata: Option<Map<String, Value>>,
}

fn bad(field: &str, why: &str) -> GatewayError {
    GatewayError::InvalidFeedback(format!("{field}: {why}"))
}

fn value_of(v: &Value, field: &str) -> Result<i64, GatewayError> {
    match v.as_i64() {
        Some(n) if (-10..=10).contains(&n) => Ok(n),
        _ => Err(bad(field, "must be an integer from -10 to 10")),
    }
}

fn weight_of(v: &Value, field: &str) -> Result<f64, GatewayError> {
    match v.as_f64() {
        Some(w) if (0.0..=1.0).contains(&w) => Ok(w),
        _ => Err(bad(field, "must be a number from 0 to 1")),
    }
}

fn metadata_of(v: &Value, field: &str) -> Result<Map<String, Value>, GatewayError> {
    let Some(map) = v.as_object() else {
        return Err(bad(field, "must be an object of string values"));
    };
    for (k, val) in map {
        if !val.is_string() {
            return Err(bad(&format!("{field}.{k}"), "must be a string"));
        }
    }
    Ok(map.clone())
}

fn one(v: &Value, prefix: &str) -> Result<Feedback, GatewayError> {
    let Some(obj) = v.as_object() else {
        return Err(bad(
            if prefix.is_empty() { "body" } else { prefix },
            "must be an object",
        ));
    };
    let f = |name: &str| format!("{prefix}{name}");
    let trace_id = match obj.get("trace_id") {
        Some(Value::String(s)) if s.chars().count() > MAX_TRACE_ID_LEN => {
            return Err(bad(
                &f("trace_id"),
                &format!("is longer than {MAX_TRACE_ID_LEN} characters"),
            ))
        }
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(_) => return Err(bad(&f("trace_id"), "must be a non-empty string")),
        None => return Err(bad(&f("trace_id"), "is required")),
    };
    let value = match obj.get("value") {
        Some(v) => value_of(v, &f("value"))?,
        None => return Err(bad(&f("value"), "is required")),
    };
    let weight = match obj.get("weight") {
        Some(w) => weight_of(w, &f("weight"))?,
        None => 1.0,
    };
    let metadata = match obj.get("metadata") {
        Some(m) => metadata_of(m, &f("metadata"))?,
        None => Map::new(),
    };
    Ok(Feedback {
        trace_id,
        value,
        weight,
        metadata,
    })
}

/// `POST /v1/feedback`: one object or an array of them.
pub(crate) fn parse_create(body: &[u8]) -> Result<Vec<Feedback>, GatewayError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    match &v {
        Value::Array(items) if items.is_empty() => Err(bad("body", "the array is empty")),
        Value::Array(items) if items.len() > MAX_ITEMS => Err(bad(
            "body",
            &format!("at most {MAX_ITEMS} feedback items per request"),
        )),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| one(item, &format!("[{i}].")))
            .collect(),
        _ => Ok(vec![one(&v, "")?]),
    }
}

/// `PUT /v1/feedback/{id}`: any of value, weight, metadata.
pub(crate) fn parse_update(body: &[u8]) -> Result<Update, GatewayError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let Some(obj) = v.as_object() else {
        return Err(bad("body", "must be an object"));
    };
    let u = Update {
        value: obj.get("value").map(|x| value_of(x, "value")).transpose()?,
        weight: obj
            .get("weight")
            .map(|x| weight_of(x, "weight"))
            .transpose()?,
        metadata: obj
            .get("metadata")
            .map(|x| metadata_of(x, "metadata"))
            .transpose()?,
    };
    if u == Update::default() {
        return Err(bad("body", "needs value, weight or metadata"));
    }
    Ok(u)
}

/// Recent feedback ids → trace ids.
#[derive(Default)]
pub struct FeedbackIndex {
    inner: Mutex<(HashMap<String, String>, VecDeque<String>)>,
}

impl FeedbackIndex {
    pub(crate) fn insert(&self, id: &str, trace_id: &str) {
        if let Ok(mut g) = self.inner.lock() {
            let (map, order) = &mut *g;
            if map.len() >= INDEX_SIZE {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
            map.insert(id.to_string(), trace_id.to_string());
            order.push_back(id.to_string());
        }
    }

    pub(crate) fn trace_of(&self, id: &str) -> Option<String> {
        self.inner.lock().ok()?.0.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_length_limited_like_the_header() {
        let long = "t".repeat(MAX_TRACE_ID_LEN + 1);
        let body = format!(r#"{{"trace_id":"{long}","value":1}}"#);
        assert_eq!(parse_create(body.as_bytes()).unwrap_err().status(), 400);
        let ok = "t".repeat(MAX_TRACE_ID_LEN);
        let body = format!(r#"{{"trace_id":"{ok}","value":1}}"#);
        assert!(parse_create(body.as_bytes()).is_ok());
    }

    #[test]
    fn accepts_the_seed_example_and_arrays() {
        let f = parse_create(br#"{"trace_id":"anyscale_portkey_test","value":1,"weight":0.5}"#)
            .unwrap();
        assert_eq!(f[0].trace_id, "anyscale_portkey_test");
        assert_eq!((f[0].value, f[0].weight), (1, 0.5));
        let f = parse_create(br#"[{"trace_id":"a","value":-10},{"trace_id":"b","value":10,"metadata":{"_user":"u"}}]"#).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].weight, 1.0, "weight defaults to 1");
    }

    #[test]
    fn errors_name_the_field() {
        for (body, field) in [
            (&br#"{"value":1}"#[..], "trace_id: is required"),
            (br#"{"trace_id":"t"}"#, "value: is required"),
            (
                br#"{"trace_id":"t","value":11}"#,
                "value: must be an integer",
            ),
            (
                br#"{"trace_id":"t","value":1.5}"#,
                "value: must be an integer",
            ),
            (
                br#"{"trace_id":"t","value":1,"weight":2}"#,
                "weight: must be a number from 0 to 1",
            ),
            (
                br#"{"trace_id":"t","value":1,"metadata":{"a":1}}"#,
                "metadata.a: must be a string",
            ),
            (
                br#"[{"trace_id":"t","value":1},{"trace_id":"","value":1}]"#,
                "[1].trace_id",
            ),
            (br#"[]"#, "body: the array is empty"),
        ] {
            let e = parse_create(body).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(e.to_string().contains(field), "{e} should name {field}");
        }
        assert!(parse_update(br#"{}"#).is_err());
        assert!(parse_update(br#"{"value":-11}"#).is_err());
        assert_eq!(
            parse_update(br#"{"weight":0.2}"#).unwrap().weight,
            Some(0.2)
        );
    }

    #[test]
    fn index_is_bounded() {
        let idx = FeedbackIndex::default();
        for i in 0..INDEX_SIZE + 5 {
            idx.insert(&i.to_string(), "t");
        }
        assert!(idx.trace_of("0").is_none());
        assert_eq!(
            idx.trace_of(&(INDEX_SIZE + 4).to_string()).as_deref(),
            Some("t")
        );
    }
}
