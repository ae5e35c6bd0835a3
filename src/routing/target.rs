//! Turning a plan leaf, or the request's own Portkey headers, into a concrete target: the
//! provider adapter, where it lives (its base URL, a virtual key's host or a validated custom
//! host) and the credential to send.
//!
//! Credential precedence (reference §14.4): a config `api_key`, then a config `virtual_key`,
//! then the `x-portkey-virtual-key` header, then the client's `Authorization`. The Portkey SDK
//! sends the placeholder `Authorization: Bearer OPENAI_API_KEY`, which therefore never
//! overrides a configured key.

use super::plan::Leaf;
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::portkey::PortkeyHeaders;
use crate::providers::Provider;
use crate::settings::Secret;
use crate::state::State;
use std::sync::Arc;

pub struct Target {
    pub provider: Arc<dyn Provider>,
    pub upstream: Upstream,
    /// Resolved addresses must be public (untrusted custom host).
    pub public_only: bool,
    pub api_key: Option<Secret>,
}

impl Target {
    /// The physical target, for retry budgets and circuit breakers: provider and authority.
    pub fn key(&self) -> String {
        format!("{}@{}", self.provider.slug(), self.upstream.authority())
    }

    /// The target named by the request's headers: `x-portkey-virtual-key`, else
    /// `x-portkey-provider` (or legacy `x-portkey-mode`) with `Authorization` as the key;
    /// `x-portkey-custom-host` may replace the base URL.
    pub fn from_headers(state: &State, headers: &PortkeyHeaders) -> Result<Target, GatewayError> {
        let (slug, api_key, vk_host) = match &headers.virtual_key {
            Some(id) => {
                let vk = state
                    .virtual_keys
                    .get(id)
                    .ok_or_else(|| GatewayError::UnknownVirtualKey(id.clone()))?;
                let key = vk.api_key.clone();
                (vk.provider.clone(), key, vk.custom_host.clone())
            }
            None => match &headers.provider {
                Some(p) => (p.clone(), headers.api_key.clone(), None),
                None => return Err(GatewayError::MissingProvider),
            },
        };
        let host = headers.custom_host.as_deref().or(vk_host.as_deref());
        build(state, &slug, api_key, host)
    }

    /// The target of a plan leaf; a leaf that names neither provider nor virtual key uses the
    /// request's headers.
    pub fn from_leaf(
        state: &State,
        leaf: &Leaf,
        headers: &PortkeyHeaders,
    ) -> Result<Target, GatewayError> {
        let mut target = if let Some(id) = &leaf.virtual_key {
            let vk = state
                .virtual_keys
                .get(id)
                .ok_or_else(|| GatewayError::UnknownVirtualKey(id.clone()))?;
            let key = leaf.api_key.clone().or_else(|| vk.api_key.clone());
            build(state, &vk.provider, key, vk.custom_host.as_deref())?
        } else if let Some(slug) = &leaf.provider {
            let key = leaf.api_key.clone().or_else(|| {
                // A header virtual key for the same provider beats the client's Authorization.
                headers
                    .virtual_key
                    .as_ref()
                    .and_then(|id| state.virtual_keys.get(id))
                    .filter(|vk| &vk.provider == slug)
                    .and_then(|vk| vk.api_key.clone())
                    .or_else(|| headers.api_key.clone())
            });
            build(state, slug, key, None)?
        } else {
            Target::from_headers(state, headers)?
        };
        if let Some(host) = &leaf.custom_host {
            target.upstream = host.upstream.clone();
            target.public_only = host.public_only;
        }
        Ok(target)
    }
}

fn build(
    state: &State,
    slug: &str,
    api_key: Option<Secret>,
    custom_host: Option<&str>,
) -> Result<Target, GatewayError> {
    let provider = state
        .providers
        .get(slug)
        .cloned()
        .ok_or_else(|| GatewayError::UnknownProvider(slug.to_string()))?;
    let (upstream, public_only) = match custom_host {
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
        api_key,
    })
}
