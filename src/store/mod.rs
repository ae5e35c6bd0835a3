//! Connections to the stores that replicas share: one Redis link, used by the response cache
//! and by the limit counters.

pub(crate) mod redis;
