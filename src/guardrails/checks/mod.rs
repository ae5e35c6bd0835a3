//! The built-in checks: Portkey's `default.*` plugins (parameters and defaults from its
//! `manifest.json`) and portgate's local `portgate.pii`. Parameters are read
//! and validated once, when the config is parsed (a missing required parameter or a pattern
//! that does not compile is a 400 naming its path); a check then only runs.
//!
//! Families, one file each: `text` (pattern and shape of the text), `json` (JSON in the text),
//! `request` (model, request type, metadata), `remote` (webhook, log, URL validation: the only
//! checks that wait on the network), `mutate` (addPrefix, regexReplace) and `pii`.

pub mod json;
pub mod mutate;
pub mod pii;
pub mod remote;
pub mod request;
pub mod text;

use super::content::{self, Part};
use super::write::{Data, Obj};
use super::Event;
use crate::dispatch::CustomHostPolicy;
use crate::dispatch::Dispatcher;
use crate::providers::Operation;
use crate::types::problems::Problems;
use serde_json::{Map, Value};

mod compile;

pub(crate) use compile::{compile, Params};

/// What the gateway lends checks that reach the network (webhook, log, validUrls).
pub(crate) struct Env<'a> {
    pub dispatcher: &'a Dispatcher,
    pub custom_hosts: &'a CustomHostPolicy,
    /// The remote checks the request may still start.
    pub quota: &'a remote::Quota,
    /// Remote checks running at once in the process (`limits.guardrails.concurrent_remote_checks`).
    pub slots: &'a tokio::sync::Semaphore,
}

/// The request as checks read it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Req<'a> {
    /// A JSON object: the body as parsed, or as a target's overrides or a mutator rewrote it.
    Json(&'a Map<String, Value>),
    /// The client's body, not parsed whole, for hooks none of whose checks read the request
    /// whole ([`Check::reads_whole`]): its model as the gateway's scan read it and its
    /// content part as [`content::request_part_raw`] read it.
    Body {
        model: Option<&'a str>,
        part: &'a Part,
    },
}

/// The answer as after-request checks read it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Resp<'a> {
    /// The answer as the client receives it (after any earlier mutator).
    Json(&'a Value),
    /// Only its content part, for hooks none of whose checks read it whole
    /// ([`Check::reads_whole`]; [`content::answer_part`]).
    Part(&'a Part),
}

/// What a check sees (Portkey's plugin context).
pub(crate) struct Ctx<'a> {
    pub event: Event,
    pub op: Operation,
    /// The request (after any earlier mutator).
    pub request: Req<'a>,
    /// The response (after-request hooks only).
    pub response: Option<Resp<'a>>,
    pub metadata: &'a Map<String, Value>,
    pub provider: &'a str,
    pub stream: bool,
    /// `None` on streams (network checks do not run there).
    pub env: Option<&'a Env<'a>>,
    /// The content part and its text, read once for all the checks sharing this context.
    pub seen: Seen,
    /// The hook context webhook and log checks post, built once for every such check that
    /// sees the same request and answer.
    pub posted: &'a std::sync::OnceLock<bytes::Bytes>,
    /// Mid-stream: the counts of the whole text so far, the text itself being only its
    /// newest window.
    pub counted: Option<text::Counted>,
}

/// What the checks of one context have read of it.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    part: std::sync::OnceLock<Part>,
    joined: std::sync::OnceLock<String>,
    /// The text's `textExcerpt`, escaped as a JSON string's inside.
    excerpt: std::sync::OnceLock<Vec<u8>>,
}

