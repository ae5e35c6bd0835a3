//! The OpenAI-compatible family: providers whose API is OpenAI's at another base URL. They are
//! rows of a table, not code: adding one is one line in `BUILT_IN` (or one entry under
//! `providers:` in the settings).

use super::rerank::{Dialect, RerankAnswer};
use super::{Operation, Prepare, Provider, ProviderRequest, ResponseOptions};
use crate::dispatch::Upstream;
use crate::error::GatewayError;
use crate::stream::{Meter, Translator};
use http::{HeaderName, HeaderValue};

/// One row of the built-in table.
pub(crate) struct Row {
    pub slug: &'static str,
    pub base_url: &'static str,
    /// `authorization` for `Bearer <key>`; any other name carries the bare key.
    pub auth_header: &'static str,
    /// The provider's rerank API, when it has one (`POST {base_url}/rerank`).
    pub rerank: Option<Dialect>,
}

const fn row(slug: &'static str, base_url: &'static str) -> Row {
    Row {
        slug,
        base_url,
        auth_header: "authorization",
        rerank: None,
    }
}

/// A row whose API also reranks.
const fn reranking(slug: &'static str, base_url: &'static str, dialect: Dialect) -> Row {
    Row {
        rerank: Some(dialect),
        ..row(slug, base_url)
    }
}

/// Built-in OpenAI-compatible providers (slugs as Portkey names them).
pub(crate) const BUILT_IN: &[Row] = &[
    row("openai", "https://api.openai.com/v1"),
    row("anyscale", "https://api.endpoints.anyscale.com/v1"),
    reranking("together-ai", "https://api.together.xyz/v1", Dialect::Jina),
    row("groq", "https://api.groq.com/openai/v1"),
    row("mistral-ai", "https://api.mistral.ai/v1"),
    row("deepseek", "https://api.deepseek.com/v1"),
    row("fireworks-ai", "https://api.fireworks.ai/inference/v1"),
    row("perplexity-ai", "https://api.perplexity.ai"),
    row("openrouter", "https://openrouter.ai/api/v1"),
    row("deepinfra", "https://api.deepinfra.com/v1/openai"),
    row("x-ai", "https://api.x.ai/v1"),
    row("cerebras", "https://api.cerebras.ai/v1"),
    row("sambanova", "https://api.sambanova.ai/v1"),
    row("lambda", "https://api.lambdalabs.com/v1"),
    row("nebius", "https://api.studio.nebius.ai/v1"),
    row("hyperbolic", "https://api.hyperbolic.xyz/v1"),
    row("novita-ai", "https://api.novita.ai/v3/openai"),
    row("moonshot", "https://api.moonshot.cn/v1"),
    row("github", "https://models.inference.ai.azure.com"),
    // A local model server; usually reached through a custom host in the same pod.
    row("ollama", "http://localhost:11434/v1"),
    // Embeddings and rerank APIs.
    reranking("jina", "https://api.jina.ai/v1", Dialect::Jina),
    reranking("voyage", "https://api.voyageai.com/v1", Dialect::Voyage),
];

/// The rerank dialect of a built-in row, for a settings row that replaces it (a settings row
/// of a new slug forwards rerank requests as they are).
pub(crate) fn rerank_of(slug: &str) -> Dialect {
    BUILT_IN
        .iter()
        .find(|r| r.slug == slug)
        .and_then(|r| r.rerank)
        .unwrap_or(Dialect::Jina)
}

/// An OpenAI-compatible API at a base URL.
pub(crate) struct OpenAiCompat {
    slug: String,
    upstream: Upstream,
    auth_header: HeaderName,
    bearer: bool,
    stream_usage: bool,
    rerank: Option<Dialect>,
}

impl OpenAiCompat {
    pub(crate) fn new(slug: &str, base_url: &str, auth_header: &str) -> Result<Self, String> {
        Self::with_options(slug, base_url, auth_header, true)
    }

    pub(crate) fn with_options(
        slug: &str,
        base_url: &str,
        auth_header: &str,
        stream_usage: bool,
    ) -> Result<Self, String> {
        let upstream = Upstream::parse(base_url)?;
        let auth_header = HeaderName::from_bytes(auth_header.as_bytes())
            .map_err(|_| format!("{auth_header:?} is not a header name"))?;
        let bearer = auth_header == http::header::AUTHORIZATION;
        Ok(OpenAiCompat {
            slug: slug.to_string(),
            upstream,
            auth_header,
            bearer,
            stream_usage,
            rerank: None,
        })
    }

    /// The adapter with a rerank API of this dialect.
    pub(crate) fn reranks(mut self, dialect: Option<Dialect>) -> Self {
        self.rerank = dialect;
        self
    }
}

impl Provider for OpenAiCompat {
    fn slug(&self) -> &str {
        &self.slug
    }

    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    fn stream_usage(&self) -> bool {
        self.stream_usage
    }

