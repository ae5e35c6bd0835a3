//! `GatewayError`: every way a request can fail, and the one place where a failure becomes an
//! HTTP status and a JSON body.
//!
//! Two body shapes exist because Portkey's clients expect two: gateway validation failures use
//! Portkey's `{"status":"failure","message":...}`, while failures of the upstream
//! exchange use the OpenAI error envelope `{"error":{"message","type","param","code"}}` so that
//! OpenAI-style SDKs surface the message.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

/// Portkey's answer when a request carries neither `x-portkey-provider` nor `x-portkey-config`.
pub(crate) const MISSING_HEADERS_MESSAGE: &str =
    "Either x-portkey-config or x-portkey-provider header is required";

/// Portkey's answer when a config names no provider and the headers name none either.
pub(crate) const MISSING_PROVIDER_MESSAGE: &str =
    "Either x-portkey-provider needs to be passed. Or the \
     x-portkey-config header should have a valid config with provider details in it.";

/// Portkey's answer when a conditional strategy matches no condition and has no default.
pub(crate) const NO_ROUTE_MESSAGE: &str = "Query router did not resolve to any valid target";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request body is not valid JSON on a route that needs JSON.
    #[error("Invalid JSON body: {0}")]
    InvalidJson(String),
    /// The JSON body parsed but is not an object or has a field of the wrong type.
    #[error("Invalid request body: {0}")]
    InvalidBody(String),
    /// Neither `x-portkey-provider` nor `x-portkey-config` (nor a virtual key, nor a default
    /// config in the settings) says where the request goes.
    #[error("{MISSING_HEADERS_MESSAGE}")]
    MissingHeaders,
    /// A config was given, but neither it nor the headers name a provider.
    #[error("{MISSING_PROVIDER_MESSAGE}")]
    MissingProvider,
    /// `x-portkey-provider` (or `x-portkey-mode`, or a config) names a provider the gateway does
    /// not know. The slug goes to the log line, not the message (Portkey's exact text).
    #[error("Invalid provider passed")]
    UnknownProvider(String),
    /// A custom host failed validation; the reason goes to the log line only.
    #[error("Invalid custom host")]
    InvalidCustomHost(String),
    /// A request header that the gateway reads has a value it cannot use.
    #[error("Invalid header {name}: {reason}")]
    InvalidHeader { name: &'static str, reason: String },
    /// A key from the settings (a virtual key) would go to a host the request chose.
    #[error(
        "A virtual key's credential is sent only to its own provider's host: it cannot be \
         combined with x-portkey-custom-host or a custom_host in an inline config"
    )]
    KeyToForeignHost,
    /// A passthrough path that would leave the provider's base path (`..`, encoded dots or
    /// slashes).
    #[error("Invalid path: {0}")]
    InvalidPath(String),
    /// The request carries this gateway's own hop mark: it came back to itself.
    #[error(
        "Loop detected: this request already passed through this gateway (x-portgate-hop); \
         a custom host or provider base URL points back at the gateway"
    )]
    LoopDetected,
    /// A graceful shutdown's grace period ended while a stream was still open: it is ended
    /// with this error event rather than cut without a word, so the client knows to retry.
    #[error("The gateway is shutting down: the stream was ended before the upstream finished; retry the request")]
    ShuttingDown,
    /// In-flight requests already hold `limits.max_buffered_bytes` of bodies.
    #[error("The gateway is busy: too many request bytes in flight; retry shortly")]
    Overloaded,
    /// The target's provider does not serve the route (Portkey's gateway error, 500).
    #[error("{0} is not supported by {1}")]
    Unsupported(&'static str, String),
    #[error("Invalid content type passed")]
    UnsupportedContentType,
    #[error("Request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The client went away while its request body was being read.
    #[error("client closed the connection: {0}")]
    ClientClosed(String),
    /// DNS resolution of the upstream host failed.
    #[error("could not resolve upstream host {host}: {detail}")]
    UpstreamDns { host: String, detail: String },
    /// TCP or TLS connection to the upstream failed (refused, unreachable, handshake, timeout).
    #[error("could not connect to {provider} upstream: {detail}")]
    UpstreamConnect { provider: String, detail: String },
    /// The upstream did not answer (or stalled mid-body) within the read timeout.
    #[error("{provider} upstream timed out: {detail}")]
    UpstreamTimeout { provider: String, detail: String },
    /// The upstream connection failed after it was established (reset, malformed response).
    #[error("{provider} upstream failed: {detail}")]
    UpstreamIo { provider: String, detail: String },
    /// `x-portkey-config` starts like JSON but is not valid JSON.
    #[error("Invalid config passed. You need to pass a valid json")]
    InvalidConfigJson(String),
    /// The config breaks the schema; every problem with its JSON path.
    #[error("Invalid config passed")]
    InvalidConfig(Vec<String>),
    /// `x-portkey-config` names an id that settings do not define.
    #[error("Invalid config id passed: no config named {0:?} is defined in the gateway settings")]
    UnknownConfig(String),
    #[error("Invalid virtual key passed: no virtual key {0:?} is defined in the gateway settings")]
    UnknownVirtualKey(String),
    #[error("Invalid or missing x-portkey-api-key")]
    Unauthorized,
    /// Portkey's conditional router refused the config (an unknown operator or target name,
    /// no conditions): its own message.
    #[error("{0}")]
    Router(String),
    /// A rate limit or a budget refused the request (429 or 412), in Portkey's words.
    #[error("{}", .0.message)]
    LimitExceeded(Box<Exceeded>),
    /// The limit counters could not be read and `limits.on_backend_error` is `deny`.
    #[error("Rate limits and budgets cannot be checked now: the limits store is unavailable")]
    LimitsUnavailable,
    /// Conditional routing found no matching condition and no default (the strategy's path
    /// goes to the log line).
    #[error("{NO_ROUTE_MESSAGE}")]
    NoRouteMatched(String),
    /// The per-attempt `request_timeout` elapsed (Portkey's synthetic 408).
    #[error("Request exceeded the timeout sent in the request: {0}ms")]
    RequestTimeout(u64),
    /// The request found no answer within `upstream.request_deadline_ms`, across all its
    /// attempts, retries and fallbacks.
    #[error(
        "The request did not complete within its deadline of {0} ms (upstream.request_deadline_ms)"
    )]
    DeadlineExceeded(u64),
    /// A stream's first chunk did not arrive within `upstream.first_token_timeout_ms`.
    #[error("No first token within {0}ms")]
    FirstTokenTimeout(u64),
    /// The retry budget of the target is spent (only when no earlier answer can be returned).
    #[error("Retry budget exhausted for {0}")]
    RetryBudgetExhausted(String),
    /// Every candidate target's circuit breaker is open.
    #[error("All targets are unavailable: circuit breaker open for {0}")]
    CircuitOpen(String),
    #[error("Invalid feedback: {0}")]
    InvalidFeedback(String),
    #[error("No feedback with id {0:?} is known to this gateway")]
    FeedbackNotFound(String),
    /// A feedback update found neither the id in this process nor an answer from the log
    /// store's database (the detail, never the URL, goes to the log line).
    #[error("Feedback cannot be updated now: the log store is unavailable")]
    LogStoreUnavailable(String),
    /// A provider's own settings (Azure's resource, deployment) are missing or malformed, or
    /// the request cannot be expressed in the provider's API.
    #[error("{0}")]
    ProviderRequest(String),
    #[error("Not Found")]
    NotFound,
    #[error("{0}")]
    Internal(String),
}

