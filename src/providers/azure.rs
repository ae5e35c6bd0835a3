//! Azure OpenAI (`azure-openai`): OpenAI's API and bodies, at a per-account host and a
//! per-deployment path.
//!
//! `https://{resource}.openai.azure.com/openai/deployments/{deployment}/{op}?api-version={v}`
//! with the key in `api-key`, or an Entra ID (Azure AD) token as `Authorization: Bearer`. The
//! resource, deployment and api-version are provider options (`azure_resource_name`,
//! `azure_deployment_id`, `azure_api_version`): config target fields, a virtual key's
//! `options`, or the `x-portkey-azure-*` headers. The host is derived here from the resource
//! name (a DNS label, so it always ends in `.openai.azure.com`): it is the provider's own base
//! URL, not a custom host. A custom host replaces `https://{resource}.openai.azure.com/openai`
//! (so it includes `/openai`), as in Portkey; then no resource name is needed.
//!
//! Bodies and streams are OpenAI's: the body goes out untouched and answers are relayed by the
//! default meter.

use super::{Prepare, Provider, ProviderOptions, ProviderRequest};
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use http::{HeaderName, HeaderValue};

/// The api-version sent when none is configured: the newest GA data-plane version when this
/// adapter was written (it accepts `stream_options`).
pub(crate) const DEFAULT_API_VERSION: &str = "2024-10-21";

/// The first api-version whose chat completions accept `stream_options.include_usage`
/// (2024-08-01-preview; GA from 2024-10-21). Older versions refuse the field, so the gateway
/// asks for usage only from this version on; dated versions compare as strings, and the
/// undated ones (`preview`, `latest`, `v1`) are newer.
pub(crate) const STREAM_USAGE_SINCE: &str = "2024-08-01";

pub(crate) struct AzureOpenAi {
    /// Never dialled: what `upstream()` reports when no resource is known (documentation,
    /// errors). Targets get their host from `upstream_for`.
    placeholder: Upstream,
}

impl AzureOpenAi {
    pub(crate) fn new() -> Self {
        AzureOpenAi {
            placeholder: Upstream::new(true, "openai.azure.com".into(), 443, "/openai".into()),
        }
    }
}

impl Default for AzureOpenAi {
    fn default() -> Self {
        Self::new()
    }
}

fn option<'a>(options: &'a ProviderOptions, key: &str) -> Option<&'a str> {
    options.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// An Azure resource name: 2 to 64 letters, digits and hyphens, not starting or ending with a
