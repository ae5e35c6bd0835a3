//! Reading the `x-portkey-*` request headers into one typed value, once per request.

use crate::dispatch::never_set;
use crate::error::GatewayError;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::collections::BTreeMap;

/// The longest trace id accepted; longer ones are refused rather than truncated, so logs and the
/// echoed header always agree with what the client sent.
pub(crate) const MAX_TRACE_ID_LEN: usize = 256;

/// OpenAI's account-scoping and beta headers, sent to `openai` when the client gives them:
/// plainly (what the OpenAI SDK sends) or with Portkey's prefix (what the Portkey SDK sends for
/// `openai_organization=`, `openai_project=`, `openai_beta=`); the prefixed form wins. Other
/// providers never see an OpenAI account id.
pub(crate) const OPENAI_HEADERS: &[(&str, &str)] = &[
    ("x-portkey-openai-organization", "openai-organization"),
    ("x-portkey-openai-project", "openai-project"),
    ("x-portkey-openai-beta", "openai-beta"),
];

/// Appends OpenAI's own headers found among the client's: each under its plain name, from the
/// `x-portkey-openai-*` header when present, else from the plain one (the first value of
/// either). One pass over the client's headers: six `HeaderMap::get` by `&str` would parse
/// and hash a name each.
pub(crate) fn openai_headers(client: &HeaderMap, out: &mut Vec<(HeaderName, HeaderValue)>) {
    let mut prefixed: [Option<&HeaderValue>; OPENAI_HEADERS.len()] = [None; OPENAI_HEADERS.len()];
    let mut plain: [Option<&HeaderValue>; OPENAI_HEADERS.len()] = [None; OPENAI_HEADERS.len()];
    for (name, value) in client {
        let name = name.as_str();
        for (i, (p, n)) in OPENAI_HEADERS.iter().enumerate() {
            if name == *p {
                prefixed[i].get_or_insert(value);
            } else if name == *n {
                plain[i].get_or_insert(value);
            }
        }
    }
    for (i, (_, name)) in OPENAI_HEADERS.iter().enumerate() {
        if let Some(v) = prefixed[i].or(plain[i]) {
            out.push((HeaderName::from_static(name), v.clone()));
        }
    }
}

/// The Portkey headers of one request, validated.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PortkeyHeaders {
    /// From `x-portkey-provider`, or the second word of legacy `x-portkey-mode: proxy <slug>`.
    pub provider: Option<String>,
    /// Raw `x-portkey-config` (inline JSON or a config id).
    pub config: Option<String>,
    pub virtual_key: Option<String>,
    /// The client's key from `Authorization` with `Bearer ` removed.
    pub api_key: Option<crate::settings::Secret>,
    pub trace_id: Option<String>,
    /// Raw `x-portkey-metadata`.
    pub metadata: Option<String>,
    pub custom_host: Option<String>,
    /// Lower-cased names from `x-portkey-forward-headers`.
    pub forward_headers: Vec<String>,
    /// `x-portkey-request-timeout`, in milliseconds.
    pub request_timeout_ms: Option<u64>,
    /// `x-portkey-strict-open-ai-compliance`: `false` lets provider fields through (the
    /// Portkey SDK sends `false` by default); anything else, or absent, is strict.
    pub strict_open_ai_compliance: Option<bool>,
    /// Provider options from `x-portkey-<field>` headers (`x-portkey-azure-resource-name` →
    /// `azure_resource_name`, see `config::PROVIDER_OPTION_FIELDS`). Applied only to the
    /// target the request's own headers name (Portkey's rule for provider headers).
    pub provider_options: BTreeMap<String, String>,
    /// `x-portkey-azure-ad-token`: an Entra ID token sent as `Authorization: Bearer` instead
    /// of Azure's `api-key`. A credential, so kept apart from the options and redacted; like
    /// `Authorization`, it only goes to the provider the headers name.
    pub azure_ad_token: Option<crate::settings::Secret>,
}

