//! Every other `/v1/*` route (models, files, images, audio, batches, responses, ...): forwarded
//! on Pingora's normal proxy path with the same method, path below `/v1` and query, bodies
//! streamed both ways so large uploads are never buffered whole.

use super::ctx::PassthroughTarget;
use super::State;
use crate::error::GatewayError;
use crate::portkey::PortkeyHeaders;
use crate::routing::conditions::metadata_value;
use crate::routing::select;
use crate::routing::target::Target;
use crate::telemetry::trace::TraceContext;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;

/// Decides the passthrough target in `request_filter`, so errors are answered before any
/// upstream work. With a config, the target is the one its strategy picks first (no retries:
/// a streamed body cannot be sent twice).
pub fn plan(
    state: &State,
    headers: &PortkeyHeaders,
    pathname: &str,
) -> Result<PassthroughTarget, GatewayError> {
    let plan = state
        .configs
        .resolve(headers.config.as_deref(), &state.plan_context())?;
    let target = match &plan {
        Some(plan) => {
            let metadata = metadata_value(headers.metadata.as_deref());
            let leaf = select::first_leaf(&plan.root, &metadata, pathname)
                .ok_or_else(|| GatewayError::NoRouteMatched("config".into()))?;
            Target::from_leaf(state, leaf, headers)?
        }
        None => Target::from_headers(state, headers)?,
    };
    let auth = match target.api_key.as_ref().map(|k| k.expose()) {
        Some(key) => target.provider.auth_headers(key)?,
        None => Vec::new(),
    };
    Ok(PassthroughTarget {
        provider: target.provider.slug().to_string(),
        upstream: target.upstream,
        public_only: target.public_only,
        auth,
    })
}

/// The peer for `upstream_peer`: resolved asynchronously, never with Pingora's blocking DNS.
pub async fn peer(state: &State, target: &PassthroughTarget) -> Result<HttpPeer, GatewayError> {
    let addrs = state
        .dispatcher
        .resolve(&target.upstream, target.public_only)
        .await?;
    let addr = addrs
        .first()
        .copied()
        .ok_or_else(|| GatewayError::Internal("no upstream address".into()))?;
    Ok(target.upstream.peer(addr, &state.settings.upstream))
}

/// Rewrites the request for the provider: path below its base URL, `Host`, credentials; the
/// gateway's own `x-portkey-*` headers are not forwarded.
pub fn rewrite(
    target: &PassthroughTarget,
    req: &mut RequestHeader,
    trace: Option<&TraceContext>,
) -> pingora::Result<()> {
    let path = req.uri.path();
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    let mut new_path = format!("{}{}", target.upstream.base_path, rest);
    if let Some(q) = req.uri.query() {
        new_path.push('?');
        new_path.push_str(q);
    }
    let uri = new_path.parse::<http::Uri>().map_err(|e| {
        pingora::Error::explain(pingora::ErrorType::InvalidHTTPHeader, format!("path: {e}"))
    })?;
    req.set_uri(uri);
    req.insert_header(http::header::HOST, target.upstream.authority())?;
    let portkey: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|n| n.as_str().starts_with("x-portkey-"))
        .cloned()
        .collect();
    for name in portkey {
        req.remove_header(&name);
    }
    req.remove_header(&http::header::AUTHORIZATION);
    for (name, value) in &target.auth {
        req.insert_header(name.clone(), value.clone())?;
    }
    if let Some(t) = trace {
        req.insert_header("traceparent", t.outgoing())?;
    }
    Ok(())
}
