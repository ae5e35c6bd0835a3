//! The process-wide budget of buffered request bytes. The LLM routes read a body whole (to
//! route, rewrite and retry it), so concurrency times `limits.max_request_body_bytes` could
//! outgrow a sidecar's memory limit: every buffered byte is leased from one budget
//! (`limits.max_buffered_bytes`), and a request that would pass it is answered 503 with
//! `retry-after` instead.

use crate::error::GatewayError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes of request bodies buffered by all in-flight requests, against a process-wide cap, so
/// that concurrency times `max_request_body_bytes` cannot outgrow the pod's memory.
#[derive(Debug)]
pub struct BufferBudget {
    used: AtomicUsize,
    cap: usize,
}

impl BufferBudget {
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(BufferBudget {
            used: AtomicUsize::new(0),
            cap,
        })
    }

    /// Bytes held now (for tests and the admin view).
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// A request's share of the budget, returned when the request ends (the lease is dropped with
/// the request context).
#[derive(Debug)]
pub(crate) struct BufferLease {
    budget: Arc<BufferBudget>,
    bytes: usize,
}

impl BufferLease {
    pub(crate) fn new(budget: &Arc<BufferBudget>) -> Self {
        BufferLease {
            budget: budget.clone(),
            bytes: 0,
        }
    }

    /// Takes `more` bytes from the budget, or refuses (nothing taken) when it would pass the cap.
    pub(crate) fn grow(&mut self, more: usize) -> Result<(), GatewayError> {
        let b = &self.budget;
        let mut used = b.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(more);
            if next > b.cap {
                return Err(GatewayError::Overloaded);
            }
            match b
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => used = now,
            }
        }
        self.bytes += more;
        Ok(())
    }
}

impl Drop for BufferLease {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_capped_and_returned() {
        let budget = BufferBudget::new(100);
        let mut a = BufferLease::new(&budget);
        a.grow(60).unwrap();
        let mut b = BufferLease::new(&budget);
        assert_eq!(b.grow(50).unwrap_err().status(), 503);
        assert_eq!(budget.used(), 60, "a refused grow takes nothing");
        b.grow(40).unwrap();
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