/// The first value of each header `PortkeyHeaders::parse` reads, found in one pass over the
/// request's headers (a handful): a `HeaderMap::get` by `&str` parses and hashes the name, and
/// there are twelve to look for.
#[derive(Default)]
struct Found<'a> {
    provider: Option<&'a HeaderValue>,
    config: Option<&'a HeaderValue>,
    virtual_key: Option<&'a HeaderValue>,
    trace_id: Option<&'a HeaderValue>,
    metadata: Option<&'a HeaderValue>,
    custom_host: Option<&'a HeaderValue>,
    mode: Option<&'a HeaderValue>,
    authorization: Option<&'a HeaderValue>,
    strict_open_ai_compliance: Option<&'a HeaderValue>,
    forward_headers: Option<&'a HeaderValue>,
    azure_ad_token: Option<&'a HeaderValue>,
    request_timeout: Option<&'a HeaderValue>,
    x_api_key: Option<&'a HeaderValue>,
}

/// The trimmed text of a header value; `None` when absent or blank.
fn text<'a>(
    value: Option<&'a HeaderValue>,
    name: &'static str,
) -> Result<Option<&'a str>, GatewayError> {
    match value {
        None => Ok(None),
        Some(v) => {
            let s = v.to_str().map_err(|_| GatewayError::InvalidHeader {
                name,
                reason: "is not visible ASCII".into(),
            })?;
            let s = s.trim();
            Ok((!s.is_empty()).then_some(s))
        }
    }
}

impl PortkeyHeaders {
    pub fn parse(headers: &HeaderMap) -> Result<Self, GatewayError> {
        let mut found = Found::default();
        let mut provider_options = BTreeMap::new();
        // The first value of a repeated header wins, as `HeaderMap::get` gives.
        for (name, value) in headers {
            let slot = match name.as_str() {
                "authorization" => &mut found.authorization,
                "x-portkey-provider" => &mut found.provider,
                "x-portkey-config" => &mut found.config,
                "x-portkey-virtual-key" => &mut found.virtual_key,
                "x-portkey-trace-id" => &mut found.trace_id,
                "x-portkey-metadata" => &mut found.metadata,
                "x-portkey-custom-host" => &mut found.custom_host,
                "x-portkey-mode" => &mut found.mode,
                "x-portkey-strict-open-ai-compliance" => &mut found.strict_open_ai_compliance,
                "x-portkey-forward-headers" => &mut found.forward_headers,
                "x-portkey-azure-ad-token" => &mut found.azure_ad_token,
                "x-portkey-request-timeout" => &mut found.request_timeout,
                "x-api-key" => &mut found.x_api_key,
                other => {
                    // A provider option (`x-portkey-azure-resource-name`); a blank or
                    // non-text value is skipped, and a later one may still give it.
                    let field = other.strip_prefix("x-portkey-").and_then(option_field);
                    let text = value.to_str().ok().map(str::trim).filter(|v| !v.is_empty());
                    if let (Some(field), Some(v)) = (field, text) {
                        provider_options
                            .entry(field.to_string())
                            .or_insert_with(|| v.to_string());
                    }
                    continue;
                }
            };
            slot.get_or_insert(value);
        }
        let mut out = PortkeyHeaders {
            provider: text(found.provider, "x-portkey-provider")?.map(str::to_ascii_lowercase),
            config: text(found.config, "x-portkey-config")?.map(str::to_string),
            virtual_key: text(found.virtual_key, "x-portkey-virtual-key")?.map(str::to_string),
            trace_id: text(found.trace_id, "x-portkey-trace-id")?.map(str::to_string),
            metadata: text(found.metadata, "x-portkey-metadata")?.map(str::to_string),
            custom_host: text(found.custom_host, "x-portkey-custom-host")?.map(str::to_string),
            provider_options,
            ..Default::default()
        };
        if out.provider.is_none() {
            if let Some(mode) = text(found.mode, "x-portkey-mode")? {
                out.provider = Some(parse_mode(mode)?);
            }
        }
        if let Some(auth) = text(found.authorization, "authorization")? {
            let key = match auth.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                None if auth.eq_ignore_ascii_case("bearer") => "",
                _ => auth,
            };
            out.api_key = (!key.is_empty()).then(|| crate::settings::Secret::new(key.to_string()));
        }
        // Anthropic's SDKs send their key as `x-api-key`: the provider key when no
        // `authorization` gives one.
        if out.api_key.is_none() {
            if let Some(key) = text(found.x_api_key, "x-api-key")? {
                out.api_key = Some(crate::settings::Secret::new(key.to_string()));
            }
        }
        if let Some(id) = &out.trace_id {
            if id.len() > MAX_TRACE_ID_LEN {
                return Err(GatewayError::InvalidHeader {
                    name: "x-portkey-trace-id",
                    reason: format!("is longer than {MAX_TRACE_ID_LEN} characters"),
                });
            }
        }
        if let Some(v) = text(
            found.strict_open_ai_compliance,
            "x-portkey-strict-open-ai-compliance",
        )? {
            out.strict_open_ai_compliance = Some(!v.eq_ignore_ascii_case("false"));
        }
        if let Some(list) = text(found.forward_headers, "x-portkey-forward-headers")? {
            out.forward_headers = parse_forward_headers(list)?;
        }
        if let Some(token) = text(found.azure_ad_token, "x-portkey-azure-ad-token")? {
            let token = token
                .strip_prefix("Bearer ")
                .or_else(|| token.strip_prefix("bearer "))
                .unwrap_or(token)
                .trim();
            out.azure_ad_token =
                (!token.is_empty()).then(|| crate::settings::Secret::new(token.to_string()));
        }
        if let Some(ms) = text(found.request_timeout, "x-portkey-request-timeout")? {
            let ms: u64 = ms.parse().map_err(|_| GatewayError::InvalidHeader {
                name: "x-portkey-request-timeout",
                reason: "must be a whole number of milliseconds".into(),
            })?;
            out.request_timeout_ms = (ms > 0).then_some(ms);
        }
        Ok(out)
    }
}

