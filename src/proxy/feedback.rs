//! HTTP glue for the feedback API: read the body, validate, count, log, answer.

use super::body::read_body;
use super::ctx::RequestCtx;
use super::respond::send_local;
use super::State;
use crate::buffers::BufferLease;
use crate::error::GatewayError;
use crate::feedback::{parse_create, parse_update};
use crate::log_store::record::{FeedbackChange, FeedbackRow};
use crate::log_store::UpdateError;
use crate::telemetry::access_log::now_rfc3339;
use pingora::proxy::Session;
use serde_json::json;

/// Feedback bodies are small; this bound keeps them so.
const MAX_BODY: usize = 1024 * 1024;

/// Answers `{"status":"success","message":...,"feedback_ids":[...]}`.
async fn respond(
    session: &mut Session,
    ctx: &RequestCtx,
    message: &str,
) -> Result<(), GatewayError> {
    let body = json!({"status": "success", "message": message, "feedback_ids": ctx.feedback_ids});
    send_local(
        session,
        ctx,
        200,
        "application/json",
        crate::types::json::to_bytes(&body),
    )
    .await
    .map_err(|e| GatewayError::ClientClosed(e.to_string()))
}

pub(crate) async fn create(
    state: &State,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let lease = ctx
        .lease
        .get_or_insert_with(|| BufferLease::new(&state.buffers));
    let body = read_body(session, MAX_BODY, lease).await?;
    let items = parse_create(&body)?;
    let timestamp = now_rfc3339();
    let mut rows = Vec::with_capacity(items.len());
    for f in items {
        let id = uuid::Uuid::new_v4().to_string();
        state.metrics.feedback.with_label_values(&["create"]).inc();
        state.metrics.feedback_value.observe(f.value as f64);
        state.access_log.write(&json!({
            "timestamp": timestamp, "event": "feedback", "feedback_id": id,
            "trace_id": f.trace_id, "value": f.value, "weight": f.weight, "metadata": f.metadata,
        }));
        ctx.feedback_ids.push(id.clone());
        rows.push(FeedbackRow {
            feedback_id: id,
            trace_id: f.trace_id,
            value: f.value,
            weight: f.weight,
            metadata: f.metadata,
            timestamp: timestamp.clone(),
        });
    }
    match &state.log_store {
        Some(store) => store.feedback_created(rows).await,
        None => {
            for r in &rows {
                state.feedback.insert(&r.feedback_id, &r.trace_id);
            }
        }
    }
    respond(session, ctx, "feedback recorded").await
}

pub(crate) async fn update(
    state: &State,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let id = session
        .req_header()
        .uri
        .path()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let lease = ctx
        .lease
        .get_or_insert_with(|| BufferLease::new(&state.buffers));
    let body = read_body(session, MAX_BODY, lease).await?;
    let u = parse_update(&body)?;
    let timestamp = now_rfc3339();
    let trace_id = match &state.log_store {
        Some(store) => {
            let change = FeedbackChange {
                feedback_id: id.clone(),
                value: u.value,
                weight: u.weight,
                metadata: u.metadata.clone(),
                timestamp: timestamp.clone(),
            };
            store.feedback_changed(change).await.map_err(|e| match e {
                UpdateError::NotFound => GatewayError::FeedbackNotFound(id.clone()),
                UpdateError::Unavailable(e) => GatewayError::LogStoreUnavailable(e.to_string()),
            })?
        }
        None => state
            .feedback
            .trace_of(&id)
            .ok_or_else(|| GatewayError::FeedbackNotFound(id.clone()))?,
    };
    state.metrics.feedback.with_label_values(&["update"]).inc();
    if let Some(v) = u.value {
        state.metrics.feedback_value.observe(v as f64);
    }
    state.access_log.write(&json!({
        "timestamp": timestamp, "event": "feedback_update", "feedback_id": id,
        "trace_id": trace_id, "value": u.value, "weight": u.weight, "metadata": u.metadata,
    }));
    ctx.feedback_ids.push(id);
    respond(session, ctx, "feedback updated").await
}
