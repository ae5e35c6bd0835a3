//! The shared backend: two tables in a PostgreSQL database, created and migrated by the
//! gateway itself (numbered migrations recorded in `portgate_log_schema`, applied under an
//! advisory lock so replicas starting together apply each once).
//!
//! A batch of requests is one binary `COPY`, a batch of feedback one statement with one JSON
//! parameter (`jsonb_to_recordset`): a batch of any size is one round trip. The documents of a
//! request (its access-log line and bodies) are `json` columns: kept as the text they are,
//! which costs the database far less per row than `jsonb` and is all an export needs.

use super::record::{FeedbackChange, FeedbackRow, RequestRow};
use crate::store::postgres::{Database, DbError};
use serde_json::Value;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// Migrations in order; the version of each is its position plus one. Never edit one that
/// shipped: add the next.
///
/// 2: the requests table keeps one index, a BRIN on `created_at` (what an export's time range
/// and the retention delete read). Rows arrive in time order, so a block range summary finds
/// them; two B-trees (on `created_at` and `trace_id`, which no query of the gateway reads) cost
/// the database about a third of its time per stored request.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE portgate_requests (
    id bigserial PRIMARY KEY,
    trace_id text NOT NULL,
    created_at timestamptz NOT NULL,
    route text NOT NULL,
    status integer NOT NULL,
    provider text,
    model text,
    model_served text,
    stream boolean NOT NULL,
    input_tokens bigint,
    output_tokens bigint,
    cost_usd double precision,
    metadata jsonb NOT NULL DEFAULT '{}',
    error text,
    denied boolean NOT NULL,
    line json NOT NULL,
    request json,
    answer json
);
CREATE INDEX portgate_requests_created_at ON portgate_requests (created_at);
CREATE INDEX portgate_requests_trace_id ON portgate_requests (trace_id);
CREATE TABLE portgate_feedback (
    feedback_id text PRIMARY KEY,
    trace_id text NOT NULL,
    value integer NOT NULL,
    weight double precision NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX portgate_feedback_trace_id ON portgate_feedback (trace_id);
"#,
    r#"
DROP INDEX IF EXISTS portgate_requests_trace_id;
DROP INDEX IF EXISTS portgate_requests_created_at;
CREATE INDEX portgate_requests_created_at ON portgate_requests USING brin (created_at);
"#,
];

/// An arbitrary, fixed key for the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x706f_7274_6761_7465;

/// Brings the schema to the newest version, on a connection of its own; returns the version
/// it is at.
pub(crate) async fn migrate(db: &Database) -> Result<usize, DbError> {
    let mut c = db.connect().await?;
    let work = async {
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS portgate_log_schema (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        // The lock is held to the transaction's end: a replica starting at the same time
        // waits, then finds the migrations applied.
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let at: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM portgate_log_schema",
                &[],
            )
            .await?
            .try_get(0)?;
        let mut at = usize::try_from(at).unwrap_or(0);
        // Both tables gone while the version table stayed (dropped by hand, or a restore that
        // left the version table): the schema is made again from the first migration.
        let gone: bool = tx
            .query_one(
                "SELECT to_regclass('portgate_requests') IS NULL \
                 AND to_regclass('portgate_feedback') IS NULL",
                &[],
            )
            .await?
            .try_get(0)?;
        if at > 0 && gone {
            tx.execute("DELETE FROM portgate_log_schema", &[]).await?;
            at = 0;
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(at) {
            tx.batch_execute(sql).await?;
            let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO portgate_log_schema (version) VALUES ($1)",
                &[&version],
            )
            .await?;
        }
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(MIGRATIONS.len())
    };
    match tokio::time::timeout(db.timeout() * 5, work).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(DbError::Timeout(
            u64::try_from((db.timeout() * 5).as_millis()).unwrap_or(u64::MAX),
        )),
    }
}

/// A JSON document sent as the text it is: no tree is built for it on either side of the
/// connection (`json` columns keep the text; `jsonb` takes it after its version byte).
#[derive(Debug)]
struct RawJson<'a>(&'a str);

impl ToSql for RawJson<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }

    to_sql_checked!();
}

/// The column types of `COPY portgate_requests`, in the statement's order.
const REQUEST_TYPES: &[Type] = &[
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::INT4,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::INT8,
    Type::INT8,
    Type::FLOAT8,
    Type::JSONB,
    Type::TEXT,
    Type::BOOL,
    Type::JSON,
    Type::JSON,
    Type::JSON,
];

