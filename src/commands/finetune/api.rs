//! The provider's fine-tuning API, reached through the gateway's own upstream code.
//!
//! The virtual key is resolved the way the gateway resolves `x-portkey-virtual-key` on a
//! passthrough request (`Target::from_headers`): its provider row, base URL or custom host
//! (checked by the same custom-host rules), its credential read from where the settings say,
//! and the provider's own auth headers. Requests go out through the gateway's [`Dispatcher`]:
//! it needs no Pingora session (it drives Pingora's `TransportConnector` and HTTP/1 client
//! session itself, and its own tests run it from a plain tokio runtime), so the command gets
//! the gateway's DNS cache, public-address rule, pooled connections and the `upstream:`
//! connect, read and write timeouts rather than a second HTTP client. The write timeout
//! covers a whole request, a file upload included: raise `upstream.write_timeout_ms` to send
//! a large file over a slow link.

use crate::dispatch::{Dispatcher, Outbound};
use crate::error::GatewayError;
use crate::portkey::PortkeyHeaders;
use crate::routing::target::{Resolver, Target};
use crate::settings::{resolve_virtual_keys, Secret, SettingsError};
use crate::Settings;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::Value;
use std::fmt;

/// The largest answer read (a page of jobs is a few kilobytes).
const ANSWER_LIMIT: usize = 16 * 1024 * 1024;

/// Why a fine-tuning command failed; each prints as one line, without credentials.
#[derive(Debug)]
pub(crate) enum FinetuneError {
    UnknownVirtualKey(String),
    /// The settings could not be turned into a target (a key's variable unset, a bad host).
    Settings(SettingsError),
    /// The virtual key's provider has no OpenAI-compatible fine-tuning API.
    NotOpenAiCompatible(String),
    Target(GatewayError),
    /// A flag's value is malformed (`--hyperparameters`, a job id).
    Usage(String),
    /// A file to upload cannot be read.
    File {
        flag: &'static str,
        path: String,
        detail: String,
    },
    /// Connecting, sending or reading failed (refused, timed out, reset).
    Upstream(GatewayError),
    /// The provider answered with an error status: its status and `error.message`.
    Refused {
        provider: String,
        what: String,
        status: u16,
        message: String,
    },
    /// A 2xx answer that is not what the API returns.
    BadAnswer {
        what: String,
        detail: String,
    },
    JobFailed {
        id: String,
        message: String,
    },
    JobCancelled(String),
    Runtime(String),
}

impl fmt::Display for FinetuneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownVirtualKey(id) => write!(f, "unknown virtual key {id:?}"),
            Self::Settings(e) => write!(f, "{e}"),
            Self::NotOpenAiCompatible(slug) => write!(
                f,
                "provider {slug:?} has no OpenAI-compatible fine-tuning API \
                 (openai, together-ai, fireworks-ai, anyscale... do)"
            ),
            Self::Target(e) => write!(f, "{e}"),
            Self::Usage(m) => write!(f, "{m}"),
            Self::File { flag, path, detail } => write!(f, "{flag} {path}: {detail}"),
            Self::Upstream(e) => write!(f, "{e}"),
            Self::Refused {
                provider,
                what,
                status,
                message,
            } => write!(f, "{provider} answered {status} to {what}: {message}"),
            Self::BadAnswer { what, detail } => write!(f, "unexpected answer to {what}: {detail}"),
            Self::JobFailed { id, message } => write!(f, "fine-tuning job {id} failed: {message}"),
            Self::JobCancelled(id) => write!(f, "fine-tuning job {id} was cancelled"),
            Self::Runtime(e) => write!(f, "could not start the async runtime: {e}"),
        }
    }
}

