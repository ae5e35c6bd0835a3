//! Which route a request takes, from its method and path alone.

use crate::providers::Operation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /`: Portkey's health check.
    Health,
    /// `GET /v1/health`: the health check of Portkey's 2.0 gateway (JSON, before any key).
    HealthJson,
    /// An LLM route of the unified API: body read, planned, dispatched by the gateway.
    Unified(Operation),
    /// `POST /v1/chatComplete`: the legacy chat route (config in the header or the body).
    LegacyChatComplete,
    /// `POST /v1/feedback`.
    Feedback,
    /// `PUT /v1/feedback/{id}`.
    FeedbackUpdate,
    /// Any other `/v1/*` path: streamed through Pingora's proxy path to the provider.
    Passthrough,
    NotFound,
}

impl Route {
    pub(crate) fn classify(method: &http::Method, path: &str) -> Route {
        let path = path.split('?').next().unwrap_or(path);
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        if method == http::Method::GET || method == http::Method::HEAD {
            match path {
                "/" => return Route::Health,
                "/v1/health" => return Route::HealthJson,
                _ => {}
            }
        }
        if method == http::Method::POST {
            match path {
                "/v1/chat/completions" => return Route::Unified(Operation::ChatCompletions),
                "/v1/completions" => return Route::Unified(Operation::Completions),
                "/v1/embeddings" => return Route::Unified(Operation::Embeddings),
                "/v1/messages" => return Route::Unified(Operation::Messages),
                "/v1/rerank" => return Route::Unified(Operation::Rerank),
                "/v1/responses" => return Route::Unified(Operation::Responses),
                "/v1/chatComplete" => return Route::LegacyChatComplete,
                _ => {}
            }
        }
        if method == http::Method::POST && path == "/v1/feedback" {
            return Route::Feedback;
        }
        if method == http::Method::PUT && path.starts_with("/v1/feedback/") && path.len() > 13 {
            return Route::FeedbackUpdate;
        }
        if path.starts_with("/v1/") {
            return Route::Passthrough;
        }
        Route::NotFound
    }

    /// A short label for logs and metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Route::Health | Route::HealthJson => "health",
            Route::Unified(Operation::ChatCompletions) => "chat_completions",
            Route::Unified(Operation::Completions) => "completions",
            Route::Unified(Operation::Embeddings) => "embeddings",
            Route::Unified(Operation::Messages) => "messages",
            Route::Unified(Operation::Rerank) => "rerank",
            Route::Unified(Operation::Responses) => "responses",
            Route::LegacyChatComplete => "chat_complete",
            Route::Feedback => "feedback",
            Route::FeedbackUpdate => "feedback_update",
            Route::Passthrough => "passthrough",
            Route::NotFound => "not_found",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn classifies_routes() {
        let chat = Route::Unified(Operation::ChatCompletions);
        assert_eq!(Route::classify(&Method::POST, "/v1/chat/completions"), chat);
        assert_eq!(
            Route::classify(&Method::POST, "/v1/chat/completions/?x=1"),
            chat
        );
        assert_eq!(
            Route::classify(&Method::POST, "/v1/embeddings"),
            Route::Unified(Operation::Embeddings)
        );
        assert_eq!(Route::classify(&Method::GET, "/"), Route::Health);
        assert_eq!(
            Route::classify(&Method::GET, "/v1/health"),
            Route::HealthJson
        );
        assert_eq!(
            Route::classify(&Method::POST, "/v1/rerank"),
            Route::Unified(Operation::Rerank)
        );
        assert_eq!(
            Route::classify(&Method::GET, "/v1/models"),
            Route::Passthrough
        );
        assert_eq!(
            Route::classify(&Method::GET, "/v1/chat/completions"),
            Route::Passthrough
        );
        assert_eq!(
            Route::classify(&Method::POST, "/v1/files"),
            Route::Passthrough
        );
        assert_eq!(Route::classify(&Method::GET, "/v2/models"), Route::NotFound);
        assert_eq!(
            Route::classify(&Method::POST, "/v1/feedback"),
            Route::Feedback
        );
        assert_eq!(
            Route::classify(&Method::PUT, "/v1/feedback/fb-1"),
            Route::FeedbackUpdate
        );
        assert_eq!(
            Route::classify(&Method::POST, "/v1/chatComplete"),
            Route::LegacyChatComplete
        );
        assert_eq!(Route::classify(&Method::POST, "/"), Route::NotFound);
    }
}
