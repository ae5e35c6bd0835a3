//! The client's request body as every step of the data path reads it, built once per request
//! after the legacy `/v1/chatComplete` wrapper is removed: the bytes to forward, the few fields
//! the gateway itself needs (read by a borrowing scan, no document tree), and the whole JSON
//! object, parsed at most once and only when something needs it (`override_params`,
//! conditional routing on `params.*`, a `stream_options` that must be edited).
//!
//! Routing, dispatch, telemetry (and later the cache key and guardrails) read this view; no
//! step parses the body on its own.

use crate::error::GatewayError;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::ops::Range;
use std::sync::OnceLock;

/// The unified-API body of one request.
#[derive(Debug)]
pub(crate) struct RequestView {
    /// The JSON body to forward (the inner `params` for a wrapped legacy request).
    pub body: Bytes,
    /// `model`, as the client asked.
    pub model: Option<String>,
    /// `"stream": true`.
    pub stream: bool,
    /// The body has a `stream_options` member (whatever its value).
    pub has_stream_options: bool,
    /// `stream_options.include_usage: true`: the client wants the usage chunk itself.
    pub wants_usage: bool,
    /// Where the scan saw the members a guardrail reads text from.
    pub content_at: ContentAt,
    /// The body as a JSON object, parsed on first use.
    params: OnceLock<Result<Map<String, Value>, String>>,
}

/// The byte ranges in `body` of the values of `messages`, `prompt` and `input`, recorded by
/// the scan (which skips over them anyway), so that a guardrail can read the text it examines
/// by parsing just that value instead of the whole body. Empty for a view built from an
/// already parsed object.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ContentAt {
    /// The ranges were recorded (false for a view of a parsed object).
    pub scanned: bool,
    pub messages: Option<Range<usize>>,
    pub prompt: Option<Range<usize>>,
    pub input: Option<Range<usize>>,
}

/// The fields a borrowing scan reads; every other field is skipped (still validated as JSON).
#[derive(Deserialize, Default)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

fn json_error(e: serde_json::Error) -> GatewayError {
    if e.is_data() {
        GatewayError::InvalidBody(e.to_string())
    } else {
        GatewayError::InvalidJson(e.to_string())
    }
}

/// Refuses anything but one JSON object before parsing (an empty body, an array, a scalar).
fn expect_object(body: &[u8]) -> Result<(), GatewayError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        None => Err(GatewayError::InvalidJson("the body is empty".into())),
        Some(_) => Err(GatewayError::InvalidJson(
            "the body must be a JSON object".into(),
        )),
    }
}

impl RequestView {
    /// The view of a plain unified-API body: validated as one JSON object and scanned once.
    pub(crate) fn parse(body: Bytes) -> Result<RequestView, GatewayError> {
        expect_object(&body)?;
        let peek: Peek<'_> = serde_json::from_slice(&body).map_err(json_error)?;
        // The raw values borrow from `body`: their offsets in it.
        let at = |raw: Option<&RawValue>| {
            raw.map(|r| {
                let start = (r.get().as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
                start..start + r.get().len()
            })
        };
        let content_at = ContentAt {
            scanned: true,
            messages: at(peek.messages),
            prompt: at(peek.prompt),
            input: at(peek.input),
        };
        let model = peek.model.map(Cow::into_owned);
        let stream = peek.stream.unwrap_or(false);
        let has_stream_options = peek.stream_options.is_some();
        let wants_usage = peek
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        Ok(RequestView {
            body,
            model,
            stream,
            has_stream_options,
            wants_usage,
            content_at,
            params: OnceLock::new(),
        })
    }

    /// The view of a legacy `/v1/chatComplete` body, which may wrap the request as
    /// `{"config": ..., "params": {...}}`; returns the view of the inner request and the config
    /// it carries. The wrapper must be parsed whole anyway, so the inner object is kept as the
    /// parsed params (no second parse).
    pub(crate) fn parse_legacy(body: Bytes) -> Result<(RequestView, Option<String>), GatewayError> {
        expect_object(&body)?;
        let mut outer: Map<String, Value> = serde_json::from_slice(&body).map_err(json_error)?;
        let Some(Value::Object(params)) = outer.remove("params") else {
            return Ok((RequestView::parse(body)?, None));
        };
        let config = outer.remove("config").map(|c| match c {
            Value::String(s) => s,
            other => other.to_string(),
        });
        let inner = serde_json::to_vec(&params)
            .map_err(|e| GatewayError::Internal(format!("serialising the request: {e}")))?;
        let view = RequestView::from_params(Bytes::from(inner), params)?;
        Ok((view, config))
    }

    /// A view of an already parsed object and its serialised bytes.
    fn from_params(body: Bytes, params: Map<String, Value>) -> Result<RequestView, GatewayError> {
        let model = match params.get("model") {
            None | Some(Value::Null) => None,
            Some(Value::String(m)) => Some(m.clone()),
            Some(_) => return Err(GatewayError::InvalidBody("model must be a string".into())),
        };
        let stream = match params.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(GatewayError::InvalidBody("stream must be a boolean".into())),
        };
        let options = params.get("stream_options");
        let wants_usage = options
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(RequestView {
            body,
            model,
            stream,
            has_stream_options: options.is_some(),
            wants_usage,
            content_at: ContentAt::default(),
            params: OnceLock::from(Ok(params)),
        })
    }