impl FinetuneError {
    /// Worth asking again while waiting on a job: the provider or the network hiccuped.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Upstream(_) => true,
            Self::Refused { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// Slugs with adapters of their own that translate a chat API: their fine-tuning APIs, where
/// they have one, are not the OpenAI paths (a settings row of the same slug makes the slug
/// OpenAI-compatible, as it does for the gateway).
fn openai_compatible(settings: &Settings, slug: &str) -> bool {
    !crate::providers::CODED.contains(&slug) || settings.providers.contains_key(slug)
}

/// One virtual key's provider, ready to send to.
pub(crate) struct Api {
    dispatcher: Dispatcher,
    target: Target,
    auth: Vec<(HeaderName, HeaderValue)>,
}

/// An answer: status and body.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Api {
    /// Resolves `virtual_key` from the settings; nothing is sent.
    pub(crate) fn resolve(
        settings: &Settings,
        virtual_key: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Api, FinetuneError> {
        let Some(row) = settings.virtual_keys.get(virtual_key) else {
            return Err(FinetuneError::UnknownVirtualKey(virtual_key.to_string()));
        };
        let slug = row.provider.to_ascii_lowercase();
        if !openai_compatible(settings, &slug) {
            return Err(FinetuneError::NotOpenAiCompatible(slug));
        }
        let providers = crate::providers::Providers::from_settings(settings)
            .map_err(FinetuneError::Settings)?;
        let custom_hosts =
            crate::state::custom_host_policy(settings).map_err(FinetuneError::Settings)?;
        let virtual_keys = resolve_virtual_keys(settings, env).map_err(FinetuneError::Settings)?;
        let resolver = Resolver {
            providers: &providers,
            virtual_keys: &virtual_keys,
            custom_hosts: &custom_hosts,
        };
        let headers = PortkeyHeaders {
            virtual_key: Some(virtual_key.to_string()),
            ..PortkeyHeaders::default()
        };
        let target = Target::from_headers(resolver, &headers).map_err(FinetuneError::Target)?;
        let auth = match target.api_key.as_ref().map(Secret::expose) {
            Some(key) => target
                .provider
                .auth_headers(key)
                .map_err(FinetuneError::Target)?,
            None => Vec::new(),
        };
        Ok(Api {
            dispatcher: Dispatcher::new(&settings.upstream),
            target,
            auth,
        })
    }

    pub(crate) fn provider(&self) -> &str {
        self.target.provider.slug()
    }

    /// Sends one request to `path` below the provider's base URL and reads the whole answer.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Answer, FinetuneError> {
        let mut headers = self.auth.clone();
        headers.push((
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        ));
        if let Some(ct) = content_type {
            let value = HeaderValue::from_str(ct)
                .map_err(|_| FinetuneError::Usage(format!("invalid content type {ct:?}")))?;
            headers.push((http::header::CONTENT_TYPE, value));
        }
        let full = format!("{}{path}", self.target.upstream.base_path);
        let out = Outbound {
            provider: self.provider(),
            upstream: &self.target.upstream,
            public_only: self.target.public_only,
            method,
            path: &full,
            headers: &headers,
            body,
            // A request is resent only when a pooled connection closed before it was read
            // (see `exchange.rs`), which the provider cannot have acted on.
            may_resend: &|| true,
        };
        let mut inbound = self
            .dispatcher
            .send(&out)
            .await
            .map_err(FinetuneError::Upstream)?;
        let status = inbound.status();
        let body = inbound
            .read_to_end(ANSWER_LIMIT)
            .await
            .map_err(FinetuneError::Upstream)?;
        self.dispatcher.finish(inbound);
        Ok(Answer { status, body })
    }

    /// Sends, and reads a 2xx JSON answer; any other status is the provider's refusal of
    /// `what`, with its message.
    pub(crate) async fn json(
        &self,
        what: &str,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Value, FinetuneError> {
        let answer = self.send(method, path, content_type, body).await?;
        if !(200..300).contains(&answer.status) {
            return Err(FinetuneError::Refused {
                provider: self.provider().to_string(),
                what: what.to_string(),
                status: answer.status,
                message: self.scrub(&provider_message(&answer.body)),
            });
        }
        serde_json::from_slice(&answer.body).map_err(|e| FinetuneError::BadAnswer {
            what: what.to_string(),
            detail: format!("not JSON ({e})"),
        })
    }

    /// A provider's text with the key replaced, should it quote it back.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match self.target.api_key.as_ref().map(Secret::expose) {
            Some(key) if !key.is_empty() => text.replace(key, "[redacted]"),
            _ => text.to_string(),
        }
    }
}

/// The message of an error answer: OpenAI's `error.message`, the other shapes
/// OpenAI-compatible providers use (`error` as text, `message`, `detail`), else the start of
/// the body.
pub(crate) fn provider_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let found = [
            &v["error"]["message"],
            &v["error"],
            &v["message"],
            &v["detail"],
        ]
        .into_iter()
        .find_map(|m| m.as_str().filter(|s| !s.trim().is_empty()));
        if let Some(m) = found {
            return m.to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".into();
    }
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_of_error_answers() {
        let m = |s: &str| provider_message(s.as_bytes());
        assert_eq!(
            m(r#"{"error":{"message":"bad file","type":"invalid_request_error"}}"#),
            "bad file"
        );
        assert_eq!(m(r#"{"error":"quota"}"#), "quota");
        assert_eq!(m(r#"{"message":"nope"}"#), "nope");
        assert_eq!(m(r#"{"detail":"not found"}"#), "not found");
        assert_eq!(m("  upstream exploded "), "upstream exploded");
        assert_eq!(m(""), "(no message)");
        assert_eq!(m(&"x".repeat(400)).chars().count(), 301);
    }

    fn settings(yaml: &str) -> Settings {
        let s = Settings::from_yaml(yaml).unwrap();
        s.validate().unwrap();
        s
    }

    #[test]
    fn resolves_like_the_gateway_and_names_what_is_wrong() {
        let s = settings(
            "virtual_keys:\n  \
               ft:\n    provider: openai\n    api_key_env: FT_KEY\n    custom_host: http://127.0.0.1:9/v1\n  \
               claude:\n    provider: anthropic\n    api_key_env: FT_KEY\n",
        );
        let env = |n: &str| (n == "FT_KEY").then(|| "sk-secret".to_string());
        let api = Api::resolve(&s, "ft", &env).unwrap();
        assert_eq!(api.provider(), "openai");
        assert_eq!(api.target.upstream.authority(), "127.0.0.1:9");
        assert_eq!(api.target.upstream.base_path, "/v1");
        assert_eq!(api.auth[0].1.to_str().unwrap(), "Bearer sk-secret");
        assert_eq!(api.scrub("key sk-secret is bad"), "key [redacted] is bad");

        let e = Api::resolve(&s, "nope", &env).err().unwrap();
        assert_eq!(e.to_string(), "unknown virtual key \"nope\"");
        let e = Api::resolve(&s, "claude", &env).err().unwrap();
        assert!(e.to_string().starts_with("provider \"anthropic\" has no"));
        let e = Api::resolve(&s, "ft", &|_| None).err().unwrap();
        assert!(e.to_string().contains("FT_KEY is not set"), "{e}");
    }
}
