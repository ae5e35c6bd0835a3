//! The checks that wait on the network: webhook, log and validUrls. They go through the
//! gateway's own dispatcher (pooled connections, cached DNS, rustls), each within its timeout,
//! so they never block a worker. A URL written in a request's config follows the custom-host
//! rules (no private or metadata addresses unless `custom_hosts.trusted` says so); one from a
//! named guardrail in the settings is trusted as written. URLs found in model output
//! (validUrls) are only ever fetched on public addresses.

use super::{CheckOutcome, Ctx, Env, Params, Transform};
use crate::dispatch::{Outbound, Upstream};
use crate::guardrails::content;
use crate::guardrails::Event;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use once_cell::sync::Lazy;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::SemaphorePermit;

/// The largest webhook answer read.
const MAX_ANSWER: usize = 1024 * 1024;
/// The most URLs one validUrls check fetches or resolves.
const MAX_URLS: usize = 16;
/// How long one URL of a validUrls check is waited for.
const URL_TIMEOUT: Duration = Duration::from_secs(3);

/// The remote checks one request may still start, across every target it tries
/// (`limits.guardrails.remote_checks_per_request`).
#[derive(Debug)]
pub(crate) struct Quota {
    left: AtomicUsize,
    limit: usize,
}

impl Quota {
    pub(crate) fn new(limit: usize) -> Quota {
        Quota {
            left: AtomicUsize::new(limit),
            limit,
        }
    }

    fn take(&self) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Lets a remote check start: one of the request's quota, then a process-wide slot, waited
/// for within `wait` (the check's own timeout).
async fn admit<'e>(env: &'e Env<'_>, wait: Duration) -> Result<SemaphorePermit<'e>, String> {
    if !env.quota.take() {
        return Err(format!(
            "the request already ran {} webhook, log and validUrls checks \
             (limits.guardrails.remote_checks_per_request)",
            env.quota.limit
        ));
    }
    match tokio::time::timeout(wait, env.slots.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(format!(
            "no remote check could start within {} ms: too many run at once \
             (limits.guardrails.concurrent_remote_checks)",
            wait.as_millis()
        )),
    }
}

/// A URL split into the dispatcher's upstream and the path (with query) to send.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub raw: String,
    /// The URL as results and errors show it: without its query or fragment (a webhook's
    /// token often rides in its query string). A URL with user:password is refused.
    pub shown: String,
    pub upstream: Upstream,
    pub path: String,
    /// Checked against the custom-host rules at run time (it came from a request).
    pub untrusted: bool,
}

impl Endpoint {
    pub(crate) fn parse(raw: &str, trusted: bool) -> Result<Endpoint, String> {
        let mut url = url::Url::parse(raw).map_err(|e| format!("Invalid URL format: {e}"))?;
        let query = url.query().map(str::to_string);
        url.set_query(None);
        url.set_fragment(None);
        let upstream = Upstream::parse(url.as_str())?;
        let mut path = if upstream.base_path.is_empty() {
            "/".to_string()
        } else {
            upstream.base_path.clone()
        };
        if let Some(q) = query {
            path.push('?');
            path.push_str(&q);
        }
        Ok(Endpoint {
            raw: raw.to_string(),
            shown: url.to_string(),
            upstream,
            path,
            untrusted: !trusted,
        })
    }

    /// The upstream to use and whether only public addresses may be reached.
    fn target(&self, ctx: &Ctx<'_>) -> Result<(Upstream, bool), String> {
        if !self.untrusted {
            return Ok((self.upstream.clone(), false));
        }
        let mut base = self.raw.clone();
        if let Some(i) = base.find(['?', '#']) {
            base.truncate(i);
        }
        let env = ctx
            .env
            .ok_or_else(|| "not available on streams".to_string())?;
        let host = env.custom_hosts.check(&base).map_err(|e| e.to_string())?;
        Ok((host.upstream, host.public_only))
    }
}

