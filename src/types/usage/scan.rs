//! The fast reader of an answer's `usage` and `model`: a scan of the JSON bytes that skips
//! everything else without building values, falling back to a full parse where it is unsure.

use super::*;

/// Reads the three fields from the top level of a JSON object by scanning it, without
/// deserialising the values it skips: serde_json spends most of its work on a chat answer
/// walking `choices` and building `usage` through its derive (measured in
/// `docs/performance.md`).
///
/// On a well-formed document it reads what serde_json reads (the tests compare the two). It
/// answers `None` whenever the text is not plainly what it expects, and the caller asks
/// serde_json, which decides: a key or model with an escape, a field given twice, a field of
/// another type, a count that is not a plain integer, anything but whitespace after the
/// object. It does not check the syntax of the values it skips, so a body malformed inside
/// `choices` may still have its usage counted, where serde_json would count none; the client
/// receives that body as it came either way.
pub(super) fn scan(json: &[u8]) -> Option<Metered<'_>> {
    let mut s = Scanner { b: json, i: 0 };
    let mut m = Metered::default();
    let mut seen = [false; 3];
    s.ws();
    s.object(|s, key| {
        match key {
            b"usage" => {
                once(&mut seen[0])?;
                m.usage = s.usage()?;
            }
            b"model" => {
                once(&mut seen[1])?;
                m.model = match s.peek()? {
                    b'"' => Some(Cow::Borrowed(std::str::from_utf8(s.plain_string()?).ok()?)),
                    _ => s.null()?,
                };
            }
            b"choices" => {
                once(&mut seen[2])?;
                let first = s.peek()?;
                let v = s.value()?;
                m.choices_empty = match first {
                    b'[' => v[1..v.len() - 1].iter().all(u8::is_ascii_whitespace),
                    _ if v == b"null" => false,
                    _ => return None,
                };
            }
            _ => {
                s.value()?;
            }
        }
        Some(())
    })?;
    s.ws();
    (s.i == json.len()).then_some(m)
}

/// `Some` the first time, for a field that serde_json refuses to see twice.
pub(super) fn once(seen: &mut bool) -> Option<()> {
    (!std::mem::replace(seen, true)).then_some(())
}

/// The bytes that matter when skipping over an object or array.
pub(super) static STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// A cursor over JSON text for [`scan`]; every step answers `None` at the end of the text or
/// on a byte it does not expect.
pub(super) struct Scanner<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

impl<'a> Scanner<'a> {
    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    pub(super) fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    pub(super) fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// Skips JSON whitespace (space, tab, line feed, carriage return).
    pub(super) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// An object's members: each key (without escapes) is handed to `member` with the cursor
    /// on its value, which `member` moves past.
    pub(super) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.plain_string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            member(self, key)?;
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// `null`, read as an absent optional value.
    pub(super) fn null<T>(&mut self) -> Option<Option<T>> {
        (self.value()? == b"null").then_some(None)
    }

    /// The index of the next `"` or `\` from `self.i`: looked for eight bytes at a time in
    /// the first 32 (keys and short values, where a vectorised search costs more to start
    /// than it saves, and a byte loop is slow), then by `memchr2` (long
    /// content).
    pub(super) fn string_stop(&self) -> Option<usize> {
        let rest = self.b.get(self.i..)?;
        let mut at = 0;
        while at < rest.len().min(32) {
            let x = match rest
                .get(at..at + 8)
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
            {
                Some(word) => u64::from_le_bytes(word),
                None => {
                    // The last few bytes, padded with a byte that is neither.
                    let mut word = [b'a'; 8];
                    word[..rest.len() - at].copy_from_slice(&rest[at..]);
                    u64::from_le_bytes(word)
                }
            };
            let found = equal_bytes(x, b'"') | equal_bytes(x, b'\\');
            if found != 0 {
                return Some(self.i + at + (found.trailing_zeros() / 8) as usize);
            }
            at += 8;
        }
        let tail = rest.get(32..)?;
        memchr::memchr2(b'"', b'\\', tail).map(|at| self.i + 32 + at)
    }

    /// A string without escapes: its contents. `None` if it holds a backslash.
    pub(super) fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let end = self.string_stop()?;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        Some(&self.b[start..end])
    }

    /// Moves past a string whose opening quote is at `self.i`, escapes included.
    pub(super) fn skip_string(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            let at = self.string_stop()?;
            if self.b[at] == b'"' {
                self.i = at + 1;
                return Some(());
            }
            // A backslash and the byte it escapes (a `\uXXXX` escape's digits need no care).
            self.i = at + 2;
        }
    }

    /// One value, skipped: its text. Objects and arrays are skipped by counting brackets
    /// outside strings, numbers and literals up to the next delimiter.
    pub(super) fn value(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        match self.peek()? {
            b'"' => self.skip_string()?,
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    let rest = self.b.get(self.i..)?;
                    self.i += rest.iter().position(|&c| STRUCTURAL[usize::from(c)])?;
                    match self.b[self.i] {
                        b'"' => {
                            self.skip_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        _ => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                break;
                            }
                        }
                    }
                    self.i += 1;
                }
            }
            _ => {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    return None;
                }
            }
        }
        Some(&self.b[start..self.i])
    }

    /// A token count: a plain unsigned integer (no sign, fraction or exponent, no leading
    /// zero), or `null`. Anything else is left to serde_json.
    pub(super) fn count(&mut self) -> Option<Option<u64>> {
        if self.peek()? == b'n' {
            return self.null();
        }
        let start = self.i;
        let mut n = 0u64;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let digits = self.i - start;
        let leading_zero = digits > 1 && self.b[start] == b'0';
        let ends = matches!(
            self.peek(),
            Some(b',' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
        );
        (digits > 0 && !leading_zero && ends).then_some(Some(n))
    }

    /// `usage`: the counts and the two detail objects, or `null`.
    pub(super) fn usage(&mut self) -> Option<Option<WireUsage>> {
        let mut u = WireUsage::default();
        let names: [&[u8]; 4] = [
            b"prompt_tokens",
            b"completion_tokens",
            b"prompt_tokens_details",
            b"completion_tokens_details",
        ];
        let present = self.fields(names, |s, field| {
            match field {
                0 => u.prompt_tokens = s.count()?,
                1 => u.completion_tokens = s.count()?,
                2 => u.prompt_tokens_details = s.details()?,
                _ => u.completion_tokens_details = s.details()?,
            }
            Some(())
        })?;
        Some(present.map(|()| u))
    }

    /// `prompt_tokens_details` or `completion_tokens_details`, or `null`.
    pub(super) fn details(&mut self) -> Option<Option<WireDetails>> {
        let mut d = WireDetails::default();
        let names: [&[u8]; 2] = [b"cached_tokens", b"reasoning_tokens"];
        let present = self.fields(names, |s, field| {
            match field {
                0 => d.cached_tokens = s.count()?,
                _ => d.reasoning_tokens = s.count()?,
            }
            Some(())
        })?;
        Some(present.map(|()| d))
    }

    /// An object of known fields, or `null` (`Some(None)`): `read` is called with the index
    /// in `names` of each field present (at most once each, as serde_json's derive insists);
    /// other members are skipped.
    pub(super) fn fields<const N: usize>(
        &mut self,
        names: [&[u8]; N],
        mut read: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<Option<()>> {
        if self.peek()? == b'n' {
            return self.null();
        }
        let mut seen = [false; N];
        self.object(|s, key| match names.iter().position(|&n| n == key) {
            Some(field) => {
                once(&mut seen[field])?;
                read(s, field)
            }
            None => s.value().map(|_| ()),
        })?;
        Some(Some(()))
    }
}