/// Portkey's validation failure, fields in Portkey's order (its bodies are compared byte for
/// byte): `{"status":"failure","message":...,"errors":[...]}`.
#[derive(Serialize)]
struct Failure<'a> {
    status: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a Vec<String>>,
}

/// The OpenAI error envelope in Portkey's field order: `{"error":{"message","type","param",
/// "code"},"provider"}` (`provider` on provider errors only).
#[derive(Serialize)]
pub(crate) struct ErrorEnvelope {
    pub error: ErrorObject,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct ErrorObject {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: Value,
    pub param: Value,
    pub code: Value,
}

impl ErrorObject {
    /// An error with no `param` or `code`.
    pub(crate) fn new(message: String, kind: Value) -> Self {
        ErrorObject {
            message,
            kind,
            param: Value::Null,
            code: Value::Null,
        }
    }
}

/// A refusal by a rate limit or a budget, as Portkey answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    /// 429 (rate limit) or 412 (budget).
    pub status: u16,
    pub message: String,
    /// The error object's `type` (`virtual_key_rate_limit_error` ...).
    pub kind: &'static str,
    /// The error object's `code` (`"04"` for a spent budget ...).
    pub code: Option<&'static str>,
    /// Seconds until the window ends (`retry-after`), for a rate limit.
    pub retry_after: Option<u64>,
    /// A gateway key's refusal, in Portkey's `Portkey Error: … Error Code: NN` envelope.
    pub wrapped: bool,
    /// Whose limit (`virtual_key`, `gateway_key`, `policy`), for the metric.
    pub scope: &'static str,
}