/// `headers`: an object or a JSON string of one.
fn headers(q: &mut Params<'_>) -> Vec<(HeaderName, HeaderValue)> {
    let parsed = match q.map.get("headers") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) if s.trim().is_empty() => return Vec::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Map<String, Value>>(s) {
            Ok(m) => m,
            Err(_) => {
                q.problem("headers", "must be an object or a JSON string of one");
                return Vec::new();
            }
        },
        Some(_) => {
            q.problem("headers", "must be an object or a JSON string of one");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (k, v) in parsed {
        // The webhook's own credentials may be set; framing, `host` and the gateway's own
        // headers may not (they would break or redirect the request, or forge its origin).
        if crate::dispatch::never_set(&k.to_ascii_lowercase()) {
            q.problem("headers", format!("{k:?} cannot be set"));
            continue;
        }
        let value = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => out.push((n, v)),
            _ => q.problem("headers", format!("{k:?} is not a valid header")),
        }
    }
    out
}

/// The hook context Portkey posts (request headers left out).
fn context_body(ctx: &Ctx<'_>) -> Value {
    let response = ctx.response_json().cloned().unwrap_or_else(|| json!({}));
    let response_text = ctx
        .response_json()
        .map(|r| content::response_part(r, ctx.op).text())
        .unwrap_or_default();
    json!({
        "request": {"json": ctx.request_json(), "text": content::request_part(ctx.request_json(), ctx.op).text(),
                    "isStreamingRequest": ctx.stream, "isTransformed": false},
        "response": {"json": response, "text": response_text,
                     "statusCode": if ctx.response.is_some() { Value::from(200) } else { Value::Null },
                     "isTransformed": false},
        "provider": ctx.provider,
        "requestType": ctx.request_type(),
        "metadata": ctx.metadata,
        "eventType": match ctx.event { Event::Before => "beforeRequestHook", Event::After => "afterRequestHook" },
    })
}

/// The hook context to post, built once per request and answer (a shared buffer: every
/// webhook and log check of the list sends the same bytes).
fn posted(ctx: &Ctx<'_>) -> Bytes {
    ctx.posted
        .get_or_init(|| Bytes::from(context_body(ctx).to_string()))
        .clone()
}