/// Inserts requests with one binary `COPY` (the fastest way into a table: no statement per row,
/// no JSON array to take apart).
pub(crate) async fn insert_requests(db: &Database, rows: &[RequestRow]) -> Result<(), DbError> {
    db.with(|c| async move {
        let sink = c
            .copy_in(
                "COPY portgate_requests (trace_id, created_at, route, status, provider, model, \
                 model_served, stream, input_tokens, output_tokens, cost_usd, metadata, error, \
                 denied, line, request, answer) FROM STDIN BINARY",
            )
            .await?;
        let writer = BinaryCopyInWriter::new(sink, REQUEST_TYPES);
        futures_util::pin_mut!(writer);
        for r in rows {
            let at = humantime::parse_rfc3339_weak(&r.timestamp)
                .unwrap_or_else(|_| std::time::SystemTime::now());
            let status = i32::from(r.status);
            let tokens = |n: Option<u64>| n.and_then(|n| i64::try_from(n).ok());
            let (input, output) = (tokens(r.input_tokens), tokens(r.output_tokens));
            let metadata = RawJson(r.metadata.get());
            let line = RawJson(r.line.get());
            let request = r.request.as_deref().map(|v| RawJson(v.get()));
            let answer = r.answer.as_deref().map(|v| RawJson(v.get()));
            let values: [&(dyn ToSql + Sync); 17] = [
                &r.trace_id,
                &at,
                &r.route,
                &status,
                &r.provider,
                &r.model,
                &r.model_served,
                &r.stream,
                &input,
                &output,
                &r.cost_usd,
                &metadata,
                &r.error,
                &r.denied,
                &line,
                &request,
                &answer,
            ];
            writer.as_mut().write(&values).await?;
        }
        writer.finish().await?;
        Ok(())
    })
    .await
}

/// Inserts feedback in one statement; an id already stored is left as it is.
pub(crate) async fn insert_feedback(db: &Database, rows: &[FeedbackRow]) -> Result<(), DbError> {
    let rows = serde_json::to_value(rows).unwrap_or(Value::Null);
    db.with(|c| async move {
        c.execute(
            "INSERT INTO portgate_feedback \
             (feedback_id, trace_id, value, weight, metadata, created_at, updated_at) \
             SELECT feedback_id, trace_id, value, weight, COALESCE(metadata, '{}'), \
             timestamp, timestamp FROM jsonb_to_recordset($1::jsonb) AS r(feedback_id text, \
             trace_id text, value integer, weight double precision, metadata jsonb, \
             timestamp timestamptz) ON CONFLICT (feedback_id) DO NOTHING",
            &[&rows],
        )
        .await
    })
    .await
    .map(|_| ())
}

/// Applies a change; returns the feedback's trace id, `None` when no feedback has the id.
pub(crate) async fn update_feedback(
    db: &Database,
    change: &FeedbackChange,
) -> Result<Option<String>, DbError> {
    let value = change.value.and_then(|v| i32::try_from(v).ok());
    let metadata = change.metadata.clone().map(Value::Object);
    let (id, weight, at) = (
        change.feedback_id.clone(),
        change.weight,
        change.timestamp.clone(),
    );
    db.with(|c| async move {
        let row = c
            .query_opt(
                "UPDATE portgate_feedback SET value = COALESCE($2, value), \
                 weight = COALESCE($3, weight), metadata = COALESCE($4, metadata), \
                 updated_at = $5::text::timestamptz WHERE feedback_id = $1 RETURNING trace_id",
                &[
                    &id as &(dyn tokio_postgres::types::ToSql + Sync),
                    &value,
                    &weight,
                    &metadata,
                    &at,
                ],
            )
            .await?;
        row.map(|r| r.try_get::<_, String>(0)).transpose()
    })
    .await
}

/// Deletes requests (and feedback) older than the retention period; returns the rows deleted.
pub(crate) async fn expire(db: &Database, retention_days: u32) -> Result<u64, DbError> {
    let days = i32::try_from(retention_days).unwrap_or(i32::MAX);
    db.with(|c| async move {
        let a = c
            .execute(
                "DELETE FROM portgate_requests WHERE created_at < now() - make_interval(days => $1)",
                &[&days],
            )
            .await?;
        let b = c
            .execute(
                "DELETE FROM portgate_feedback WHERE updated_at < now() - make_interval(days => $1)",
                &[&days],
            )
            .await?;
        Ok(a + b)
    })
    .await
}