/// Portkey's envelope of a gateway key's refusal: `{"status":"failure","message":…,"error":
/// {"message":…,"code":…}}`.
#[derive(Serialize)]
struct Wrapped<'a> {
    status: &'static str,
    message: &'a str,
    error: WrappedError<'a>,
}

#[derive(Serialize)]
struct WrappedError<'a> {
    message: &'a str,
    code: Option<&'static str>,
}

/// Which JSON envelope a status is rendered with.
enum Shape {
    /// Portkey's `{"status":"failure","message":...}`.
    Portkey,
    /// OpenAI's `{"error":{...}}` with the given `type`.
    OpenAi(&'static str),
    /// Portkey's 404: `{"message":"Not Found","ok":false}`.
    NotFound,
}

impl GatewayError {
    /// The HTTP status this error is answered with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::InvalidJson(_)
            | Self::InvalidBody(_)
            | Self::MissingHeaders
            | Self::MissingProvider
            | Self::UnknownProvider(_)
            | Self::InvalidCustomHost(_)
            | Self::InvalidHeader { .. }
            | Self::KeyToForeignHost
            | Self::InvalidPath(_)
            | Self::UnsupportedContentType
            | Self::InvalidConfigJson(_)
            | Self::InvalidConfig(_)
            | Self::UnknownConfig(_)
            | Self::NoRouteMatched(_)
            | Self::Router(_)
            | Self::InvalidFeedback(_)
            | Self::ProviderRequest(_) => 400,
            Self::LimitExceeded(e) => e.status,
            Self::LimitsUnavailable => 503,
            Self::FeedbackNotFound(_) => 404,
            Self::LogStoreUnavailable(_) => 503,
            Self::UnknownVirtualKey(_) | Self::Unauthorized => 401,
            Self::RequestTimeout(_) | Self::FirstTokenTimeout(_) => 408,
            Self::CircuitOpen(_)
            | Self::RetryBudgetExhausted(_)
            | Self::Overloaded
            | Self::ShuttingDown => 503,
            Self::BodyTooLarge { .. } => 413,
            Self::ClientClosed(_) => 499,
            Self::UpstreamDns { .. } | Self::UpstreamConnect { .. } | Self::UpstreamIo { .. } => {
                502
            }
            Self::UpstreamTimeout { .. } | Self::DeadlineExceeded(_) => 504,
            Self::NotFound => 404,
            Self::LoopDetected => 508,
            Self::Internal(_) | Self::Unsupported(..) => 500,
        }
    }

    /// A short, fixed label for logs and metrics (never contains request data).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidBody(_) => "invalid_body",
            Self::MissingHeaders => "missing_headers",
            Self::MissingProvider => "missing_provider",
            Self::UnknownProvider(_) => "unknown_provider",
            Self::InvalidCustomHost(_) => "invalid_custom_host",
            Self::InvalidHeader { .. } => "invalid_header",
            Self::KeyToForeignHost => "key_to_foreign_host",
            Self::LoopDetected => "loop_detected",
            Self::Overloaded => "overloaded",
            Self::ShuttingDown => "shutting_down",
            Self::Unsupported(..) => "unsupported",
            Self::InvalidPath(_) => "invalid_path",
            Self::UnsupportedContentType => "unsupported_content_type",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::ClientClosed(_) => "client_closed",
            Self::UpstreamDns { .. } => "upstream_dns",
            Self::UpstreamConnect { .. } => "upstream_connect",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamIo { .. } => "upstream_io",
            Self::InvalidConfigJson(_) | Self::InvalidConfig(_) => "invalid_config",
            Self::UnknownConfig(_) => "unknown_config",
            Self::UnknownVirtualKey(_) => "unknown_virtual_key",
            Self::Unauthorized => "unauthorized",
            Self::NoRouteMatched(_) => "no_route_matched",
            Self::LimitExceeded(e) if e.status == 429 => "rate_limited",
            Self::LimitExceeded(_) => "budget_exhausted",
            Self::LimitsUnavailable => "limits_unavailable",
            Self::Router(_) => "router",
            Self::RequestTimeout(_) => "request_timeout",
            Self::FirstTokenTimeout(_) => "first_token_timeout",
            Self::DeadlineExceeded(_) => "deadline_exceeded",
            Self::CircuitOpen(_) => "circuit_open",
            Self::RetryBudgetExhausted(_) => "retry_budget_exhausted",
            Self::InvalidFeedback(_) => "invalid_feedback",
            Self::FeedbackNotFound(_) => "feedback_not_found",
            Self::LogStoreUnavailable(_) => "log_store_unavailable",
            Self::ProviderRequest(_) => "invalid_provider_request",
            Self::NotFound => "not_found",
            Self::Internal(_) => "internal",
        }
    }

    /// What the client-facing message leaves out on purpose (Portkey's messages are fixed
    /// strings), for the log line: the unknown slug, why a custom host was refused, the JSON
    /// parser's complaint, the strategy that matched nothing. Never holds credentials.
    pub(crate) fn detail(&self) -> Option<&str> {
        match self {
            Self::UnknownProvider(d)
            | Self::InvalidCustomHost(d)
            | Self::InvalidConfigJson(d)
            | Self::NoRouteMatched(d)
            | Self::LogStoreUnavailable(d) => Some(d),
            _ => None,
        }
    }

    /// Whether the answer is the gateway's own decision inside target execution (an open
    /// circuit, a spent retry budget, an internal fault), marked with
    /// `x-portkey-gateway-exception: true` as Portkey marks its gateway errors. A provider's
    /// failure (timeout, refused connection) is not: Portkey answers those without the mark.
    pub(crate) fn is_gateway_exception(&self) -> bool {
        matches!(
            self,
            Self::CircuitOpen(_)
                | Self::RetryBudgetExhausted(_)
                | Self::Internal(_)
                | Self::Overloaded
                | Self::ShuttingDown
                | Self::Unsupported(..)
        )
    }

    /// Whether the failure happened in the upstream exchange (the target may be retried or
    /// fallen back from) rather than in the client's request.
    pub(crate) fn is_upstream(&self) -> bool {
        matches!(
            self,
            Self::RequestTimeout(_)
                | Self::FirstTokenTimeout(_)
                | Self::CircuitOpen(_)
                | Self::RetryBudgetExhausted(_)
                | Self::UpstreamDns { .. }
                | Self::UpstreamConnect { .. }
                | Self::UpstreamTimeout { .. }
                | Self::UpstreamIo { .. }
        )
    }

    fn shape(&self) -> Shape {
        match self {
            Self::NotFound => Shape::NotFound,
            Self::UpstreamTimeout { .. }
            | Self::RequestTimeout(_)
            | Self::FirstTokenTimeout(_)
            | Self::DeadlineExceeded(_) => Shape::OpenAi("timeout_error"),
            Self::CircuitOpen(_) => Shape::OpenAi("circuit_open"),
            Self::RetryBudgetExhausted(_) => Shape::OpenAi("retry_budget_exhausted"),
            Self::UpstreamDns { .. } | Self::UpstreamConnect { .. } | Self::UpstreamIo { .. } => {
                Shape::OpenAi("upstream_error")
            }
            Self::Internal(_) => Shape::OpenAi("gateway_error"),
            Self::Overloaded => Shape::OpenAi("overloaded"),
            Self::ShuttingDown => Shape::OpenAi("shutting_down"),
            Self::LimitsUnavailable => Shape::OpenAi("limits_unavailable"),
            _ => Shape::Portkey,
        }
    }

    /// The JSON body sent to the client.
    pub(crate) fn body(&self) -> Bytes {
        if let Self::LimitExceeded(e) = self {
            return e.body();
        }
        let message = self.to_string();
        let written = match self.shape() {
            Shape::Portkey => serde_json::to_vec(&Failure {
                status: "failure",
                message: &message,
                errors: match self {
                    Self::InvalidConfig(errors) => Some(errors),
                    _ => None,
                },
            }),
            Shape::OpenAi(kind) => serde_json::to_vec(&ErrorEnvelope {
                error: ErrorObject::new(message, Value::from(kind)),
                provider: None,
            }),
            Shape::NotFound => Ok(br#"{"message":"Not Found","ok":false}"#.to_vec()),
        };
        Bytes::from(written.unwrap_or_default())
    }

    /// The seconds a client should wait before trying again (`retry-after`).
    pub(crate) fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Overloaded => Some(1),
            Self::LimitExceeded(e) => e.retry_after,
            _ => None,
        }
    }

    /// The same error as an SSE event, for failures after a stream has started: the client
    /// sees the failure instead of a stream that merely ends.
    pub(crate) fn sse_event(&self) -> Bytes {
        let envelope = ErrorEnvelope {
            error: ErrorObject::new(self.to_string(), Value::from(self.kind())),
            provider: None,
        };
        let data = serde_json::to_string(&envelope).unwrap_or_default();
        Bytes::from(format!("event: error\ndata: {data}\n\n"))
    }
}

