//! One target's attempts: its before-request guardrails, the cache, the breaker and the
//! retry budget, each send and its retries, the after-request guardrails.

use super::*;

impl Walk<'_> {
    pub(super) async fn leaf(&mut self, leaf: &Leaf) -> Answer {
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
        // A Responses request has no `stream_options`: its layer asks a chat stream for usage.
        let hide_usage = view.stream
            && self.req.op != crate::providers::Operation::Responses
            && target.provider.stream_usage_for(&target.options)
            && !view.wants_usage;
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
        let embedder = crate::pipeline::embed::Embedding {
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
                    charges: Default::default(),
                };
            }
        };
        // The virtual key's rate limits and budgets, once per target (its retries are one
        // admission), after the cache: an answer from the cache is neither limited nor charged.
        // A refusal is this target's answer (429 or 412), which a fallback moves on from.
        // Boxed, and only for a key with limits: inline, the admission's future (a Redis round
        // trip) would size the walk's, which every request builds and copies.
        let scope =
            (target.virtual_key.as_deref()).and_then(|id| self.state.limiter.virtual_key(id));
        let admitted = match scope {
            Some(scope) => Box::pin(self.admit_virtual_key(scope)).await,
            None => Ok(Default::default()),
        };
        let charges = match admitted {
            Ok(charges) => charges,
            Err(refused) => {
                let kind = refused.error_kind();
                let error = refused.into_error();
                self.skip(&leaf.path, &provider, key, AttemptKind::First, kind);
                return Answer {
                    outcome: Outcome::Held(Box::new(super::send::refusal(&error))),
                    adapter: Some(target.provider.clone()),
                    leaf_path: path,
                    guard: None,
                    provider: Some(provider),
                    retry_count: Retries::Made(0),
                    budget_exhausted: false,
                    skipped: false,
                    hide_usage,
                    cache,
                    charges: Default::default(),
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
            charges: charges.clone(),
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
                Outcome::Response(_) | Outcome::Held(_) => leaf.retry.retries_status(status),
                Outcome::Cached(_) => false,
                Outcome::Failed(e) => e.is_upstream(),
            };
            if let (Some(spec), Some(circuit)) = (breaker, circuit.as_deref()) {
                let failed = match &outcome {
                    Outcome::Response(_) | Outcome::Held(_) | Outcome::Cached(_) => {
                        spec.fails_on(status)
                    }
                    Outcome::Failed(e) => e.is_upstream(),
                };
                let state = self.state.breakers.record(circuit, spec, failed);
                // Bounded: a custom host from the request is part of the key, and the model
                // label has the same bound as every other model label.
                let m = &self.state.metrics;
                let model = model.unwrap_or("");
                let priced = (self.state.pricing).is_priced(&provider, model);
                m.circuit_state
                    .with_label_values(&[m.target_label(key), m.model_label(model, priced)])
                    .set(state.gauge());
            }
            let err = match &outcome {
                Outcome::Failed(e) => Err(e.kind()),
                Outcome::Response(_) | Outcome::Held(_) | Outcome::Cached(_) => Ok(()),
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
}
