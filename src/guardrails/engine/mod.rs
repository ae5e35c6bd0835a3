//! Runs hooks (Portkey's `HooksManager`): the hooks of a list in parallel; a
//! hook's checks in parallel unless it is `sequential` or a mutator (then one after the other,
//! each seeing the previous one's rewrite). A check that errors passes unless `failOnError`;
//! a hook's verdict is the AND of its checks; the list denies when a failing hook has `deny`.
//! Results have the hook-result shape of the reference, field for field.

use super::checks::{CheckOutcome, Ctx, Env, Req, Resp, StreamMode, Transform};
use super::write::{self, Data, Stamp};
use super::{CheckSpec, Event, Hook, HookType};
use crate::providers::Operation;
use serde::Serialize;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

mod report;

pub(crate) use report::{CheckError, CheckResult, FeedbackOut, HookResult, ListRun, Ran, RanTail};

/// Polls futures together until all are done (checks and hooks in parallel on one task: the
/// gateway's futures borrow the request, so they are not spawned).
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

impl HookResult {
    pub(crate) fn verdict(&self) -> bool {
        self.ran.as_ref().map_or(true, |r| r.verdict)
    }

    pub(crate) fn denies(&self) -> bool {
        self.ran.as_ref().is_some_and(|r| r.deny)
    }
}

/// The input of a list of hooks.
pub(crate) struct Input<'a> {
    pub event: Event,
    pub op: Operation,
    pub request: Req<'a>,
    pub response: Option<Resp<'a>>,
    pub metadata: &'a Map<String, Value>,
    pub provider: &'a str,
    pub stream: bool,
    /// `None` on streams: checks that reach the network do not run there.
    pub env: Option<&'a Env<'a>>,
    pub mode: RunMode,
    /// Bytes of the document the checks examine: past [`OFFLOAD_BYTES`], checks that run on
    /// the CPU are run where they cannot hold up other requests.
    pub size: usize,
    /// Time the list's checks that run on the CPU may take (`limits.guardrails.check_time_budget_ms`).
    pub budget: Duration,
    /// The hook context webhook and log checks post, built once for the list.
    pub posted: std::sync::OnceLock<bytes::Bytes>,
    /// Mid-stream: the counts of the whole text, the answer being only its newest window.
    pub counted: Option<super::checks::text::Counted>,
}

/// Documents from this size on have their checks run off the async worker (see [`offload`]).
pub(crate) const OFFLOAD_BYTES: usize = 256 * 1024;

/// Runs `check` (work for the CPU only) where it cannot stall other requests when `heavy`:
/// on the multi-threaded runtime the worker first hands its other tasks to another thread
/// (`block_in_place`); elsewhere (a current-thread runtime in tests) it runs in place.
fn offload<R>(heavy: bool, check: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    // The runtime is asked only for a heavy document: most checks run in place at no cost.
    if heavy
        && Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
    {
        tokio::task::block_in_place(check)
    } else {
        check()
    }
}

/// When a list's checks that run on the CPU must have started, and what a check that comes
/// later answers.
#[derive(Clone, Copy)]
struct Budget {
    deadline: Instant,
    limit: Duration,
    heavy: bool,
}

impl Budget {
    fn of(input: &Input<'_>) -> Budget {
        Budget {
            deadline: Instant::now() + input.budget,
            limit: input.budget,
            heavy: input.size >= OFFLOAD_BYTES,
        }
    }

    /// The outcome of a check that may not start `now` any more, if the budget is spent.
    fn spent(&self, now: Instant) -> Option<CheckOutcome> {
        (now >= self.deadline).then(|| {
            CheckOutcome::error(
                format!(
                    "not run: the list's checks used up their time budget of {} ms \
                     (limits.guardrails.check_time_budget_ms)",
                    millis(self.limit)
                ),
                Value::Null,
            )
        })
    }
}

/// Which checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunMode {
    /// Every enabled check, fully.
    Full,
    /// Mid-stream: the incremental checks, and only a final failure counts.
    Partial,
    /// At a stream's end: every check that can run on a stream.
    StreamEnd,
}

fn skipped(hook: &Hook, op: Operation, event: Event) -> bool {
    hook.is_async
        || (op == Operation::Embeddings
            && (event == Event::After || hook.kind == HookType::Mutator))
}

/// Whether a hook has a check that waits on the network (see [`Check::is_remote`]).
///
/// [`Check::is_remote`]: super::checks::Check::is_remote
fn waits(hook: &Hook) -> bool {
    hook.checks.iter().any(|c| c.enabled && c.check.is_remote())
}

/// Runs a list of hooks.
pub(crate) async fn run(hooks: &[Arc<Hook>], input: &Input<'_>) -> ListRun {
    let mut out = ListRun {
        results: Vec::with_capacity(hooks.len()),
        ..ListRun::default()
    };
    let mut take = |(result, (request, response)): (HookResult, Rewrites)| {
        out.deny |= result.denies();
        if request.is_some() {
            out.request = request;
        }
        if response.is_some() {
            out.response = response;
        }
        out.results.push(result);
    };
    let budget = Budget::of(input);
    if hooks.iter().any(|h| waits(h)) {
        for run in join_all(hooks.iter().map(|h| run_hook(h, input, budget)).collect()).await {
            take(run);
        }
    } else {
        // Hooks that never wait finish on their first poll, in order: joined, they would end
        // the same way, only with a boxed future per hook.
        for h in hooks {
            take(run_hook(h, input, budget).await);
        }
    }
    out
}

