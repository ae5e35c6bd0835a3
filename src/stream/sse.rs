//! Incremental server-sent-events splitting. Chunk boundaries are transport artefacts: an event
//! can be split across chunks or several can arrive in one. The splitter hands out whole events
//! (with their terminating blank line) as they complete, without copying when a chunk holds only
//! whole events.

use bytes::{Bytes, BytesMut};

/// Upper bound on one buffered partial event; a stream that never ends an event is not parsed
/// past this (its bytes still flow to the client).
pub const MAX_EVENT: usize = 4 * 1024 * 1024;

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
    /// Feeds a chunk; returns the events it completes.
    pub fn push(&mut self, chunk: &Bytes) -> Vec<Bytes> {
        let mut events = Vec::new();
        if self.buf.is_empty() {
            let mut rest = chunk.clone();
            while let Some(end) = event_end(&rest) {
                events.push(rest.split_to(end));
            }
            self.keep(&rest);
            return events;
        }
        // The two bytes before the scanned mark may start a blank line this chunk completes.
        let from = self.scanned.saturating_sub(2);
        self.keep(chunk);
        let mut first = self.buf.get(from..).and_then(event_end).map(|e| e + from);
        while let Some(end) = first.take().or_else(|| event_end(&self.buf)) {
            events.push(self.buf.split_to(end).freeze());
        }
        self.scanned = self.buf.len();
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
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// What is left at the end of the stream (an unterminated last event).
    pub fn finish(&mut self) -> Option<Bytes> {
        self.scanned = 0;
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// The payload of an event's `data:` lines, joined with `\n` (most events have one line, which
/// is returned without copying or allocating).
pub fn data(event: &Bytes) -> Option<Bytes> {
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
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
            // `rest` ends where `line` ends; `line` starts at `start`.
            let off = start + line.len() - rest.len();
            let payload = event.slice(off..off + rest.len());
            match (&first, &mut joined) {
                (None, _) => first = Some(payload),
                (Some(f), None) => {
                    let mut j = BytesMut::with_capacity(f.len() + 1 + payload.len());
                    j.extend_from_slice(f);
                    j.extend_from_slice(b"\n");
                    j.extend_from_slice(&payload);
                    joined = Some(j);
                }
                (Some(_), Some(j)) => {
                    j.extend_from_slice(b"\n");
                    j.extend_from_slice(&payload);
                }
            }
        }
        start = end + 1;
    }
    joined.map(BytesMut::freeze).or(first)
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