/// The provider option a header names without its `x-portkey-` prefix (`azure-resource-name`
/// names `azure_resource_name`).
fn option_field(suffix: &str) -> Option<&'static str> {
    crate::portkey::config::PROVIDER_OPTION_FIELDS
        .iter()
        .copied()
        .find(|field| {
            field.len() == suffix.len()
                && field
                    .bytes()
                    .zip(suffix.bytes())
                    .all(|(f, s)| if f == b'_' { s == b'-' } else { f == s })
        })
}

/// Legacy `x-portkey-mode: proxy <provider>` (the Anyscale seed uses `proxy anyscale`).
fn parse_mode(mode: &str) -> Result<String, GatewayError> {
    let mut words = mode.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(m), Some(provider), None) if m.eq_ignore_ascii_case("proxy") => {
            Ok(provider.to_ascii_lowercase())
        }
        _ => Err(GatewayError::InvalidHeader {
            name: "x-portkey-mode",
            reason: "must be \"proxy <provider>\"".into(),
        }),
    }
}

/// Header names the gateway never forwards on request, whatever the client or a config asks:
/// they would carry a credential to a provider it was not meant for (the provider's own key
/// is set by the gateway), besides the ones no outgoing request may set ([`NEVER_SET`]).
const NEVER_FORWARD: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "proxy-authorization",
    "x-portkey-forward-headers",
];

/// Checks one name of a forward list (`x-portkey-forward-headers` or a config's
/// `forward_headers`: one rule for both) and returns it lower-cased.
pub(crate) fn forward_header_name(name: &str) -> Result<String, String> {
    let lower = name.trim().to_ascii_lowercase();
    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        return Err(format!("{name:?} is not a header name"));
    }
    if NEVER_FORWARD.contains(&lower.as_str()) || never_set(&lower) {
        return Err(format!("{lower} cannot be forwarded"));
    }
    Ok(lower)
}

