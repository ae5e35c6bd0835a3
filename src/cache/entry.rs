//! A stored answer and its byte format in Redis (`PGC1`, then status, expiry, content type,
//! model, usage and the body): read back, anything else is a miss, never an error.

use super::*;
use crate::types::held::HeldAnswer;

/// One cached answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
    pub usage: Option<Usage>,
    pub model: Option<String>,
    /// Unix seconds after which the entry is not served.
    pub expires_at: u64,
}

/// Bytes an entry is accounted for besides its fields' contents.
pub(super) const ENTRY_OVERHEAD: usize = 160;

pub(super) const MAGIC: &[u8; 4] = b"PGC1";

impl Entry {
    /// The entry as an answer to replay: its content type, and its length unless it is a
    /// stream (a replayed stream is sent as one, chunked).
    pub(crate) fn answer(&self) -> HeldAnswer {
        let mut headers = http::HeaderMap::with_capacity(2);
        if let Ok(v) = http::HeaderValue::from_str(&self.content_type) {
            headers.insert(http::header::CONTENT_TYPE, v);
        }
        if !self.content_type.starts_with("text/event-stream") {
            headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(self.body.len()),
            );
        }
        HeldAnswer {
            status: self.status,
            headers,
            body: self.body.clone(),
            usage: self.usage,
            model: self.model.clone(),
        }
    }

    /// What the entry counts against `cache.max_bytes`.
    pub(crate) fn weight(&self) -> usize {
        self.body.len()
            + self.content_type.len()
            + self.model.as_ref().map_or(0, String::len)
            + ENTRY_OVERHEAD
    }

    /// The Redis value: a small binary header, then the body as it is.
    pub fn encode(&self) -> Vec<u8> {
        let ct = self.content_type.as_bytes();
        let model = self.model.as_deref().unwrap_or("").as_bytes();
        let mut out = Vec::with_capacity(64 + ct.len() + model.len() + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.expires_at.to_le_bytes());
        out.extend_from_slice(&(ct.len() as u32).to_le_bytes());
        out.extend_from_slice(ct);
        out.push(u8::from(self.model.is_some()));
        out.extend_from_slice(&(model.len() as u32).to_le_bytes());
        out.extend_from_slice(model);
        match &self.usage {
            Some(u) => {
                out.push(1);
                for n in [
                    u.input,
                    u.output,
                    u.cached_input,
                    u.cache_write,
                    u.reasoning,
                ] {
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// Reads [`Entry::encode`]'s format; `None` for anything else (a foreign or older value is
    /// a miss, never an error).
    pub fn decode(raw: &[u8]) -> Option<Entry> {
        let mut r = Reader(raw);
        if r.take(4)? != MAGIC {
            return None;
        }
        let status = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
        let expires_at = r.u64()?;
        let ct_len = r.u32()? as usize;
        let content_type = String::from_utf8(r.take(ct_len)?.to_vec()).ok()?;
        let has_model = r.take(1)?.first() == Some(&1);
        let model_len = r.u32()? as usize;
        let model = String::from_utf8(r.take(model_len)?.to_vec()).ok()?;
        let usage = match r.take(1)?.first() {
            Some(1) => Some(Usage {
                input: r.u64()?,
                output: r.u64()?,
                cached_input: r.u64()?,
                cache_write: r.u64()?,
                reasoning: r.u64()?,
            }),
            _ => None,
        };
        Some(Entry {
            status,
            content_type,
            body: Bytes::copy_from_slice(r.0),
            usage,
            model: has_model.then_some(model),
            expires_at,
        })
    }
}

pub(super) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}
