//! Turning a plan leaf, or the request's own Portkey headers, into a concrete target: the
//! provider adapter, where it lives (its base URL, a virtual key's host or a validated custom
//! host) and the credential to send.
//!
//! Credential precedence: a config `api_key`, then a config `virtual_key`,
//! then the `x-portkey-virtual-key` header; the client's `Authorization` only for the target
//! that the request's own headers name (a config leaf without provider, or no config). The
//! Portkey SDK sends the placeholder `Authorization: Bearer OPENAI_API_KEY`, which therefore
//! never overrides a configured key nor reaches a provider a config chose.

use super::plan::Leaf;
use crate::dispatch::custom_host::CustomHost;
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::portkey::PortkeyHeaders;
use crate::providers::{Provider, ProviderOptions};
use crate::settings::Secret;
use std::sync::Arc;

/// What resolving a target reads: the provider table, the virtual keys and the custom-host
/// rules (the state holds them; routing takes only these).
#[derive(Clone, Copy)]
pub(crate) struct Resolver<'a> {
    pub providers: &'a crate::providers::Providers,
    pub virtual_keys: &'a crate::settings::VirtualKeys,
    pub custom_hosts: &'a crate::dispatch::CustomHostPolicy,
}

pub(crate) struct Target {
    pub provider: Arc<dyn Provider>,
    pub upstream: Upstream,
    /// Resolved addresses must be public (untrusted custom host).
    pub public_only: bool,
    pub api_key: Option<Secret>,
    /// Provider options (Azure's resource, deployment, api-version, an Entra token), merged
    /// from the request's headers, a virtual key and the config leaf, highest last. Without a
    /// custom host they may choose the upstream (`Provider::upstream_for`).
    pub options: Arc<ProviderOptions>,
    /// `provider@authority`, made once (see [`Target::key`]).
    key: String,
    /// The virtual key whose credential the target uses (its rate limits and budgets apply).
    pub virtual_key: Option<String>,
}

