//! Sending one attempt and accounting for it: the retry budget, the waits between retries,
//! the attempt records, and the upstream exchange itself.

use super::*;

impl Walk<'_> {
    /// Counts a send to `resource` against the retry budget: a first send to a resource
    /// deposits, an extra one (a retry, or a fallback to a resource already tried) withdraws;
    /// `false` when the budget is spent.
    pub(super) fn admit_send(&mut self, resource: &str) -> bool {
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
    pub(super) fn retry_wait(
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

    pub(super) fn wait_for(
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
    pub(super) fn record(
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
    pub(super) fn skip(
        &mut self,
        path: &str,
        provider: &str,
        target: &str,
        kind: AttemptKind,
        why: &'static str,
    ) {
        self.record(path, provider, target, kind, None, Err(why), Duration::ZERO);
    }

    pub(super) async fn dispose(&self, outcome: Outcome) {
        if let Outcome::Response(r) = outcome {
            self.state.dispatcher.discard(*r).await;
        }
    }

    /// One send: build the upstream request for the target, wait for the answer within the
    /// request timeout, and for streams (optionally) for the first chunk.
    pub(super) async fn send(
        &self,
        target: &Target,
        resource: &str,
        leaf: &Leaf,
        body: Bytes,
    ) -> Outcome {
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

    pub(super) async fn try_send(
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
        let built = crate::pipeline::request::provider_request(
            target,
            body,
            &crate::pipeline::request::Carried {
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

pub(super) fn failed(e: GatewayError) -> Answer {
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
        charges: Default::default(),
    }
}

/// A target's before-request guardrails denied the request: its 446, the provider not called.
pub(super) fn denied(
    local: crate::types::held::HeldAnswer,
    target: &Target,
    path: Option<String>,
) -> Answer {
    Answer {
        outcome: Outcome::Held(Box::new(local)),
        adapter: Some(target.provider.clone()),
        leaf_path: path,
        provider: Some(target.provider.slug().to_string()),
        retry_count: Retries::Made(0),
        budget_exhausted: false,
        skipped: false,
        hide_usage: false,
        guard: None,
        cache: crate::cache::CacheDecision::DISABLED,
        charges: Default::default(),
    }
}

/// A limit's refusal as the answer the client gets: its status and body, with `retry-after`.
pub(super) fn refusal(error: &GatewayError) -> crate::types::held::HeldAnswer {
    let mut headers = http::HeaderMap::new();
    if let Some(seconds) = error.retry_after() {
        headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
    }
    crate::types::held::HeldAnswer::json(error.status(), headers, error.body())
}

impl Walk<'_> {
    /// Admits the request against the limits of the target's virtual key.
    pub(super) async fn admit_virtual_key(
        &self,
        scope: crate::limits::Scope,
    ) -> Result<crate::limits::Charges, crate::limits::Refusal> {
        let limiter = &self.state.limiter;
        let admitted = limiter
            .admit(std::slice::from_ref(&scope), crate::types::time::unix_ms())
            .await;
        if let Err(refused) = &admitted {
            self.state.metrics.limit_refused(refused.labels());
        }
        admitted
    }
}
