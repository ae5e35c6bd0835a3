//! What the translating providers share: finish reasons in OpenAI's words, and media given as
//! data URLs.

/// A provider's finish reason as the client sees it: in OpenAI's words (`openai` maps the
/// provider's) under strict compliance, else as the provider said it — Portkey keeps provider
/// fields for its SDK when strict OpenAI compliance is off.
pub(crate) fn finish_reason(
    raw: &str,
    strict: bool,
    openai: impl FnOnce(&str) -> &'static str,
) -> &str {
    if strict {
        openai(raw)
    } else {
        raw
    }
}

/// A `data:` URL's parts (RFC 2397): `data:<mime>[;param]*[;base64],<payload>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataUrl<'a> {
    /// The media type; empty when the URL names none.
    pub mime: &'a str,
    /// Whether the payload is base64 (else it is the text itself, percent-encoded).
    pub base64: bool,
    /// Everything after the comma, as it is.
    pub payload: &'a str,
}

impl<'a> DataUrl<'a> {
    /// `None` for any URL that is not a data URL with a comma.
    pub(crate) fn parse(url: &'a str) -> Option<Self> {
        let (meta, payload) = url.strip_prefix("data:")?.split_once(',')?;
        let mut params = meta.split(';');
        let mime = params.next().unwrap_or("").trim();
        let base64 = params.any(|p| p.trim().eq_ignore_ascii_case("base64"));
        Some(DataUrl {
            mime,
            base64,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons_are_mapped_only_under_strict_compliance() {
        let map = |r: &str| if r == "MAX" { "length" } else { "stop" };
        assert_eq!(finish_reason("MAX", true, map), "length");
        assert_eq!(finish_reason("MAX", false, map), "MAX");
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            DataUrl::parse("data:image/png;base64,AAAA"),
            Some(DataUrl {
                mime: "image/png",
                base64: true,
                payload: "AAAA"
            })
        );
        assert_eq!(
            DataUrl::parse("data:text/plain;charset=utf-8,hi%20there"),
            Some(DataUrl {
                mime: "text/plain",
                base64: false,
                payload: "hi%20there"
            })
        );
        let bare = DataUrl::parse("data:,x").map(|d| (d.mime, d.base64));
        assert_eq!(bare, Some(("", false)));
        assert_eq!(DataUrl::parse("https://x/a.png"), None);
        assert_eq!(DataUrl::parse("data:image/png;base64"), None);
    }
}