    /// The raw JSON text of a member the scan recorded (see [`ContentAt`]).
    pub(crate) fn raw(&self, at: &Option<Range<usize>>) -> Option<&[u8]> {
        at.as_ref().and_then(|r| self.body.get(r.clone()))
    }

    /// The body as a JSON object, parsed once. A body the scan accepted but a full parse
    /// refuses (a lone UTF-16 surrogate escape, which a skipping scan does not decode) is a
    /// 400, never silently replaced by an empty object.
    pub(crate) fn params(&self) -> Result<&Map<String, Value>, GatewayError> {
        self.params
            .get_or_init(|| serde_json::from_slice(&self.body).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| GatewayError::InvalidJson(e.clone()))
    }

    /// The body for one target: the client's bytes when nothing changes (no copy), else with
    /// `override_params` merged over them and/or `stream_options.include_usage` added so stream
    /// tokens are counted exactly. Adding the option alone to a body without `stream_options`
    /// splices it into the bytes instead of re-serialising the document.
    pub(crate) fn body_for(
        &self,
        overrides: Option<&Map<String, Value>>,
        ask_usage: bool,
    ) -> Result<Bytes, GatewayError> {
        if overrides.is_none() && !ask_usage {
            return Ok(self.body.clone());
        }
        if overrides.is_none() && !self.has_stream_options {
            return Ok(splice_usage(&self.body));
        }
        let mut merged = self.params()?.clone();
        for (k, v) in overrides.into_iter().flatten() {
            merged.insert(k.clone(), v.clone());
        }
        if ask_usage {
            let options = merged
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            match options {
                Value::Object(o) => {
                    o.insert("include_usage".into(), Value::Bool(true));
                }
                other => *other = serde_json::json!({ "include_usage": true }),
            }
        }
        serde_json::to_vec(&merged)
            .map(Bytes::from)
            .map_err(|e| GatewayError::Internal(format!("serialising the request: {e}")))
    }
}

const USAGE_MEMBER: &[u8] = br#""stream_options":{"include_usage":true}"#;