impl Ctx<'_> {
    /// The content part the check examines.
    pub(crate) fn part(&self) -> &Part {
        match (self.event, self.request, self.response) {
            (Event::Before, Req::Body { part, .. }, _)
            | (Event::After, _, Some(Resp::Part(part))) => {
                return part;
            }
            _ => {}
        }
        self.seen
            .part
            .get_or_init(|| match (self.event, self.request, self.response) {
                (Event::Before, Req::Json(r), _) => content::request_part(r, self.op),
                (Event::After, _, Some(Resp::Json(r))) => content::response_part(r, self.op),
                _ => Part::default(),
            })
    }

    /// The answer as a JSON document, for the checks that read it whole (they never get a
    /// [`Resp::Part`]); `None` before the request.
    pub(crate) fn response_json(&self) -> Option<&Value> {
        match self.response {
            Some(Resp::Json(r)) => Some(r),
            Some(Resp::Part(_)) | None => None,
        }
    }

    /// The request's `model`, when it is a string that is not empty.
    pub(crate) fn model(&self) -> Option<&str> {
        match self.request {
            Req::Json(r) => r.get("model").and_then(Value::as_str),
            Req::Body { model, .. } => model,
        }
        .filter(|m| !m.is_empty())
    }

    /// The request as a JSON object, for the checks that read it whole (a [`Req::Body`] is
    /// only given to hooks without them; it reads as an empty object).
    pub(crate) fn request_json(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        match self.request {
            Req::Json(r) => r,
            Req::Body { .. } => EMPTY.get_or_init(Map::new),
        }
    }

    /// The part's texts that are not empty, joined by newlines (borrowed from the part when
    /// there is only one).
    pub(crate) fn text(&self) -> &str {
        let part = self.part();
        let mut texts = part.texts.iter().flatten().filter(|t| !t.is_empty());
        match (texts.next(), texts.next()) {
            (None, _) => "",
            (Some(only), None) => only,
            _ => self.seen.joined.get_or_init(|| part.text()),
        }
    }

    /// `"textExcerpt"` of `text` written into `data`: the escaped excerpt of the context's
    /// text is made once and copied by every check that reports it; another text (a trimmed
    /// one) is escaped on its own.
    pub(crate) fn excerpt(&self, data: Obj, text: &str) -> Obj {
        let own = self.text();
        if text.as_ptr() != own.as_ptr() || text.len() != own.len() {
            return data.text("textExcerpt", &content::excerpt_parts(text));
        }
        let escaped = self.seen.excerpt.get_or_init(|| {
            let mut out = Vec::with_capacity(text.len().min(512) + 8);
            for p in content::excerpt_parts(text) {
                super::write::fragment(&mut out, p);
            }
            out
        });
        data.escaped("textExcerpt", escaped)
    }

    /// Portkey's request type names.
    pub(crate) fn request_type(&self) -> &'static str {
        match self.op {
            Operation::ChatCompletions => "chatComplete",
            Operation::Completions => "complete",
            Operation::Embeddings => "embed",
            Operation::Messages => "messages",
            Operation::Rerank => "rerank",
            Operation::Responses => "createModelResponse",
        }
    }
}

/// A rewrite a check asks for.
#[derive(Debug, Clone)]
pub enum Transform {
    Request(Map<String, Value>),
    Response(Value),
}

/// A check's result.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub verdict: bool,
    pub data: Data,
    /// The check could not decide (it then passes unless `failOnError`).
    pub error: Option<String>,
    pub transform: Option<Transform>,
}

impl CheckOutcome {
    pub(crate) fn pass(verdict: bool, data: impl Into<Data>) -> CheckOutcome {
        CheckOutcome {
            verdict,
            data: data.into(),
            error: None,
            transform: None,
        }
    }

    pub(crate) fn error(message: impl Into<String>, data: impl Into<Data>) -> CheckOutcome {
        CheckOutcome {
            verdict: false,
            data: data.into(),
            error: Some(message.into()),
            transform: None,
        }
    }
}

/// `verdict = not ? !holds : holds`.
pub(crate) fn invert(holds: bool, not: bool) -> bool {
    holds != not
}

/// A compiled check.
#[derive(Debug)]
pub(crate) enum Check {
    RegexMatch(text::RegexMatch),
    SentenceCount(text::Count),
    WordCount(text::Count),
    CharacterCount(text::Count),
    Case { upper: bool, not: bool },
    EndsWith { suffix: String, not: bool },
    Contains(text::Contains),
    ContainsCode { format: String, not: bool },
    NotNull { not: bool },
    JsonSchema(json::JsonSchema),
    JsonKeys(json::JsonKeys),
    ModelWhitelist { models: Vec<String>, not: bool },
    ModelRules(request::ModelRules),
    AllowedRequestTypes(request::AllowedTypes),
    RequiredMetadataKeys(request::MetadataKeys),
    Webhook(remote::Webhook),
    Log(remote::Log),
    ValidUrls { only_dns: bool, not: bool },
    AddPrefix(mutate::AddPrefix),
    RegexReplace(mutate::RegexReplace),
    Pii(pii::Pii),
}

/// When a check can decide on a stream before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamMode {
    /// Its failure on a prefix of the text is final (a forbidden pattern, word or PII has
    /// appeared, a maximum is passed): it runs as the text accumulates.
    Incremental,
    /// It needs the whole text: it runs once, at the end of the stream.
    AtEnd,
    /// It does not look at the response (request checks) or rewrites it (mutators, which
    /// cannot take back what was streamed): not run on streams.
    Never,
}

impl Check {
    pub(crate) fn stream_mode(&self) -> StreamMode {
        match self {
            Check::RegexMatch(r) if r.not => StreamMode::Incremental,
            Check::Contains(c) if c.operator == text::Operator::None => StreamMode::Incremental,
            Check::SentenceCount(c) | Check::WordCount(c) | Check::CharacterCount(c) if !c.not => {
                StreamMode::Incremental
            }
            Check::Pii(p) if !p.redact => StreamMode::Incremental,
            Check::Webhook(_)
            | Check::Log(_)
            | Check::ValidUrls { .. }
            | Check::ModelWhitelist { .. }
            | Check::ModelRules(_)
            | Check::AllowedRequestTypes(_)
            | Check::RequiredMetadataKeys(_)
            | Check::AddPrefix(_)
            | Check::RegexReplace(_)
            | Check::Pii(_) => StreamMode::Never,
            _ => StreamMode::AtEnd,
        }
    }

