//! AWS Bedrock (`bedrock`): OpenAI chat completions through Bedrock's Converse API
//! (`/model/{modelId}/converse`, and `converse-stream` for streams), signed with AWS SigV4.
//!
//! - Requests are rebuilt: OpenAI messages → Converse `messages` of content blocks (text,
//!   images from data URLs, `toolUse`, `toolResult`), system and developer messages → `system`,
//!   sampling parameters → `inferenceConfig`, tools → `toolConfig`.
//! - Answers are translated back: a whole JSON answer at its end (`response.rs`), a stream from
//!   AWS's binary event-stream frames (`application/vnd.amazon.eventstream`) into OpenAI
//!   `chat.completion.chunk` events, frame by frame as they arrive.
//! - Credentials: `aws_access_key_id`, `aws_secret_access_key`, optional `aws_session_token`,
//!   and `aws_region` (default `us-east-1`) from a config target, a virtual key's options, or
//!   the `x-portkey-aws-*` headers; the request is then signed (SigV4, by the `aws-sigv4`
//!   crate) once it is complete. Without access keys, the request's API key is sent as a
//!   Bedrock API key (`Authorization: Bearer`).
//!
//! Signing needs the time; the adapter stays pure: the dispatcher passes it in
//! ([`super::Signing::now`]).

mod count;
mod response;
mod sign;
mod stream;

#[cfg(test)]
mod tests;

use super::{Operation, Prepare, Provider, ProviderOptions, ProviderRequest, ResponseOptions};
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::stream::{Meter, Translator};
use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

mod request;

pub(crate) use request::{converse_request, encode_model};
use request::{invoke_body, is_anthropic_model};

pub(crate) use response::ConverseAnswer;
pub(crate) use stream::{ConverseStream, MessagesStream};

pub(crate) const SLUG: &str = "bedrock";
/// The region when a target names none (AWS's own default).
pub(crate) const DEFAULT_REGION: &str = "us-east-1";
/// The event-stream content type of `converse-stream` answers.
pub(crate) const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

pub(crate) struct Bedrock {
    upstream: Upstream,
}

impl Bedrock {
    pub(crate) fn new() -> Self {
        Bedrock {
            upstream: runtime_host(DEFAULT_REGION),
        }
    }
}

impl Default for Bedrock {
    fn default() -> Self {
        Self::new()
    }
}

fn runtime_host(region: &str) -> Upstream {
    Upstream::new(
        true,
        format!("bedrock-runtime.{region}.amazonaws.com"),
        443,
        String::new(),
    )
}

/// The target's region, checked: it becomes part of a host name.
pub(crate) fn region(options: &ProviderOptions) -> Result<&str, GatewayError> {
    let region = options
        .get("aws_region")
        .map(String::as_str)
        .unwrap_or(DEFAULT_REGION);
    let valid = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(region)
    } else {
        Err(GatewayError::ProviderRequest(format!(
            "aws_region {region:?} is not an AWS region name"
        )))
    }
}

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidBody(message.into())
}

impl Bedrock {
    /// The headers that carry a target's credentials: none when it has AWS access keys (the
    /// finished request is signed, see `sign`), else its Bedrock API key.
    fn credentials(
        &self,
        api_key: Option<&str>,
        options: &ProviderOptions,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        let signed = sign::Keys::from_options(options)?.is_some();
        match api_key {
            Some(key) if !key.is_empty() && !signed => self.auth_headers(key),
            _ if signed => Ok(Vec::new()),
            _ => Err(GatewayError::ProviderRequest(
                "bedrock needs AWS credentials: aws_access_key_id and aws_secret_access_key \
                 (config target, virtual key or x-portkey-aws-* headers), or a Bedrock API key \
                 as the Authorization bearer"
                    .into(),
            )),
        }
    }
}

impl Provider for Bedrock {
    fn slug(&self) -> &str {
        SLUG
    }

    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Bedrock always reports usage in its stream's `metadata` event; saying yes makes the
    /// gateway tell the translator (`hide_usage`) whether the client asked for a usage chunk.
    /// The `stream_options` the gateway adds is not part of Converse and is dropped.
    fn stream_usage(&self) -> bool {
        true
    }

    fn upstream_for(&self, options: &ProviderOptions) -> Result<Upstream, GatewayError> {
        Ok(runtime_host(region(options)?))
    }

    /// A Bedrock API key (long- or short-term), for targets without access keys.
    fn auth_headers(&self, api_key: &str) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        let mut value = HeaderValue::try_from(format!("Bearer {api_key}")).map_err(|_| {
            GatewayError::InvalidHeader {
                name: "authorization",
                reason: "the API key contains characters not allowed in a header".into(),
            }
        })?;
        value.set_sensitive(true);
        Ok(vec![(http::header::AUTHORIZATION, value)])
    }

    fn prepare(&self, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError> {
        let headers = self.credentials(req.api_key, req.options)?;
        if matches!(
            req.op,
            Operation::Completions | Operation::Embeddings | Operation::Rerank
        ) {
            return Err(GatewayError::Unsupported(req.op.fn_name(), SLUG.into()));
        }
        let body: Value = serde_json::from_slice(&req.body)
            .map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
        let Value::Object(mut body) = body else {
            return Err(bad("the body must be a JSON object"));
        };
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad("model is required for bedrock"))?
            .to_string();
        let (action, out) = match (req.op, req.stream) {
            (Operation::Messages, stream) => {
                if !is_anthropic_model(&model) {
                    return Err(bad(format!(
                        "/v1/messages on bedrock serves Anthropic models (anthropic.*); {model:?}                          is not one: use /v1/chat/completions"
                    )));
                }
                (
                    if stream {
                        "invoke-with-response-stream"
                    } else {
                        "invoke"
                    },
                    invoke_body(&mut body),
                )
            }
            (_, true) => ("converse-stream", converse_request(&body)?),
            (_, false) => ("converse", converse_request(&body)?),
        };
        Ok(ProviderRequest {
            path: format!("/model/{}/{action}", encode_model(&model)),
            headers,
            body: crate::types::json::to_bytes(&out),
        })
    }

    fn count_tokens(
        &self,
        body: &[u8],
        api_key: Option<&str>,
        options: &ProviderOptions,
    ) -> Result<Option<ProviderRequest>, GatewayError> {
        let headers = self.credentials(api_key, options)?;
        Ok(count::request(body)?.map(|(path, body)| ProviderRequest {
            path,
            headers,
            body: crate::types::json::to_bytes(&body),
        }))
    }

    fn counted_tokens(&self, answer: &[u8]) -> Option<u64> {
        count::input_tokens(answer)
    }

    fn sign(
        &self,
        req: &super::Signing<'_>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        match sign::Keys::from_options(req.options)? {
            Some(keys) => sign::sign(&keys, region(req.options)?, req),
            None => Ok(Vec::new()),
        }
    }

    fn response(
        &self,
        op: Operation,
        status: u16,
        content_type: &str,
        opts: &ResponseOptions<'_>,
    ) -> Box<dyn Translator> {
        if !(200..300).contains(&status) {
            return Box::new(Meter::for_response(status, content_type, false));
        }
        if op == Operation::Messages {
            return if content_type.starts_with(EVENT_STREAM) {
                Box::new(MessagesStream::new())
            } else {
                super::anthropic::native_meter(false)
            };
        }
        if content_type.starts_with(EVENT_STREAM) {
            return Box::new(ConverseStream::new(opts));
        }
        if content_type.contains("json") {
            return Box::new(ConverseAnswer::translator(opts));
        }
        Box::new(Meter::for_response(status, content_type, false))
    }
}
