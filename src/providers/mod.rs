//! Provider adapters behind one trait, and the registry that finds them by slug.
//!
//! An adapter is a pure translator: it turns a unified (OpenAI-format) request into the request
//! its API expects, with no sockets, clocks or globals, so it can be tested on bytes alone. The
//! OpenAI-compatible family is one adapter configured by a table row (`openai_compat.rs`).

pub mod anthropic;
mod azure;
pub mod bedrock;
mod cohere;
mod common;
pub mod error_envelope;
mod google;
pub mod messages;
mod openai_compat;
mod rerank;
pub(crate) mod responses;

use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::settings::{Settings, SettingsError};
use crate::stream::{Meter, Translator};
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub(crate) use azure::AzureOpenAi;
pub(crate) use cohere::Cohere;
pub(crate) use google::Google;
pub(crate) use openai_compat::{OpenAiCompat, BUILT_IN};

/// Provider-specific settings of one target (`azure_resource_name`, ...), keyed by Portkey's
/// snake_case config field names. Filled, lowest precedence first, from the request's
/// `x-portkey-<field-with-dashes>` headers (only when the request's own headers name the
/// provider), a virtual key's `options`, and the config target's fields. A general map rather
/// than typed fields per provider: each adapter reads its own keys, and adding a provider does
/// not touch routing.
pub type ProviderOptions = BTreeMap<String, String>;

/// Built-in providers with an adapter of their own (not rows of the OpenAI-compatible table).
pub(crate) const CODED: &[&str] = &[
    anthropic::SLUG,
    "azure-openai",
    bedrock::SLUG,
    "cohere",
    google::SLUG,
];

/// Whether `slug` is a built-in provider (a table row or a coded adapter), for settings
/// validation before the registry exists.
pub(crate) fn is_built_in(slug: &str) -> bool {
    CODED.contains(&slug) || BUILT_IN.iter().any(|r| r.slug == slug)
}

/// The operations of the unified API, i.e. the routes whose body the gateway reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    ChatCompletions,
    Completions,
    Embeddings,
    /// Anthropic's Messages API (`POST /v1/messages`), served natively.
    Messages,
    /// `POST /v1/rerank`: documents ordered by relevance to a query (Cohere's API, and the
    /// rerank APIs of the OpenAI-compatible providers that have one).
    Rerank,
    /// OpenAI's Responses API (`POST /v1/responses`): native on OpenAI and Azure, translated
    /// through the chat path elsewhere (see `responses`).
    Responses,
}

impl Operation {
    /// The OpenAI path of the operation below the API's base URL.
    pub(crate) fn openai_path(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "/chat/completions",
            Operation::Completions => "/completions",
            Operation::Embeddings => "/embeddings",
            Operation::Messages => "/messages",
            Operation::Rerank => "/rerank",
            Operation::Responses => "/responses",
        }
    }

    /// Portkey's name of the operation (`chatComplete`, `embed`, ...), as its error messages
    /// say it ("embed is not supported by anthropic").
    pub(crate) fn fn_name(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "chatComplete",
            Operation::Completions => "complete",
            Operation::Embeddings => "embed",
            Operation::Messages => "messages",
            Operation::Rerank => "rerank",
            Operation::Responses => "createModelResponse",
        }
    }

    /// The OpenTelemetry `gen_ai.operation.name` of the operation.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "chat",
            Operation::Completions => "text_completion",
            Operation::Embeddings => "embeddings",
            Operation::Messages => "chat",
            Operation::Rerank => "rerank",
            Operation::Responses => "responses",
        }
    }
}

/// What an adapter produces for one attempt: the path and query below the base URL (the
/// provider owns both: a Gemini stream needs `?alt=sse`), the headers the provider needs (auth
/// and provider-specific ones) and the body.
#[derive(Debug)]
pub struct ProviderRequest {
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// What an adapter reads to build one upstream request.
pub struct Prepare<'a> {
    pub op: Operation,
    /// The unified (OpenAI-format) body, `override_params` already merged.
    pub body: Bytes,
    pub api_key: Option<&'a str>,
    /// The client's query string.
    pub query: Option<&'a str>,
    /// The client asked for a stream.
    pub stream: bool,
    /// The client's headers (a provider may pass some on, e.g. `anthropic-version`).
    pub client_headers: &'a http::HeaderMap,
    /// The target's provider options (see [`ProviderOptions`]).
    pub options: &'a ProviderOptions,
}

