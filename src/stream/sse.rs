//! Incremental server-sent-events splitting. Chunk boundaries are transport artefacts: an event
//! can be split across chunks or several can arrive in one. The splitter hands out whole events
//! (with their terminating blank line) as they complete, without copying when a chunk holds only
//! whole events.

use bytes::{Buf, Bytes, BytesMut};
use std::borrow::Cow;

/// Upper bound on one buffered partial event; a stream that never ends an event is not parsed
/// past this (its bytes still flow to the client).
pub(crate) const MAX_EVENT: usize = 4 * 1024 * 1024;

#[derive(Default)]
pub struct SseSplitter {
    buf: BytesMut,
    /// How much of `buf` is known to hold no event end, so a partial event that grows over
    /// many small chunks is not scanned again from its start each time.
    scanned: usize,
    overflowed: bool,
}

/// End of the first event in `b`: the index just past its blank line (`\n\n` or `\r\n\r\n`).
fn event_end(b: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', b).find_map(|i| match b.get(i + 1) {
        Some(b'\n') => Some(i + 2),
        Some(b'\r') if b.get(i + 2) == Some(&b'\n') => Some(i + 3),
        _ => None,
    })
}

impl SseSplitter {
    /// Feeds a chunk and calls `f` with each event it completes, in order. An event is a slice
    /// of the chunk, or of the splitter's buffer when it began in an earlier chunk: nothing is
    /// allocated or reference-counted for a chunk of whole events, the usual case.
    pub(crate) fn each(&mut self, chunk: &[u8], mut f: impl FnMut(&[u8])) {
        if self.buf.is_empty() {
            let mut rest = chunk;
            while let Some(end) = event_end(rest) {
                f(&rest[..end]);
                rest = &rest[end..];
            }
            self.keep(rest);
            return;
        }
        // The two bytes before the scanned mark may start a blank line this chunk completes.
        let from = self.scanned.saturating_sub(2);
        self.keep(chunk);
        let mut at = 0;
        let mut end = self.buf.get(from..).and_then(event_end).map(|e| e + from);
        while let Some(e) = end {
            f(&self.buf[at..e]);
            at = e;
            end = event_end(&self.buf[at..]).map(|next| next + at);
        }
        self.buf.advance(at);
        self.scanned = self.buf.len();
    }

    /// Feeds a chunk; returns the events it completes, as slices of the chunk where they lie
    /// in it (an event begun in an earlier chunk is copied out of the buffer).
    pub fn push(&mut self, chunk: &Bytes) -> Vec<Bytes> {
        let mut events = Vec::new();
        let within = chunk.as_ptr_range();
        self.each(chunk, |event| {
            events.push(if within.contains(&event.as_ptr()) {
                chunk.slice_ref(event)
            } else {
                Bytes::copy_from_slice(event)
            })
        });
        events
    }

    fn keep(&mut self, rest: &[u8]) {
        if self.overflowed || rest.is_empty() {
            return;
        }
        if self.buf.len() + rest.len() > MAX_EVENT {
            self.overflowed = true;
            self.buf.clear();
            self.scanned = 0;
            return;
        }
        if self.buf.is_empty() {
            self.scanned = 0;
        }
        self.buf.extend_from_slice(rest);
    }