    /// A mid-stream run: only a failure that no later text can undo counts (for counts, being
    /// over the maximum); anything else waits for the end.
    pub(crate) fn run_partial(&self, ctx: &Ctx<'_>) -> Option<CheckOutcome> {
        let out = match self {
            Check::SentenceCount(c) | Check::WordCount(c) | Check::CharacterCount(c) => {
                c.over_max(ctx.text(), ctx.counted.as_ref(), self)?
            }
            other => other.run_sync(ctx)?,
        };
        (!out.verdict && out.error.is_none()).then_some(out)
    }

    /// Runs the check.
    pub(crate) async fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        match self {
            // Boxed: network futures are large, and inline they would size every check's.
            Check::Webhook(w) => Box::pin(w.run(ctx)).await,
            Check::Log(l) => Box::pin(l.run(ctx)).await,
            Check::ValidUrls { only_dns, not } => {
                Box::pin(remote::valid_urls(ctx, *only_dns, *not)).await
            }
            other => other
                .run_sync(ctx)
                .unwrap_or_else(|| CheckOutcome::error("the check cannot run here", Value::Null)),
        }
    }

    /// Whether the check reads more of a request or an answer than its model and text: the
    /// whole document is sent (webhook, log) or rewritten (mutators, PII redaction). The
    /// others get only those parts, read without parsing the document (see [`Req`],
    /// [`content::answer_part`]).
    pub(crate) fn reads_whole(&self) -> bool {
        match self {
            Check::Webhook(_) | Check::Log(_) | Check::AddPrefix(_) | Check::RegexReplace(_) => {
                true
            }
            Check::Pii(p) => p.redact,
            _ => false,
        }
    }

    /// The regular expressions the check holds: how many, and the memory their compiled forms
    /// hold (the config's pattern cap and its cache's byte budget count them).
    pub(crate) fn patterns(&self) -> (usize, usize) {
        match self {
            Check::RegexMatch(r) => (1, r.compiled_bytes),
            Check::RegexReplace(r) => (1, r.compiled_bytes),
            Check::JsonSchema(s) => s.patterns,
            _ => (0, 0),
        }
    }

    /// Whether the check waits on the network (webhook, log, validUrls).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(
            self,
            Check::Webhook(_) | Check::Log(_) | Check::ValidUrls { .. }
        )
    }

    /// Runs a check that does not wait on the network ([`Check::is_remote`] is false).
    pub(crate) fn run_local(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        self.run_sync(ctx)
            .unwrap_or_else(|| CheckOutcome::error("the check cannot run here", Value::Null))
    }

    /// The checks that need no network, run in place.
    fn run_sync(&self, ctx: &Ctx<'_>) -> Option<CheckOutcome> {
        Some(match self {
            Check::RegexMatch(r) => r.run(ctx),
            Check::SentenceCount(c) => c.run(ctx, text::Unit::Sentences),
            Check::WordCount(c) => c.run(ctx, text::Unit::Words),
            Check::CharacterCount(c) => c.run(ctx, text::Unit::Characters),
            Check::Case { upper, not } => text::case(ctx, *upper, *not),
            Check::EndsWith { suffix, not } => text::ends_with(ctx, suffix, *not),
            Check::Contains(c) => c.run(ctx),
            Check::ContainsCode { format, not } => text::contains_code(ctx, format, *not),
            Check::NotNull { not } => text::not_null(ctx, *not),
            Check::JsonSchema(s) => s.run(ctx),
            Check::JsonKeys(k) => k.run(ctx),
            Check::ModelWhitelist { models, not } => request::model_whitelist(ctx, models, *not),
            Check::ModelRules(r) => r.run(ctx),
            Check::AllowedRequestTypes(a) => a.run(ctx),
            Check::RequiredMetadataKeys(m) => m.run(ctx),
            Check::AddPrefix(a) => a.run(ctx),
            Check::RegexReplace(r) => r.run(ctx),
            Check::Pii(p) => p.run(ctx),
            Check::Webhook(_) | Check::Log(_) | Check::ValidUrls { .. } => return None,
        })
    }
}

/// Data of a check that could not run for lack of text.
pub(crate) fn no_text(what: &str) -> CheckOutcome {
    CheckOutcome::error(
        format!("Missing text to {what}"),
        Obj::new()
            .text(
                "explanation",
                &["An error occurred: Missing text to ", what],
            )
            .str("textExcerpt", "No text available")
            .done(),
    )
}

#[cfg(test)]
mod tests;