/// The finished upstream request, for a provider whose authentication covers all of it (AWS
/// SigV4 signs the host, path, headers and body), with the time to sign at: adapters stay
/// free of clocks.
pub struct Signing<'a> {
    pub upstream: &'a Upstream,
    /// Path and query as sent (already percent-encoded).
    pub path: &'a str,
    pub body: &'a [u8],
    pub options: &'a ProviderOptions,
    pub now: std::time::SystemTime,
}

/// What a response translator needs to know about the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseOptions<'a> {
    /// The gateway added `stream_options.include_usage`: hide the usage chunk.
    pub hide_usage: bool,
    /// `x-portkey-strict-open-ai-compliance` (default true): only OpenAI fields.
    pub strict: bool,
    /// Unix seconds, for the `created` field of translated answers.
    pub created: u64,
    /// The model the client asked for: the `model` of a translated answer whose provider does
    /// not name one (Cohere's).
    pub model: Option<&'a str>,
}

/// One provider API.
pub trait Provider: Send + Sync {
    /// The Portkey slug, e.g. `openai` or `together-ai`.
    fn slug(&self) -> &str;
    /// Where the API lives unless a custom host overrides it.
    fn upstream(&self) -> &Upstream;
    /// Whether streams may be asked for usage (`stream_options.include_usage`).
    fn stream_usage(&self) -> bool {
        false
    }
    /// `stream_usage` for one target: a provider whose support depends on the target's options
    /// (Azure's `api-version`) overrides this; the default ignores them.
    fn stream_usage_for(&self, _options: &ProviderOptions) -> bool {
        self.stream_usage()
    }
    /// Where a target's API lives when no custom host overrides it. The default is
    /// [`Provider::upstream`]; a provider whose host is per account (Azure's
    /// `{resource}.openai.azure.com`) derives it from the options, refusing missing or
    /// malformed ones (400) before anything is sent. Called when the target is built, so
    /// circuit breakers and retry budgets key on the real host.
    fn upstream_for(&self, _options: &ProviderOptions) -> Result<Upstream, GatewayError> {
        Ok(self.upstream().clone())
    }
    /// The headers that carry `api_key` to this provider.
    fn auth_headers(&self, api_key: &str) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError>;
    /// Builds the upstream request for a unified operation. An adapter that needs no change
    /// returns the client's body as is (no copy, no re-serialisation).
    fn prepare(&self, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError>;
    /// The upstream request of a `/v1/messages/count_tokens` body (Anthropic's Messages shape)
    /// for a provider with a count API of another shape, which the gateway builds (and signs,
    /// see [`Provider::sign`]) itself; `None`, the default, when it has none for the body's
    /// model: the gateway then estimates. Anthropic's own API is passed through instead.
    fn count_tokens(
        &self,
        _body: &[u8],
        _api_key: Option<&str>,
        _options: &ProviderOptions,
    ) -> Result<Option<ProviderRequest>, GatewayError> {
        Ok(None)
    }
    /// The input tokens in a 2xx answer of the API [`Provider::count_tokens`] asked.
    fn counted_tokens(&self, _answer: &[u8]) -> Option<u64> {
        None
    }
    /// Headers that authenticate the finished request (see [`Signing`]); none by default.
    fn sign(&self, _req: &Signing<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        Ok(Vec::new())
    }
    /// The translator for an answer of `status` and `content_type` to `op` (a 2xx answer;
    /// errors are wrapped in Portkey's envelope by the caller). The default relays
    /// OpenAI-format answers as they are and meters them.
    fn response(
        &self,
        _op: Operation,
        status: u16,
        content_type: &str,
        opts: &ResponseOptions<'_>,
    ) -> Box<dyn Translator> {
        Box::new(Meter::for_response(status, content_type, opts.hide_usage))
    }
}

/// Slug → adapter, built once from the built-in table and the settings.
pub struct Providers {
    by_slug: HashMap<String, Arc<dyn Provider>>,
}

impl Providers {
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        let mut by_slug: HashMap<String, Arc<dyn Provider>> = HashMap::new();
        for row in BUILT_IN {
            let adapter = OpenAiCompat::new(row.slug, row.base_url, row.auth_header)
                .map_err(|e| SettingsError::new(&format!("built-in provider {}", row.slug), e))?
                .reranks(row.rerank);
            by_slug.insert(row.slug.to_string(), Arc::new(adapter));
        }
        let anthropic = anthropic::Anthropic::new(
            &settings.anthropic.base_url,
            settings.anthropic.default_max_tokens,
        )
        .map_err(|e| SettingsError::new("anthropic.base_url", e))?;
        by_slug.insert(anthropic::SLUG.to_string(), Arc::new(anthropic));
        by_slug.insert("azure-openai".into(), Arc::new(AzureOpenAi::new()));
        by_slug.insert(bedrock::SLUG.into(), Arc::new(bedrock::Bedrock::new()));
        by_slug.insert("cohere".into(), Arc::new(Cohere::new()));
        // Translating adapters. A settings row of the same slug replaces it with an
        // OpenAI-compatible one (e.g. Gemini's own OpenAI endpoint); a custom host keeps it.
        let gemini = Google::new(google::BASE_URL)
            .map_err(|e| SettingsError::new("built-in provider google", e))?;
        by_slug.insert(google::SLUG.to_string(), Arc::new(gemini));
        for (slug, row) in &settings.providers {
            let adapter =
                OpenAiCompat::with_options(slug, &row.base_url, &row.auth_header, row.stream_usage)
                    .map_err(|e| SettingsError::new(&format!("providers.{slug}"), e))?
                    .reranks(Some(openai_compat::rerank_of(slug)));
            by_slug.insert(slug.clone(), Arc::new(adapter));
        }
        Ok(Providers { by_slug })
    }