/// hyphen. Anything else could change the host it is spliced into.
fn valid_resource(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A deployment name or api-version: one path segment or query value, no escaping needed.
fn valid_segment(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn api_version(options: &ProviderOptions) -> &str {
    option(options, "azure_api_version").unwrap_or(DEFAULT_API_VERSION)
}

fn header_value(value: String, what: &'static str) -> Result<HeaderValue, GatewayError> {
    let mut v = HeaderValue::try_from(value).map_err(|_| GatewayError::InvalidHeader {
        name: what,
        reason: "contains characters not allowed in a header".into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

impl Provider for AzureOpenAi {
    fn slug(&self) -> &str {
        "azure-openai"
    }

    fn upstream(&self) -> &Upstream {
        &self.placeholder
    }

    fn stream_usage(&self) -> bool {
        true
    }

    fn stream_usage_for(&self, options: &ProviderOptions) -> bool {
        api_version(options) >= STREAM_USAGE_SINCE
    }

    fn upstream_for(&self, options: &ProviderOptions) -> Result<Upstream, GatewayError> {
        let resource = option(options, "azure_resource_name").ok_or_else(|| {
            GatewayError::ProviderRequest(
                "azure-openai needs a resource name: set azure_resource_name in the config \
                 target or the virtual key's options, or send x-portkey-azure-resource-name"
                    .into(),
            )
        })?;
        if !valid_resource(resource) {
            return Err(GatewayError::ProviderRequest(
                "azure_resource_name must be 2 to 64 letters, digits or hyphens".into(),
            ));
        }
        Ok(Upstream::new(
            true,
            format!("{}.openai.azure.com", resource.to_ascii_lowercase()),
            443,
            "/openai".into(),
        ))
    }

    fn auth_headers(&self, api_key: &str) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        Ok(vec![(
            HeaderName::from_static("api-key"),
            header_value(api_key.to_string(), "authorization")?,
        )])
    }

    fn prepare(&self, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError> {
        if matches!(
            req.op,
            super::Operation::Messages | super::Operation::Rerank
        ) {
            return Err(GatewayError::Unsupported(
                req.op.fn_name(),
                "azure-openai".into(),
            ));
        }
        let deployment = option(req.options, "azure_deployment_id").ok_or_else(|| {
            GatewayError::ProviderRequest(
                "azure-openai needs a deployment: set azure_deployment_id in the config target \
                 or the virtual key's options, or send x-portkey-azure-deployment-id"
                    .into(),
            )
        })?;
        if !valid_segment(deployment) {
            return Err(GatewayError::ProviderRequest(
                "azure_deployment_id may hold only letters, digits, '-', '_' and '.'".into(),
            ));
        }
        let version = api_version(req.options);
        if !valid_segment(version) {
            return Err(GatewayError::ProviderRequest(
                "azure_api_version may hold only letters, digits, '-', '_' and '.'".into(),
            ));
        }
        // An Entra ID token wins over a key, as in Portkey.
        let headers = match (option(req.options, "azure_ad_token"), req.api_key) {
            (Some(token), _) => vec![(
                http::header::AUTHORIZATION,
                header_value(format!("Bearer {token}"), "x-portkey-azure-ad-token")?,
            )],
            (None, Some(key)) if !key.is_empty() => self.auth_headers(key)?,
            _ => Vec::new(),
        };
        // The client's own query is not forwarded: Azure's is the api-version.
        let path = format!(
            "/deployments/{deployment}{}?api-version={version}",
            req.op.openai_path()
        );
        Ok(ProviderRequest {
            path,
            headers,
            body: req.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Operation;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn opts(pairs: &[(&str, &str)]) -> ProviderOptions {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn prepare(
        op: Operation,
        options: &ProviderOptions,
        key: Option<&str>,
    ) -> Result<ProviderRequest, GatewayError> {
        let headers = http::HeaderMap::new();
        AzureOpenAi::new().prepare(Prepare {
            op,
            body: Bytes::from_static(br#"{"messages":[]}"#),
            api_key: key,
            query: Some("x=1"),
            stream: false,
            client_headers: &headers,
            options,
        })
    }

    #[test]
    fn host_is_derived_from_the_resource_name() {
        let a = AzureOpenAi::new();
        let u = a
            .upstream_for(&opts(&[("azure_resource_name", "My-Res1")]))
            .unwrap();
        assert_eq!(u.host, "my-res1.openai.azure.com");
        assert!(u.tls);
        assert_eq!(u.port, 443);
        assert_eq!(u.base_path, "/openai");
    }

    #[test]
    fn missing_or_malformed_resource_is_a_400() {
        let a = AzureOpenAi::new();
        for bad in [
            opts(&[]),
            opts(&[("azure_resource_name", "  ")]),
            opts(&[("azure_resource_name", "evil.com/x")]),
            opts(&[("azure_resource_name", "a@b")]),
            opts(&[("azure_resource_name", "-lead")]),
            opts(&[("azure_resource_name", "x")]),
        ] {
            let e = a.upstream_for(&bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}");
        }
    }

    #[test]
    fn path_carries_deployment_op_and_api_version() {
        let o = opts(&[
            ("azure_deployment_id", "gpt4o-prod"),
            ("azure_api_version", "2024-06-01"),
        ]);
        for (op, tail) in [
            (Operation::ChatCompletions, "chat/completions"),
            (Operation::Completions, "completions"),
            (Operation::Embeddings, "embeddings"),
        ] {
            let r = prepare(op, &o, Some("k")).unwrap();
            assert_eq!(
                r.path,
                format!("/deployments/gpt4o-prod/{tail}?api-version=2024-06-01")
            );
        }
        let r = prepare(
            Operation::ChatCompletions,
            &opts(&[("azure_deployment_id", "d")]),
            None,
        )
        .unwrap();
        assert_eq!(
            r.path,
            format!("/deployments/d/chat/completions?api-version={DEFAULT_API_VERSION}")
        );
        assert!(r.headers.is_empty(), "no key, no auth header");
    }

    #[test]
    fn missing_or_malformed_deployment_is_a_400() {
        for o in [
            opts(&[]),
            opts(&[("azure_deployment_id", "a/../b")]),
            opts(&[("azure_deployment_id", "d"), ("azure_api_version", "1&x=2")]),
        ] {
            let e = prepare(Operation::ChatCompletions, &o, Some("k")).unwrap_err();
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn key_goes_in_api_key_and_an_ad_token_wins() {
        let o = opts(&[("azure_deployment_id", "d")]);
        let r = prepare(Operation::ChatCompletions, &o, Some("az-key")).unwrap();
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.headers[0].0, "api-key");
        assert_eq!(r.headers[0].1, "az-key");
        assert!(r.headers[0].1.is_sensitive());
        let o = opts(&[("azure_deployment_id", "d"), ("azure_ad_token", "eyJ0")]);
        let r = prepare(Operation::ChatCompletions, &o, Some("az-key")).unwrap();
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.headers[0].0, "authorization");
        assert_eq!(r.headers[0].1, "Bearer eyJ0");
    }

    #[test]
    fn body_is_passed_through_without_a_copy() {
        let body = Bytes::from_static(br#"{"model":"gpt-4o","messages":[]}"#);
        let headers = http::HeaderMap::new();
        let o = opts(&[("azure_deployment_id", "d")]);
        let r = AzureOpenAi::new()
            .prepare(Prepare {
                op: Operation::ChatCompletions,
                body: body.clone(),
                api_key: Some("k"),
                query: None,
                stream: true,
                client_headers: &headers,
                options: &o,
            })
            .unwrap();
        assert_eq!(r.body.as_ptr(), body.as_ptr());
    }

    #[test]
    fn stream_usage_follows_the_api_version() {
        let a = AzureOpenAi::new();
        assert!(a.stream_usage_for(&opts(&[])), "the default version has it");
        for (v, yes) in [
            ("2024-02-01", false),
            ("2024-06-01", false),
            ("2024-08-01-preview", true),
            ("2024-10-21", true),
            ("2025-04-01-preview", true),
            ("preview", true),
        ] {
            assert_eq!(
                a.stream_usage_for(&opts(&[("azure_api_version", v)])),
                yes,
                "{v}"
            );
        }
    }

    #[test]
    fn fixture_request_matches_the_recorded_upstream_request() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/azure-openai/chat_request.json"
        ))
        .unwrap();
        let options: ProviderOptions = serde_json::from_value(fixture["options"].clone()).unwrap();
        let body = Bytes::from(fixture["client_body"].to_string());
        let headers = http::HeaderMap::new();
        let a = AzureOpenAi::new();
        let r = a
            .prepare(Prepare {
                op: Operation::ChatCompletions,
                body: body.clone(),
                api_key: Some("AZ-KEY"),
                query: None,
                stream: false,
                client_headers: &headers,
                options: &options,
            })
            .unwrap();
        let up = a.upstream_for(&options).unwrap();
        let url = format!("https://{}{}{}", up.host, up.base_path, r.path);
        assert_eq!(url, fixture["upstream"]["url"].as_str().unwrap());
        assert_eq!(r.headers[0].0, "api-key");
        let sent: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(sent, fixture["upstream"]["body"]);
    }

    proptest! {
        /// Any options and body: prepare answers or refuses, never panics.
        #[test]
        fn prepare_never_panics(
            dep in "\\PC{0,12}",
            ver in "\\PC{0,12}",
            body in "\\PC{0,64}",
        ) {
            let o = opts(&[("azure_deployment_id", &dep), ("azure_api_version", &ver)]);
            let headers = http::HeaderMap::new();
            let _ = AzureOpenAi::new().prepare(Prepare {
                op: Operation::ChatCompletions,
                body: Bytes::from(body),
                api_key: Some("k"),
                query: None,
                stream: false,
                client_headers: &headers,
                options: &o,
            });
            let _ = AzureOpenAi::new().upstream_for(&opts(&[("azure_resource_name", &dep)]));
        }
    }
}
