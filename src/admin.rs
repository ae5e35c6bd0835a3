//! The admin listener: `/healthz` (the process serves) and `/readyz` (settings loaded, proxy
//! ready to take traffic) for kubelet probes, `/metrics` (Prometheus text format) and
//! `/circuits` (circuit-breaker state as JSON). Bound separately from the proxy so it can be
//! exposed to the cluster while the proxy stays on the pod's loopback. `/circuits` names the
//! upstreams and models a pod talks to and how they fail, which the cluster need not see: it
//! answers only to loopback peers unless `admin_circuits_remote` is set, and so does
//! `/limits` (every rate limit and budget with its use); `POST /limits/reset?scope=<scope>`
//! (zeroes a scope's counters) answers only loopback peers.

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub(crate) struct AdminApp {
    ready: Arc<AtomicBool>,
    current: crate::proxy::Current,
}

/// Whether `/circuits` answers a peer: loopback always, others when the settings allow it.
fn circuits_for(peer: Option<std::net::IpAddr>, remote: bool) -> bool {
    remote || peer.is_some_and(|ip| ip.is_loopback())
}

impl AdminApp {
    pub(crate) fn new(ready: Arc<AtomicBool>, current: crate::proxy::Current) -> Self {
        AdminApp { ready, current }
    }
}

fn json(status: u16, body: &str) -> Response<Vec<u8>> {
    let mut resp = Response::new(body.as_bytes().to_vec());
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    resp
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let state = self.current.load_full();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let post = session.req_header().method == http::Method::POST;
        match session.req_header().uri.path() {
            "/limits" if !circuits_for(peer, state.settings.admin_circuits_remote) => json(
                403,
                r#"{"message":"/limits answers only on loopback (admin_circuits_remote)","ok":false}"#,
            ),
            "/limits" => {
                match (state.limiter)
                    .snapshot(crate::types::time::unix_ms())
                    .await
                {
                    Ok(limits) => json(200, &serde_json::json!({ "limits": limits }).to_string()),
                    Err(e) => json(
                        503,
                        &serde_json::json!({"message": format!("limits store: {e}"), "ok": false})
                            .to_string(),
                    ),
                }
            }
            "/limits/reset" if !post || !circuits_for(peer, false) => json(
                403,
                r#"{"message":"POST /limits/reset answers only on loopback","ok":false}"#,
            ),
            "/limits/reset" => {
                let scope = session
                    .req_header()
                    .uri
                    .query()
                    .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("scope=")))
                    .unwrap_or("")
                    .to_string();
                if scope.is_empty() || scope.contains(['*', '?', '[']) {
                    return json(
                        400,
                        r#"{"message":"name the scope: ?scope=vk:<id>, gk:<name> or policy:<id>[:<value>]","ok":false}"#,
                    );
                }
                match state.limiter.reset(&scope).await {
                    Ok(n) => json(
                        200,
                        &serde_json::json!({"scope": scope, "counters_reset": n}).to_string(),
                    ),
                    Err(e) => json(
                        503,
                        &serde_json::json!({"message": format!("limits store: {e}"), "ok": false})
                            .to_string(),
                    ),
                }
            }
            "/healthz" => json(200, r#"{"status":"ok"}"#),
            "/readyz" if self.ready.load(Ordering::Acquire) => json(200, r#"{"status":"ready"}"#),
            "/readyz" => json(503, r#"{"status":"not ready"}"#),
            "/metrics" => {
                let mut resp = Response::new(state.metrics.render());
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            "/circuits" => {
                if !circuits_for(peer, state.settings.admin_circuits_remote) {
                    return json(
                        403,
                        r#"{"message":"/circuits answers only on loopback (admin_circuits_remote)","ok":false}"#,
                    );
                }
                let body = serde_json::json!({ "circuits": state.breakers.snapshot() });
                json(200, &body.to_string())
            }
            _ => json(404, r#"{"message":"Not Found","ok":false}"#),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::circuits_for;

    #[test]
    fn circuits_answer_loopback_unless_allowed_for_all() {
        let ip = |s: &str| Some(s.parse().unwrap());
        assert!(circuits_for(ip("127.0.0.1"), false));
        assert!(circuits_for(ip("::1"), false));
        assert!(!circuits_for(ip("10.1.2.3"), false));
        assert!(!circuits_for(ip("fd00::1"), false));
        assert!(
            !circuits_for(None, false),
            "a peer of unknown address (a Unix socket)"
        );
        assert!(circuits_for(ip("10.1.2.3"), true));
    }
}