/// Inserts `"stream_options":{"include_usage":true}` as the first member of a JSON object
/// known to have no `stream_options` member.
fn splice_usage(body: &[u8]) -> Bytes {
    let open = body.iter().position(|b| *b == b'{').unwrap_or(0);
    let (head, tail) = body.split_at(open + 1);
    let empty = tail
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'}');
    let mut out = BytesMut::with_capacity(body.len() + USAGE_MEMBER.len() + 1);
    out.extend_from_slice(head);
    out.extend_from_slice(USAGE_MEMBER);
    if !empty {
        out.extend_from_slice(b",");
    }
    out.extend_from_slice(tail);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(s: &str) -> RequestView {
        RequestView::parse(Bytes::from(s.to_string())).unwrap()
    }

    #[test]
    fn reads_model_stream_and_usage_option() {
        let v = view(
            r#" {"model":"gpt-4o","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
        );
        assert_eq!(v.model.as_deref(), Some("gpt-4o"));
        assert!(v.stream && v.has_stream_options && v.wants_usage);
        let v = view(r#"{"messages":[],"stream":null}"#);
        assert!(v.model.is_none() && !v.stream && !v.has_stream_options);
    }

    #[test]
    fn records_where_the_content_members_are() {
        let v =
            view(r#"{"model":"m", "messages" : [{"content":"a\"b"}],"prompt":null,"input":[1]}"#);
        assert_eq!(
            v.raw(&v.content_at.messages),
            Some(&br#"[{"content":"a\"b"}]"#[..])
        );
        assert_eq!(v.content_at.prompt, None);
        assert_eq!(v.raw(&v.content_at.input), Some(&b"[1]"[..]));
        assert_eq!(
            view("{}").content_at,
            ContentAt {
                scanned: true,
                ..ContentAt::default()
            }
        );
    }

    #[test]
    fn refuses_what_is_not_a_json_object() {
        for bad in [
            "",
            "[1,2]",
            "{\"model\":",
            "{\"model\":\"m\"} trailing",
            "{\"stream\":\"yes\"}",
        ] {
            let e = RequestView::parse(Bytes::from(bad)).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
    }

    #[test]
    fn untouched_bodies_are_not_copied() {
        let v = view(r#"{"model":"m"}"#);
        let out = v.body_for(None, false).unwrap();
        assert_eq!(out.as_ptr(), v.body.as_ptr());
    }

    #[test]
    fn usage_is_spliced_without_reparsing() {
        let v = view(r#"{"model":"m","stream":true}"#);
        let out = v.body_for(None, true).unwrap();
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["stream_options"], json!({"include_usage": true}));
        assert_eq!(parsed["model"], "m");
        assert!(v.params.get().is_none(), "the body was not parsed whole");
        let empty = view(" { } ").body_for(None, true).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&empty).unwrap(),
            json!({"stream_options": {"include_usage": true}})
        );
    }

    #[test]
    fn existing_stream_options_and_overrides_are_merged() {
        let v = view(r#"{"model":"m","stream_options":{"include_usage":false,"x":1}}"#);
        let overrides = json!({"model": "o", "max_tokens": 5});
        let out = v.body_for(overrides.as_object(), true).unwrap();
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["model"], "o");
        assert_eq!(parsed["max_tokens"], 5);
        assert_eq!(
            parsed["stream_options"],
            json!({"include_usage": true, "x": 1})
        );
    }

    #[test]
    fn a_lone_surrogate_is_a_400_never_an_empty_object() {
        // The skipping scan accepts it; the full parse does not.
        let v = view(r#"{"model":"m","messages":[{"role":"user","content":"\ud800"}]}"#);
        let overrides = json!({"max_tokens": 5});
        let e = v.body_for(overrides.as_object(), false).unwrap_err();
        assert_eq!(e.status(), 400);
        // Untouched, it is forwarded byte for byte.
        assert_eq!(v.body_for(None, false).unwrap(), v.body);
    }

    #[test]
    fn legacy_wrapper_is_removed_and_its_params_read() {
        let raw = json!({
            "config": {"provider": "openai", "api_key": "k"},
            "params": {"model": "m", "stream": true, "messages": []}
        })
        .to_string();
        let (v, config) = RequestView::parse_legacy(Bytes::from(raw)).unwrap();
        assert!(v.stream);
        assert_eq!(v.model.as_deref(), Some("m"));
        assert!(config.unwrap().contains("\"provider\""));
        assert!(v.params.get().is_some(), "params kept from the one parse");
        let inner: Value = serde_json::from_slice(&v.body).unwrap();
        assert_eq!(inner["model"], "m");
        // An unwrapped body on the legacy route is read as a plain one.
        let (v, config) =
            RequestView::parse_legacy(Bytes::from(r#"{"model":"x","stream":true}"#)).unwrap();
        assert!(v.stream && config.is_none());
    }
}
