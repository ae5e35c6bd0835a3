//! The attempt loop: walks a Plan (or the single target of a request without a config),
//! choosing targets, sending, and retrying or falling back on failures — all before the first
//! byte goes to the client, so the client only ever sees the answer that was kept.
//!
//! Semantics follow Portkey: fallback moves on for any non-2xx unless
//! `on_status_codes` says otherwise; a gateway error inside a target (unknown virtual key, no
//! route) stops the chain; retries happen on the retry codes, connect failures and timeouts,
//! with backoff or the provider's Retry-After. On top: per-target circuit breakers and a retry
//! budget.

use crate::dispatch::{Inbound, Outbound};
use crate::error::GatewayError;
use crate::portkey::conditions::QueryContext;
use crate::portkey::config::Mode;
use crate::portkey::PortkeyHeaders;
use crate::providers::Operation;
use crate::request::RequestView;
use crate::routing::breaker::{circuit_key, Admit};
use crate::routing::plan::{Group, Leaf, Node, Plan};
use crate::routing::retry::{retry_after, RetryPolicy, RETRY_AFTER_BUDGET};
use crate::routing::select;
use crate::routing::target::Target;
use crate::state::State;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tracing::Instrument;

pub(crate) use super::answer::{Answer, AttemptKind, AttemptRecord, Outcome, Retries};

/// The largest non-streamed answer read whole within its attempt.
const READ_AHEAD_LIMIT: usize = 4 * 1024 * 1024;

/// The request as the attempt loop needs it.
pub(crate) struct Request<'a> {
    pub op: Operation,
    /// The client's body, read once.
    pub view: &'a RequestView,
    pub headers: &'a PortkeyHeaders,
    /// `x-portkey-metadata`, parsed once.
    pub metadata: &'a Map<String, Value>,
    pub client_headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub pathname: &'a str,
    /// `traceparent` to send upstream (the client's trace, the gateway's span).
    pub traceparent: Option<String>,
    /// `x-portgate-hop` to send upstream (loop detection).
    pub hop: &'a str,
    /// The request's trace id (guardrail feedback is recorded against it).
    pub trace_id: &'a str,
    /// What the request's guardrails may still spend.
    pub guardrails: crate::guardrails::Allowance,
}

/// The walk's per-request state.
pub(crate) struct Walk<'a> {
    state: &'a State,
    req: &'a Request<'a>,
    /// Targets this request already sent to (extra sends draw on the retry budget). A list:
    /// a request tries a handful of targets at most, and a hashed set cost a SipHash, a table
    /// allocation and a rehash on every request's first send.
    tried: Vec<String>,
    pub attempts: Vec<AttemptRecord>,
    /// Time slept between retries.
    pub waited: Duration,
    /// Guardrail verdicts of every hook run (access log).
    pub guardrails: crate::guardrails::telemetry::Verdicts,
    retry_after_spent: Duration,
    /// When the whole request must have its answer (`upstream.request_deadline_ms`): a retry
    /// whose wait would pass it is not made.
    deadline: Instant,
    /// The semantic cache's embedding of this request's text, shared by its targets.
    embedding: crate::cache::EmbeddingMemo,
}

type NodeFuture<'f> = Pin<Box<dyn Future<Output = Answer> + Send + 'f>>;

impl<'a> Walk<'a> {
    pub(crate) fn new(state: &'a State, req: &'a Request<'a>) -> Self {
        Walk {
            state,
            req,
            tried: Vec::new(),
            attempts: Vec::new(),
            waited: Duration::ZERO,
            guardrails: Default::default(),
            retry_after_spent: Duration::ZERO,
            deadline: Instant::now()
                + Duration::from_millis(state.settings.upstream.request_deadline_ms),
            embedding: Default::default(),
        }
    }

