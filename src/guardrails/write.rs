//! JSON written straight into a buffer, byte for byte as `serde_json` writes it (compact, the
//! same string escapes, object keys in `serde_json::Map`'s sorted order), so that
//! `hook_results` is produced without building `serde_json::Value` documents first: a check
//! writes its `data` once, when it runs ([`Obj`] → [`Data`]), and the hook results are then
//! copied out ([`crate::guardrails::engine::HookResult::write`]).

use serde_json::Value;
use std::cell::RefCell;

/// What `serde_json` writes for each byte: 0 for the byte itself, else the escape's letter
/// (`u` for `\u00XX`).
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether any of the eight bytes needs an escape: below 0x20, `"` or `\`.
fn needs_escape(chunk: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = chunk.wrapping_sub(ONES * 0x20) & !chunk & HIGH;
    below_space
        | zero_in(chunk ^ (ONES * u64::from(b'"')))
        | zero_in(chunk ^ (ONES * u64::from(b'\\')))
        != 0
}

/// Appends `s` escaped, without the quotes. Text that needs no escape (most of it) is found
/// eight bytes at a time and copied with one append.
pub(crate) fn fragment(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut clean = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if needs_escape(u64::from_le_bytes(word)) {
            break;
        }
        clean += 8;
    }
    let rest = bytes.get(clean..).unwrap_or_default();
    let Some(first) = rest.iter().position(|&b| ESCAPE[usize::from(b)] != 0) else {
        out.extend_from_slice(bytes);
        return;
    };
    let first = clean + first;
    out.extend_from_slice(bytes.get(..first).unwrap_or_default());
    let bytes = bytes.get(first..).unwrap_or_default();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[usize::from(b)];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        if esc == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

/// Appends `s` as a JSON string.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    fragment(out, s);
    out.push(b'"');
}

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
            debug_assert!(p.bytes().all(|b| ESCAPE[usize::from(b)] == 0), "{p:?}");
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

/// `created_at`: an RFC 3339 timestamp with milliseconds, as `now_rfc3339` writes it, formatted
/// at most once per millisecond per thread (each check and hook takes one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    len: u8,
    bytes: [u8; 32],
}

impl Stamp {
    pub(crate) fn now() -> Stamp {
        Stamp::at(std::time::SystemTime::now())
    }

    /// The stamp of a wall-clock time.
    pub(crate) fn at(now: std::time::SystemTime) -> Stamp {
        thread_local! {
            static LAST: RefCell<(u128, Stamp)> = const {
                RefCell::new((u128::MAX, Stamp { len: 0, bytes: [0; 32] }))
            };
        }
        let ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            if last.0 != ms {
                // Formatted in place (no String): 24 bytes, `2026-01-02T03:04:05.678Z`.
                let mut stamp = Stamp {
                    len: 0,
                    bytes: [0; 32],
                };
                use std::fmt::Write;
                if write!(stamp, "{}", humantime::format_rfc3339_millis(now)).is_err() {
                    stamp.len = 0;
                }
                *last = (ms, stamp);
            }
            last.1
        })
    }

    /// The timestamp's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// Appends the timestamp as a JSON string (its characters need no escape).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        out.extend_from_slice(self.as_bytes());
        out.push(b'"');
    }
}

/// Formatting into the stamp's bytes; text past them is an error.
impl std::fmt::Write for Stamp {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let start = usize::from(self.len);
        let end = start + s.len();
        let slot = self.bytes.get_mut(start..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = u8::try_from(end).map_err(|_| std::fmt::Error)?;
        Ok(())
    }
}

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

    #[test]
    fn stamps_are_rfc3339_millis() {
        let s = Stamp::now();
        assert_eq!(s.as_str().len(), 24, "{}", s.as_str());
        assert!(s.as_str().ends_with('Z'));
        assert!(humantime::parse_rfc3339(s.as_str()).is_ok());
    }
}
