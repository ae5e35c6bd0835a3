//! Reading a PostgreSQL log store for an export: the feedback first (it is small: one row per
//! rating), then the requests of the time range streamed in the order they were written.

use super::*;
use crate::store::postgres::Database;
use futures_util::{pin_mut, TryStreamExt};

fn unreachable(e: impl std::fmt::Display) -> ExportError {
    ExportError::Unreachable(e.to_string())
}

/// A query's failure: a store no gateway has written to yet has no tables.
fn query_failed(e: tokio_postgres::Error) -> ExportError {
    let missing = e
        .as_db_error()
        .is_some_and(|d| d.code() == &tokio_postgres::error::SqlState::UNDEFINED_TABLE);
    if missing {
        ExportError::Unreachable(
            "the database has no log store tables (no gateway has written to it yet)".into(),
        )
    } else {
        unreachable(e)
    }
}

/// A column's value; a column of another type than expected is an error, not a panic.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, ExportError> {
    row.try_get(i)
        .map_err(|e| ExportError::Unreachable(format!("log store column {i}: {e}")))
}

fn rfc3339(t: Option<SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_millis(t).to_string())
}

pub(super) fn run(
    settings: &LogStoreSettings,
    env: &dyn Fn(&str) -> Option<String>,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(&Summary),
) -> Result<Summary, ExportError> {
    let url = settings.postgres.resolve_url(env).map_err(unreachable)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(unreachable)?;
    let db = Database::new(&url, &settings.postgres, runtime.handle().clone())
        .map_err(ExportError::Unreachable)?;
    runtime.block_on(async {
        let client = db.connect().await.map_err(unreachable)?;
        let mut ratings = Ratings::default();
        for row in client
            .query(
                "SELECT feedback_id, trace_id, value, weight FROM portgate_feedback",
                &[],
            )
            .await
            .map_err(query_failed)?
        {
            let value: i32 = col(&row, 2)?;
            ratings.set(
                col(&row, 0)?,
                col(&row, 1)?,
                i64::from(value),
                col(&row, 3)?,
            );
        }
        let mut e = exporter(opts, &ratings)?;
        let (since, until) = (rfc3339(opts.since), rfc3339(opts.until));
        // The routes are those of `Api::of_route` (the others are no conversations).
        let rows = client
            .query_raw(
                "SELECT trace_id, line->>'timestamp', route, status, provider, model, \
                 model_served, stream, input_tokens, output_tokens, cost_usd, metadata, error, \
                 denied, line, request, answer FROM portgate_requests \
                 WHERE created_at >= COALESCE($1::text::timestamptz, '-infinity') \
                 AND created_at < COALESCE($2::text::timestamptz, 'infinity') \
                 AND route IN ('chat_completions', 'chat_complete', 'responses', 'messages') ORDER BY id",
                [since, until],
            )
            .await
            .map_err(query_failed)?;
        pin_mut!(rows);
        while let Some(row) = rows.try_next().await.map_err(query_failed)? {
            let status: i32 = col(&row, 3)?;
            let metadata: Option<Value> = col(&row, 11)?;
            let r = StoredRequest {
                trace_id: col(&row, 0)?,
                timestamp: col::<Option<String>>(&row, 1)?.unwrap_or_default(),
                route: col(&row, 2)?,
                status: u16::try_from(status).unwrap_or(0),
                provider: col(&row, 4)?,
                model: col(&row, 5)?,
                model_served: col(&row, 6)?,
                stream: col(&row, 7)?,
                input_tokens: col::<Option<i64>>(&row, 8)?.map(|n| n.max(0) as u64),
                output_tokens: col::<Option<i64>>(&row, 9)?.map(|n| n.max(0) as u64),
                cost_usd: col(&row, 10)?,
                metadata: metadata.unwrap_or_else(|| Value::Object(Map::new())),
                error: col(&row, 12)?,
                denied: col(&row, 13)?,
                line: col(&row, 14)?,
                request: col(&row, 15)?,
                answer: col(&row, 16)?,
            };
            let more = e.take(&r)?;
            if e.summary.read % PROGRESS_EVERY == 0 {
                progress(&e.summary);
            }
            if !more {
                break;
            }
        }
        finish(e)
    })
}