    /// Runs the whole request: the plan when there is one, else the headers' single target.
    pub(crate) async fn run(&mut self, plan: Option<&Plan>) -> Answer {
        match plan {
            Some(p) => self.node(&p.root).await,
            None => {
                let leaf = Leaf::from_request();
                let mut a = self.leaf(&leaf).await;
                a.leaf_path = None;
                a
            }
        }
    }

    fn node<'s>(&'s mut self, node: &'s Node) -> NodeFuture<'s> {
        Box::pin(async move {
            match node {
                Node::Leaf(leaf) => self.leaf(leaf).await,
                Node::Group(g) => self.group(g).await,
            }
        })
    }

    async fn group(&mut self, g: &Group) -> Answer {
        match g.mode {
            Mode::Single => self.node(&g.children[0]).await,
            Mode::Fallback => self.fallback(g).await,
            Mode::Loadbalance => self.loadbalance(g).await,
            Mode::Conditional => {
                let params = match self.req.view.params() {
                    Ok(p) => p,
                    Err(e) => return failed(e),
                };
                // The query context borrows the one parse of the body (no copy of the tree).
                let ctx = QueryContext {
                    metadata: self.req.metadata,
                    params,
                    pathname: self.req.pathname,
                };
                match select::conditional(g, &ctx) {
                    Some(i) => self.node(&g.children[i]).await,
                    None => failed(GatewayError::NoRouteMatched(g.path.clone())),
                }
            }
        }
    }

    /// One weighted pick among the targets whose circuit is not open, as Portkey does; a pick
    /// that was not sent (its circuit turned out open) or whose retries the budget refused
    /// moves on to another pick, so a spent budget never fails a request that another target
    /// could serve. Any other failure is the answer.
    async fn loadbalance(&mut self, g: &Group) -> Answer {
        let mut usable: Vec<bool> = g.children.iter().map(|c| !self.is_open(c)).collect();
        let mut last: Option<Answer> = None;
        while let Some(i) = select::weighted(&g.weights, &usable, rand::random::<f64>()) {
            let answer = self.node(&g.children[i]).await;
            if !(answer.budget_exhausted || answer.skipped) {
                if let Some(prev) = last.take() {
                    self.dispose(prev.outcome).await;
                }
                return answer;
            }
            usable[i] = false;
            if let Some(prev) = last.replace(answer) {
                self.dispose(prev.outcome).await;
            }
        }
        last.unwrap_or_else(|| {
            failed(GatewayError::CircuitOpen(format!(
                "every target of {}",
                g.path
            )))
        })
    }

    async fn fallback(&mut self, g: &Group) -> Answer {
        let mut last: Option<Answer> = None;
        for child in &g.children {
            if self.is_open(child) {
                if last.is_none() {
                    last = Some(failed(GatewayError::CircuitOpen(
                        node_path(child).to_string(),
                    )));
                }
                continue;
            }
            let answer = self.node(child).await;
            let status = answer.outcome.status();
            let good = match &g.on_status_codes {
                Some(codes) => !codes.contains(&status),
                None => (200..300).contains(&status),
            };
            let stops = matches!(&answer.outcome, Outcome::Failed(e) if !e.is_upstream());
            if good || stops {
                if let Some(prev) = last.take() {
                    self.dispose(prev.outcome).await;
                }
                return answer;
            }
            match &mut last {
                Some(prev) if answer.skipped => {
                    prev.budget_exhausted |= answer.budget_exhausted;
                }
                _ => {
                    if let Some(prev) = last.replace(answer) {
                        self.dispose(prev.outcome).await;
                    }
                }
            }
        }
        last.unwrap_or_else(|| failed(GatewayError::CircuitOpen(g.path.clone())))
    }

    /// Whether a child is a leaf whose circuit is open (skipped by fallback and load balancing).
    fn is_open(&self, node: &Node) -> bool {
        let Node::Leaf(leaf) = node else {
            return false;
        };
        let Some(spec) = leaf
            .breaker
            .as_ref()
            .or(self.state.default_breaker.as_ref())
        else {
            return false;
        };
        let model = leaf.model(self.req.view.model.as_deref());
        Target::from_leaf(self.state.resolver(), leaf, self.req.headers).is_ok_and(|t| {
            let circuit = circuit_key(&t.resource(model), spec);
            self.state.breakers.is_open(&circuit)
        })
    }

