//! `log_store`: where finished requests and feedback are kept for datasets (`portgate dataset
//! export`) and for feedback updates that reach another replica. Absent: no store (the access
//! log and an in-process feedback index, as before).

use super::SettingsError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogStoreBackend {
    /// Rotated JSON-lines files under `dir`: embedded, one process.
    #[default]
    File,
    /// Tables in a PostgreSQL database shared by every replica.
    Postgres,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogStoreSettings {
    pub backend: LogStoreBackend,
    /// Keep the request body and the final answer (credential-like fields redacted). Off by
    /// default: prompts and answers may hold personal data.
    pub bodies: bool,
    /// Records older than this are deleted (files by their last write, rows by their time).
    pub retention_days: u32,
    /// Records waiting for the writer; past it new ones are dropped and counted
    /// (`portgate_log_store_dropped_total`) rather than held or waited for.
    pub queue: usize,
    /// Most records written in one batch (one round trip to PostgreSQL).
    pub batch: usize,
    /// The file backend: a directory (created when missing), relative to the working
    /// directory unless absolute.
    pub dir: String,
    /// A file is closed and the next one opened past this size.
    pub max_file_bytes: u64,
    /// Files kept; the oldest are deleted past it, so the store's disk use stays below
    /// `max_files × max_file_bytes`.
    pub max_files: usize,
    pub postgres: PostgresSettings,
}

impl Default for LogStoreSettings {
    fn default() -> Self {
        LogStoreSettings {
            backend: LogStoreBackend::File,
            bodies: false,
            retention_days: 30,
            queue: 10_000,
            batch: 500,
            dir: "portgate-logs".into(),
            max_file_bytes: 64 * 1024 * 1024,
            max_files: 16,
            postgres: PostgresSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database` (`?sslmode=disable` only: the store
    /// connects without TLS, as to a database in the same cluster). Printed without its
    /// password.
    pub url: Option<String>,
    /// Name of an environment variable holding the URL; used when `url` is not set.
    pub url_env: Option<String>,
    /// Longest a connection attempt, a batch insert or a feedback write may take.
    pub timeout_ms: u64,
    /// While the database is unreachable, a new connection is tried at most this often.
    pub reconnect_interval_ms: u64,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            url: None,
            url_env: None,
            timeout_ms: 2000,
            reconnect_interval_ms: 1000,
        }
    }
}

impl PostgresSettings {
    /// The URL: `url`, else the environment variable `url_env` names.
    pub fn resolve_url(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, SettingsError> {
        super::cache::url_or_env(
            "log_store.postgres",
            self.url.as_deref(),
            self.url_env.as_deref(),
            env,
        )
    }
}

impl LogStoreSettings {
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        let err =
            |field: &str, why: &str| Err(SettingsError::new(&format!("log_store.{field}"), why));
        if self.queue == 0 {
            return err("queue", "must be at least 1");
        }
        if self.batch == 0 {
            return err("batch", "must be at least 1");
        }
        if self.retention_days == 0 {
            return err("retention_days", "must be at least 1");
        }
        if self.backend == LogStoreBackend::File {
            if self.dir.trim().is_empty() {
                return err("dir", "must name a directory");
            }
            if self.max_file_bytes < 4096 {
                return err("max_file_bytes", "must be at least 4096");
            }
            if self.max_files < 2 {
                return err("max_files", "must be at least 2");
            }
        }
        let pg = &self.postgres;
        if self.backend == LogStoreBackend::Postgres {
            if pg.url.is_none() && pg.url_env.is_none() {
                return err(
                    "postgres.url",
                    "the postgres backend needs postgres.url or postgres.url_env",
                );
            }
            if pg.timeout_ms == 0 {
                return err("postgres.timeout_ms", "must be at least 1");
            }
        }
        if let Some(url) = &pg.url {
            check_url(url).map_err(|why| SettingsError::new("log_store.postgres.url", why))?;
        }
        Ok(())
    }
}

/// A URL the report can print without its password: the key=value form of libpq would carry
/// `password=` in the clear.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url)
        .map_err(|_| "must be a postgres://user:password@host:port/database URL".to_string())?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err("must be a postgres:// URL".into());
    }
    if let Some((_, mode)) = parsed.query_pairs().find(|(k, _)| k == "sslmode") {
        if mode != "disable" && mode != "prefer" {
            return Err(format!(
                "sslmode={mode} is not supported: the store connects without TLS"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_printable_without_their_password() {
        assert!(check_url("postgres://u:p@127.0.0.1:5432/db").is_ok());
        assert!(check_url("postgresql://u@h/db?sslmode=disable").is_ok());
        assert!(check_url("host=h password=secret").is_err());
        assert!(check_url("redis://h/").is_err());
        assert!(check_url("postgres://h/db?sslmode=require").is_err());
    }

    #[test]
    fn the_postgres_backend_needs_a_url() {
        let s = LogStoreSettings {
            backend: LogStoreBackend::Postgres,
            ..LogStoreSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "log_store.postgres.url");
        let env = |_: &str| None;
        let s = PostgresSettings {
            url_env: Some("PG".into()),
            ..PostgresSettings::default()
        };
        assert!(s
            .resolve_url(&env)
            .unwrap_err()
            .to_string()
            .contains("PG is not set"));
    }
}
