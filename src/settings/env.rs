//! `PORTGATE_*` environment overrides: the way a container or a Kubernetes pod changes a
//! setting without mounting a file.

use super::{Settings, SettingsError};

/// Every variable understood, with the setting it overrides.
pub(crate) const ENV_VARS: &[(&str, &str)] = &[
    ("PORTGATE_LISTEN", "listen"),
    ("PORTGATE_ADMIN_LISTEN", "admin_listen"),
    ("PORTGATE_THREADS", "threads"),
    ("PORTGATE_GRACE_PERIOD_SECONDS", "grace_period_seconds"),
    (
        "PORTGATE_MAX_REQUEST_BODY_BYTES",
        "limits.max_request_body_bytes",
    ),
    ("PORTGATE_MAX_BUFFERED_BYTES", "limits.max_buffered_bytes"),
    ("PORTGATE_CONNECT_TIMEOUT_MS", "upstream.connect_timeout_ms"),
    ("PORTGATE_READ_TIMEOUT_MS", "upstream.read_timeout_ms"),
    ("PORTGATE_TRUSTED_CUSTOM_HOSTS", "custom_hosts.trusted"),
    ("PORTGATE_LOG_LEVEL", "log.level"),
    ("PORTGATE_LOG_FORMAT", "log.format"),
    ("PORTGATE_PRICING_CATALOG_DIR", "pricing.catalog_dir"),
];

fn number<T: std::str::FromStr>(field: &str, var: &str, value: &str) -> Result<T, SettingsError> {
    value
        .trim()
        .parse()
        .map_err(|_| SettingsError::new(field, format!("{var}={value:?} is not a whole number")))
}

/// Applies the `PORTGATE_*` variables found in `env`; other variables are ignored, and an
/// unknown `PORTGATE_*` variable is an error so a typo does not pass silently.
pub(crate) fn apply_env(
    settings: &mut Settings,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), SettingsError> {
    for (var, value) in env {
        if !var.starts_with("PORTGATE_") {
            continue;
        }
        let Some((_, field)) = ENV_VARS.iter().find(|(name, _)| *name == var) else {
            // Variables read elsewhere (e.g. secrets referenced from the file) are not settings.
            continue;
        };
        match *field {
            "listen" => settings.listen = value,
            "pricing.catalog_dir" => settings.pricing.catalog_dir = Some(value),
            "admin_listen" => settings.admin_listen = value,
            "threads" => settings.threads = number(field, &var, &value)?,
            "grace_period_seconds" => settings.grace_period_seconds = number(field, &var, &value)?,
            "limits.max_buffered_bytes" => {
                settings.limits.max_buffered_bytes = number(field, &var, &value)?
            }
            "limits.max_request_body_bytes" => {
                settings.limits.max_request_body_bytes = number(field, &var, &value)?
            }
            "upstream.connect_timeout_ms" => {
                settings.upstream.connect_timeout_ms = number(field, &var, &value)?
            }
            "upstream.read_timeout_ms" => {
                settings.upstream.read_timeout_ms = number(field, &var, &value)?
            }
            "custom_hosts.trusted" => {
                settings.custom_hosts.trusted = value
                    .split(',')
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .collect()
            }
            "log.level" => settings.log.level = value,
            "log.format" => settings.log.format = value,
            _ => {}
        }
    }
    Ok(())
}
