//! After-request hooks on a streamed answer — beyond Portkey, whose after-request hooks see no
//! streamed text. The guard wraps the provider's translator and reads the text the client is
//! being sent (OpenAI `delta.content` / `text`, or Messages `text_delta`) as it accumulates:
//!
//! - incremental checks (a failure on a prefix is final: regexMatch with `not`, contains with
//!   `operator: none`, portgate.pii, counts over their maximum) run on every chunk *before* it
//!   is released: a failing `deny` hook ends the stream at once with an `error` event carrying
//!   the 446 error and `hook_results`, and no further provider byte reaches the client;
//! - every other check that looks at text (jsonSchema, jsonKeys, endsWith, the other counts,
//!   regexMatch, contains any/all, containsCode, notNull, case checks) needs the whole text and
//!   runs at the end, before the closing `data: [DONE]` (held back until then): a failing deny
//!   hook replaces `[DONE]` with the error event; a failing non-deny hook is reported in a
//!   final `data: {"hook_results": ...}` chunk when `x-portkey-strict-open-ai-compliance:
//!   false`;
//! - checks that reach the network (webhook, log, validUrls), request checks and mutators do
//!   not run on streams (what was streamed cannot be rewritten).
//!
//! Mid-stream runs look at the new text plus the [`OVERLAP`] bytes before it, not the whole
//! text again (which made a long answer cost quadratic time); counts are kept as the text
//! grows. A match longer than the overlap is still found by the run at the end of the stream,
//! on the whole text. Verdicts always reach the access log and metrics. At most `MAX_TEXT`
//! bytes of text are examined.

use super::attempts::Request;
use crate::guardrails::checks::text::Counted;
use crate::guardrails::checks::{Req, Resp};
use crate::guardrails::content;
use crate::guardrails::engine::{self, HookResult, Input, RunMode};
use crate::guardrails::results::{deny_body, hook_results};
use crate::guardrails::{Event, Hook};
use crate::providers::Operation;
use crate::stream::sse::{self, SseSplitter};
use crate::stream::Translator;
use crate::types::usage::Usage;
use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// The most text kept for checks.
pub(crate) const MAX_TEXT: usize = 1024 * 1024;

/// Bytes of already checked text a mid-stream run looks at again, so that a match spanning
/// two chunks is found.
pub(crate) const OVERLAP: usize = 4 * 1024;

/// What a stream's guard decided, read after the relay for telemetry.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub after: Vec<HookResult>,
    pub denied: bool,
}

/// The hooks of a streamed answer.
pub(crate) struct StreamGuard {
    hooks: Vec<Arc<Hook>>,
    before: Vec<HookResult>,
    request: Arc<Map<String, Value>>,
    metadata: Map<String, Value>,
    op: Operation,
    provider: String,
    strict: bool,
    /// The time the checks of one run may take.
    budget: std::time::Duration,
}

impl StreamGuard {
    pub(crate) fn new(
        hooks: Vec<Arc<Hook>>,
        before: Vec<HookResult>,
        request: Arc<Map<String, Value>>,
        req: &Request<'_>,
        provider: &str,
    ) -> StreamGuard {
        StreamGuard {
            hooks,
            before,
            request,
            metadata: req.metadata.clone(),
            op: req.op,
            provider: provider.to_string(),
            strict: req.headers.strict_open_ai_compliance.unwrap_or(true),
            budget: req.guardrails.cpu,
        }
    }
}

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Polls a future once: the checks that run on streams need no I/O, so their futures are
/// ready at once (`None` would mean one was not; it is then taken as passing).
fn poll_once<F: Future>(f: F) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Wraps `inner` with the guard; the report is filled as the stream is relayed.
pub(crate) fn wrap(
    inner: Box<dyn Translator>,
    guard: Box<StreamGuard>,
) -> (Box<dyn Translator>, Arc<Mutex<Report>>) {
    let report = Arc::new(Mutex::new(Report::default()));
    let incremental = guard.hooks.iter().any(|h| {
        h.checks
            .iter()
            .any(|c| c.check.stream_mode() == crate::guardrails::checks::StreamMode::Incremental)
    });
    let t = GuardTranslator {
        inner,
        guard,
        events: SseSplitter::default(),
        text: String::new(),
        counted: Counted::default(),
        checked: 0,
        held: BytesMut::new(),
        stopped: false,
        incremental,
        report: report.clone(),
    };
    (Box::new(t), report)
}

struct GuardTranslator {
    inner: Box<dyn Translator>,
    guard: Box<StreamGuard>,
    events: SseSplitter,
    text: String,
    /// Counts of `text`, kept as it grows.
    counted: Counted,
    /// How much of `text` the last mid-stream run saw.
    checked: usize,
    /// `data: [DONE]` and what follows, held until the end-of-stream checks ran.
    held: BytesMut,
    stopped: bool,
    incremental: bool,
    report: Arc<Mutex<Report>>,
}