    async fn leaf(&mut self, leaf: &Leaf) -> Answer {
        let path = Some(leaf.path.clone()).filter(|p| !p.is_empty());
        let target = match Target::from_leaf(self.state.resolver(), leaf, self.req.headers) {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
        let key = target.key();
        let provider = target.provider.slug().to_string();
        let view = self.req.view;
        // Budgets and breakers count sends per resource (target, model, credential): a
        // fallback to another model on the same provider is a first send, not a retry.
        let model = leaf.model(view.model.as_deref());
        let resource = target.resource(model);
        let hide_usage =
            view.stream && target.provider.stream_usage_for(&target.options) && !view.wants_usage;
        let body = match view.body_for(leaf.override_params.as_deref(), hide_usage) {
            Ok(b) => b,
            Err(e) => return failed(e),
        };
        // Guardrails: the target's before-request hooks may deny (446, the provider is never
        // called) or rewrite the body. Boxed, and only for a target with hooks: the hooks'
        // future is large, and inline it would grow (and be copied with) every request's walk.
        use crate::pipeline::guard::{Before, LeafGuard};
        let (guard, body) = if leaf.hooks.is_empty() {
            (LeafGuard::default(), body)
        } else {
            let slug = target.provider.slug();
            let log = &mut self.guardrails;
            match Box::pin(LeafGuard::before(
                self.state, self.req, leaf, slug, hide_usage, body, log,
            ))
            .await
            {
                Ok(Before::Send(guard, body)) => (guard, body),
                Ok(Before::Deny(local)) => return denied(local, &target, path),
                Err(e) => return failed(e),
            }
        };
        // The target's own cache config, credential and body after overrides and any
        // before-request mutator (see `cache/mod.rs`). Looked up after the before-request
        // hooks, as Portkey does: a denied request never reads the cache.
        let embedder = super::embed::Embedding {
            state: self.state,
            req: self.req,
        };
        let asked = crate::cache::Asked {
            op: self.req.op,
            client_headers: self.req.client_headers,
            forward_headers: &self.req.headers.forward_headers,
            query: self.req.query,
            strict: self.req.headers.strict_open_ai_compliance.unwrap_or(true),
        };
        let cache = match (self.state.cache)
            .lookup(&embedder, leaf, &asked, &target, &body, &mut self.embedding)
            .await
        {
            crate::cache::Lookup::Fetch(note) => note,
            crate::cache::Lookup::Hit(entry, note) => {
                // The target's output guardrails judge a cached answer as they would a live
                // one (it was stored by a request whose hooks never saw it): a whole answer
                // here, a stream as it is replayed. Boxed like the live answer's hooks.
                let outcome = if guard.is_active() {
                    let log = &mut self.guardrails;
                    let (state, req) = (self.state, self.req);
                    Box::pin(guard.after_cached(state, req, &provider, entry, log)).await
                } else {
                    Outcome::Cached(entry)
                };
                return Answer {
                    outcome,
                    adapter: Some(target.provider.clone()),
                    leaf_path: path,
                    guard: guard.for_stream(self.req, &provider),
                    provider: Some(provider),
                    retry_count: Retries::Made(0),
                    budget_exhausted: false,
                    skipped: false,
                    hide_usage,
                    cache: note,
                };
            }
        };
        let breaker = leaf
            .breaker
            .as_ref()
            .or(self.state.default_breaker.as_ref());
        let circuit = breaker.map(|spec| circuit_key(&resource, spec));
        let base = Duration::from_millis(self.state.settings.retry.backoff_base_ms);
        let adapter = target.provider.clone();
        let req = self.req;
        let answer = |outcome, retry_count, budget_exhausted, skipped| Answer {
            outcome,
            adapter: Some(adapter.clone()),
            leaf_path: path.clone(),
            provider: Some(provider.clone()),
            retry_count,
            budget_exhausted,
            skipped,
            hide_usage,
            guard: guard.for_stream(req, &provider),
            cache: cache.clone(),
        };
        let kind = if self.attempts.is_empty() {
            AttemptKind::First
        } else {
            AttemptKind::Fallback
        };
        // A fallback landing on a resource this request already tried is an extra send.
        if !self.admit_send(&resource) {
            self.skip(&leaf.path, &provider, key, kind, "retry_budget_exhausted");
            let e = GatewayError::RetryBudgetExhausted(key.to_string());
            return answer(Outcome::Failed(e), Retries::Made(0), true, true);
        }
        let mut n: u32 = 0;
        loop {
            let kind = if n > 0 { AttemptKind::Retry } else { kind };
            if circuit
                .as_deref()
                .is_some_and(|c| self.state.breakers.admit(c) == Admit::No)
            {
                self.skip(&leaf.path, &provider, key, kind, "circuit_open");
                let e = GatewayError::CircuitOpen(key.to_string());
                return answer(Outcome::Failed(e), Retries::Made(n), false, n == 0);
            }
            let started = Instant::now();
            let mut outcome = self.send(&target, &resource, leaf, body.clone()).await;
            if guard.is_active() {
                // After-request hooks, per attempt: their 446/246 may be retried.
                let log = &mut self.guardrails;
                let (state, req) = (self.state, self.req);
                outcome = Box::pin(
                    guard.after(state, req, &adapter, &provider, hide_usage, outcome, log),
                )
                .await;
            }
            let status = outcome.status();
            let retriable = match &outcome {
                Outcome::Response(_) | Outcome::Local(_) => leaf.retry.retries_status(status),
                Outcome::Cached(_) => false,
                Outcome::Failed(e) => e.is_upstream(),
            };
            if let (Some(spec), Some(circuit)) = (breaker, circuit.as_deref()) {
                let failed = match &outcome {
                    Outcome::Response(_) | Outcome::Local(_) | Outcome::Cached(_) => {
                        spec.fails_on(status)
                    }
                    Outcome::Failed(e) => e.is_upstream(),
                };
                let state = self.state.breakers.record(circuit, spec, failed);
                // Bounded: a custom host from the request is part of the key, and the model
                // label has the same bound as every other model label.
                let m = &self.state.metrics;
                let model = model.unwrap_or("");
                let priced = (self.state.pricing).price(&provider, model).is_some();
                m.circuit_state
                    .with_label_values(&[m.target_label(key), m.model_label(model, priced)])
                    .set(state.gauge());
            }
            let err = match &outcome {
                Outcome::Failed(e) => Err(e.kind()),
                Outcome::Response(_) | Outcome::Local(_) | Outcome::Cached(_) => Ok(()),
            };
            self.record(
                &leaf.path,
                &provider,
                key,
                kind,
                Some(status),
                err,
                started.elapsed(),
            );
            if !retriable || leaf.retry.attempts == 0 {
                return answer(outcome, Retries::Made(n), false, false);
            }
            if n >= leaf.retry.attempts {
                return answer(outcome, Retries::RanOut, false, false);
            }
            let Some(wait) = self.retry_wait(&leaf.retry, &outcome, n + 1, base) else {
                return answer(outcome, Retries::RanOut, false, false);
            };
            if !self.admit_send(&resource) {
                tracing::warn!(target: "portgate::routing", target = %key, "retry budget exhausted");
                self.skip(
                    &leaf.path,
                    &provider,
                    key,
                    AttemptKind::Retry,
                    "retry_budget_exhausted",
                );
                return answer(outcome, Retries::Made(n), true, false);
            }
            self.dispose(outcome).await;
            tokio::time::sleep(wait).await;
            self.waited += wait;
            n += 1;
        }
    }

    /// Counts a send to `resource` against the retry budget: a first send to a resource
    /// deposits, an extra one (a retry, or a fallback to a resource already tried) withdraws;
    /// `false` when the budget is spent.
    fn admit_send(&mut self, resource: &str) -> bool {
        if self.tried.iter().any(|k| k == resource) {
            self.state.budget.withdraw(resource)
        } else {
            self.state.budget.deposit(resource);
            self.tried.push(resource.to_string());
            true
        }
    }

    /// The wait before retry `n`: the provider's Retry-After for a 429 when the config asks for
    /// it (`None` when it would overrun the 60 s budget), else the backoff.
    fn retry_wait(
        &mut self,
        policy: &RetryPolicy,
        outcome: &Outcome,
        n: u32,
        base: Duration,
    ) -> Option<Duration> {
        let wait = self.wait_for(policy, outcome, n, base)?;
        // A retry that could only start after the deadline is not made: the last answer is.
        (Instant::now() + wait < self.deadline).then_some(wait)
    }

    fn wait_for(
        &mut self,
        policy: &RetryPolicy,
        outcome: &Outcome,
        n: u32,
        base: Duration,
    ) -> Option<Duration> {
        if let (true, Outcome::Response(r)) = (policy.use_retry_after_header, outcome) {
            if r.status() == 429 {
                if let Some(wait) = r.header().and_then(|h| retry_after(&h.headers)) {
                    let spent = self.retry_after_spent.saturating_add(wait);
                    if spent > RETRY_AFTER_BUDGET {
                        return None;
                    }
                    self.retry_after_spent = spent;
                    return Some(wait);
                }
            }
        }
        Some(policy.backoff(n, base))
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        path: &str,
        provider: &str,
        target: &str,
        kind: AttemptKind,
        status: Option<u16>,
        result: Result<(), &'static str>,
        duration: Duration,
    ) {
        self.attempts.push(AttemptRecord {
            path: Some(path.to_string()).filter(|p| !p.is_empty()),
            provider: provider.to_string(),
            target: target.to_string(),
            kind,
            status: status.unwrap_or(0),
            error: result.err(),
            duration,
        });
    }

    /// Records a send that did not happen (breaker open, budget spent).
    fn skip(
        &mut self,
        path: &str,
        provider: &str,
        target: &str,
        kind: AttemptKind,
        why: &'static str,
    ) {
        self.record(path, provider, target, kind, None, Err(why), Duration::ZERO);
    }

    async fn dispose(&self, outcome: Outcome) {
        if let Outcome::Response(r) = outcome {
            self.state.dispatcher.discard(*r).await;
        }
    }

    /// One send: build the upstream request for the target, wait for the answer within the
    /// request timeout, and for streams (optionally) for the first chunk.
    async fn send(&self, target: &Target, resource: &str, leaf: &Leaf, body: Bytes) -> Outcome {
        let span = tracing::debug_span!(
            target: "portgate::span",
            "gen_ai.attempt",
            gen_ai.provider.name = target.provider.slug(),
            server.address = %target.upstream.authority(),
            config.path = %leaf.path,
        );
        // Awaited in place unless a subscriber wants the span: a future wrapped by value is
        // laid out twice in the caller's state (rust-lang/rust#62958) and these states nest, so
        // an always-on wrapper doubled the request future at every level (170 KB, copied when
        // boxed) for a span nobody records.
        let sent = if span.is_disabled() {
            self.try_send(target, resource, leaf, body).await
        } else {
            self.try_send(target, resource, leaf, body)
                .instrument(span)
                .await
        };
        match sent {
            Ok(r) => Outcome::Response(Box::new(r)),
            Err(e) => Outcome::Failed(e),
        }
    }

    async fn try_send(
        &self,
        target: &Target,
        resource: &str,
        leaf: &Leaf,
        body: Bytes,
    ) -> Result<Inbound, GatewayError> {
        let req = self.req;
        let forward = leaf
            .forward_headers
            .as_ref()
            .unwrap_or(&req.headers.forward_headers);
        let built = super::request::provider_request(
            target,
            body,
            &super::request::Carried {
                op: req.op,
                query: req.query,
                stream: req.view.stream,
                client_headers: req.client_headers,
                forward,
                traceparent: req.traceparent.as_deref(),
                hop: req.hop,
            },
        )?;
        // A resend after a stale pooled connection draws on the resource's retry budget.
        let budget = &self.state.budget;
        let may_resend = || budget.withdraw(resource);
        let out = Outbound {
            provider: target.provider.slug(),
            upstream: &target.upstream,
            public_only: target.public_only,
            method: "POST",
            path: &built.path,
            headers: &built.headers,
            body: built.body,
            may_resend: &may_resend,
        };
        let timeout = req.headers.request_timeout_ms.or(leaf.request_timeout_ms);
        let dispatcher = &self.state.dispatcher;
        let mut inbound = match timeout {
            Some(ms) => tokio::time::timeout(Duration::from_millis(ms), dispatcher.send(&out))
                .await
                .map_err(|_| GatewayError::RequestTimeout(ms))??,
            None => dispatcher.send(&out).await?,
        };
        let status = inbound.status();
        let sse = inbound
            .header()
            .and_then(|h| h.headers.get(http::header::CONTENT_TYPE))
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if !req.view.stream && !sse && (200..300).contains(&status) {
            // A whole answer is small: read it within the attempt, so a cut body is a failed
            // attempt (retried, fallen back from, or a clean 502), never a cut response.
            if let Err(e) = inbound.read_ahead(READ_AHEAD_LIMIT).await {
                inbound.abort();
                return Err(e);
            }
        }
        let ttft = self.state.settings.upstream.first_token_timeout_ms;
        if req.view.stream && ttft > 0 && (200..300).contains(&inbound.status()) {
            match tokio::time::timeout(Duration::from_millis(ttft), inbound.peek_chunk()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    inbound.abort();
                    return Err(e);
                }
                Err(_) => {
                    inbound.abort();
                    return Err(GatewayError::FirstTokenTimeout(ttft));
                }
            }
        }
        Ok(inbound)
    }
}

