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
use crate::routing::target::Target;
use crate::routing::{select, sticky};
use crate::state::State;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tracing::Instrument;

pub(crate) use super::answer::{Answer, AttemptKind, AttemptRecord, Outcome, Retries};

mod leaf;
mod send;

use send::*;

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

    /// One weighted pick among the targets whose circuit is not open, as Portkey does (with
    /// `sticky`, the rendezvous hash of the request's sticky values instead); a pick
    /// that was not sent (its circuit turned out open) or whose retries the budget refused
    /// moves on to another pick, so a spent budget never fails a request that another target
    /// could serve. Any other failure is the answer.
    async fn loadbalance(&mut self, g: &Group) -> Answer {
        let mut usable: Vec<bool> = g.children.iter().map(|c| !self.is_open(c)).collect();
        let mut last: Option<Answer> = None;
        // Sticky: the same key picks the same target among those still usable, on every
        // replica; a later pick (the first was skipped) is the key's next target.
        let sticky = g.sticky.as_ref().and_then(|s| {
            let params = if s.reads_params {
                self.req.view.params().ok()
            } else {
                None
            };
            let key = sticky::key(
                &s.fields,
                self.req.metadata,
                params,
                self.req.client_headers,
            )?;
            Some((s, key))
        });
        while let Some(i) = match &sticky {
            Some((s, key)) => sticky::pick(&s.ids, &g.weights, &usable, key),
            None => select::weighted(&g.weights, &usable, rand::random::<f64>()),
        } {
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