impl Exceeded {
    fn body(&self) -> Bytes {
        let written = if self.wrapped {
            serde_json::to_vec(&Wrapped {
                status: "failure",
                message: &self.message,
                error: WrappedError {
                    message: &self.message,
                    code: self.code,
                },
            })
        } else {
            let mut error = ErrorObject::new(self.message.clone(), Value::from(self.kind));
            error.code = self.code.map_or(Value::Null, Value::from);
            serde_json::to_vec(&ErrorEnvelope {
                error,
                provider: None,
            })
        };
        Bytes::from(written.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(GatewayError::InvalidJson("x".into()).status(), 400);
        assert_eq!(GatewayError::MissingProvider.status(), 400);
        assert_eq!(GatewayError::BodyTooLarge { limit: 1 }.status(), 413);
        let connect = GatewayError::UpstreamConnect {
            provider: "openai".into(),
            detail: "refused".into(),
        };
        assert_eq!(connect.status(), 502);
        let timeout = GatewayError::UpstreamTimeout {
            provider: "openai".into(),
            detail: "read".into(),
        };
        assert_eq!(timeout.status(), 504);
    }

    #[test]
    fn bodies_use_portkey_and_openai_shapes() {
        let v: serde_json::Value =
            serde_json::from_slice(&GatewayError::MissingProvider.body()).unwrap();
        assert_eq!(v["status"], "failure");
        assert_eq!(v["message"], MISSING_PROVIDER_MESSAGE);
        let t = GatewayError::UpstreamTimeout {
            provider: "groq".into(),
            detail: "no response".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&t.body()).unwrap();
        assert_eq!(v["error"]["type"], "timeout_error");
        let v: serde_json::Value = serde_json::from_slice(&GatewayError::NotFound.body()).unwrap();
        assert_eq!(v, json!({"message":"Not Found","ok":false}));
    }

    #[test]
    fn bodies_keep_portkeys_field_order() {
        assert_eq!(
            &GatewayError::MissingHeaders.body()[..],
            br#"{"status":"failure","message":"Either x-portkey-config or x-portkey-provider header is required"}"#
        );
        assert_eq!(
            &GatewayError::RequestTimeout(5).body()[..],
            br#"{"error":{"message":"Request exceeded the timeout sent in the request: 5ms","type":"timeout_error","param":null,"code":null}}"#
        );
        let v = GatewayError::InvalidConfig(vec!["path: , message: x".into()]).body();
        assert!(
            v.starts_with(br#"{"status":"failure","message":"Invalid config passed","errors":"#)
        );
    }
}