impl Target {
    /// The physical target: provider and authority (metric labels, the access log's attempts,
    /// the cache's scope).
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The upstream resource a send reaches, for retry budgets and circuit breakers:
    /// `provider@authority/model#fingerprint`, the model as sent (after `override_params`) and
    /// a fingerprint of the credential and provider options (an Azure deployment, AWS keys).
    /// A fallback from one model to another on the same provider is a first send to a
    /// different resource, and one failing model opens its own circuit, not the provider's.
    ///
    /// The fingerprint is a hash keyed per process, so the key (shown by the admin endpoint)
    /// cannot be used to test a guessed credential.
    pub(crate) fn resource(&self, model: Option<&str>) -> String {
        use std::hash::{BuildHasher, Hash, Hasher};
        static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        let mut h = SEED.get_or_init(Default::default).build_hasher();
        match &self.api_key {
            Some(k) => {
                h.write_u8(1);
                k.expose().hash(&mut h);
            }
            None => h.write_u8(0),
        }
        for (k, v) in self.options.iter() {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        let fingerprint = h.finish() as u32;
        let model = model.unwrap_or("");
        let mut out = String::with_capacity(self.key.len() + model.len() + 10);
        out.push_str(&self.key);
        out.push('/');
        out.push_str(model);
        out.push('#');
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for shift in (0..8).rev() {
            out.push(char::from(HEX[(fingerprint >> (shift * 4)) as usize & 0xf]));
        }
        out
    }

    /// The target named by the request's headers: `x-portkey-virtual-key`, else
    /// `x-portkey-provider` (or legacy `x-portkey-mode`) with `Authorization` as the key;
    /// `x-portkey-custom-host` may replace the base URL.
    pub(crate) fn from_headers(
        state: Resolver<'_>,
        headers: &PortkeyHeaders,
    ) -> Result<Target, GatewayError> {
        request_target(state, headers, None, &Arc::default())
    }

    /// The target of a plan leaf; a leaf that names neither provider nor virtual key uses the
    /// request's headers.
    pub(crate) fn from_leaf(
        state: Resolver<'_>,
        leaf: &Leaf,
        headers: &PortkeyHeaders,
    ) -> Result<Target, GatewayError> {
        // Whether a credential from the settings (a virtual key's key, AWS keys or token)
        // goes with this target, rather than only what the request itself sent.
        let vault_credential;
        // The leaf's custom host replaces any other host (and the provider's own).
        let leaf_host = leaf.custom_host.as_ref().map(Host::Checked);
        let target = if let Some(id) = &leaf.virtual_key {
            let vk = state
                .virtual_keys
                .get(id)
                .ok_or_else(|| GatewayError::UnknownVirtualKey(id.clone()))?;
            // The key's options (AWS keys among them) go along even under the leaf's own key.
            vault_credential =
                (leaf.api_key.is_none() && vk.api_key.is_some()) || vk.has_credential_options();
            let key = leaf.api_key.clone().or_else(|| vk.api_key.clone());
            let host = leaf_host.or(vk.custom_host.as_deref().map(Host::Settings));
            let options = layered(None, Some(&vk.options), &leaf.options);
            let mut target = build(state, &vk.provider, key, host, options)?;
            target.virtual_key = Some(id.clone());
            target
        } else if let Some(slug) = &leaf.provider {
            // The config's key, else a header virtual key for the same provider (with its
            // options: an Azure key belongs to its resource). Never the client's
            // `Authorization`: it was meant for the provider the headers name, and a
            // fallback from one provider to another must not hand it to the next one.
            let mut used_vk = None;
            let (key, vk_options) = match leaf.api_key.clone() {
                Some(k) => {
                    vault_credential = false;
                    (Some(k), None)
                }
                None => {
                    let vk = headers
                        .virtual_key
                        .as_ref()
                        .and_then(|id| state.virtual_keys.get(id))
                        .filter(|vk| &vk.provider == slug);
                    vault_credential = vk.is_some_and(|vk| vk.carries_credential());
                    used_vk = vk.and(headers.virtual_key.clone());
                    (
                        vk.and_then(|vk| vk.api_key.clone()),
                        vk.map(|vk| &vk.options),
                    )
                }
            };
            let options = layered(None, vk_options, &leaf.options);
            let mut target = build(state, slug, key, leaf_host, options)?;
            target.virtual_key = used_vk;
            target
        } else {
            // An unknown id is refused by `request_target` itself.
            vault_credential = headers
                .virtual_key
                .as_ref()
                .and_then(|id| state.virtual_keys.get(id))
                .is_some_and(|vk| vk.carries_credential());
            request_target(state, headers, leaf.custom_host.as_ref(), &leaf.options)?
        };
        if leaf.custom_host.is_some() && leaf.custom_host_from_request && vault_credential {
            return Err(GatewayError::KeyToForeignHost);
        }
        Ok(target)
    }
}

/// The target the request's headers name, optionally under a config leaf's custom host and
/// options (a leaf without provider).
fn request_target(
    state: Resolver<'_>,
    headers: &PortkeyHeaders,
    leaf_host: Option<&CustomHost>,
    leaf_options: &Arc<ProviderOptions>,
) -> Result<Target, GatewayError> {
    let (slug, api_key, vk_host, vk_options) = match &headers.virtual_key {
        Some(_) if headers.custom_host.is_some() => {
            return Err(GatewayError::KeyToForeignHost);
        }
        Some(id) => {
            let vk = state
                .virtual_keys
                .get(id)
                .ok_or_else(|| GatewayError::UnknownVirtualKey(id.clone()))?;
            let key = vk.api_key.clone();
            (
                vk.provider.clone(),
                key,
                vk.custom_host.clone(),
                Some(&vk.options),
            )
        }
        None => match &headers.provider {
            Some(p) => (p.clone(), headers.api_key.clone(), None, None),
            None => return Err(GatewayError::MissingProvider),
        },
    };
    let host = match (leaf_host, &headers.custom_host, &vk_host) {
        (Some(h), request, _) => {
            // Still refused when invalid, as before the leaf's host replaced it.
            if let Some(raw) = request {
                state.custom_hosts.check(raw)?;
            }
            Some(Host::Checked(h))
        }
        (None, Some(h), _) => Some(Host::Request(h)),
        (None, None, Some(h)) => Some(Host::Settings(h)),
        (None, None, None) => None,
    };
    let options = layered(Some(headers), vk_options, leaf_options);
    let mut target = build(state, &slug, api_key, host, options)?;
    target.virtual_key = headers.virtual_key.clone();
    Ok(target)
}

/// Merges provider options, lowest precedence first: the request's headers (with the Entra
/// token), a virtual key's, the config leaf's. The common cases (none at all, or one source)
/// share the existing map instead of building one.
fn layered(
    headers: Option<&PortkeyHeaders>,
    vk: Option<&Arc<ProviderOptions>>,
    leaf: &Arc<ProviderOptions>,
) -> Arc<ProviderOptions> {
    let from_headers =
        headers.filter(|h| !h.provider_options.is_empty() || h.azure_ad_token.is_some());
    let vk = vk.filter(|o| !o.is_empty());
    match (from_headers, vk) {
        (None, None) => leaf.clone(),
        (None, Some(vk)) if leaf.is_empty() => vk.clone(),
        (h, vk) => {
            let mut out = ProviderOptions::new();
            if let Some(h) = h {
                out.extend(
                    h.provider_options
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
                if let Some(token) = &h.azure_ad_token {
                    out.insert("azure_ad_token".into(), token.expose().to_string());
                }
            }
            for layer in vk.into_iter().chain([leaf]) {
                out.extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            Arc::new(out)
        }
    }
}

/// Where a custom host was written: a request's is validated as untrusted input, the
/// settings' (a virtual key's) is the operator's configuration, a plan leaf's was checked when
/// the plan was built.
enum Host<'a> {
    Request(&'a str),
    Settings(&'a str),
    Checked(&'a CustomHost),
}

fn build(
    state: Resolver<'_>,
    slug: &str,
    api_key: Option<Secret>,
    custom_host: Option<Host<'_>>,
    options: Arc<ProviderOptions>,
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
        Some(Host::Checked(host)) => (host.upstream.clone(), host.public_only),
        // The provider's own host, which it may derive from the options (Azure's resource):
        // configuration, not a custom host, so keys from the settings may go there.
        None => (provider.upstream_for(&options)?, false),
    };
    // Joined by hand: `format!`'s machinery costs more than the join, once per request.
    let (slug, authority) = (provider.slug(), upstream.authority());
    let mut key = String::with_capacity(slug.len() + 1 + authority.len());
    key.push_str(slug);
    key.push('@');
    key.push_str(authority);
    Ok(Target {
        provider,
        upstream,
        public_only,
        api_key,
        options,
        key,
        virtual_key: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use crate::state::State;

    /// The key breakers and budgets file a target under: `provider@authority`.
    #[test]
    fn key_is_provider_at_authority() {
        let state = State::new(Settings::default()).unwrap();
        let headers = PortkeyHeaders {
            provider: Some("openai".into()),
            ..PortkeyHeaders::default()
        };
        let t = Target::from_headers(state.resolver(), &headers).unwrap();
        assert_eq!(t.key(), "openai@api.openai.com");
        let headers = PortkeyHeaders {
            provider: Some("anthropic".into()),
            custom_host: Some("https://llm.example.com:8443/v1".into()),
            ..PortkeyHeaders::default()
        };
        let t = Target::from_headers(state.resolver(), &headers).unwrap();
        assert_eq!(t.key(), "anthropic@llm.example.com:8443");
    }

    fn openai(key: &str, options: &[(&str, &str)]) -> Target {
        let state = State::new(Settings::default()).unwrap();
        let headers = PortkeyHeaders {
            provider: Some("openai".into()),
            api_key: Some(Secret::new(key.into())),
            provider_options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PortkeyHeaders::default()
        };
        Target::from_headers(state.resolver(), &headers).unwrap()
    }

    /// The resource a send reaches: the same provider, host, model and credential are one
    /// resource; a different model, credential or provider option is another.
    #[test]
    fn resource_is_target_model_and_credential() {
        let a = openai("sk-one", &[]);
        let r = a.resource(Some("gpt-4o"));
        assert!(r.starts_with("openai@api.openai.com/gpt-4o#"), "{r}");
        assert_eq!(r.len(), "openai@api.openai.com/gpt-4o#".len() + 8);
        assert!(
            !r.contains("sk-one"),
            "the credential itself is never in the key"
        );
        // Stable for the same target, model and credential (another request, same process).
        assert_eq!(openai("sk-one", &[]).resource(Some("gpt-4o")), r);
        // Another model, another credential or other options: other resources.
        assert_ne!(a.resource(Some("gpt-4o-mini")), r);
        assert_ne!(openai("sk-two", &[]).resource(Some("gpt-4o")), r);
        assert_ne!(
            openai("sk-one", &[("deployment_id", "b")]).resource(Some("gpt-4o")),
            r
        );
        assert_eq!(a.resource(None), a.resource(Some("")));
    }
}
