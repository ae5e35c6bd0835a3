//! The upstream exchange: DNS, peers, Pingora's pooled `Connector`, timeouts.
//!
//! The LLM routes do their upstream exchange here, from inside `request_filter`, rather than on
//! Pingora's proxy path: Pingora 0.9 replays a pre-read body on retry only up to 64 KiB, while an
//! LLM request must be sent whole, of any size, and possibly rewritten for each target
//! (`reference/pingora.md` §3.3).

pub mod attempts;
mod dns;
mod exchange;
pub mod request;
mod upstream;

pub use dns::DnsCache;
pub use exchange::{classify, Dispatcher, Inbound, Outbound};
pub use upstream::Upstream;