impl GuardTranslator {
    /// Adds the text of the complete events in `out`; whether any was added.
    fn scan(&mut self, out: &Bytes) -> bool {
        let mut added = false;
        for event in self.events.push(out) {
            let Some(data) = sse::data(&event) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<Value>(&data) else {
                continue;
            };
            let piece = match self.guard.op {
                Operation::Messages => v.pointer("/delta/text"),
                Operation::Completions => v.pointer("/choices/0/text"),
                Operation::Responses => v
                    .get("delta")
                    .filter(|_| v["type"] == "response.output_text.delta"),
                _ => v.pointer("/choices/0/delta/content"),
            };
            if let Some(t) = piece.and_then(Value::as_str) {
                if self.text.len() + t.len() <= MAX_TEXT && !t.is_empty() {
                    self.text.push_str(t);
                    self.counted.add(t);
                    added = true;
                }
            }
        }
        added
    }

    fn run(&mut self, mode: RunMode) -> engine::ListRun {
        let (text, counted) = match mode {
            RunMode::Partial => {
                let mut from = self.checked.saturating_sub(OVERLAP);
                while !self.text.is_char_boundary(from) {
                    from -= 1;
                }
                self.checked = self.text.len();
                (self.text.get(from..).unwrap_or(""), Some(self.counted))
            }
            RunMode::Full | RunMode::StreamEnd => (self.text.as_str(), None),
        };
        let response = content::synthetic_response(self.guard.op, text);
        let input = Input {
            event: Event::After,
            op: self.guard.op,
            request: Req::Json(&self.guard.request),
            response: Some(Resp::Json(&response)),
            metadata: &self.guard.metadata,
            provider: &self.guard.provider,
            stream: true,
            env: None,
            mode,
            size: text.len(),
            budget: self.guard.budget,
            posted: Default::default(),
            counted,
        };
        poll_once(engine::run(&self.guard.hooks, &input)).unwrap_or_default()
    }

    /// Ends the stream with the 446 error event.
    fn deny(&mut self, results: Vec<HookResult>) -> Bytes {
        self.stopped = true;
        let body = deny_body(&self.guard.before, &results);
        if let Ok(mut r) = self.report.lock() {
            r.after = results;
            r.denied = true;
        }
        let mut out = BytesMut::from(&b"event: error\ndata: "[..]);
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\n\n");
        out.freeze()
    }

    /// Splits off `data: [DONE]` (and what follows) into `held`.
    fn hold_done(&mut self, out: Bytes) -> Bytes {
        if !self.held.is_empty() {
            self.held.extend_from_slice(&out);
            return Bytes::new();
        }
        match memchr::memmem::find(&out, b"data: [DONE]") {
            Some(at) => {
                self.held.extend_from_slice(out.get(at..).unwrap_or(&[]));
                out.slice(..at)
            }
            None => out,
        }
    }
}

impl Translator for GuardTranslator {
    fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.stopped {
            return None;
        }
        let out = self.inner.push(chunk)?;
        let added = self.scan(&out);
        if added && self.incremental {
            let run = self.run(RunMode::Partial);
            if run.deny {
                return Some(self.deny(run.results));
            }
        }
        let send = self.hold_done(out);
        (!send.is_empty()).then_some(send)
    }

    fn finish(&mut self) -> Option<Bytes> {
        if self.stopped {
            return None;
        }
        let mut tail = std::mem::take(&mut self.held);
        if let Some(rest) = self.inner.finish() {
            self.scan(&rest);
            tail.extend_from_slice(&rest);
        }
        if self.guard.hooks.is_empty() {
            return (!tail.is_empty()).then(|| tail.freeze());
        }
        let run = self.run(RunMode::StreamEnd);
        if run.deny {
            return Some(self.deny(run.results));
        }
        let passed = run.passed() && self.guard.before.iter().all(HookResult::verdict);
        let mut out = BytesMut::new();
        if !passed && !self.guard.strict {
            let results = hook_results(&self.guard.before, &run.results);
            out.extend_from_slice(b"data: {\"hook_results\":");
            out.extend_from_slice(&results.to_vec());
            out.extend_from_slice(b"}\n\n");
        }
        if let Ok(mut r) = self.report.lock() {
            r.after = run.results;
        }
        out.extend_from_slice(&tail);
        (!out.is_empty()).then(|| out.freeze())
    }

    fn usage(&self) -> Option<Usage> {
        self.inner.usage()
    }
    fn model(&self) -> Option<&str> {
        self.inner.model()
    }
    fn events(&self) -> u32 {
        self.inner.events()
    }
    fn overflowed(&self) -> bool {
        self.inner.overflowed()
    }
    fn may_rewrite(&self) -> bool {
        true
    }
    fn content_type(&self) -> Option<&'static str> {
        self.inner.content_type()
    }
    fn json_body(&self) -> Option<Value> {
        self.inner.json_body()
    }
    fn stopped(&self) -> bool {
        self.stopped
    }
}

/// Telemetry of a relayed stream's after-request hooks.
pub(crate) fn record(
    state: &crate::state::State,
    trace_id: &str,
    report: &Mutex<Report>,
    log: &mut crate::guardrails::telemetry::Verdicts,
) {
    let Ok(r) = report.lock() else { return };
    crate::pipeline::verdicts::record(state, trace_id, Event::After, &r.after, log);
}
