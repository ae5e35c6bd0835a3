//! The checks Portkey's request validator makes before a request body is read, with its exact
//! messages: the content type, and whether the headers say where the
//! request goes.

use super::State;
use crate::error::GatewayError;
use crate::portkey::PortkeyHeaders;
use http::HeaderMap;

/// A `Content-Type`, when present, must be JSON, multipart form data or audio (the types the
/// routes of Portkey's gateway accept); parameters such as `charset` are ignored.
pub(crate) fn content_type(headers: &HeaderMap) -> Result<(), GatewayError> {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let allowed = media == "application/json"
        || media == "multipart/form-data"
        || media.starts_with("audio/");
    if allowed {
        Ok(())
    } else {
        Err(GatewayError::UnsupportedContentType)
    }
}

/// The request must name a target somehow: `x-portkey-provider` (or legacy `x-portkey-mode`),
/// `x-portkey-config`, a virtual key (portgate resolves them locally), or the settings'
/// `default_config`. A provider header must name a known provider, whatever the config says.
pub(crate) fn target_headers(state: &State, headers: &PortkeyHeaders) -> Result<(), GatewayError> {
    if headers.provider.is_none()
        && headers.config.is_none()
        && headers.virtual_key.is_none()
        && !state.configs.has_default()
    {
        return Err(GatewayError::MissingHeaders);
    }
    match &headers.provider {
        Some(slug) if state.providers.get(slug).is_none() => {
            Err(GatewayError::UnknownProvider(slug.clone()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_type(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(v).unwrap(),
        );
        h
    }

    #[test]
    fn content_types_as_portkey_accepts_them() {
        assert!(content_type(&HeaderMap::new()).is_ok());
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "multipart/form-data; boundary=x",
            "audio/mpeg",
        ] {
            assert!(content_type(&with_type(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
        ] {
            let e = content_type(&with_type(bad)).unwrap_err();
            assert_eq!(e.to_string(), "Invalid content type passed", "{bad}");
        }
    }
}
