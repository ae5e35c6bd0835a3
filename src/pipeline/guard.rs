//! Guardrails on the request path, called from the attempt walk (`attempts`):
//!
//! - before the provider is called, a target's before-request hooks run once; a failing
//!   `deny` hook answers 446 (`hooks_failed` with `hook_results`) and the provider is never
//!   called; mutators rewrite the body sent upstream;
//! - after each attempt that got a whole 200 answer, the answer is translated to the client's
//!   format, the after-request hooks run on it, and it becomes a local answer: 446 when a
//!   `deny` hook failed (both lists), 246 with the body plus `hook_results` when a hook failed
//!   without deny, 200 plus `hook_results` when hooks ran and passed. The status is the
//!   attempt's, so fallbacks and `retry.on_status_codes` see 446/246 as Portkey's do.
//!
//! Streams keep their upstream body; `guard_stream.rs` guards them as they are relayed.

use super::attempts::{Outcome, Request};
use super::guard_stream::StreamGuard;
use super::verdicts;
use crate::error::GatewayError;
use crate::guardrails::checks::{Env, Req, Resp};
use crate::guardrails::content;
use crate::guardrails::engine::{self, HookResult, Input, ListRun, RunMode};
use crate::guardrails::results::{deny_body, hook_results, splice_results};
use crate::guardrails::telemetry::Verdicts;
use crate::guardrails::{Event, LeafHooks};
use crate::providers::{Provider, ResponseOptions};
use crate::routing::plan::Leaf;
use crate::state::State;
use crate::types::held::HeldAnswer;
use bytes::Bytes;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The largest answer read whole for after-request hooks (as the walk's read-ahead).
const ANSWER_LIMIT: usize = 4 * 1024 * 1024;

/// What checks that call out borrow from the gateway and the request.
fn env_of<'a>(state: &'a State, req: &'a Request<'_>) -> Env<'a> {
    Env {
        dispatcher: &state.dispatcher,
        custom_hosts: &state.custom_hosts,
        quota: &req.guardrails.remote,
        slots: &state.remote_checks,
    }
}

/// The guardrail state of one target's attempts.
#[derive(Default)]
pub(crate) struct LeafGuard {
    hooks: Arc<LeafHooks>,
    /// The request as the checks see it when it differs from the client's body (the target's
    /// overrides, mutators); `None`: the client's parsed body, read in place (no copy).
    request: Option<Arc<Map<String, Value>>>,
    before: Vec<HookResult>,
    active: bool,
}

/// What the before-request hooks decided.
pub(crate) enum Before {
    /// Send `body` (rewritten when a mutator changed the request).
    Send(LeafGuard, Bytes),
    /// A deny hook failed: answer this, without calling the provider.
    Deny(HeldAnswer),
}

