//! AWS Signature Version 4 for Bedrock requests, by the `aws-sigv4` crate (no hand-written
//! crypto). The signature covers the method, the host, the path as sent, `content-type` and
//! the body's SHA-256; the signer adds `x-amz-date`, `x-amz-security-token` (temporary
//! credentials) and `authorization`.

use super::super::{ProviderOptions, Signing};
use crate::error::GatewayError;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign as sigv4, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use http::{HeaderName, HeaderValue};

/// The service name Bedrock's runtime API is signed for.
const SERVICE: &str = "bedrock";

/// A target's AWS access keys.
pub(crate) struct Keys<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

impl<'a> Keys<'a> {
    /// The target's keys; `None` when it has none (a Bedrock API key may then authenticate),
    /// an error when only half a pair is given.
    pub(crate) fn from_options(
        options: &'a ProviderOptions,
    ) -> Result<Option<Keys<'a>>, GatewayError> {
        let get = |k: &str| options.get(k).map(String::as_str).filter(|v| !v.is_empty());
        match (get("aws_access_key_id"), get("aws_secret_access_key")) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Some(Keys {
                access_key_id,
                secret_access_key,
                session_token: get("aws_session_token"),
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(GatewayError::ProviderRequest(
                "aws_access_key_id is given without aws_secret_access_key".into(),
            )),
            (None, Some(_)) => Err(GatewayError::ProviderRequest(
                "aws_secret_access_key is given without aws_access_key_id".into(),
            )),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Internal(format!("signing the bedrock request: {e}"))
}

/// The headers that sign `req` for `region`.
pub(crate) fn sign(
    keys: &Keys<'_>,
    region: &str,
    req: &Signing<'_>,
) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
    let identity = Credentials::new(
        keys.access_key_id,
        keys.secret_access_key,
        keys.session_token.map(str::to_string),
        None,
        "portgate",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(req.now)
        .settings(SigningSettings::default())
        .build()
        .map_err(failed)?
        .into();
    let authority = req.upstream.authority();
    let scheme = if req.upstream.tls { "https" } else { "http" };
    let uri = format!("{scheme}://{authority}{}", req.path);
    let headers = [("host", authority), ("content-type", "application/json")];
    let signable = SignableRequest::new(
        "POST",
        uri,
        headers.into_iter(),
        SignableBody::Bytes(req.body),
    )
    .map_err(failed)?;
    let (instructions, _signature) = sigv4(signable, &params).map_err(failed)?.into_parts();
    let (added, _params) = instructions.into_parts();
    added
        .into_iter()
        .map(|h| {
            let name = HeaderName::from_bytes(h.name().as_bytes()).map_err(failed)?;
            let mut value = HeaderValue::from_str(h.value()).map_err(failed)?;
            // The signature and the session token are credentials: never logged.
            if h.sensitive() || matches!(h.name(), "authorization" | "x-amz-security-token") {
                value.set_sensitive(true);
            }
            Ok((name, value))
        })
        .collect()
}