fn parse_forward_headers(list: &str) -> Result<Vec<String>, GatewayError> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            forward_header_name(n).map_err(|reason| GatewayError::InvalidHeader {
                name: "x-portkey-forward-headers",
                reason,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn openai_headers_prefer_the_prefixed_name_and_the_first_value() {
        let mut h = HeaderMap::new();
        h.append("openai-organization", "plain-org".parse().unwrap());
        h.append("x-portkey-openai-organization", "org-1".parse().unwrap());
        h.append("x-portkey-openai-organization", "org-2".parse().unwrap());
        h.append("openai-beta", "assistants=v2".parse().unwrap());
        h.append("openai-beta", "later".parse().unwrap());
        h.append("x-portkey-provider", "openai".parse().unwrap());
        let mut out = Vec::new();
        openai_headers(&h, &mut out);
        let out: Vec<(&str, &str)> = out
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            out,
            [
                ("openai-organization", "org-1"),
                ("openai-beta", "assistants=v2")
            ]
        );
        let mut none = Vec::new();
        openai_headers(&HeaderMap::new(), &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn provider_option_headers_use_hyphens() {
        assert_eq!(
            option_field("azure-resource-name"),
            Some("azure_resource_name")
        );
        assert_eq!(option_field("azure_resource_name"), None);
        assert_eq!(option_field("azure-resource"), None);
        let mut h = HeaderMap::new();
        h.append("x-portkey-azure-api-version", "2024-10-21".parse().unwrap());
        h.append("x-portkey-azure-api-version", "ignored".parse().unwrap());
        h.insert("x-portkey-azure-deployment-id", "  ".parse().unwrap());
        let parsed = PortkeyHeaders::parse(&h).unwrap();
        assert_eq!(
            parsed
                .provider_options
                .get("azure_api_version")
                .map(String::as_str),
            Some("2024-10-21")
        );
        assert!(!parsed.provider_options.contains_key("azure_deployment_id"));
    }

    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn provider_option_headers_and_the_ad_token() {
        let h = PortkeyHeaders::parse(&map(&[
            ("x-portkey-azure-resource-name", " res1 "),
            ("x-portkey-azure-deployment-id", "dep"),
            ("x-portkey-azure-api-version", ""),
            ("x-portkey-azure-ad-token", "Bearer eyJ"),
        ]))
        .unwrap();
        assert_eq!(h.provider_options.len(), 2, "empty values are absent");
        assert_eq!(h.provider_options["azure_resource_name"], "res1");
        assert_eq!(h.provider_options["azure_deployment_id"], "dep");
        assert_eq!(h.azure_ad_token.as_ref().map(|t| t.expose()), Some("eyJ"));
        assert!(!format!("{h:?}").contains("eyJ"), "the token never prints");
    }

    #[test]
    fn reads_provider_key_and_trace() {
        let h = PortkeyHeaders::parse(&map(&[
            ("x-portkey-provider", "OpenAI"),
            ("authorization", "Bearer sk-1"),
            ("x-portkey-trace-id", "t-1"),
            ("x-portkey-request-timeout", "2500"),
        ]))
        .unwrap();
        assert_eq!(h.provider.as_deref(), Some("openai"));
        assert_eq!(h.api_key.as_ref().map(|k| k.expose()), Some("sk-1"));
        assert_eq!(h.trace_id.as_deref(), Some("t-1"));
        assert_eq!(h.request_timeout_ms, Some(2500));
    }

    #[test]
    fn legacy_mode_names_the_provider() {
        let h = PortkeyHeaders::parse(&map(&[("x-portkey-mode", "proxy anyscale")])).unwrap();
        assert_eq!(h.provider.as_deref(), Some("anyscale"));
        // The explicit provider header wins over the legacy one.
        let h = PortkeyHeaders::parse(&map(&[
            ("x-portkey-mode", "proxy anyscale"),
            ("x-portkey-provider", "groq"),
        ]))
        .unwrap();
        assert_eq!(h.provider.as_deref(), Some("groq"));
        for bad in ["anyscale", "proxy", "proxy a b", "single anyscale"] {
            assert!(
                PortkeyHeaders::parse(&map(&[("x-portkey-mode", bad)])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn forward_headers_are_parsed_and_checked() {
        let h = PortkeyHeaders::parse(&map(&[(
            "x-portkey-forward-headers",
            "X-Team, x-request-id ,",
        )]))
        .unwrap();
        assert_eq!(h.forward_headers, vec!["x-team", "x-request-id"]);
        for bad in [
            "x-portkey-forward-headers",
            "host",
            "bad header",
            "Authorization",
            "x-api-key",
            "api-key",
            "x-portkey-virtual-key",
            "content-length",
            "transfer-encoding",
            "connection",
            "te",
            "upgrade",
        ] {
            let err =
                PortkeyHeaders::parse(&map(&[("x-portkey-forward-headers", bad)])).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
        }
    }

    #[test]
    fn bad_values_are_400s() {
        assert!(PortkeyHeaders::parse(&map(&[("x-portkey-request-timeout", "soon")])).is_err());
        let long = "t".repeat(MAX_TRACE_ID_LEN + 1);
        assert!(PortkeyHeaders::parse(&map(&[("x-portkey-trace-id", &long)])).is_err());
    }

    #[test]
    fn empty_values_count_as_absent() {
        let h = PortkeyHeaders::parse(&map(&[
            ("x-portkey-provider", " "),
            ("authorization", "Bearer "),
        ]))
        .unwrap();
        assert_eq!(h, PortkeyHeaders::default());
    }
}
