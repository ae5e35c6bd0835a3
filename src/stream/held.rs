//! A whole answer held for a translator that can only translate it at its end (a JSON
//! document), up to a limit. Past the limit the translator gives up: what was held goes out as
//! it came, then every later chunk as it arrives, in order — bounded memory, never a scrambled
//! or lost body.

use bytes::{Bytes, BytesMut};

#[derive(Debug, Default)]
pub(crate) struct Held {
    body: BytesMut,
    /// Given up: everything is relayed as it comes.
    raw: bool,
}

impl Held {
    /// Holds `chunk`; once the body would pass `limit`, answers what was held with the chunk
    /// (and every later chunk as it is pushed).
    pub(crate) fn push(&mut self, chunk: Bytes, limit: usize) -> Option<Bytes> {
        if self.raw {
            return Some(chunk);
        }
        if self.body.len() + chunk.len() > limit {
            self.raw = true;
            let mut held = std::mem::take(&mut self.body);
            held.extend_from_slice(&chunk);
            return Some(held.freeze());
        }
        self.body.extend_from_slice(&chunk);
        None
    }

    /// The whole body at the end, unless it was given up (then it has gone out already).
    pub(crate) fn take(&mut self) -> Option<BytesMut> {
        (!self.raw).then(|| std::mem::take(&mut self.body))
    }

    /// Whether the translator gave up (its output is the provider's own bytes).
    pub(crate) fn is_raw(&self) -> bool {
        self.raw
    }

    /// The body at the end could not be translated: it goes out as it came (`None` when empty).
    pub(crate) fn relay(&mut self, body: BytesMut) -> Option<Bytes> {
        self.raw = true;
        (!body.is_empty()).then(|| body.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_past_the_limit_goes_out_whole_and_in_order() {
        let mut h = Held::default();
        assert_eq!(h.push(Bytes::from_static(b"ab"), 4), None);
        assert_eq!(h.push(Bytes::from_static(b"cd"), 4), None);
        assert_eq!(
            h.push(Bytes::from_static(b"e"), 4).as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(
            h.push(Bytes::from_static(b"f"), 4).as_deref(),
            Some(&b"f"[..])
        );
        assert!(h.take().is_none(), "nothing is left to translate");
        let mut h = Held::default();
        h.push(Bytes::from_static(b"{}"), 4);
        assert_eq!(h.take().as_deref(), Some(&b"{}"[..]));
    }
}
