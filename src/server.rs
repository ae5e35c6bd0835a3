//! Assembling the Pingora server: the proxy service on `listen`, the admin service on
//! `admin_listen`, and Pingora's own settings derived from ours (never its `/tmp` defaults and
//! 300 s grace period by accident). Running it puts portgate's graceful shutdown
//! (`shutdown.rs`) in front of the signal source.

use crate::admin::AdminApp;
use crate::proxy::Gateway;
use crate::settings::{Settings, SettingsError};
use crate::shutdown::{Drain, GracefulShutdown};
use crate::state::State;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignalWatch};
use pingora::services::listening::Service;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// A built gateway: the Pingora server and the drain its graceful shutdown runs.
pub struct Portgate {
    server: Server,
    drain: Drain,
}

impl Portgate {
    /// Runs until `signals` reports a shutdown, then returns. A graceful terminate drains
    /// first: `/readyz` 503, listener closed, in-flight requests finished (at most
    /// `grace_period_seconds`), access log flushed; see `shutdown.rs`. The binary passes
    /// `UnixShutdownSignalWatch` (SIGTERM graceful, SIGINT fast, SIGQUIT upgrade); tests
    /// pass their own notifier.
    pub fn run<W>(self, signals: W)
    where
        W: ShutdownSignalWatch + Send + Sync + 'static,
    {
        self.server.run(RunArgs {
            shutdown_signal: Box::new(GracefulShutdown::new(signals, self.drain)),
        });
    }
}

/// The write buffer of client connections. With Pingora's default (1,460 bytes, one segment)
/// an answer whose header and body do not fit together goes out in two writes (two system
/// calls, two segments, two wake-ups of the client): an answer with `hook_results` or most real
/// completions. With 16 KiB they go out in one. Nothing waits in it:
/// Pingora flushes a stream's body on every write (chunked bodies) and a whole body when it is
/// complete, and writes larger than the buffer go straight through.
const CLIENT_WRITE_BUFFER: usize = 16 * 1024;

/// No read buffer on client connections (Pingora's default is 64 KiB). Pingora's HTTP/1 code
/// reads a request header into its own 4 KiB buffer and a body into its own 64 KiB one, so a
/// buffer under them only adds a copy of every byte read. And it is tokio's `BufReader`,
/// which zero-fills its 64 KiB when a connection opens: more memory resident per open
/// connection and more CPU per request for nothing (measured in `docs/performance.md`). It
/// mattered for TLS (16 KiB records read in small pieces); the sidecar's client side is plain
/// HTTP.
const CLIENT_READ_BUFFER: usize = 0;

/// Builds a ready-to-run server from validated settings; with `reload`, the settings are
/// reloaded when their file changes or on `SIGHUP` (see `reload.rs`).
pub fn build_server(
    settings: Settings,
    reload: Option<crate::reload::Reload>,
) -> Result<Portgate, SettingsError> {
    let conf = ServerConf {
        threads: match settings.threads {
            0 => crate::settings::cpu::available(),
            n => n,
        },
        // Only a graceful upgrade (SIGQUIT) still goes through Pingora's grace period: a
        // graceful terminate is drained by `Drain` and reaches Pingora as a fast shutdown.
        grace_period_seconds: Some(settings.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(settings.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: settings.upstream.pool_size,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let listen = settings.listen.clone();
    let admin_listen = settings.admin_listen.clone();
    let grace = Duration::from_secs(settings.grace_period_seconds);
    let state = Arc::new(State::new(settings)?);
    let current: crate::proxy::Current = Arc::new(arc_swap::ArcSwap::new(state.clone()));
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(current.clone()),
        "portgate proxy",
    );
    proxy.add_listener(
        ListenerConfig::tcp(listen.as_str()).l4_buffer(
            L4BufferSettings::default()
                .write(CLIENT_WRITE_BUFFER)
                .read(CLIENT_READ_BUFFER),
        ),
    );

    // The state is validated and the listeners are configured: the server is ready as soon as
    // it serves, which is when the admin service answers at all, until a shutdown starts.
    let ready = Arc::new(AtomicBool::new(true));
    let drain = Drain::new(ready.clone(), state.clone(), grace);
    let mut admin = Service::new(
        "portgate admin".to_string(),
        HttpServer::new_app(AdminApp::new(ready, current.clone())),
    );
    admin.threads = Some(1);
    admin.add_tcp(&admin_listen);

    server.add_service(drain.guard(proxy));
    server.add_service(admin);
    if let Some(reload) = reload {
        server.add_service(pingora::services::background::background_service(
            "settings reload",
            crate::reload::Reloader::new(reload, current),
        ));
    }
    Ok(Portgate { server, drain })
}
