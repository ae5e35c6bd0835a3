//! `POST /v1/rerank`, as Portkey's 2.0 gateway serves it: one request shape (`model`, `query`,
//! `documents` as strings or `{text}` objects, `top_n`, `return_documents` ...) sent to each
//! provider's rerank API, and one answer shape back:
//!
//! ```json
//! {"object":"list","id":"…","results":[{"index":0,"relevance_score":0.98,"document":{"text":"…"}}],
//!  "model":"rerank-v3.5","usage":{"search_units":1},"provider":"cohere"}
//! ```
//!
//! `usage.search_units` is what the provider bills: Cohere's search units, the tokens of the
//! others (as Portkey reports them). It is metered as the answer's input units, which the
//! price catalog prices per search (Cohere) or per token (Jina).

use super::ResponseOptions;
use crate::error::GatewayError;
use crate::stream::{Convert, Converted, WholeJson};
use crate::types::usage::Usage;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

/// The largest rerank answer held for translation.
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// How a provider's rerank API is spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Cohere's `/v2/rerank`: documents as strings, `top_n`, `max_tokens_per_doc`,
    /// `priority`; answers carry no document text.
    Cohere,
    /// Voyage's `/rerank`: `top_k` for `top_n`, answers in `data`.
    Voyage,
    /// Jina's `/rerank` and the APIs shaped like it (Together's, a self-hosted server's): the
    /// request forwarded as it is.
    Jina,
}

/// The fields a rerank request must have, checked before anything is sent.
fn required(body: &Map<String, Value>) -> Result<(), GatewayError> {
    for field in ["model", "query", "documents"] {
        if !body.contains_key(field) {
            return Err(GatewayError::InvalidBody(format!(
                "a rerank request needs {field}"
            )));
        }
    }
    match body.get("documents") {
        Some(Value::Array(_)) => Ok(()),
        _ => Err(GatewayError::InvalidBody(
            "documents must be a list of strings or {\"text\": ...} objects".into(),
        )),
    }
}

/// The documents as strings (an object gives its `text`).
fn texts(documents: &Value) -> Value {
    let list = documents.as_array().map(Vec::as_slice).unwrap_or_default();
    Value::Array(
        list.iter()
            .map(|d| match d {
                Value::String(_) => d.clone(),
                other => other.get("text").cloned().unwrap_or(Value::Null),
            })
            .collect(),
    )
}

/// The provider's request body for a unified rerank body.
pub(crate) fn request(body: &[u8], dialect: Dialect) -> Result<Bytes, GatewayError> {
    let parsed: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let Value::Object(body_map) = parsed else {
        return Err(GatewayError::InvalidBody(
            "the body must be a JSON object".into(),
        ));
    };
    required(&body_map)?;
    let keep = |names: &[&str]| {
        let mut out = Map::new();
        for name in names {
            if let Some(v) = body_map.get(*name) {
                out.insert((*name).to_string(), v.clone());
            }
        }
        out
    };
    let out = match dialect {
        Dialect::Jina => return Ok(Bytes::copy_from_slice(body)),
        Dialect::Cohere => {
            let mut out = keep(&["model", "query", "top_n", "max_tokens_per_doc", "priority"]);
            out.insert(
                "documents".into(),
                texts(body_map.get("documents").unwrap_or(&Value::Null)),
            );
            out
        }
        Dialect::Voyage => {
            let mut out = keep(&["model", "query", "return_documents", "truncation"]);
            out.insert(
                "documents".into(),
                texts(body_map.get("documents").unwrap_or(&Value::Null)),
            );
            if let Some(n) = body_map.get("top_n") {
                out.insert("top_k".into(), n.clone());
            }
            out
        }
    };
    Ok(crate::types::json::to_bytes(&Value::Object(out)))
}

/// The common answer, in Portkey's field order.
#[derive(Serialize)]
struct Reranked<'a> {
    object: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    results: Vec<Ranked<'a>>,
    model: &'a str,
    usage: Units,
    provider: &'a str,
}

#[derive(Serialize)]
struct Ranked<'a> {
    index: &'a Value,
    relevance_score: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<Text<'a>>,
}

#[derive(Serialize)]
struct Text<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct Units {
    search_units: Option<u64>,
}

/// A provider's rerank answer in the common shape, for [`WholeJson`].
pub(crate) struct RerankAnswer {
    provider: String,
    dialect: Dialect,
    /// The model asked for: the answer's `model` when the provider's does not name one.
    model: Option<String>,
}

impl RerankAnswer {
    pub(crate) fn translator(
        provider: &str,
        dialect: Dialect,
        opts: &ResponseOptions<'_>,
    ) -> WholeJson<Self> {
        let answer = RerankAnswer {
            provider: provider.to_string(),
            dialect,
            model: opts.model.map(str::to_string),
        };
        WholeJson::new(answer, MAX_ANSWER)
    }
}