    fn auth_headers(&self, api_key: &str) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
        let value = if self.bearer {
            HeaderValue::try_from(format!("Bearer {api_key}"))
        } else {
            HeaderValue::try_from(api_key)
        };
        let mut value = value.map_err(|_| GatewayError::InvalidHeader {
            name: "authorization",
            reason: "the API key contains characters not allowed in a header".into(),
        })?;
        value.set_sensitive(true);
        Ok(vec![(self.auth_header.clone(), value)])
    }

    fn prepare(&self, req: Prepare<'_>) -> Result<ProviderRequest, GatewayError> {
        let body = match (req.op, self.rerank) {
            (Operation::Messages, _) | (Operation::Rerank, None) => {
                return Err(GatewayError::Unsupported(
                    req.op.fn_name(),
                    self.slug.clone(),
                ))
            }
            (Operation::Rerank, Some(dialect)) => super::rerank::request(&req.body, dialect)?,
            _ => req.body,
        };
        let headers = match req.api_key {
            Some(key) if !key.is_empty() => self.auth_headers(key)?,
            _ => Vec::new(),
        };
        let mut path = req.op.openai_path().to_string();
        if let Some(q) = req.query {
            path.push('?');
            path.push_str(q);
        }
        Ok(ProviderRequest {
            path,
            headers,
            body,
        })
    }

    fn response(
        &self,
        op: Operation,
        status: u16,
        content_type: &str,
        opts: &ResponseOptions<'_>,
    ) -> Box<dyn Translator> {
        match (op, self.rerank) {
            (Operation::Rerank, Some(dialect))
                if (200..300).contains(&status) && content_type.contains("json") =>
            {
                Box::new(RerankAnswer::translator(&self.slug, dialect, opts))
            }
            _ => Box::new(Meter::for_response(status, content_type, opts.hide_usage)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Operation;
    use crate::providers::Providers;
    use crate::settings::Settings;
    use bytes::Bytes;

    #[test]
    fn every_built_in_row_parses_and_has_a_unique_slug() {
        let providers = Providers::from_settings(&Settings::default()).unwrap();
        // The table, plus the adapters with code of their own.
        assert_eq!(
            providers.slugs().len(),
            BUILT_IN.len() + crate::providers::CODED.len()
        );
        for slug in [
            "openai",
            "anyscale",
            "together-ai",
            "groq",
            "mistral-ai",
            "deepseek",
            "fireworks-ai",
            "perplexity-ai",
            "openrouter",
            "deepinfra",
            "x-ai",
            "cerebras",
            "ollama",
            "azure-openai",
            "cohere",
        ] {
            assert!(providers.get(slug).is_some(), "{slug} missing");
            assert!(crate::providers::is_built_in(slug));
        }
    }

    #[test]
    fn groq_paths_and_bearer_auth() {
        let p =
            OpenAiCompat::new("groq", "https://api.groq.com/openai/v1", "authorization").unwrap();
        let body = Bytes::from_static(br#"{"model":"m"}"#);
        let headers = http::HeaderMap::new();
        let req = p
            .prepare(Prepare {
                op: Operation::ChatCompletions,
                body: body.clone(),
                api_key: Some("gsk-1"),
                query: Some("api-version=1"),
                stream: false,
                client_headers: &headers,
                options: &Default::default(),
            })
            .unwrap();
        assert_eq!(p.upstream().base_path, "/openai/v1");
        assert_eq!(req.path, "/chat/completions?api-version=1");
        assert_eq!(req.headers[0].0, "authorization");
        assert_eq!(req.headers[0].1, "Bearer gsk-1");
        assert!(req.headers[0].1.is_sensitive());
        // The body is the client's bytes, untouched.
        assert_eq!(req.body.as_ptr(), body.as_ptr());
    }

    #[test]
    fn custom_auth_header_carries_the_bare_key() {
        let p = OpenAiCompat::new("azureish", "https://x.example.com/v1", "api-key").unwrap();
        let h = p.auth_headers("k1").unwrap();
        assert_eq!(h[0].0, "api-key");
        assert_eq!(h[0].1, "k1");
    }

    #[test]
    fn no_key_no_auth_header() {
        let p = OpenAiCompat::new("ollama", "http://localhost:11434/v1", "authorization").unwrap();
        let headers = http::HeaderMap::new();
        let req = p
            .prepare(Prepare {
                op: Operation::Embeddings,
                body: Bytes::new(),
                api_key: None,
                query: None,
                stream: false,
                client_headers: &headers,
                options: &Default::default(),
            })
            .unwrap();
        assert!(req.headers.is_empty());
        assert_eq!(req.path, "/embeddings");
    }

    #[test]
    fn settings_rows_override_and_extend() {
        let s = Settings::from_yaml(
            "providers:\n  openai:\n    base_url: http://127.0.0.1:9/v1\n  vllm:\n    base_url: http://vllm:8000/v1\n",
        )
        .unwrap();
        let providers = Providers::from_settings(&s).unwrap();
        assert_eq!(
            providers.get("openai").unwrap().upstream().host,
            "127.0.0.1"
        );
        assert!(providers.get("vllm").is_some());
    }
}
