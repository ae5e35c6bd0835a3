//! JSON objects written by hand, for the access-log line written once per request.
//!
//! serde_json's serializer escapes every key and every string value byte by byte, a visible
//! share of a chat request's whole cost (see `docs/performance.md`).
//! Here keys are constants copied as they are, and a string value is copied in one piece
//! unless it holds a byte that must be escaped. The output is serde_json's, byte for byte
//! (numbers are formatted by the same code; `record`'s tests compare whole lines).

use serde::Serialize;

/// An object being written into `out`: `{` on creation, `}` on [`Object::end`].
pub(crate) struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    /// Writes `"key":` (after a comma unless first) and hands back the output for the value.
    /// Keys are the code's own constants: they never need escaping.
    pub(crate) fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(!needs_escape(key.as_bytes()), "key {key:?} needs escaping");
        if self.first {
            self.first = false;
        } else {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub(crate) fn str(&mut self, key: &'static str, value: &str) {
        string(self.key(key), value);
    }

    /// The string, or `null`.
    pub(crate) fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    pub(crate) fn null(&mut self, key: &'static str) {
        self.key(key).extend_from_slice(b"null");
    }

    pub(crate) fn bool(&mut self, key: &'static str, value: bool) {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.key(key).extend_from_slice(text);
    }

    pub(crate) fn uint(&mut self, key: &'static str, value: u64) {
        let mut buf = itoa::Buffer::new();
        self.key(key)
            .extend_from_slice(buf.format(value).as_bytes());
    }

    /// A float as serde_json writes it: the shortest form that reads back, by the formatter
    /// serde_json calls, or `null` if not finite.
    pub(crate) fn float(&mut self, key: &'static str, value: f64) {
        let out = self.key(key);
        if value.is_finite() {
            out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    }

    /// The float, or `null`.
    pub(crate) fn opt_float(&mut self, key: &'static str, value: Option<f64>) {
        match value {
            Some(v) => self.float(key, v),
            None => self.null(key),
        }
    }

    /// Any other value, through serde_json. Writing into a `Vec` cannot fail; serialising
    /// can only for values JSON cannot hold (a map with non-string keys), which none of the
    /// callers' are: such a value is written as `null` rather than leaving the line cut.
    pub(crate) fn value<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        let out = self.key(key);
        let start = out.len();
        if serde_json::to_writer(&mut *out, value).is_err() {
            out.truncate(start);
            out.extend_from_slice(b"null");
        }
    }

    /// A nested object under `key`; the caller ends it.
    pub(crate) fn object(&mut self, key: &'static str) -> Object<'_> {
        Object::new(self.key(key))
    }

    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

/// Whether a string needs escaping in JSON: a control character, `"` or `\`. Eight bytes at
/// a time; the last few are padded with a byte that needs none.
pub(crate) fn needs_escape(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        if word_needs_escape(u64::from_le_bytes(word)) {
            return true;
        }
    }
    let rest = words.remainder();
    let mut word = [b'a'; 8];
    word[..rest.len()].copy_from_slice(rest);
    word_needs_escape(u64::from_le_bytes(word))
}

const ONES: u64 = u64::MAX / 255;
const HIGH: u64 = ONES * 0x80;

/// Whether any byte of `x` is below 0x20, `"` or `\`: the classic "has a byte less than n"
/// test beside [`equal_bytes`] (exact as a yes/no answer, for any bytes).
fn word_needs_escape(x: u64) -> bool {
    let below = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    (below | equal_bytes(x, b'"') | equal_bytes(x, b'\\')) != 0
}

/// The bytes of `x` equal to `b`, as the high bit of each (the "has a zero byte" test on
/// `x ^ b…b`). Any set bit means a match somewhere, and the lowest set bit marks the first
/// match exactly (bytes above a match may be marked wrongly); read with `trailing_zeros`
/// on a word loaded little-endian.
pub(super) fn equal_bytes(x: u64, b: u8) -> u64 {
    let y = x ^ (ONES * u64::from(b));
    y.wrapping_sub(ONES) & !y & HIGH
}

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

/// Appends `s` escaped, without the quotes. Text that needs no escape (most of it) is found
/// eight bytes at a time and copied with one append.
pub(crate) fn fragment(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut clean = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if word_needs_escape(u64::from_le_bytes(word)) {
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

/// Writes `s` as a JSON string, escaped exactly as serde_json escapes it: the short forms of
/// `\b \t \n \f \r`, `\"`, `\\`, and `\u00xx` (lower-case hex) for other control characters;
/// everything else, non-ASCII included, as it is.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    fragment(out, s);
    out.push(b'"');
}

/// A JSON value's text as `Bytes`, written straight into a buffer: `Value::to_string` goes
/// through `fmt::Display`, one formatter call per token, which cost a translated request
/// several times this. Serialising a `Value` cannot fail (its keys are strings).
pub(crate) fn to_bytes(v: &serde_json::Value) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_byte = String::new();
        for c in 0u8..=0x7f {
            every_byte.push(char::from(c));
        }
        let cases = [
            "",
            "plain",
            "quote \" and backslash \\ inside",
            "\"",
            "tab\tnew\nline\r feed\u{c} back\u{8}",
            "nul \u{0} unit \u{1f} del \u{7f}",
            "non-ASCII: é, 日本, 🦀, \u{2028}",
            every_byte.as_str(),
        ];
        for case in cases {
            let mut out = Vec::new();
            string(&mut out, case);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(case).unwrap(),
                "{case:?}"
            );
        }
    }

    /// Keys in alphabetical order, so that the comparison holds whichever map serde_json uses.
    #[test]
    fn objects_match_serde_json() {
        let mut out = Vec::new();
        let mut o = Object::new(&mut out);
        o.str("a", "x\"y");
        o.opt_str("b", None);
        o.bool("c", true);
        o.uint("d", u64::MAX);
        o.float("e", 7.35e-6);
        o.float("f", 0.5);
        o.float("g", f64::NAN);
        o.opt_float("h", None);
        let mut inner = o.object("i");
        inner.uint("j", 0);
        inner.end();
        o.value("k", &serde_json::json!({"m": [1, "n"]}));
        o.object("l").end();
        o.end();
        let expected = serde_json::json!({
            "a": "x\"y", "b": null, "c": true, "d": u64::MAX, "e": 7.35e-6, "f": 0.5,
            "g": null, "h": null, "i": {"j": 0}, "k": {"m": [1, "n"]}, "l": {}
        });
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
    }

    #[test]
    fn floats_are_written_as_serde_json_writes_them() {
        let floats = [
            0.0,
            -0.0,
            1.0,
            0.1,
            0.512,
            123.456,
            7.35e-6,
            1e-7,
            1e21,
            2f64.powi(60),
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        for v in floats {
            let mut out = Vec::new();
            let mut o = Object::new(&mut out);
            o.float("v", v);
            o.end();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{{\"v\":{}}}", serde_json::to_string(&v).unwrap()),
                "{v:?}"
            );
        }
    }

    /// Every byte value at every position of strings up to 40 bytes long, among fillers that
    /// need no escape, is judged as a byte loop judges it.
    #[test]
    fn escape_check_is_exact_for_every_byte_and_position() {
        for filler in [b'a', b' ', 0x7f, 0x80, 0xff, b'!', b'#', b']'] {
            for len in 1..=40 {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut text = vec![filler; len];
                        text[at] = b;
                        let expected = b < 0x20 || b == b'"' || b == b'\\';
                        assert_eq!(needs_escape(&text), expected, "{b:#x} at {at} of {len}");
                    }
                }
            }
        }
        assert!(!needs_escape(b""));
    }
}