type Rewrites = (Option<Map<String, Value>>, Option<Value>);

async fn run_hook(hook: &Hook, input: &Input<'_>, budget: Budget) -> (HookResult, Rewrites) {
    if skipped(hook, input.op, input.event) {
        let r = HookResult {
            id: hook.id.clone(),
            kind: hook.kind.name(),
            ran: None,
            skipped: Some(true),
            tail: None,
            label: hook.label.clone(),
        };
        return (r, (None, None));
    }
    let clock = Clock::start();
    let enabled = || hook.checks.iter().filter(|c| c.enabled);
    // The request as a mutator rewrote it.
    let mut request: Option<Map<String, Value>> = None;
    // The answer as a mutator rewrote it.
    let mut response: Option<Value> = None;
    let mut checks = Vec::with_capacity(hook.checks.len());
    let apply = |t: Transform,
                 request: &mut Option<Map<String, Value>>,
                 response: &mut Option<Value>| match t {
        Transform::Request(j) => *request = Some(j),
        Transform::Response(j) => *response = Some(j),
    };
    if hook.sequential || hook.kind == HookType::Mutator {
        for spec in enabled() {
            let ran = {
                let now = request.as_ref().map_or(input.request, Req::Json);
                let answer = response.as_ref().map(Resp::Json).or(input.response);
                // A rewritten request or answer posts its own hook context.
                let own = std::sync::OnceLock::new();
                let posted = if request.is_some() || response.is_some() {
                    &own
                } else {
                    &input.posted
                };
                let ctx = ctx_of(input, now, answer, posted);
                run_check(spec, &ctx, input.mode, budget).await
            };
            let Some((result, transform)) = ran else {
                continue;
            };
            checks.push(result);
            if let Some(t) = transform {
                apply(t, &mut request, &mut response);
            }
        }
    } else if !waits(hook) {
        // Checks that never wait run in place, in order, each timed from where the one before
        // ended (one clock read per check).
        let ctx = ctx_of(input, input.request, input.response, &input.posted);
        let mut at = clock.started;
        for spec in enabled() {
            let Some((result, transform)) =
                run_check_now(spec, &ctx, input.mode, &clock, &mut at, budget)
            else {
                continue;
            };
            checks.push(result);
            if let Some(t) = transform {
                apply(t, &mut request, &mut response);
            }
        }
    } else {
        let ctx = ctx_of(input, input.request, input.response, &input.posted);
        // Checks that wait on the network run together; the others run in place, in order
        // (they never wait, so running them as futures would only add allocations).
        let enabled: Vec<&CheckSpec> = enabled().collect();
        let mut ran = Vec::with_capacity(enabled.len());
        let mut remote = Vec::new();
        let mut at = Instant::now();
        for (i, s) in enabled.iter().enumerate() {
            if s.check.is_remote() {
                remote.push(i);
                ran.push(None);
            } else {
                ran.push(run_check_now(s, &ctx, input.mode, &clock, &mut at, budget));
            }
        }
        if !remote.is_empty() {
            let waited = join_all(
                remote
                    .iter()
                    .filter_map(|i| enabled.get(*i))
                    .map(|s| run_check(s, &ctx, input.mode, budget))
                    .collect(),
            )
            .await;
            for (i, r) in remote.into_iter().zip(waited) {
                if let Some(slot) = ran.get_mut(i) {
                    *slot = r;
                }
            }
        }
        for (result, transform) in ran.into_iter().flatten() {
            checks.push(result);
            if let Some(t) = transform {
                apply(t, &mut request, &mut response);
            }
        }
    }
    let verdict = checks
        .iter()
        .all(|c| c.verdict || (c.error.is_some() && !c.fail_on_error));
    let feedback = feedback_of(hook, &checks);
    let result = HookResult {
        id: hook.id.clone(),
        kind: hook.kind.name(),
        ran: Some(Ran {
            verdict,
            deny: hook.deny && !verdict,
            is_async: hook.is_async,
            transformed: checks.iter().any(|c| c.transformed),
        }),
        skipped: None,
        tail: Some(RanTail {
            execution_time: millis(clock.started.elapsed()),
            created_at: clock.stamp,
            feedback,
            checks,
        }),
        label: hook.label.clone(),
    };
    (result, (request, response))
}

/// A hook's start: the monotonic instant its times are measured from and the wall-clock
/// time of that instant, from which the `created_at` of checks run in place are derived
/// (instead of reading the wall clock again for each).
struct Clock {
    started: Instant,
    wall: SystemTime,
    stamp: Stamp,
}

impl Clock {
    fn start() -> Clock {
        let wall = SystemTime::now();
        Clock {
            started: Instant::now(),
            wall,
            stamp: Stamp::at(wall),
        }
    }