/// POSTs `body` and reads the answer, within `timeout` (the wait for a slot included).
async fn post(
    ctx: &Ctx<'_>,
    endpoint: &Endpoint,
    extra: &[(HeaderName, HeaderValue)],
    body: Bytes,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let (upstream, public_only) = endpoint.target(ctx)?;
    let env = ctx
        .env
        .ok_or_else(|| "not available on streams".to_string())?;
    let mut headers = Vec::with_capacity(extra.len() + 1);
    headers.push((
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    headers.extend(extra.iter().cloned());
    let no_resend = || false;
    let out = Outbound {
        provider: "webhook",
        upstream: &upstream,
        public_only,
        method: "POST",
        path: &endpoint.path,
        headers: &headers,
        body,
        may_resend: &no_resend,
    };
    let dispatcher = env.dispatcher;
    let started = std::time::Instant::now();
    let _slot = admit(env, timeout).await?;
    let exchange = async {
        let mut inbound = dispatcher.send(&out).await.map_err(|e| e.to_string())?;
        let status = inbound.status();
        match inbound.read_to_end(MAX_ANSWER).await {
            Ok(body) => {
                dispatcher.finish(inbound);
                Ok((status, body))
            }
            Err(e) => {
                inbound.abort();
                Err(e.to_string())
            }
        }
    };
    tokio::time::timeout(timeout.saturating_sub(started.elapsed()), exchange)
        .await
        .map_err(|_| format!("Request timed out after {} ms", timeout.as_millis()))?
}

#[derive(Debug)]
pub(crate) struct Webhook {
    pub endpoint: Endpoint,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout_ms: u64,
}

fn timeout(q: &mut Params<'_>) -> u64 {
    let t = q.int("timeout", 3000);
    if t <= 0 {
        q.problem("timeout", "must be a positive number of milliseconds");
    }
    u64::try_from(t).unwrap_or(3000).min(60_000)
}

impl Webhook {
    pub(crate) fn read(q: &mut Params<'_>, trusted: bool) -> Option<Webhook> {
        let url = q.required_str("webhookURL");
        let headers = headers(q);
        let timeout_ms = timeout(q);
        let endpoint = match Endpoint::parse(&url?, trusted) {
            Ok(e) => e,
            Err(e) => {
                q.problem("webhookURL", e);
                return None;
            }
        };
        Some(Webhook {
            endpoint,
            headers,
            timeout_ms,
        })
    }

    pub(crate) async fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        let url = &self.endpoint.shown;
        let body = posted(ctx);
        let sent = post(
            ctx,
            &self.endpoint,
            &self.headers,
            body,
            Duration::from_millis(self.timeout_ms),
        )
        .await;
        judge(sent, ctx.event, url, self.timeout_ms)
    }
}

/// A webhook's verdict from what it answered (anything at all: the webhook is another
/// service): a 2xx JSON object's `verdict` (false when missing or not a boolean), and its
/// `transformedData` when it rewrites; any other answer is an error naming why.
pub fn judge(
    sent: Result<(u16, Bytes), String>,
    event: Event,
    url: &str,
    timeout_ms: u64,
) -> CheckOutcome {
    let request_context = json!({"timeout": timeout_ms});
    let failed = |message: String, response: Option<Value>| {
        let mut data = json!({"explanation": format!("Webhook error: {message}"),
                              "webhookUrl": url, "requestContext": request_context});
        if let (Some(r), Some(o)) = (response, data.as_object_mut()) {
            o.insert("responseData".into(), r);
        }
        CheckOutcome::error(message, data)
    };
    let (status, answer) = match sent {
        Ok(x) => x,
        Err(e) => return failed(e, None),
    };
    let parsed: Option<Value> = serde_json::from_slice(&answer).ok();
    if !(200..300).contains(&status) {
        return failed(format!("HTTP {status}"), parsed);
    }
    let Some(answer) = parsed.filter(Value::is_object) else {
        return failed("the webhook did not answer a JSON object".into(), None);
    };
    let verdict = answer
        .get("verdict")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let transformed = answer.get("transformedData");
    let transform = match event {
        Event::Before => transformed
            .and_then(|t| t.pointer("/request/json"))
            .and_then(Value::as_object)
            .map(|j| Transform::Request(j.clone())),
        Event::After => transformed
            .and_then(|t| t.pointer("/response/json"))
            .filter(|j| j.is_object())
            .map(|j| Transform::Response(j.clone())),
    };
    CheckOutcome {
        verdict,
        data: json!({"verdict": verdict,
                     "explanation": if verdict { "Webhook request succeeded" } else { "Webhook request failed" },
                     "webhookUrl": url, "responseData": answer.get("data").cloned().unwrap_or(Value::Null),
                     "requestContext": request_context})
        .into(),
        error: None,
        transform,
    }
}

#[derive(Debug)]
pub(crate) struct Log {
    pub endpoint: Endpoint,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout_ms: u64,
}

impl Log {
    pub(crate) fn read(q: &mut Params<'_>, trusted: bool) -> Option<Log> {
        let url = q.required_str("logURL");
        let headers = headers(q);
        let timeout_ms = timeout(q);
        let endpoint = match Endpoint::parse(&url?, trusted) {
            Ok(e) => e,
            Err(e) => {
                q.problem("logURL", e);
                return None;
            }
        };
        Some(Log {
            endpoint,
            headers,
            timeout_ms,
        })
    }

    pub(crate) async fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        let body = posted(ctx);
        let timeout = Duration::from_millis(self.timeout_ms);
        match post(ctx, &self.endpoint, &self.headers, body, timeout).await {
            Ok((status, _)) if (200..300).contains(&status) => CheckOutcome::pass(
                true,
                json!({"message": format!("Logged the request to {}", self.endpoint.shown)}),
            ),
            Ok((status, _)) => CheckOutcome::error(format!("HTTP {status}"), Value::Null),
            Err(e) => CheckOutcome::error(e, Value::Null),
        }
    }
}