impl LeafGuard {
    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// Runs the target's before-request hooks.
    pub(crate) async fn before(
        state: &State,
        req: &Request<'_>,
        leaf: &Leaf,
        provider: &str,
        hide_usage: bool,
        body: Bytes,
        log: &mut Verdicts,
    ) -> Result<Before, GatewayError> {
        if leaf.hooks.is_empty() {
            return Ok(Before::Send(LeafGuard::default(), body));
        }
        // The request as the checks see it: the target's overrides merged over the body, or
        // the body parsed whole for a check that reads it whole, or else just the body's model
        // and content part (no document of the body is built).
        let merged = match &leaf.override_params {
            Some(overrides) => {
                let mut merged = req.view.params()?.clone();
                for (k, v) in overrides.iter() {
                    merged.insert(k.clone(), v.clone());
                }
                Some(merged)
            }
            None => None,
        };
        let run = if leaf.hooks.before.is_empty() {
            ListRun::default()
        } else {
            let whole = leaf.hooks.before.iter().any(|h| h.reads_whole());
            let part = match (&merged, whole) {
                (None, false) => content::request_part_raw(req.view, req.op),
                _ => None,
            };
            let request = match (&merged, &part) {
                (Some(m), _) => Req::Json(m),
                (None, Some(part)) => Req::Body {
                    model: req.view.model.as_deref(),
                    part,
                },
                // A value the borrowing read refused is read from the document (whose parse
                // answers 400 for a body that is not valid after all).
                (None, None) => Req::Json(req.view.params()?),
            };
            let env = env_of(state, req);
            let input = Input {
                event: Event::Before,
                op: req.op,
                request,
                response: None,
                metadata: req.metadata,
                provider,
                stream: req.view.stream,
                env: Some(&env),
                mode: RunMode::Full,
                size: req.view.body.len(),
                budget: req.guardrails.cpu,
                posted: Default::default(),
                counted: None,
            };
            engine::run(&leaf.hooks.before, &input).await
        };
        verdicts::record(state, req.trace_id, Event::Before, &run.results, log);
        if run.deny {
            let body = deny_body(&run.results, &[]);
            return Ok(Before::Deny(HeldAnswer::json(
                446,
                http::HeaderMap::new(),
                body,
            )));
        }
        let rewrote = run.request.is_some();
        let rewritten = run.request.or(merged);
        let body = match &rewritten {
            Some(request) if rewrote => {
                let mut sent = request.clone();
                if hide_usage {
                    let o = sent
                        .entry("stream_options")
                        .or_insert_with(|| Value::Object(Map::new()));
                    match o {
                        Value::Object(o) => {
                            o.insert("include_usage".into(), Value::Bool(true));
                        }
                        other => *other = serde_json::json!({"include_usage": true}),
                    }
                }
                serde_json::to_vec(&sent)
                    .map(Bytes::from)
                    .map_err(|e| GatewayError::Internal(format!("serialising the request: {e}")))?
            }
            _ => body,
        };
        Ok(Before::Send(
            LeafGuard {
                hooks: leaf.hooks.clone(),
                request: rewritten.map(Arc::new),
                before: run.results,
                active: true,
            },
            body,
        ))
    }

