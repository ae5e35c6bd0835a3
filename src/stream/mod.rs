//! Response streams: an incremental SSE event splitter, the translator seam every provider's
//! answer goes through on its way to the client, and the meter — the OpenAI-format translator —
//! that reads usage from a response as it is relayed (and hides the usage chunk the gateway
//! asked for itself).

pub(crate) mod chunk;
pub(crate) mod holder;
pub mod meter;
pub mod sse;

pub(crate) use holder::{Convert, Converted, WholeJson};
pub(crate) use meter::Meter;

use crate::types::usage::Usage;
use bytes::Bytes;

/// Turns a provider's answer into what the client receives, chunk by chunk, and tells
/// telemetry what it saw. One is made per answer by `Provider::response`; it is fed arbitrary
/// chunks (a chunk boundary can fall anywhere, even inside a UTF-8 character or an event).
/// Translators are pure: no sockets, clocks or globals (a timestamp they need is passed in).
pub trait Translator: Send {
    /// Takes one upstream chunk; returns the bytes to send the client now, if any.
    fn push(&mut self, chunk: Bytes) -> Option<Bytes>;
    /// The end of the upstream body: anything still held back.
    fn finish(&mut self) -> Option<Bytes>;
    /// Token usage, normalised (input includes cached tokens).
    fn usage(&self) -> Option<Usage>;
    /// The model the provider says served the request.
    fn model(&self) -> Option<&str>;
    /// Content events of a stream relayed so far.
    fn events(&self) -> u32 {
        0
    }
    /// Whether the stream can no longer be translated (an event over the size limit): it is
    /// then ended with an error event.
    fn overflowed(&self) -> bool {
        false
    }
    /// Whether the output may differ in length from the input (a declared length is dropped).
    fn may_rewrite(&self) -> bool;
    /// The client's content type when it is not the provider's (e.g. a JSON body made from
    /// another format).
    fn content_type(&self) -> Option<&'static str> {
        None
    }
    /// Whether the translator holds the whole answer and gives it at `finish` (a non-streamed
    /// translated answer): the relay then reads it all first and sends it with its length.
    fn buffers_whole(&self) -> bool {
        false
    }
    /// The whole JSON answer as sent to the client, after `finish` (access logs with bodies).
    fn json_body(&self) -> Option<serde_json::Value> {
        None
    }
    /// Whether the translator ended the answer itself (a guardrail denied a stream): the relay
    /// sends what it returned last, then `finish`, and reads no further upstream bytes.
    fn stopped(&self) -> bool {
        false
    }
}

/// A body read whole, through a translator: what `push` and `finish` give, joined (one piece is
/// used as it is, without a copy).
pub(crate) fn translate_whole(translator: &mut dyn Translator, body: Bytes) -> Bytes {
    match (translator.push(body), translator.finish()) {
        (Some(out), None) | (None, Some(out)) => out,
        (None, None) => Bytes::new(),
        (Some(head), Some(tail)) => {
            let mut joined = bytes::BytesMut::with_capacity(head.len() + tail.len());
            joined.extend_from_slice(&head);
            joined.extend_from_slice(&tail);
            joined.freeze()
        }
    }
}

impl Translator for Meter {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        self.on_chunk(chunk)
    }
    fn finish(&mut self) -> Option<Bytes> {
        Meter::finish(self)
    }
    fn usage(&self) -> Option<Usage> {
        Meter::usage(self)
    }
    fn model(&self) -> Option<&str> {
        Meter::model(self)
    }
    fn events(&self) -> u32 {
        Meter::events(self)
    }
    fn overflowed(&self) -> bool {
        Meter::overflowed(self)
    }
    fn may_rewrite(&self) -> bool {
        Meter::may_rewrite(self)
    }
    fn json_body(&self) -> Option<serde_json::Value> {
        Meter::json_body(self)
    }
}
