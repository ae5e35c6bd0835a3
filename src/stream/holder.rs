//! A whole answer held for a translator that can only translate it at its end (a JSON
//! document), up to a limit. Past the limit the translator gives up: what was held goes out as
//! it came, then every later chunk as it arrives, in order — bounded memory, never a scrambled
//! or lost body. [`WholeJson`] is that translator, the one shape every provider's non-streamed
//! answer takes: the provider only says how one whole document becomes OpenAI's.

use super::Translator;
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};

#[derive(Debug, Default)]
pub(crate) struct Holder {
    body: BytesMut,
    /// Given up: everything is relayed as it comes.
    raw: bool,
}

impl Holder {
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

/// What a provider makes of its whole answer.
pub(crate) struct Converted {
    /// The answer in the client's format.
    pub body: Bytes,
    pub usage: Option<Usage>,
    /// The model the answer names (or the one requested, when the provider's answer does not).
    pub model: Option<String>,
}

/// A provider's conversion of one whole answer; `None` when the body is not an answer of its
/// (not JSON, an unexpected document): it then goes to the client as it came.
pub(crate) trait Convert: Send {
    fn convert(&mut self, body: &[u8]) -> Option<Converted>;
}

/// Translates a non-streamed answer at its end: held (up to `limit`), converted whole, sent
/// with its length.
pub(crate) struct WholeJson<C> {
    convert: C,
    limit: usize,
    holder: Holder,
    out: Option<Converted>,
}

impl<C: Convert> WholeJson<C> {
    pub(crate) fn new(convert: C, limit: usize) -> Self {
        WholeJson {
            convert,
            limit,
            holder: Holder::default(),
            out: None,
        }
    }
}

impl<C: Convert> Translator for WholeJson<C> {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        self.holder.push(chunk, self.limit)
    }

    fn finish(&mut self) -> Option<Bytes> {
        let whole = self.holder.take()?;
        match self.convert.convert(&whole) {
            Some(out) => {
                let body = out.body.clone();
                self.out = Some(out);
                Some(body)
            }
            None => self.holder.relay(whole),
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.out.as_ref().and_then(|o| o.usage)
    }

    fn model(&self) -> Option<&str> {
        self.out.as_ref().and_then(|o| o.model.as_deref())
    }

    fn may_rewrite(&self) -> bool {
        true
    }

    /// JSON when translated; relayed as it came, the upstream's own type says what it is.
    fn content_type(&self) -> Option<&'static str> {
        (!self.holder.is_raw()).then_some("application/json")
    }

    fn buffers_whole(&self) -> bool {
        true
    }

    fn json_body(&self) -> Option<serde_json::Value> {
        self.out
            .as_ref()
            .and_then(|o| serde_json::from_slice(&o.body).ok())
    }
}

/// How an API served through another translator's chat answer (the Responses and Messages
/// APIs on a provider without them) makes its whole answer of that chat answer.
pub(crate) trait FromChat: Send {
    /// The answer for the chat answer's text, given the usage and model the chat translator
    /// metered; `None` when it is not a chat answer (it then goes out as it came).
    fn convert(
        &mut self,
        chat: &[u8],
        usage: Option<Usage>,
        model: Option<&str>,
    ) -> Option<Vec<u8>>;
}

/// A non-streamed answer of an API layered over the chat path: the provider's chat translator
/// makes the OpenAI chat answer (and meters it); it is held (up to `limit`) and converted
/// whole at its end.
pub(crate) struct OverChat<C> {
    chat: Box<dyn Translator>,
    convert: C,
    limit: usize,
    holder: Holder,
    out: Option<Bytes>,
}

impl<C: FromChat> OverChat<C> {
    pub(crate) fn new(chat: Box<dyn Translator>, convert: C, limit: usize) -> Self {
        OverChat {
            chat,
            convert,
            limit,
            holder: Holder::default(),
            out: None,
        }
    }
}

impl<C: FromChat> Translator for OverChat<C> {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let out = self.chat.push(chunk)?;
        self.holder.push(out, self.limit)
    }

    fn finish(&mut self) -> Option<Bytes> {
        if let Some(tail) = self.chat.finish() {
            if let Some(raw) = self.holder.push(tail, self.limit) {
                return Some(raw);
            }
        }
        let whole = self.holder.take()?;
        let (usage, model) = (self.chat.usage(), self.chat.model());
        match self.convert.convert(&whole, usage, model) {
            Some(body) => {
                let body = Bytes::from(body);
                self.out = Some(body.clone());
                Some(body)
            }
            None => self.holder.relay(whole),
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.chat.usage()
    }

    fn model(&self) -> Option<&str> {
        self.chat.model()
    }

    fn may_rewrite(&self) -> bool {
        true
    }

    /// JSON when converted; relayed, the chat translator's own type.
    fn content_type(&self) -> Option<&'static str> {
        if self.holder.is_raw() {
            self.chat.content_type()
        } else {
            Some("application/json")
        }
    }

    fn buffers_whole(&self) -> bool {
        true
    }

    fn json_body(&self) -> Option<serde_json::Value> {
        // Read back only when asked (an access log with bodies): the answer is kept as text.
        serde_json::from_slice(self.out.as_deref()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Upper;
    impl Convert for Upper {
        fn convert(&mut self, body: &[u8]) -> Option<Converted> {
            body.starts_with(b"{").then(|| Converted {
                body: Bytes::from(body.to_ascii_uppercase()),
                usage: None,
                model: Some("m".into()),
            })
        }
    }

    #[test]
    fn a_whole_answer_is_converted_at_its_end_or_relayed_as_it_came() {
        let mut t = WholeJson::new(Upper, 64);
        assert_eq!(t.push(Bytes::from_static(b"{\"a\"")), None);
        assert_eq!(t.push(Bytes::from_static(b":1}")), None);
        assert_eq!(t.finish().as_deref(), Some(&b"{\"A\":1}"[..]));
        assert_eq!(
            (t.model(), t.content_type()),
            (Some("m"), Some("application/json"))
        );
        // Not the provider's answer: as it came, under the upstream's own type.
        let mut t = WholeJson::new(Upper, 64);
        t.push(Bytes::from_static(b"oops"));
        assert_eq!(t.finish().as_deref(), Some(&b"oops"[..]));
        assert_eq!((t.model(), t.content_type()), (None, None));
        // Past the limit: given up, in order.
        let mut t = WholeJson::new(Upper, 4);
        assert_eq!(t.push(Bytes::from_static(b"{}")), None);
        assert_eq!(
            t.push(Bytes::from_static(b"abc")).as_deref(),
            Some(&b"{}abc"[..])
        );
        assert_eq!(t.finish(), None);
        assert_eq!(t.content_type(), None);
    }

    #[test]
    fn a_body_past_the_limit_goes_out_whole_and_in_order() {
        let mut h = Holder::default();
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
        let mut h = Holder::default();
        h.push(Bytes::from_static(b"{}"), 4);
        assert_eq!(h.take().as_deref(), Some(&b"{}"[..]));
    }
}