    /// Runs the after-request hooks on a whole 200 answer and turns it into the answer the
    /// client gets (see the module doc). Anything else passes through untouched.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn after(
        &self,
        state: &State,
        req: &Request<'_>,
        adapter: &Arc<dyn Provider>,
        provider: &str,
        hide_usage: bool,
        outcome: Outcome,
        log: &mut Verdicts,
    ) -> Outcome {
        if !self.active || req.view.stream {
            return outcome;
        }
        let Outcome::Response(mut inbound) = outcome else {
            return outcome;
        };
        let content_type = inbound
            .header()
            .and_then(|h| h.headers.get(http::header::CONTENT_TYPE))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if inbound.status() != 200 || content_type.starts_with("text/event-stream") {
            return Outcome::Response(inbound);
        }
        let raw = match inbound.read_to_end(ANSWER_LIMIT).await {
            Ok(raw) => raw,
            Err(e) => {
                inbound.abort();
                return Outcome::Failed(e);
            }
        };
        let headers = inbound
            .header()
            .map(|h| h.headers.clone())
            .unwrap_or_default();
        state.dispatcher.finish(*inbound);
        // The client's format: checks read `choices[0].message.content` (or Messages content)
        // whatever the provider's API.
        let opts = ResponseOptions {
            hide_usage,
            strict: req.headers.strict_open_ai_compliance.unwrap_or(true),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: req.view.model.as_deref(),
        };
        let mut translator =
            crate::providers::response(&**adapter, req.op, 200, &content_type, &opts);
        let translated = crate::stream::translate_whole(translator.as_mut(), raw);
        let (usage, model) = (translator.usage(), translator.model().map(str::to_string));
        let answer = HeldAnswer {
            status: 200,
            headers,
            body: translated,
            usage,
            model,
        };
        self.judge(state, req, provider, answer, log).await
    }

    /// Runs the after-request hooks on a whole answer served from the cache. Cached answers
    /// were stored by requests whose own hooks (if any) never saw them, so each hit is judged
    /// like a live answer: a deny is a 446, a failed check a 246 with `hook_results`. A cached
    /// stream is judged as it is replayed (`for_stream`); anything else passes.
    pub(crate) async fn after_cached(
        &self,
        state: &State,
        req: &Request<'_>,
        provider: &str,
        entry: Arc<crate::cache::Entry>,
        log: &mut Verdicts,
    ) -> Outcome {
        if !self.active
            || req.view.stream
            || entry.status != 200
            || entry.content_type.starts_with("text/event-stream")
        {
            return Outcome::Cached(entry);
        }
        let answer = entry.answer();
        self.judge(state, req, provider, answer, log).await
    }

    /// The after-request hooks on an answer in the client's format: the answer the client
    /// gets (446, or the answer with `hook_results`, 200 or 246).
    async fn judge(
        &self,
        state: &State,
        req: &Request<'_>,
        provider: &str,
        answer: HeldAnswer,
        log: &mut Verdicts,
    ) -> Outcome {
        let HeldAnswer {
            headers,
            body: translated,
            usage,
            model,
            ..
        } = answer;
        // Hooks that only read the answer's text get just its content part (no document of
        // the whole answer is built); the others get the whole answer.
        let whole = self.hooks.after.iter().any(|h| h.reads_whole());
        let part = if whole {
            None
        } else {
            content::answer_part(&translated, req.op)
        };
        let parsed: Value;
        let answer = match &part {
            Some(part) => Resp::Part(part),
            None => match serde_json::from_slice::<Value>(&translated) {
                Ok(json) => {
                    parsed = json;
                    Resp::Json(&parsed)
                }
                // Not JSON: no hook can read it; it goes back as it came.
                Err(_) => {
                    let local = HeldAnswer::json(200, headers, translated).metered(usage, model);
                    return Outcome::Held(Box::new(local));
                }
            },
        };
        let env = env_of(state, req);
        // After-request checks read the request's model, or the whole request (webhook, log):
        // never its content part.
        let no_part = content::Part::default();
        let request = match &self.request {
            Some(r) => Req::Json(r),
            None if !whole => Req::Body {
                model: req.view.model.as_deref(),
                part: &no_part,
            },
            None => match req.view.params() {
                Ok(p) => Req::Json(p),
                Err(e) => return Outcome::Failed(e),
            },
        };
        let run = if self.hooks.after.is_empty() {
            ListRun::default()
        } else {
            let input = Input {
                event: Event::After,
                op: req.op,
                request,
                response: Some(answer),
                metadata: req.metadata,
                provider,
                stream: false,
                env: Some(&env),
                mode: RunMode::Full,
                size: translated.len(),
                budget: req.guardrails.cpu,
                posted: Default::default(),
                counted: None,
            };
            engine::run(&self.hooks.after, &input).await
        };
        verdicts::record(state, req.trace_id, Event::After, &run.results, log);
        if run.deny {
            let body = deny_body(&self.before, &run.results);
            let local = HeldAnswer::json(446, headers, body).metered(usage, model);
            return Outcome::Held(Box::new(local));
        }
        let passed = run.passed() && self.before.iter().all(HookResult::verdict);
        let results = hook_results(&self.before, &run.results);
        let base = match &run.response {
            Some(rewritten) => Bytes::from(serde_json::to_vec(rewritten).unwrap_or_default()),
            None => translated,
        };
        let body = splice_results(&base, &results).unwrap_or(base);
        let status = if passed { 200 } else { 246 };
        Outcome::Held(Box::new(
            HeldAnswer::json(status, headers, body).metered(usage, model),
        ))
    }

    /// The guard of a streamed answer: its after-request hooks and the before results.
    pub(crate) fn for_stream(&self, req: &Request<'_>, provider: &str) -> Option<Box<StreamGuard>> {
        if !self.active || !req.view.stream {
            return None;
        }
        let request = match &self.request {
            Some(r) => r.clone(),
            None => Arc::new(req.view.params().ok()?.clone()),
        };
        Some(Box::new(StreamGuard::new(
            self.hooks.after.clone(),
            self.before.clone(),
            request,
            req,
            provider,
        )))
    }
}
