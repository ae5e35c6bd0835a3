//! Portkey's wire contract: the `x-portkey-*` request headers, custom-host rules, and the
//! response headers the SDKs read.

pub mod config;
pub mod custom_host;
pub mod headers;
pub mod hop;
pub mod metadata;
pub mod provider_error;

pub use custom_host::CustomHostPolicy;
pub use headers::PortkeyHeaders;

/// Response header names (reference §2.2).
pub mod response {
    pub const TRACE_ID: &str = "x-portkey-trace-id";
    pub const PROVIDER: &str = "x-portkey-provider";
    pub const GATEWAY_EXCEPTION: &str = "x-portkey-gateway-exception";
    pub const LAST_USED_OPTION_INDEX: &str = "x-portkey-last-used-option-index";
    pub const RETRY_ATTEMPT_COUNT: &str = "x-portkey-retry-attempt-count";
    pub const CACHE_STATUS: &str = "x-portkey-cache-status";
    /// portgate's own: `exhausted` when the retry budget stopped a retry or fallback.
    pub const RETRY_BUDGET: &str = "x-portgate-retry-budget";
}