impl Convert for RerankAnswer {
    fn convert(&mut self, body: &[u8]) -> Option<Converted> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let list = match self.dialect {
            Dialect::Voyage => v.get("data"),
            Dialect::Cohere | Dialect::Jina => v.get("results"),
        }?
        .as_array()?;
        let results: Vec<Ranked> = list
            .iter()
            .map(|r| Ranked {
                index: r.get("index").unwrap_or(&Value::Null),
                relevance_score: r.get("relevance_score").unwrap_or(&Value::Null),
                // Cohere's v2 answers hold no document; the others' become `{text}`.
                document: match (self.dialect, r.get("document")) {
                    (Dialect::Cohere, _) | (_, None | Some(Value::Null)) => None,
                    (_, Some(Value::String(text))) => Some(Text {
                        text: text.as_str(),
                    }),
                    (_, Some(d)) => d
                        .get("text")
                        .and_then(Value::as_str)
                        .map(|text| Text { text }),
                },
            })
            .collect();
        let units = match self.dialect {
            Dialect::Cohere => v
                .get("meta")
                .and_then(|m| m.get("billed_units"))
                .and_then(|b| b.get("search_units")),
            Dialect::Voyage | Dialect::Jina => v.get("usage").and_then(|u| u.get("total_tokens")),
        }
        .and_then(Value::as_u64);
        // Cohere's answer does not name the model: the one asked for.
        let model = match self.dialect {
            Dialect::Cohere => None,
            Dialect::Voyage | Dialect::Jina => v.get("model").and_then(Value::as_str),
        }
        .map(str::to_string)
        .or_else(|| self.model.clone());
        let out = Reranked {
            object: "list",
            id: v.get("id").filter(|id| id.is_string()),
            results,
            model: model.as_deref().unwrap_or(""),
            usage: Units {
                search_units: units,
            },
            provider: &self.provider,
        };
        let body = serde_json::to_vec(&out).ok()?;
        Some(Converted {
            body: Bytes::from(body),
            usage: units.map(|n| Usage {
                input: n,
                ..Usage::default()
            }),
            model,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Translator;

    use serde_json::json;

    fn convert(dialect: Dialect, answer: Value) -> (String, Option<Usage>) {
        let opts = ResponseOptions {
            model: Some("asked"),
            ..Default::default()
        };
        let mut t = RerankAnswer::translator("p", dialect, &opts);
        assert!(t.push(Bytes::from(answer.to_string())).is_none());
        let out = t.finish().unwrap();
        (String::from_utf8(out.to_vec()).unwrap(), t.usage())
    }

    #[test]
    fn requests_per_dialect() {
        let body = json!({"model": "m", "query": "q", "top_n": 2, "return_documents": true,
            "documents": ["a", {"text": "b", "id": "x"}], "max_tokens_per_doc": 100, "extra": 1});
        let raw = body.to_string();
        let cohere: Value =
            serde_json::from_slice(&request(raw.as_bytes(), Dialect::Cohere).unwrap()).unwrap();
        assert_eq!(
            cohere,
            json!({"model": "m", "query": "q", "top_n": 2, "max_tokens_per_doc": 100,
                   "documents": ["a", "b"]})
        );
        let voyage: Value =
            serde_json::from_slice(&request(raw.as_bytes(), Dialect::Voyage).unwrap()).unwrap();
        assert_eq!(
            voyage,
            json!({"model": "m", "query": "q", "top_k": 2, "return_documents": true,
                   "documents": ["a", "b"]})
        );
        let jina = request(raw.as_bytes(), Dialect::Jina).unwrap();
        assert_eq!(jina, raw.as_bytes(), "forwarded as it is");
        for bad in [
            json!({"query": "q", "documents": []}),
            json!({"model": "m", "documents": []}),
            json!({"model": "m", "query": "q", "documents": "a"}),
        ] {
            let e = request(bad.to_string().as_bytes(), Dialect::Jina).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
        assert_eq!(request(b"[1]", Dialect::Cohere).unwrap_err().status(), 400);
    }

    #[test]
    fn answers_in_the_common_shape() {
        let (cohere, usage) = convert(
            Dialect::Cohere,
            json!({"id": "r-1", "results": [{"index": 1, "relevance_score": 0.9, "document": {"text": "b"}}],
                   "meta": {"billed_units": {"search_units": 1}}}),
        );
        assert_eq!(
            cohere,
            r#"{"object":"list","id":"r-1","results":[{"index":1,"relevance_score":0.9}],"model":"asked","usage":{"search_units":1},"provider":"p"}"#
        );
        assert_eq!(usage.map(|u| u.input), Some(1));
        let (voyage, usage) = convert(
            Dialect::Voyage,
            json!({"object": "list", "data": [{"index": 0, "relevance_score": 0.5, "document": "a"}],
                   "model": "rerank-2", "usage": {"total_tokens": 12}}),
        );
        let voyage: Value = serde_json::from_str(&voyage).unwrap();
        assert_eq!(
            voyage,
            json!({"object": "list", "results": [{"index": 0, "relevance_score": 0.5,
                   "document": {"text": "a"}}], "model": "rerank-2",
                   "usage": {"search_units": 12}, "provider": "p"})
        );
        assert_eq!(usage.map(|u| u.input), Some(12));
        let (jina, _) = convert(
            Dialect::Jina,
            json!({"model": "jina-reranker-v2", "results": [{"index": 0, "relevance_score": 0.7,
                   "document": {"text": "a"}}], "usage": {"total_tokens": 5, "prompt_tokens": 5}}),
        );
        let jina: Value = serde_json::from_str(&jina).unwrap();
        assert_eq!(jina["results"][0]["document"], json!({"text": "a"}));
        assert_eq!(jina["usage"], json!({"search_units": 5}));
        // Not a rerank answer: relayed as it came.
        let opts = ResponseOptions::default();
        let mut t = RerankAnswer::translator("p", Dialect::Jina, &opts);
        t.push(Bytes::from_static(br#"{"detail":"no"}"#));
        assert_eq!(t.finish().as_deref(), Some(&br#"{"detail":"no"}"#[..]));
    }
}
