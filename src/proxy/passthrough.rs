//! Every other `/v1/*` route (models, files, images, audio, batches, responses, ...): forwarded
//! on Pingora's normal proxy path with the same method, path below `/v1` and query, bodies
//! streamed both ways so large uploads are never buffered whole.

use super::ctx::PassthroughTarget;
use super::State;
use crate::error::GatewayError;
use crate::portkey::PortkeyHeaders;
use crate::routing::select;
use crate::routing::target::Target;
use crate::telemetry::trace::TraceContext;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use serde_json::{Map, Value};

/// Decides the passthrough target in `request_filter`, so errors are answered before any
/// upstream work. With a config, the target is the one its strategy picks first (no retries:
/// a streamed body cannot be sent twice).
pub(crate) fn plan(
    state: &State,
    headers: &PortkeyHeaders,
    metadata: &Map<String, Value>,
    pathname: &str,
) -> Result<PassthroughTarget, GatewayError> {
    let plan = state
        .configs
        .resolve(headers.config.as_deref(), &state.plan_context())?;
    let (target, option_path) = match &plan {
        Some(plan) => {
            let leaf = select::first_leaf(&plan.root, metadata, pathname)
                .ok_or_else(|| GatewayError::NoRouteMatched("config".into()))?;
            (
                Target::from_leaf(state.resolver(), leaf, headers)?,
                leaf.path.clone(),
            )
        }
        None => (
            Target::from_headers(state.resolver(), headers)?,
            "config".to_string(),
        ),
    };
    let auth = match target.api_key.as_ref().map(|k| k.expose()) {
        Some(key) => target.provider.auth_headers(key)?,
        None => Vec::new(),
    };
    Ok(PassthroughTarget {
        provider: target.provider.slug().to_string(),
        upstream: target.upstream,
        public_only: target.public_only,
        option_path,
        path: normalise(below_v1(pathname))?,
        auth,
        adapter: target.provider,
        api_key: target.api_key,
        options: target.options,
    })
}

/// The peer for `upstream_peer`: resolved asynchronously, never with Pingora's blocking DNS.
pub(crate) async fn peer(
    state: &State,
    target: &PassthroughTarget,
) -> Result<HttpPeer, GatewayError> {
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

/// The path below the gateway's `/v1`, also for the deprecated `/v1/proxy/*` form, which
/// Portkey serves as the same proxy route with the `/proxy` segment removed.
pub(crate) fn below_v1(path: &str) -> &str {
    let rest = path.strip_prefix("/v1").unwrap_or(path);
    match rest.strip_prefix("/proxy") {
        Some(inner) if inner.is_empty() || inner.starts_with('/') => inner,
        _ => rest,
    }
}

/// Resolves the dot segments of a path below the provider's base path — also percent-encoded
/// ones (`%2e%2e`), which a server may decode before resolving — and refuses one that would
/// climb above it, or that hides a separator (`%2f`, `%5c`, `\\`) a server might decode.
pub(crate) fn normalise(rest: &str) -> Result<String, GatewayError> {
    let mut kept: Vec<&str> = Vec::new();
    for seg in rest.split('/').filter(|s| !s.is_empty()) {
        let lower = seg.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || seg.contains('\\') {
            return Err(GatewayError::InvalidPath(
                "encoded path separators are not allowed".into(),
            ));
        }
        match lower.replace("%2e", ".").as_str() {
            "." => {}
            ".." => {
                if kept.pop().is_none() {
                    return Err(GatewayError::InvalidPath(
                        "the path climbs above the provider's base path".into(),
                    ));
                }
            }
            _ => kept.push(seg),
        }
    }
    let mut out = String::with_capacity(rest.len());
    for seg in &kept {
        out.push('/');
        out.push_str(seg);
    }
    if rest.ends_with('/') && !out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Rewrites the request for the provider: path below its base URL, `Host`, credentials; the
/// gateway's own `x-portkey-*` headers are not forwarded.
pub(crate) fn rewrite(
    target: &PassthroughTarget,
    req: &mut RequestHeader,
    trace: Option<&TraceContext>,
    hop: &str,
) -> pingora::Result<()> {
    let mut new_path = format!("{}{}", target.upstream.base_path, target.path);
    if let Some(q) = req.uri.query() {
        new_path.push('?');
        new_path.push_str(q);
    }
    let uri = new_path.parse::<http::Uri>().map_err(|e| {
        pingora::Error::explain(pingora::ErrorType::InvalidHTTPHeader, format!("path: {e}"))
    })?;
    req.set_uri(uri);
    req.insert_header(http::header::HOST, target.upstream.authority())?;
    if target.provider == "openai" {
        for (prefixed, plain) in crate::portkey::headers::OPENAI_HEADERS {
            if let Some(v) = req.headers.get(*prefixed).cloned() {
                req.insert_header(*plain, v)?;
            }
        }
    }
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
    req.insert_header(crate::portkey::hop::HEADER, hop)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{below_v1, normalise};

    #[test]
    fn paths_cannot_climb_out_of_the_base_path() {
        assert_eq!(normalise("/models").unwrap(), "/models");
        assert_eq!(normalise("/files/./f-1/").unwrap(), "/files/f-1/");
        assert_eq!(normalise("/a/b/../c").unwrap(), "/a/c");
        assert_eq!(normalise("").unwrap(), "");
        for bad in [
            "/../admin",
            "/models/../../x",
            "/%2e%2e/x",
            "/%2E./x",
            "/.%2e/x",
            "/a%2f..%2f..%2fx",
            "/a%5c..",
            "/a\\..",
        ] {
            assert_eq!(normalise(bad).unwrap_err().status(), 400, "{bad}");
        }
    }

    #[test]
    fn the_deprecated_proxy_segment_is_removed() {
        assert_eq!(below_v1("/v1/models"), "/models");
        assert_eq!(below_v1("/v1/proxy/chat/completions"), "/chat/completions");
        assert_eq!(below_v1("/v1/proxy"), "");
        assert_eq!(below_v1("/v1/proxyish/x"), "/proxyish/x");
    }
}