    /// Whether an event grew past the size limit (the stream can no longer be split).
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// What is left at the end of the stream (an unterminated last event).
    pub fn finish(&mut self) -> Option<Bytes> {
        self.scanned = 0;
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// The payload of an event's `data:` lines, joined with `\n`. Most events have one line, which
/// is returned as a slice of the event, without copying or allocating.
pub(crate) fn payload(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut out: Option<Cow<'_, [u8]>> = None;
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', event).chain(std::iter::once(event.len()));
    for end in ends {
        if start >= end {
            start = end + 1;
            continue;
        }
        let mut line = &event[start..end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            match &mut out {
                None => out = Some(Cow::Borrowed(rest)),
                Some(joined) => {
                    let joined = joined.to_mut();
                    joined.push(b'\n');
                    joined.extend_from_slice(rest);
                }
            }
        }
        start = end + 1;
    }
    out
}

/// [`payload`] as `Bytes`: a one-line payload shares the event's buffer.
pub fn data(event: &Bytes) -> Option<Bytes> {
    payload(event).map(|p| match p {
        Cow::Borrowed(slice) => event.slice_ref(slice),
        Cow::Owned(joined) => Bytes::from(joined),
    })
}

/// The end of an OpenAI stream.
pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";

/// Writes one SSE event: `event: <name>` when named, then one `data:` line (the payload must
/// hold no newline: JSON as serde writes it never does).
pub(crate) fn write_event(out: &mut BytesMut, name: Option<&str>, payload: &[u8]) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
}

/// Writes one SSE event whose payload is a JSON value, serialised straight into `out` (no
/// intermediate text: `Value::to_string` goes through `fmt`, a call per token).
pub(crate) fn write_json_event(out: &mut BytesMut, name: Option<&str>, v: &serde_json::Value) {
    use bytes::BufMut;
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    let start = out.len();
    // Writing a `Value` into memory cannot fail; were it to, the event keeps an empty payload
    // rather than a cut one.
    if serde_json::to_writer(out.writer(), v).is_err() {
        out.truncate(start);
    }
    out.extend_from_slice(b"\n\n");
}

/// One unnamed event carrying a JSON value (an OpenAI chunk).
pub(crate) fn json_event(v: &serde_json::Value) -> Bytes {
    let mut out = BytesMut::new();
    write_json_event(&mut out, None, v);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_whole_and_partial_events() {
        let mut s = SseSplitter::default();
        let e = s.push(&Bytes::from_static(b"data: a\n\ndata: b\n\nda"));
        assert_eq!(
            e,
            vec![
                Bytes::from_static(b"data: a\n\n"),
                Bytes::from_static(b"data: b\n\n")
            ]
        );
        let e = s.push(&Bytes::from_static(b"ta: c\r\n\r\n"));
        assert_eq!(e, vec![Bytes::from_static(b"data: c\r\n\r\n")]);
        assert!(s.finish().is_none());
        assert_eq!(data(&e[0]).unwrap(), Bytes::from_static(b"c"));
    }

    #[test]
    fn whole_events_are_handed_out_in_place() {
        let chunk = b"data: a\n\ndata: b\n\nda".to_vec();
        let inside = chunk.as_ptr_range();
        let mut s = SseSplitter::default();
        let mut got = Vec::new();
        s.each(&chunk, |e| {
            assert!(
                inside.contains(&e.as_ptr()),
                "a slice of the chunk, not a copy"
            );
            got.push(e.to_vec());
        });
        assert_eq!(got, [b"data: a\n\n".to_vec(), b"data: b\n\n".to_vec()]);
        // The rest of an event begun in the last chunk comes from the splitter's buffer.
        s.each(b"ta: c\n\ndata: d\n\n", |e| got.push(e.to_vec()));
        assert_eq!(got[2..], [b"data: c\n\n".to_vec(), b"data: d\n\n".to_vec()]);
        assert!(s.finish().is_none());
    }

    #[test]
    fn a_one_line_payload_is_borrowed() {
        assert!(matches!(
            payload(b"data: {}\n\n"),
            Some(Cow::Borrowed(b"{}"))
        ));
        assert!(matches!(payload(b"data: 1\ndata: 2\n\n"), Some(Cow::Owned(v)) if v == b"1\n2"));
    }

    #[test]
    fn data_lines() {
        assert_eq!(
            data(&Bytes::from_static(b"event: x\ndata: {\"a\":1}\n\n")).unwrap(),
            Bytes::from_static(b"{\"a\":1}")
        );
        assert_eq!(
            data(&Bytes::from_static(b"data:1\ndata:2\n\n")).unwrap(),
            Bytes::from_static(b"1\n2")
        );
        assert!(data(&Bytes::from_static(b": comment\n\n")).is_none());
    }

    /// The payload as the SSE spec reads it, written the obvious way.
    fn data_reference(event: &[u8]) -> Option<Vec<u8>> {
        let text = String::from_utf8_lossy(event);
        let parts: Vec<&str> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|r| r.strip_prefix(' ').unwrap_or(r))
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n").into_bytes())
    }

    proptest! {
        /// `data` agrees with the obvious reading for any mix of lines and line ends.
        #[test]
        fn data_matches_the_reference(lines in prop::collection::vec(
            (prop::sample::select(vec!["data: ", "data:", "event: ", ": ", "id:", ""]),
             "[a-z{}\":,]{0,6}",
             prop::sample::select(vec!["\n", "\r\n"])), 0..6)) {
            let mut event = Vec::new();
            for (field, value, end) in &lines {
                event.extend_from_slice(field.as_bytes());
                event.extend_from_slice(value.as_bytes());
                event.extend_from_slice(end.as_bytes());
            }
            let got = data(&Bytes::from(event.clone())).map(|b| b.to_vec());
            prop_assert_eq!(got, data_reference(&event));
        }

        /// However a stream is cut into chunks, the same events come out, in order.
        #[test]
        fn chunking_does_not_change_events(cuts in prop::collection::vec(0usize..120, 0..12)) {
            let stream = b"data: {\"a\":1}\n\nevent: e\ndata: x\n\ndata: [DONE]\r\n\r\n".to_vec();
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            points.sort_unstable();
            let mut s = SseSplitter::default();
            let mut out = Vec::new();
            let mut prev = 0;
            for p in points.into_iter().chain([stream.len()]) {
                out.extend(s.push(&Bytes::copy_from_slice(&stream[prev..p])));
                prev = p;
            }
            prop_assert_eq!(out.concat(), stream);
            prop_assert_eq!(out.len(), 3);
        }
    }
}
