//! Assembling the Pingora server: the proxy service on `listen`, the admin service on
//! `admin_listen`, and Pingora's own settings derived from ours (never its `/tmp` defaults and
//! 300 s grace period by accident).

use crate::admin::AdminApp;
use crate::proxy::Gateway;
use crate::settings::{Settings, SettingsError};
use crate::state::State;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Builds a ready-to-run server from validated settings.
pub fn build_server(settings: Settings) -> Result<Server, SettingsError> {
    let conf = ServerConf {
        threads: settings.threads,
        grace_period_seconds: Some(settings.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(settings.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: settings.upstream.pool_size,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let listen = settings.listen.clone();
    let admin_listen = settings.admin_listen.clone();
    let state = Arc::new(State::new(settings)?);
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(state.clone()),
        "portgate proxy",
    );
    proxy.add_tcp(&listen);

    // The state is validated and the listeners are configured: the server is ready as soon as
    // it serves, which is when the admin service answers at all.
    let ready = Arc::new(AtomicBool::new(true));
    let mut admin = Service::new(
        "portgate admin".to_string(),
        HttpServer::new_app(AdminApp::new(ready, state)),
    );
    admin.threads = Some(1);
    admin.add_tcp(&admin_listen);

    server.add_service(proxy);
    server.add_service(admin);
    Ok(server)
}
