//! `x-portkey-metadata` as Portkey defines it: a JSON object whose values are strings of at most
//! 128 characters (the special keys `_user`, `_organisation`, `_environment`, `_prompt` are
//! ordinary keys here and kept as they are).

use crate::error::GatewayError;
use serde_json::{Map, Value};

pub(crate) const MAX_VALUE_CHARS: usize = 128;
pub(crate) const MAX_KEYS: usize = 64;

fn invalid(reason: String) -> GatewayError {
    GatewayError::InvalidHeader {
        name: "x-portkey-metadata",
        reason,
    }
}

/// Parses and checks the header; absent means empty.
pub fn parse(raw: Option<&str>) -> Result<Map<String, Value>, GatewayError> {
    let Some(raw) = raw else {
        return Ok(Map::new());
    };
    let map: Map<String, Value> = serde_json::from_str(raw)
        .map_err(|_| invalid("must be a JSON object of string values".into()))?;
    if map.len() > MAX_KEYS {
        return Err(invalid(format!("has more than {MAX_KEYS} keys")));
    }
    for (k, v) in &map {
        match v {
            Value::String(s) if s.chars().count() <= MAX_VALUE_CHARS => {}
            Value::String(_) => {
                return Err(invalid(format!(
                    "key {k:?}: values are at most {MAX_VALUE_CHARS} characters"
                )))
            }
            _ => return Err(invalid(format!("key {k:?}: values must be strings"))),
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_portkey_metadata() {
        let m = parse(Some(
            r#"{"_user":"userid123","_environment":"production","session_id":"1729"}"#,
        ))
        .unwrap();
        assert_eq!(m["_user"], "userid123");
        assert!(parse(None).unwrap().is_empty());
    }

    #[test]
    fn names_the_bad_key() {
        let long = format!(r#"{{"note":"{}"}}"#, "x".repeat(129));
        for (raw, needle) in [
            (r#"{"n": 5}"#.to_string(), "\"n\""),
            (long, "\"note\""),
            ("[1]".to_string(), "JSON object"),
            ("nope".to_string(), "JSON object"),
        ] {
            let e = parse(Some(&raw)).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}