fn failed(e: GatewayError) -> Answer {
    Answer {
        outcome: Outcome::Failed(e),
        adapter: None,
        leaf_path: None,
        provider: None,
        retry_count: Retries::Made(0),
        budget_exhausted: false,
        skipped: false,
        hide_usage: false,
        guard: None,
        cache: crate::cache::CacheDecision::DISABLED,
    }
}

/// A target's before-request guardrails denied the request: its 446, the provider not called.
fn denied(
    local: crate::guardrails::results::Local,
    target: &Target,
    path: Option<String>,
) -> Answer {
    Answer {
        outcome: Outcome::Local(Box::new(local)),
        adapter: Some(target.provider.clone()),
        leaf_path: path,
        provider: Some(target.provider.slug().to_string()),
        retry_count: Retries::Made(0),
        budget_exhausted: false,
        skipped: false,
        hide_usage: false,
        guard: None,
        cache: crate::cache::CacheDecision::DISABLED,
    }
}

fn node_path(n: &Node) -> &str {
    match n {
        Node::Leaf(l) => &l.path,
        Node::Group(g) => &g.path,
    }
}

impl Leaf {
    /// The implicit leaf of a request without a config: its headers name the target, no
    /// retries, no overrides.
    pub(crate) fn from_request() -> Leaf {
        Leaf {
            path: String::new(),
            provider: None,
            api_key: None,
            virtual_key: None,
            override_params: None,
            retry: RetryPolicy::default(),
            request_timeout_ms: None,
            custom_host: None,
            custom_host_from_request: false,
            forward_headers: None,
            cache: None,
            breaker: None,
            hooks: Default::default(),
            options: Default::default(),
        }
    }
}
