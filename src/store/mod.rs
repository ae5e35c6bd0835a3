//! Connections to the stores that replicas share: one Redis link, used by the response cache
//! and by the limit counters, and a PostgreSQL connection, used by the log store.

pub(crate) mod postgres;
pub(crate) mod redis;
