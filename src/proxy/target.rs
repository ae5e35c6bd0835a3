//! Resolving the request's Portkey headers into the upstream target: provider adapter, where it
//! lives (its base URL or a validated custom host) and the credential to send.

use super::State;
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::portkey::PortkeyHeaders;
use crate::providers::Provider;
use std::sync::Arc;

pub struct Target {
    pub provider: Arc<dyn Provider>,
    pub upstream: Upstream,
    /// Resolved addresses must be public (untrusted custom host).
    pub public_only: bool,
    pub api_key: Option<String>,
}

impl Target {
    /// The target named by `x-portkey-provider` (or legacy `x-portkey-mode`), with the client's
    /// `Authorization` as the provider key and `x-portkey-custom-host` as an optional base URL.
    pub fn from_headers(state: &State, headers: &PortkeyHeaders) -> Result<Target, GatewayError> {
        let Some(slug) = headers.provider.as_deref() else {
            return Err(GatewayError::MissingProvider);
        };
        let provider = state
            .providers
            .get(slug)
            .cloned()
            .ok_or_else(|| GatewayError::UnknownProvider(slug.to_string()))?;
        let (upstream, public_only) = match &headers.custom_host {
            Some(raw) => {
                let host = state.custom_hosts.check(raw)?;
                (host.upstream, host.public_only)
            }
            None => (provider.upstream().clone(), false),
        };
        Ok(Target {
            provider,
            upstream,
            public_only,
            api_key: headers.api_key.clone(),
        })
    }
}
