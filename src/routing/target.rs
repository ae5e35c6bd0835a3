//! Turning a plan leaf, or the request's own Portkey headers, into a concrete target: the
//! provider adapter, where it lives (its base URL, a virtual key's host or a validated custom
//! host) and the credential to send.
//!
//! Credential precedence (reference §14.4): a config `api_key`, then a config `virtual_key`,
//! then the `x-portkey-virtual-key` header; the client's `Authorization` only for the target
//! that the request's own headers name (a config leaf without provider, or no config). The
//! Portkey SDK sends the placeholder `Authorization: Bearer OPENAI_API_KEY`, which therefore
//! never overrides a configured key nor reaches a provider a config chose.

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
            Some(_) if headers.custom_host.is_some() => {
                return Err(GatewayError::KeyToForeignHost);
            }
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
        let host = match (&headers.custom_host, &vk_host) {
            (Some(h), _) => Some(Host::Request(h)),
            (None, Some(h)) => Some(Host::Settings(h)),
            (None, None) => None,
        };
        build(state, &slug, api_key, host)
    }

    /// The target of a plan leaf; a leaf that names neither provider nor virtual key uses the
    /// request's headers.
    pub fn from_leaf(
        state: &State,
        leaf: &Leaf,
        headers: &PortkeyHeaders,
    ) -> Result<Target, GatewayError> {
        // Whether the key comes from the settings rather than from the request itself.
        let mut vault_key = false;
        let mut target = if let Some(id) = &leaf.virtual_key {
            vault_key = true;
            let vk = state
                .virtual_keys
                .get(id)
                .ok_or_else(|| GatewayError::UnknownVirtualKey(id.clone()))?;
            let key = leaf.api_key.clone().or_else(|| vk.api_key.clone());
            build(
                state,
                &vk.provider,
                key,
                vk.custom_host.as_deref().map(Host::Settings),
            )?
        } else if let Some(slug) = &leaf.provider {
            // The config's key, else a header virtual key for the same provider. Never the
            // client's `Authorization`: it was meant for the provider the headers name, and a
            // fallback from one provider to another must not hand it to the next one.
            let key = leaf.api_key.clone().or_else(|| {
                vault_key = true;
                headers
                    .virtual_key
                    .as_ref()
                    .and_then(|id| state.virtual_keys.get(id))
                    .filter(|vk| &vk.provider == slug)
                    .and_then(|vk| vk.api_key.clone())
            });
            build(state, slug, key, None)?
        } else {
            vault_key = headers.virtual_key.is_some();
            Target::from_headers(state, headers)?
        };
        if let Some(host) = &leaf.custom_host {
            if leaf.custom_host_from_request && vault_key && target.api_key.is_some() {
                return Err(GatewayError::KeyToForeignHost);
            }
            target.upstream = host.upstream.clone();
            target.public_only = host.public_only;
        }
        Ok(target)
    }
}

/// Where a custom host was written: a request's is validated as untrusted input, the
/// settings' (a virtual key's) is the operator's configuration.
enum Host<'a> {
    Request(&'a str),
    Settings(&'a str),
}

fn build(
    state: &State,
    slug: &str,
    api_key: Option<Secret>,
    custom_host: Option<Host<'_>>,
) -> Result<Target, GatewayError> {
    let provider = state
        .providers
        .get(slug)
        .cloned()
        .ok_or_else(|| GatewayError::UnknownProvider(slug.to_string()))?;
    let (upstream, public_only) = match custom_host {
        Some(Host::Request(raw)) => {
            let host = state.custom_hosts.check(raw)?;
            (host.upstream, host.public_only)
        }
        Some(Host::Settings(raw)) => {
            let host = state.custom_hosts.check_operator(raw)?;
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
