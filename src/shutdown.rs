//! Graceful shutdown that ends as soon as the last request is done.
//!
//! Pingora 0.9.1 on a graceful terminate (SIGTERM) tells every service to stop accepting, then
//! sleeps the whole `grace_period_seconds` with `thread::sleep` whatever is still in flight,
//! then stops the runtimes (which drops any task still running). An idle sidecar would wait the
//! full grace period on every rollout, and readiness would keep answering 200 while the
//! listener is already closed. So portgate drives the drain itself, in a
//! [`ShutdownSignalWatch`] placed in front of the real one:
//!
//! 1. the signal arrives (SIGTERM, or a test's graceful signal);
//! 2. `/readyz` answers 503 from now on (`/healthz` stays 200: the process is healthy, only
//!    leaving);
//! 3. the proxy listener stops accepting ([`StopAccepting`] hands the proxy service a shutdown
//!    watch portgate controls), idle keep-alive connections are closed by Pingora, and answers
//!    still being written no longer keep their connection open;
//! 4. the drain waits until `portgate_inflight_requests` is 0, at most `grace_period_seconds`
//!    (5 minutes by default: agent sessions stream for minutes); streams in flight finish
//!    normally meanwhile;
//! 5. at the deadline, SSE streams still open are ended by the gateway: each relay watches the
//!    dispatcher's cut signal beside its upstream read, writes the `ShuttingDown` error event and
//!    the body's clean end, and the drain waits up to [`STREAM_END`] for them to do so. Anything
//!    else still in flight (a non-streamed answer, a passthrough body) is cut when the process
//!    stops, as before: there is no in-band way to tell its client;
//! 6. the access log is flushed;
//! 7. the watch reports a fast shutdown to Pingora, which stops the runtimes at once (there is
//!    nothing left to wait for) and `Server::run` returns.
//!
//! A fast shutdown (SIGINT) and a graceful upgrade (SIGQUIT) are passed to Pingora unchanged.
//!
//! Known limit: a connection accepted in the last instant before the listener closed whose
//! request head has not been read yet is not counted in flight. The drain waits one poll
//! interval (10 ms) after closing the listener before it first looks, which gives such a
//! request time to be read; that is a heuristic, not a guarantee.

use crate::state::State;
use async_trait::async_trait;
#[cfg(unix)]
use pingora::server::ListenFds;
use pingora::server::{RuntimeOpts, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::Service;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the drain looks at the in-flight gauge (an atomic read).
const POLL: Duration = Duration::from_millis(10);
/// How long streams ended at the deadline get to write their error event and end.
const STREAM_END: Duration = Duration::from_secs(2);
/// The longest the final access-log flush may take before the process exits anyway.
const LOG_FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// What a graceful shutdown acts on: readiness, the proxy listener, the in-flight requests and
/// the access log.
pub(crate) struct Drain {
    ready: Arc<AtomicBool>,
    stop_accepting: watch::Sender<bool>,
    state: Arc<State>,
    grace: Duration,
}

impl Drain {
    /// `ready` is the flag `/readyz` answers from.
    pub(crate) fn new(ready: Arc<AtomicBool>, state: Arc<State>, grace: Duration) -> Drain {
        let (stop_accepting, _) = watch::channel(false);
        Drain {
            ready,
            stop_accepting,
            state,
            grace,
        }
    }

    /// Wraps the proxy service so that `run` can close its listener.
    pub(crate) fn guard<S: Service>(&self, service: S) -> StopAccepting<S> {
        StopAccepting {
            inner: service,
            stop: self.stop_accepting.subscribe(),
        }
    }

    /// Steps 2 to 5 of the module doc. Returns the requests still in flight when it gave up
    /// (0 when everything finished within the grace period).
    pub(crate) async fn run(&self) -> i64 {
        self.ready.store(false, Ordering::Release);
        let _ = self.stop_accepting.send(true);
        tracing::info!(
            grace_period_seconds = self.grace.as_secs(),
            "shutdown: not ready, listener closed, draining in-flight requests"
        );
        let started = Instant::now();
        let deadline = started + self.grace;
        let inflight = &self.state.metrics.inflight;
        let mut left = until_drained(inflight, deadline).await;
        if left > 0 {
            tracing::warn!(
                inflight = left,
                "shutdown: grace period over, ending the streams still open with an error event"
            );
            self.state.dispatcher.cut_streams();
            left = until_drained(inflight, Instant::now() + STREAM_END).await;
        }
        if left > 0 {
            tracing::warn!(
                inflight = left,
                "shutdown: grace period over, cutting the requests still in flight"
            );
        } else {
            tracing::info!(
                drained_ms = started.elapsed().as_millis() as u64,
                "shutdown: no request in flight"
            );
        }
        if !self.state.access_log.flush(LOG_FLUSH_LIMIT) {
            tracing::warn!("shutdown: access log not flushed in time");
        }
        if let Some(store) = &self.state.log_store {
            if !store.flush(LOG_FLUSH_LIMIT) {
                tracing::warn!("shutdown: log store not flushed in time");
            }
        }
        left
    }
}

/// Waits until nothing is in flight or the deadline passes; returns what is still in flight.
async fn until_drained(inflight: &prometheus::IntGauge, deadline: Instant) -> i64 {
    loop {
        tokio::time::sleep(POLL).await;
        let n = inflight.get();
        if n <= 0 || Instant::now() >= deadline {
            return n.max(0);
        }
    }
}

/// A Pingora service whose listeners stop accepting when either Pingora shuts down or the
/// drain starts, whichever comes first.
pub(crate) struct StopAccepting<S> {
    inner: S,
    stop: watch::Receiver<bool>,
}

/// Resolves once `rx` holds `true`; never when its sender is gone without having sent it.
async fn until_true(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[async_trait]
impl<S: Service> Service for StopAccepting<S> {
    async fn start_service(
        &mut self,
        #[cfg(unix)] fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        let (tx, rx) = watch::channel(false);
        let ours = self.stop.clone();
        let forward = tokio::spawn(async move {
            tokio::select! {
                () = until_true(ours) => {}
                () = until_true(shutdown) => {}
            }
            let _ = tx.send(true);
            // Keep the sender alive: the inner service treats a closed channel as an error.
            std::future::pending::<()>().await;
        });
        self.inner
            .start_service(
                #[cfg(unix)]
                fds,
                rx,
                listeners_per_fd,
            )
            .await;
        forward.abort();
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn runtime_opts_override(&self, global: &RuntimeOpts) -> Option<RuntimeOpts> {
        self.inner.runtime_opts_override(global)
    }

    fn on_startup_delay(&self, time_waited: Duration) {
        self.inner.on_startup_delay(time_waited)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

/// The shutdown watch Pingora runs with: the real signal source (Unix signals in the binary, a
/// test's notifier in tests) with the drain in front of a graceful terminate.
pub(crate) struct GracefulShutdown<W> {
    signals: W,
    drain: Drain,
}

impl<W> GracefulShutdown<W> {
    pub(crate) fn new(signals: W, drain: Drain) -> Self {
        GracefulShutdown { signals, drain }
    }
}

#[async_trait]
impl<W: ShutdownSignalWatch + Send + Sync> ShutdownSignalWatch for GracefulShutdown<W> {
    async fn recv(&self) -> ShutdownSignal {
        match self.signals.recv().await {
            ShutdownSignal::GracefulTerminate => {
                self.drain.run().await;
                // Drained (or out of time): nothing is left for Pingora's own grace period.
                ShutdownSignal::FastShutdown
            }
            other => other,
        }
    }
}
