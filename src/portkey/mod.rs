//! Portkey's wire contract: the `x-portkey-*` request headers, the config schema, and the
//! response headers the SDKs read.

pub mod conditions;
pub mod config;
pub mod headers;
pub mod hop;
pub mod metadata;

pub use headers::PortkeyHeaders;

/// Response header names, as `HeaderName`s: built at compile time, so adding
/// one to an answer parses nothing.
pub mod response {
    use http::HeaderName;
    pub(crate) const TRACE_ID: HeaderName = HeaderName::from_static("x-portkey-trace-id");
    pub(crate) const PROVIDER: HeaderName = HeaderName::from_static("x-portkey-provider");
    pub(crate) const GATEWAY_EXCEPTION: HeaderName =
        HeaderName::from_static("x-portkey-gateway-exception");
    pub(crate) const LAST_USED_OPTION_INDEX: HeaderName =
        HeaderName::from_static("x-portkey-last-used-option-index");
    pub(crate) const RETRY_ATTEMPT_COUNT: HeaderName =
        HeaderName::from_static("x-portkey-retry-attempt-count");
    pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("x-portkey-cache-status");
    /// portgate's own: `exhausted` when the retry budget stopped a retry or fallback.
    pub(crate) const RETRY_BUDGET: HeaderName = HeaderName::from_static("x-portgate-retry-budget");
}
