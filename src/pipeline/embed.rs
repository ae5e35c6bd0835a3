//! The semantic cache's embeddings: the text's vector from the embedding target named in the
//! settings, called like any provider (the one request builder, the dispatcher, the
//! provider's translator), for the cache's lookups ([`crate::cache::Embedder`]).

use super::attempts::Request;
use super::request::{provider_request, Carried};
use crate::cache::semantic::normalise;
use crate::cache::{EmbedFuture, Embedder};
use crate::dispatch::Outbound;
use crate::providers::{Operation, ResponseOptions};
use crate::routing::plan::Leaf;
use crate::routing::target::Target;
use crate::settings::cache::SemanticSettings;
use crate::state::State;
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Embeds for the cache on behalf of one request.
pub(crate) struct Embedding<'a> {
    pub state: &'a State,
    pub req: &'a Request<'a>,
}

impl Embedder for Embedding<'_> {
    fn embed<'a>(&'a self, s: &'a SemanticSettings, text: &'a str) -> EmbedFuture<'a> {
        Box::pin(embed(self.state, s, text, self.req))
    }
}

/// Asks the embedding target for the text's vector, normalised to unit length. The request is
/// built like any provider request (signed where the provider signs, with the trace context
/// and the loop-detection hop of the request it serves), never with the client's headers: the
/// embedding target is the operator's.
pub(crate) async fn embed(
    state: &State,
    s: &SemanticSettings,
    text: &str,
    from: &Request<'_>,
) -> Result<Arc<[f32]>, String> {
    let vk = s.virtual_key.as_deref().ok_or("no embedding target")?;
    let mut leaf = Leaf::from_request();
    leaf.virtual_key = Some(vk.to_string());
    let target = Target::from_leaf(state.resolver(), &leaf, &Default::default())
        .map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&serde_json::json!({"model": s.model, "input": text}))
        .map_err(|e| e.to_string())?;
    let no_headers = http::HeaderMap::new();
    let built = provider_request(
        &target,
        Bytes::from(body),
        &Carried {
            op: Operation::Embeddings,
            query: None,
            stream: false,
            client_headers: &no_headers,
            forward: &[],
            traceparent: from.traceparent.as_deref(),
            hop: from.hop,
        },
    )
    .map_err(|e| e.to_string())?;
    let no_resend = || false;
    let out = Outbound {
        provider: target.provider.slug(),
        upstream: &target.upstream,
        public_only: target.public_only,
        method: "POST",
        path: &built.path,
        headers: &built.headers,
        body: built.body,
        may_resend: &no_resend,
    };
    let dispatcher = &state.dispatcher;
    let exchange = async {
        let mut inbound = dispatcher.send(&out).await.map_err(|e| e.to_string())?;
        let status = inbound.status();
        let ct = inbound
            .header()
            .and_then(|h| h.headers.get(http::header::CONTENT_TYPE))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        let raw = inbound
            .read_to_end(16 * 1024 * 1024)
            .await
            .map_err(|e| e.to_string())?;
        dispatcher.release(inbound);
        if !(200..300).contains(&status) {
            return Err(format!("embedding target answered {status}"));
        }
        // Through the provider's translator: any provider's embeddings arrive in OpenAI's form.
        let mut t = target.provider.response(
            Operation::Embeddings,
            status,
            &ct,
            &ResponseOptions::default(),
        );
        Ok::<Bytes, String>(crate::stream::translate_whole(t.as_mut(), raw))
    };
    let json = tokio::time::timeout(Duration::from_millis(s.timeout_ms), exchange)
        .await
        .map_err(|_| "embedding timed out".to_string())??;
    #[derive(Deserialize)]
    struct Item {
        embedding: Vec<f32>,
    }
    #[derive(Deserialize)]
    struct Answer {
        data: Vec<Item>,
    }
    let a: Answer = serde_json::from_slice(&json).map_err(|e| format!("embedding answer: {e}"))?;
    let v = a
        .data
        .into_iter()
        .next()
        .ok_or("embedding answer without data")?
        .embedding;
    normalise(v).ok_or_else(|| "empty or zero embedding".to_string())
}