    /// The `created_at` of something that started at `at`.
    fn stamp_at(&self, at: Instant) -> Stamp {
        match self
            .wall
            .checked_add(at.saturating_duration_since(self.started))
        {
            Some(t) => Stamp::at(t),
            None => self.stamp,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn ctx_of<'a>(
    input: &'a Input<'a>,
    request: Req<'a>,
    response: Option<Resp<'a>>,
    posted: &'a std::sync::OnceLock<bytes::Bytes>,
) -> Ctx<'a> {
    Ctx {
        event: input.event,
        op: input.op,
        request,
        response,
        metadata: input.metadata,
        provider: input.provider,
        stream: input.stream,
        env: input.env,
        seen: Default::default(),
        posted,
        counted: input.counted,
    }
}

/// How a check runs in a mode, if it runs at all.
enum Pass {
    Whole,
    /// Mid-stream, on the text so far.
    Partial,
}

fn pass_of(spec: &CheckSpec, mode: RunMode) -> Option<Pass> {
    match (mode, spec.check.stream_mode()) {
        (RunMode::Full, _) | (RunMode::StreamEnd, StreamMode::Incremental | StreamMode::AtEnd) => {
            Some(Pass::Whole)
        }
        (RunMode::Partial, StreamMode::Incremental) => Some(Pass::Partial),
        _ => None,
    }
}

async fn run_check(
    spec: &CheckSpec,
    ctx: &Ctx<'_>,
    mode: RunMode,
    budget: Budget,
) -> Option<(CheckResult, Option<Transform>)> {
    let started = Instant::now();
    let created_at = Stamp::now();
    let pass = pass_of(spec, mode)?;
    let out: CheckOutcome = if spec.check.is_remote() {
        // Bounded by its own timeout, not by the CPU budget.
        spec.check.run(ctx).await
    } else {
        match (budget.spent(started), pass) {
            (Some(spent), Pass::Whole) => spent,
            // Mid-stream, the check waits for the stream's end instead.
            (Some(_), Pass::Partial) => return None,
            (None, Pass::Whole) => offload(budget.heavy, || spec.check.run_local(ctx)),
            (None, Pass::Partial) => offload(budget.heavy, || spec.check.run_partial(ctx))?,
        }
    };
    Some(check_result(spec, started.elapsed(), created_at, out))
}

/// [`run_check`] for a check that does not wait on the network, started at `at` (where the
/// check before it ended); `at` is moved to where this one ends.
fn run_check_now(
    spec: &CheckSpec,
    ctx: &Ctx<'_>,
    mode: RunMode,
    clock: &Clock,
    at: &mut Instant,
    budget: Budget,
) -> Option<(CheckResult, Option<Transform>)> {
    let pass = pass_of(spec, mode)?;
    let started = *at;
    let out: CheckOutcome = match (budget.spent(started), pass) {
        (Some(spent), Pass::Whole) => spent,
        (Some(_), Pass::Partial) => return None,
        (None, Pass::Whole) => offload(budget.heavy, || spec.check.run_local(ctx)),
        (None, Pass::Partial) => offload(budget.heavy, || spec.check.run_partial(ctx))?,
    };
    *at = Instant::now();
    let elapsed = at.saturating_duration_since(started);
    Some(check_result(spec, elapsed, clock.stamp_at(started), out))
}

fn check_result(
    spec: &CheckSpec,
    elapsed: Duration,
    created_at: Stamp,
    out: CheckOutcome,
) -> (CheckResult, Option<Transform>) {
    let result = CheckResult {
        id: spec.id.clone(),
        verdict: out.verdict,
        data: out.data,
        error: out.error.map(|message| CheckError {
            name: "Error",
            message,
        }),
        execution_time: millis(elapsed),
        created_at,
        transformed: out.transform.is_some(),
        fail_on_error: spec.fail_on_error,
        seconds: elapsed.as_secs_f64(),
        handles: spec.handles.clone(),
    };
    (result, out.transform)
}

/// Portkey's `createFeedbackObject`: `on_success` when every check passed or errored, else
/// `on_fail`, with the check ids by outcome as comma-joined strings.
fn feedback_of(hook: &Hook, checks: &[CheckResult]) -> Option<FeedbackOut> {
    let ok = checks.iter().all(|c| c.verdict || c.error.is_some());
    let spec = if ok {
        hook.on_success.as_ref()
    } else {
        hook.on_fail.as_ref()
    }?;
    let ids = |f: &dyn Fn(&CheckResult) -> bool| {
        checks
            .iter()
            .filter(|c| f(c))
            .map(|c| &*c.id)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut metadata = spec.metadata.clone();
    metadata.insert("successfulChecks".into(), Value::from(ids(&|c| c.verdict)));
    metadata.insert(
        "failedChecks".into(),
        Value::from(ids(&|c| !c.verdict && c.error.is_none())),
    );
    metadata.insert(
        "erroredChecks".into(),
        Value::from(ids(&|c| !c.verdict && c.error.is_some())),
    );
    Some(FeedbackOut {
        value: spec.value,
        weight: spec.weight,
        metadata,
    })
}
