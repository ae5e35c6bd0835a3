//! The request pipeline: a request's walk through its plan (`attempts`: targets in order,
//! guardrails, cache, breakers, retry budget, each send) and the one builder of what is sent
//! upstream (`request`: the provider's body, signing, the hop header and `traceparent`), and
//! the guardrails on that path (`guard`: before and after each attempt; `guard_stream`: on a
//! streamed answer as it is relayed).

pub mod answer;
pub mod attempts;
pub mod embed;
pub mod guard;
pub mod guard_stream;
pub mod request;
pub mod verdicts;
