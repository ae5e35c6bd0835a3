//! Reading an upstream answer: its header, its body chunk by chunk or whole within a bound,
//! and handing the connection back to the pool or closing it.

use super::*;

impl Inbound {
    pub(crate) fn header(&self) -> Option<&ResponseHeader> {
        self.session.response_header()
    }

    pub(crate) fn status(&self) -> u16 {
        self.header().map_or(0, |h| h.status.as_u16())
    }

    /// The next body chunk; `None` at the end. A stall past the read timeout is an error.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Bytes>, GatewayError> {
        if let Some(chunk) = self.peeked.pop_front() {
            return Ok(Some(chunk));
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.read_chunk().await
    }

    /// Reads ahead, without waiting, the body chunks that have already arrived, until more
    /// than `limit` bytes are held; `next_chunk` hands them out first. `true` when they are the
    /// whole body (the answer is complete and can be sent with its length).
    pub(crate) fn read_ready(&mut self, limit: usize) -> bool {
        let mut held: usize = self.peeked.iter().map(Bytes::len).sum();
        while held <= limit && self.failed.is_none() {
            // Polled once and dropped when nothing is ready: body reads are cancel-safe.
            match self.read_chunk().now_or_never() {
                Some(Ok(Some(chunk))) => {
                    held += chunk.len();
                    self.peeked.push_back(chunk);
                }
                Some(Ok(None)) => return true,
                Some(Err(e)) => self.failed = Some(e),
                None => break,
            }
        }
        false
    }

    /// The next chunk read ahead, if any (after [`Inbound::read_ready`] found the body whole,
    /// the rest of it).
    pub(crate) fn take_ready(&mut self) -> Option<Bytes> {
        self.peeked.pop_front()
    }

    pub(super) async fn read_chunk(&mut self) -> Result<Option<Bytes>, GatewayError> {
        self.session
            .read_response_body()
            .await
            .map_err(|e| classify(&self.provider, &e))
    }

    /// Reads the first body chunk ahead, so it can be checked before the response is committed
    /// to the client; `next_chunk` returns it first.
    pub(crate) async fn peek_chunk(&mut self) -> Result<(), GatewayError> {
        if self.peeked.is_empty() {
            if let Some(chunk) = self.read_chunk().await? {
                self.peeked.push_back(chunk);
            }
        }
        Ok(())
    }

    /// Reads the body ahead, whole, up to `limit` bytes (a larger one is then relayed as it
    /// comes, starting with what was read). A provider that fails mid-body therefore fails the
    /// attempt — which retries and fallbacks act on — instead of cutting the client's answer.
    pub(crate) async fn read_ahead(&mut self, limit: usize) -> Result<(), GatewayError> {
        let mut held: usize = self.peeked.iter().map(Bytes::len).sum();
        while held <= limit {
            match self.read_chunk().await? {
                Some(chunk) => {
                    held += chunk.len();
                    self.peeked.push_back(chunk);
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Whether the whole response was read (so the connection can be pooled).
    pub(crate) fn is_done(&mut self) -> bool {
        self.peeked.is_empty() && self.session.response_done()
    }

    /// Reads the rest of the body into memory, up to `limit` bytes (for error bodies and
    /// responses that must be inspected whole).
    pub(crate) async fn read_to_end(&mut self, limit: usize) -> Result<Bytes, GatewayError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.next_chunk().await? {
            if buf.len() + chunk.len() > limit {
                return Err(GatewayError::UpstreamIo {
                    provider: self.provider.clone(),
                    detail: format!("response body larger than {limit} bytes"),
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Aborts the exchange: closes an HTTP/1 connection, resets an HTTP/2 stream.
    ///
    /// Not `async`, like [`Dispatcher::release`]: a TCP shutdown is done at once, and a TLS
    /// `close_notify` that cannot be written at once is dropped with the connection.
    pub(crate) fn abort(mut self) {
        let _ = self.session.shutdown().now_or_never();
    }
}
