//! The access log: one JSON line per request (and per feedback), written off the request path
//! by `tracing-appender`'s worker thread to stdout or a file. It never contains keys; bodies only
//! when `log.log_bodies` is on, with credential-like fields redacted.

use crate::settings::{LogSettings, SettingsError};
use serde_json::Value;
use std::io::Write;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

pub struct AccessLog {
    writer: Option<NonBlocking>,
    /// Flushes pending lines when the gateway stops.
    _guard: Option<WorkerGuard>,
    pub log_bodies: bool,
}

impl AccessLog {
    pub fn new(settings: &LogSettings) -> Result<AccessLog, SettingsError> {
        let builder = || {
            NonBlockingBuilder::default()
                .lossy(false)
                .thread_name("portgate-access-log")
        };
        let (writer, guard) = match settings.access_log.trim() {
            "off" => (None, None),
            "stdout" => {
                let (w, g) = builder().finish(std::io::stdout());
                (Some(w), Some(g))
            }
            path => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| SettingsError::new("log.access_log", format!("{path}: {e}")))?;
                let (w, g) = builder().finish(file);
                (Some(w), Some(g))
            }
        };
        Ok(AccessLog {
            writer,
            _guard: guard,
            log_bodies: settings.log_bodies,
        })
    }

    /// Writes one line (the value serialised on one line, then `\n`).
    pub fn write(&self, line: &Value) {
        let Some(writer) = &self.writer else {
            return;
        };
        let Ok(mut buf) = serde_json::to_vec(line) else {
            return;
        };
        buf.push(b'\n');
        let mut w = writer.clone();
        let _ = w.write_all(&buf);
    }
}

/// Field names whose values are credentials, compared case-insensitively.
const SECRET_FIELDS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "x-api-key",
    "key",
    "authorization",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "secret",
    "client_secret",
    "password",
    "aws_secret_access_key",
    "aws_session_token",
    "vertex_service_account_json",
];

/// Replaces the values of credential-like fields, at any depth, with `[redacted]`.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if SECRET_FIELDS.iter().any(|s| s.eq_ignore_ascii_case(k)) {
                    *val = Value::String("[redacted]".into());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The current time as RFC 3339 with milliseconds (UTC).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_credentials_but_not_token_counts() {
        let mut v = json!({"api_key": "sk-1", "max_tokens": 5, "nested": [{"Authorization": "Bearer x", "token": "t"}]});
        redact(&mut v);
        assert_eq!(
            v,
            json!({"api_key": "[redacted]", "max_tokens": 5, "nested": [{"Authorization": "[redacted]", "token": "[redacted]"}]})
        );
    }

    #[test]
    fn writes_lines_to_a_file() {
        let path = std::env::temp_dir().join(format!("pg-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let settings = LogSettings {
            access_log: path.display().to_string(),
            ..LogSettings::default()
        };
        {
            let log = AccessLog::new(&settings).unwrap();
            log.write(&json!({"a": 1}));
            log.write(&json!({"b": 2}));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
    }
}