static URLS: Lazy<Option<regex::Regex>> =
    Lazy::new(|| regex::Regex::new(r#"https?://[^\s,"'{}\[\]]+"#).ok());

async fn url_ok(ctx: &Ctx<'_>, raw: &str, only_dns: bool) -> bool {
    let Some(env) = ctx.env else {
        return false;
    };
    // A URL anyone can write into a prompt is checked by the custom-host rules without the
    // trusted list: an internal name, a private or metadata address, the gateway's own port
    // is invalid without being looked up or contacted.
    let Ok(host) = env.custom_hosts.check_public(raw) else {
        return false;
    };
    let Ok(endpoint) = Endpoint::parse(raw, false) else {
        return false;
    };
    if only_dns {
        return env
            .dispatcher
            .resolve(&host.upstream, true)
            .await
            .is_ok_and(|a| !a.is_empty());
    }
    let headers = [(
        http::header::USER_AGENT,
        HeaderValue::from_static("URLValidator/1.0"),
    )];
    let no_resend = || false;
    let out = Outbound {
        provider: "validUrls",
        upstream: &host.upstream,
        // URLs in model output are never fetched on private addresses.
        public_only: true,
        method: "HEAD",
        path: &endpoint.path,
        headers: &headers,
        body: Bytes::new(),
        may_resend: &no_resend,
    };
    let dispatcher = env.dispatcher;
    let sent = tokio::time::timeout(URL_TIMEOUT, async {
        let inbound = dispatcher.send(&out).await.ok()?;
        let status = inbound.status();
        inbound.abort();
        Some(status)
    })
    .await;
    matches!(sent, Ok(Some(s)) if (200..300).contains(&s))
}

pub(crate) async fn valid_urls(ctx: &Ctx<'_>, only_dns: bool, not: bool) -> CheckOutcome {
    let text = ctx.text();
    if text.is_empty() {
        return super::no_text("analyze");
    }
    let method = if only_dns {
        "DNS lookup"
    } else {
        "HTTP request"
    };
    let urls: Vec<String> = URLS
        .as_ref()
        .map(|re| {
            re.find_iter(text)
                .take(MAX_URLS)
                .map(|m| m.as_str().to_string())
                .collect()
        })
        .unwrap_or_default();
    if urls.is_empty() {
        return CheckOutcome::pass(
            false,
            json!({"explanation": "No URLs found in the text.", "urls": [], "validationMethod": method,
                   "not": not, "textExcerpt": content::excerpt(text)}),
        );
    }
    let Some(env) = ctx.env else {
        return CheckOutcome::error("not available on streams", Value::Null);
    };
    let _slot = match admit(env, URL_TIMEOUT).await {
        Ok(slot) => slot,
        Err(e) => return CheckOutcome::error(e, Value::Null),
    };
    let checks: Vec<_> = urls.iter().map(|u| url_ok(ctx, u, only_dns)).collect();
    let results = crate::guardrails::engine::join_all(checks).await;
    type Checked<'u> = Vec<(&'u String, bool)>;
    let (valid, invalid): (Checked<'_>, Checked<'_>) =
        urls.iter().zip(results).partition(|(_, ok)| *ok);
    let all_valid = invalid.is_empty();
    let verdict = all_valid != not;
    let (nv, ni, n) = (valid.len(), invalid.len(), urls.len());
    let explanation = match (verdict, not) {
        (true, true) => format!("All URLs are invalid as expected ({ni} of {n})."),
        (true, false) => format!("All URLs are valid ({nv} found)."),
        (false, true) => {
            format!("Some URLs are valid when they should all be invalid ({nv} of {n}).")
        }
        (false, false) => format!("Some URLs are invalid ({ni} of {n} failed)."),
    };
    let list = |l: &[(&String, bool)]| l.iter().map(|(u, _)| u.to_string()).collect::<Vec<_>>();
    CheckOutcome::pass(
        verdict,
        json!({"verdict": verdict, "not": not, "explanation": explanation,
               "validUrls": list(&valid), "invalidUrls": list(&invalid),
               "validationMethod": method, "textExcerpt": content::excerpt(text)}),
    )
}
