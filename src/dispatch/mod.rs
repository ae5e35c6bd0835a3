//! The upstream exchange: upstream URLs and the custom-host rules, DNS, peers, Pingora's
//! pooled `Connector`, timeouts.
//!
//! The LLM routes do their upstream exchange here, from inside `request_filter`, rather than on
//! Pingora's proxy path: Pingora 0.9 replays a pre-read body on retry only up to 64 KiB, while an
//! LLM request must be sent whole, of any size, and possibly rewritten for each target.

pub mod custom_host;
mod dns;
mod exchange;
mod upstream;

pub use custom_host::{is_public, CustomHostPolicy};
pub(crate) use dns::DnsCache;
pub(crate) use exchange::{classify, Dispatcher, Inbound, Outbound};
pub(crate) use upstream::{never_set, Upstream};
