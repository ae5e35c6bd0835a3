//! Types every layer shares and that depend on no other part of the gateway: token usage (as
//! read from answers and as written into OpenAI's shape), the answer the gateway holds whole, the JSON writing helpers, the bounds
//! on regular expressions that come from requests, the problems found in a document a client
//! sent, the redaction of credentials in documents that are shown or logged, and the one
//! formatter of timestamps.

pub mod held;
pub mod json;
pub mod money;
pub mod patterns;
pub mod problems;
pub mod redact;
pub mod time;
pub mod usage;
