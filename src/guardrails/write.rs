//! JSON written straight into a buffer, byte for byte as `serde_json` writes it (compact, the
//! same string escapes, object keys in `serde_json::Map`'s sorted order), so that
//! `hook_results` is produced without building `serde_json::Value` documents first: a check
//! writes its `data` once, when it runs ([`Obj`] → [`Data`]), and the hook results are then
//! copied out ([`crate::guardrails::engine::HookResult::write`]).

use serde_json::Value;

pub(crate) use crate::types::json::{fragment, string};

pub(crate) fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

pub(crate) fn bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Appends any serialisable value as `serde_json` does (for the rare parts: feedback, a
/// webhook's answer).
pub(crate) fn serde(out: &mut Vec<u8>, v: &impl serde::Serialize) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// A check's `data`: the JSON text, written once when the check ran. Kept as bytes: it is
/// only ever copied into an answer, so it is never validated as UTF-8 again (every writer
/// here appends whole `&str`s and ASCII, so it is UTF-8 by construction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data(Vec<u8>);

impl Data {
    /// The JSON text.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The JSON text as a string (tests and diagnostics).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("null")
    }

    /// The data as a JSON document (tests, and readers that want one).
    #[cfg(test)]
    pub(crate) fn value(&self) -> Value {
        serde_json::from_slice(&self.0).unwrap_or(Value::Null)
    }
}

impl From<Value> for Data {
    fn from(v: Value) -> Data {
        Data::from(&v)
    }
}

impl From<&Value> for Data {
    fn from(v: &Value) -> Data {
        let mut out = Vec::with_capacity(128);
        serde(&mut out, v);
        Data(out)
    }
}

impl std::fmt::Display for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes one JSON object, member by member. Keys must come in `serde_json::Map`'s order
/// (sorted by bytes), as `json!` objects are written; debug builds check it.
pub(crate) struct Obj {
    out: Vec<u8>,
    #[cfg(debug_assertions)]
    last: &'static str,
}

impl Default for Obj {
    fn default() -> Obj {
        Obj::new()
    }
}

impl Obj {
    pub(crate) fn new() -> Obj {
        let mut out = Vec::with_capacity(256);
        out.push(b'{');
        Obj {
            out,
            #[cfg(debug_assertions)]
            last: "",
        }
    }

    /// Writes `"key":`; the key is written as is (it needs no escape).
    pub(crate) fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        #[cfg(debug_assertions)]
        {
            debug_assert!(self.last < key, "{key:?} after {:?}", self.last);
            self.last = key;
        }
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        &mut self.out
    }

    pub(crate) fn str(mut self, key: &'static str, v: &str) -> Obj {
        string(self.key(key), v);
        self
    }

    /// A string whose inside is already escaped.
    pub(crate) fn escaped(mut self, key: &'static str, inside: &[u8]) -> Obj {
        let out = self.key(key);
        out.reserve(inside.len() + 2);
        out.push(b'"');
        out.extend_from_slice(inside);
        out.push(b'"');
        self
    }

    /// A string made of `parts` that need no escape: literals and numbers (debug builds
    /// check it).
    pub(crate) fn plain(mut self, key: &'static str, parts: &[&str]) -> Obj {
        let out = self.key(key);
        out.reserve(parts.iter().map(|p| p.len()).sum::<usize>() + 2);
        out.push(b'"');
        for p in parts {
            debug_assert!(!crate::types::json::needs_escape(p.as_bytes()), "{p:?}");
            out.extend_from_slice(p.as_bytes());
        }
        out.push(b'"');
        self
    }

    /// A string made of `parts` (each escaped).
    pub(crate) fn text(mut self, key: &'static str, parts: &[&str]) -> Obj {
        let out = self.key(key);
        out.reserve(parts.iter().map(|p| p.len()).sum::<usize>() + 2);
        out.push(b'"');
        for p in parts {
            fragment(out, p);
        }
        out.push(b'"');
        self
    }

    pub(crate) fn bool(mut self, key: &'static str, v: bool) -> Obj {
        bool(self.key(key), v);
        self
    }

    pub(crate) fn int(mut self, key: &'static str, v: impl itoa::Integer) -> Obj {
        int(self.key(key), v);
        self
    }

    pub(crate) fn null(mut self, key: &'static str) -> Obj {
        self.key(key).extend_from_slice(b"null");
        self
    }

    /// An array of strings.
    pub(crate) fn strs<'s>(
        mut self,
        key: &'static str,
        items: impl IntoIterator<Item = &'s str>,
    ) -> Obj {
        let out = self.key(key);
        out.push(b'[');
        for (i, s) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, s);
        }
        out.push(b']');
        self
    }

    /// Any serialisable value, as `serde_json` writes it.
    pub(crate) fn serde(mut self, key: &'static str, v: &impl serde::Serialize) -> Obj {
        serde(self.key(key), v);
        self
    }

    /// Already written JSON.
    pub(crate) fn raw(mut self, key: &'static str, json: &[u8]) -> Obj {
        self.key(key).extend_from_slice(json);
        self
    }

    pub(crate) fn done(mut self) -> Data {
        self.out.push(b'}');
        Data(self.out)
    }
}

pub(crate) use crate::types::time::Stamp;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut all = String::new();
        for c in (0u8..0x80).map(char::from) {
            all.push(c);
        }
        all.push_str("é😀\u{2028}\u{fffd}");
        let mut out = Vec::new();
        string(&mut out, &all);
        assert_eq!(out, serde_json::to_vec(&all).unwrap());
        // The eight-bytes-at-a-time scan: an escape at every offset of a longer text.
        for special in ["\"", "\\", "\n", "\u{1}", "\u{1f}"] {
            for i in 0..40 {
                let s = format!(
                    "{}{special}{}",
                    "abcdefgh".repeat(5).get(..i).unwrap(),
                    "é xyz".repeat(3)
                );
                let mut out = Vec::new();
                string(&mut out, &s);
                assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
            }
        }
        // Escapes after the first, with clean runs of every length between them.
        let mut s = String::new();
        for i in 0..40 {
            s.push_str("lorem ipsum dolor sit amet, consectetur".get(..i).unwrap());
            s.push(['\n', '"', '\\', '\t', '\u{2}'][i % 5]);
        }
        let mut out = Vec::new();
        string(&mut out, &s);
        assert_eq!(out, serde_json::to_vec(&s).unwrap());
    }

    #[test]
    fn objects_match_json_objects() {
        let d = Obj::new()
            .str("a", "x\"y")
            .bool("b", true)
            .int("c", -3i64)
            .null("d")
            .strs("e", ["p", "q"])
            .text("f", &["one ", "\"two\"", "3"])
            .serde("g", &json!({"z": 1.5, "a": [null]}))
            .done();
        let want = json!({"a": "x\"y", "b": true, "c": -3, "d": null, "e": ["p", "q"],
                          "f": "one \"two\"3", "g": {"a": [null], "z": 1.5}});
        assert_eq!(d.as_str(), serde_json::to_string(&want).unwrap());
        assert_eq!(d.value(), want);
        assert_eq!(Data::from(&want).as_str(), d.as_str());
        assert_eq!(Obj::new().done().as_str(), "{}");
    }
}
