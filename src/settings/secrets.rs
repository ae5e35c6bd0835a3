//! Virtual keys: the sidecar's equivalent of Portkey's hosted key vault. Settings name, per id,
//! a provider and where its key lives — an environment variable or a file such as a mounted
//! Kubernetes Secret — never the key itself. Keys are read once at start-up and kept in a type
//! that never prints them.

use super::{Settings, SettingsError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

/// A secret value (a provider key from settings, a config or a request); `Debug` and `Display`
/// print `[redacted]`, so derived `Debug` of anything holding one cannot leak it. Read it only
/// with [`Secret::expose`], where it is put on the wire.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Also redacted: a secret interpolated into a message or a panic must not print either.
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One `virtual_keys` entry as written in the settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VirtualKeyRow {
    pub provider: String,
    /// Name of the environment variable holding the key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Path of a file holding the key (surrounding whitespace is trimmed).
    #[serde(default)]
    pub api_key_file: Option<String>,
    /// Base URL replacing the provider's (an in-cluster model server, say).
    #[serde(default)]
    pub custom_host: Option<String>,
    /// Provider options under Portkey's config field names (`azure_resource_name`,
    /// `azure_deployment_id`, `azure_api_version`): what a key in Portkey's vault stores
    /// besides the secret. A config target's own fields win over these; these win over the
    /// request's `x-portkey-azure-*` headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A resolved virtual key.
#[derive(Debug, Clone)]
pub struct VirtualKey {
    pub provider: String,
    pub api_key: Option<Secret>,
    pub custom_host: Option<String>,
    /// Shared by every request that uses the key (not copied per request).
    pub options: Arc<BTreeMap<String, String>>,
}

pub type VirtualKeys = HashMap<String, VirtualKey>;

/// Reads every virtual key's secret; a missing variable or unreadable file stops start-up.
pub fn resolve_virtual_keys(
    settings: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<VirtualKeys, SettingsError> {
    let mut out = HashMap::new();
    for (id, row) in &settings.virtual_keys {
        let field = format!("virtual_keys.{id}");
        let api_key = match (&row.api_key_env, &row.api_key_file) {
            (Some(_), Some(_)) => {
                return Err(SettingsError::new(
                    &field,
                    "set api_key_env or api_key_file, not both",
                ))
            }
            (Some(var), None) => {
                Some(env(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                    SettingsError::new(&format!("{field}.api_key_env"), format!("{var} is not set"))
                })?)
            }
            (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                SettingsError::new(&format!("{field}.api_key_file"), format!("{path}: {e}"))
            })?),
            // Keyless servers (a local Ollama) need no key.
            (None, None) => None,
        };
        out.insert(
            id.clone(),
            VirtualKey {
                provider: row.provider.to_ascii_lowercase(),
                api_key: api_key.map(|k| Secret::new(k.trim().to_string())),
                custom_host: row.custom_host.clone(),
                options: Arc::new(row.options.clone()),
            },
        );
    }
    Ok(out)
}
