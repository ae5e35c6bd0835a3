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
    pub(crate) fn new(value: String) -> Self {
        Secret(value)
    }

    pub(crate) fn expose(&self) -> &str {
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
    /// `azure_deployment_id`, `azure_api_version`, `aws_region`): what a key in Portkey's vault
    /// stores besides the secret. A config target's own fields win over these; these win over
    /// the request's `x-portkey-azure-*` headers. A credential option (AWS keys, a token) is
    /// named by where it lives, like the key: `aws_secret_access_key_env` or `..._file`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Rate limits of every request that uses this key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<super::limits::RateLimit>,
    /// Budgets of every request that uses this key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage_limits: Vec<super::limits::UsageLimit>,
}

/// A resolved virtual key.
#[derive(Clone)]
pub struct VirtualKey {
    pub provider: String,
    pub api_key: Option<Secret>,
    pub custom_host: Option<String>,
    /// Shared by every request that uses the key (not copied per request). Credential options
    /// (AWS keys) are read from their `_env` / `_file` here, like the key.
    pub options: Arc<BTreeMap<String, String>>,
}

impl VirtualKey {
    /// Whether the key carries a credential of the vault's: its key, or a credential option
    /// (AWS keys and session token, an Entra token). Such a key is never sent to a host the
    /// request chose, whatever its kind.
    pub(crate) fn carries_credential(&self) -> bool {
        self.api_key.is_some() || self.has_credential_options()
    }

    /// Whether its options hold a credential (they go with every request that uses the key,
    /// even one with a key of its own).
    pub(crate) fn has_credential_options(&self) -> bool {
        self.options.keys().any(|k| is_credential_option(k))
    }
}

/// Printed without its credential options' values.
impl fmt::Debug for VirtualKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| {
                let v = if is_credential_option(k) {
                    "[redacted]"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("VirtualKey")
            .field("provider", &self.provider)
            .field("api_key", &self.api_key)
            .field("custom_host", &self.custom_host)
            .field("options", &options)
            .finish()
    }
}

/// Whether a provider option is a credential (its value is secret): AWS's key pair and session
/// token, an Entra (Azure AD) token, and any option whose name says secret, token, password,
/// key or credential.
pub(crate) fn is_credential_option(name: &str) -> bool {
    const MARKS: &[&str] = &[
        "secret",
        "token",
        "password",
        "access_key",
        "api_key",
        "private_key",
        "credential",
        "service_account",
    ];
    let name = name.to_ascii_lowercase();
    MARKS.iter().any(|m| name.contains(m))
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
        let options = resolve_options(&field, &row.options, env)?;
        out.insert(
            id.clone(),
            VirtualKey {
                provider: row.provider.to_ascii_lowercase(),
                api_key: api_key.map(|k| Secret::new(k.trim().to_string())),
                custom_host: row.custom_host.clone(),
                options: Arc::new(options),
            },
        );
    }
    Ok(out)
}

/// Refuses a credential option written in the settings themselves (`--check` and start-up):
/// the settings file is a ConfigMap, readable by whoever can read the pod's spec. The value is
/// never part of the message.
pub(crate) fn no_inline_credentials(
    field: &str,
    options: &BTreeMap<String, String>,
) -> Result<(), SettingsError> {
    let inline = options.keys().find(|name| {
        !name.ends_with("_env") && !name.ends_with("_file") && is_credential_option(name)
    });
    match inline {
        Some(name) => Err(SettingsError::new(
            &format!("{field}.options.{name}"),
            format!(
                "a credential written in the settings; name where it lives instead: \
                 {name}_env (an environment variable) or {name}_file (a file)"
            ),
        )),
        None => Ok(()),
    }
}

/// A virtual key's options with credential options read from where they live: `NAME_env` (an
/// environment variable) or `NAME_file` (a file, whitespace trimmed) become `NAME`.
fn resolve_options(
    field: &str,
    options: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, SettingsError> {
    no_inline_credentials(field, options)?;
    let mut out = BTreeMap::new();
    for (name, value) in options {
        let at = format!("{field}.options.{name}");
        let (option, secret) = if let Some(option) = name.strip_suffix("_env") {
            let secret = env(value)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| SettingsError::new(&at, format!("{value} is not set")))?;
            (option, secret.trim().to_string())
        } else if let Some(option) = name.strip_suffix("_file") {
            let secret = std::fs::read_to_string(value)
                .map_err(|e| SettingsError::new(&at, format!("{value}: {e}")))?;
            (option, secret.trim().to_string())
        } else {
            out.insert(name.clone(), value.clone());
            continue;
        };
        if options.contains_key(option) || out.insert(option.to_string(), secret).is_some() {
            return Err(SettingsError::new(
                &at,
                format!("{option} is set more than once"),
            ));
        }
    }
    Ok(out)
}
