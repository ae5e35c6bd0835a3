//! The integration tests, one binary: each module runs portgate in process against mock
//! providers that fail on purpose and record what they received, and asserts on both sides of
//! the proxy. Process-wide measurements (memory, the global logger) are in `tests/process`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod agent_streams;
mod breaker;
mod cache;
mod cache_redis;
mod cancellation;
mod chat;
mod check;
mod conformance;
mod credentials;
mod decode_props;
mod deploy;
mod errors;
mod examples;
mod finetune;
mod fleet_limits;
mod guardrail_limits;
mod guardrails;
mod input_props;
mod keepalive;
mod keys;
mod large_answers;
mod log_store;
mod logs;
mod loops;
mod messages;
mod metrics;
mod outage;
mod passthrough;
mod provider_anthropic;
mod provider_azure;
mod provider_bedrock;
mod provider_cohere;
mod provider_google;
mod provider_matrix;
mod rerank;
mod responses;
mod retries;
mod routing;
mod seeds;
mod shutdown;
mod sticky;
mod streaming;