    pub fn get(&self, slug: &str) -> Option<&Arc<dyn Provider>> {
        self.by_slug.get(slug)
    }

    /// Every slug, sorted (for documentation and errors).
    #[cfg(test)]
    pub(crate) fn slugs(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_slug.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// Builds the upstream request of any operation: the Responses and Messages APIs through their
/// layers over the chat path where the provider does not serve them itself, every other
/// operation by the provider alone. The one place a layer is chosen (with [`response`]). Public
/// for the provider matrix, which puts every provider through the gateway's own choice.
pub fn prepare(provider: &dyn Provider, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError> {
    match req.op {
        Operation::Responses => responses::prepare(provider, req),
        Operation::Messages if messages::through_chat(provider.slug()) => {
            messages::prepare(provider, req)
        }
        _ => provider.prepare(req),
    }
}

/// The translator of an answer to any operation, through the same layers as [`prepare`].
pub fn response(
    provider: &dyn Provider,
    op: Operation,
    status: u16,
    content_type: &str,
    opts: &ResponseOptions<'_>,
) -> Box<dyn Translator> {
    match op {
        Operation::Responses => responses::response(provider, status, content_type, opts),
        Operation::Messages if messages::through_chat(provider.slug()) => {
            messages::response(provider, status, content_type, opts)
        }
        _ => provider.response(op, status, content_type, opts),
    }
}

/// Whether the answer a chat translator gives the client is a stream: it is when the
/// provider's is, whatever the provider's wire format (Bedrock's binary event stream becomes
/// SSE in its translator). The layers over the chat path choose their own stream translator
/// by it, never by the provider's content type alone.
pub(crate) fn chat_streams(provider_content_type: &str, chat: &dyn Translator) -> bool {
    provider_content_type.starts_with("text/event-stream")
        || chat.content_type() == Some("text/event-stream")
}
