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
    overflowed: bool,
}

/// End of the first event in `b`: the index just past its blank line (`\n\n` or `\r\n\r\n`).
fn event_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\n' {
            if b[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if b[i + 1] == b'\r' && b.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
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
        self.keep(chunk);
        while let Some(end) = event_end(&self.buf) {
            events.push(self.buf.split_to(end).freeze());
        }
        events
    }

    fn keep(&mut self, rest: &[u8]) {
        if self.overflowed || rest.is_empty() {
            return;
        }
        if self.buf.len() + rest.len() > MAX_EVENT {
            self.overflowed = true;
            self.buf.clear();
            return;
        }
        self.buf.extend_from_slice(rest);
    }

    /// Whether an event grew past the size limit (the stream can no longer be split).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// What is left at the end of the stream (an unterminated last event).
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// The payload of an event's `data:` lines, joined with `\n` (most events have one line, which
/// is returned without copying).
pub fn data(event: &Bytes) -> Option<Bytes> {
    let mut parts: Vec<Bytes> = Vec::new();
    let mut start = 0;
    for (i, &c) in event.iter().enumerate() {
        if c == b'\n' {
            let line = trim_cr(event.slice(start..i));
            if let Some(rest) = line.strip_prefix(b"data:") {
                let off = line.len() - rest.len();
                let rest = line.slice(off..);
                let rest = if rest.first() == Some(&b' ') {
                    rest.slice(1..)
                } else {
                    rest
                };
                parts.push(rest);
            }
            start = i + 1;
        }
    }
    if start < event.len() {
        let line = trim_cr(event.slice(start..));
        if let Some(rest) = line.strip_prefix(b"data:") {
            let off = line.len() - rest.len();
            let rest = line.slice(off..);
            parts.push(if rest.first() == Some(&b' ') {
                rest.slice(1..)
            } else {
                rest
            });
        }
    }
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Bytes::from(parts.join(&b'\n'))),
    }
}

fn trim_cr(line: Bytes) -> Bytes {
    if line.last() == Some(&b'\r') {
        line.slice(..line.len() - 1)
    } else {
        line
    }
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

    proptest! {
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
