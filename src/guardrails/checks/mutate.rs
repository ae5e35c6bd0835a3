//! Checks that rewrite: addPrefix (before-request, chat/messages/completions) and regexReplace
//! (redaction of every match, request or response). A rewrite is applied by the engine to
//! the request sent upstream or to the answer the client receives.

use super::text::compile_pattern;
use super::{CheckOutcome, Ctx, Params, Transform};
use crate::guardrails::content;
use crate::guardrails::Event;
use crate::providers::Operation;
use serde_json::{json, Value};

/// Where a mutator's new texts go.
pub(crate) fn write_back(ctx: &Ctx<'_>, texts: &[Option<String>]) -> Option<Transform> {
    match (ctx.event, ctx.response_json()) {
        (Event::Before, _) => Some(Transform::Request(content::set_request_texts(
            ctx.request_json(),
            ctx.op,
            texts,
        ))),
        (Event::After, Some(r)) => Some(Transform::Response(content::set_response_texts(
            r, ctx.op, texts,
        ))),
        (Event::After, None) => None,
    }
}

#[derive(Debug)]
pub(crate) struct AddPrefix {
    pub prefix: String,
    pub role: String,
    pub add_to_existing: bool,
    pub only_if_empty: bool,
}

impl AddPrefix {
    pub(crate) fn read(q: &mut Params<'_>) -> Option<AddPrefix> {
        let prefix = q.required_str("prefix");
        let role = q.opt_str("applyToRole").unwrap_or_else(|| "user".into());
        if !matches!(role.as_str(), "user" | "system" | "assistant") {
            q.problem("applyToRole", "must be user, system or assistant");
        }
        let add_to_existing = q.bool("addToExisting", true);
        let only_if_empty = q.bool("onlyIfEmpty", false);
        Some(AddPrefix {
            prefix: prefix?,
            role,
            add_to_existing,
            only_if_empty,
        })
    }

    fn prefixed(&self, existing: &Value) -> Value {
        let p = &self.prefix;
        match existing {
            Value::Null => Value::String(p.clone()),
            Value::String(s) => Value::String(format!("{p}{s}")),
            Value::Array(items) => {
                let mut items = items.clone();
                match items.first_mut() {
                    Some(Value::Object(o))
                        if o.get("type").and_then(Value::as_str) == Some("text") =>
                    {
                        let t = o.get("text").and_then(Value::as_str).unwrap_or("");
                        let t = format!("{p}{t}");
                        o.insert("text".into(), Value::String(t));
                        Value::Array(items)
                    }
                    _ => {
                        items.insert(0, json!({"type": "text", "text": p}));
                        Value::Array(items)
                    }
                }
            }
            other => Value::String(format!("{p}{other}")),
        }
    }

    pub(crate) fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        let untouched = CheckOutcome::pass(true, Value::Null);
        if ctx.event != Event::Before || ctx.op == Operation::Embeddings {
            return untouched;
        }
        let mut json = ctx.request_json().clone();
        if ctx.op == Operation::Completions {
            let part = content::request_part(ctx.request_json(), ctx.op);
            if !part.present {
                return untouched;
            }
            let mut texts = part.texts;
            if let Some(first) = texts.first_mut() {
                *first = Some(format!("{}{}", self.prefix, first.as_deref().unwrap_or("")));
            }
            json = content::set_request_texts(ctx.request_json(), ctx.op, &texts);
        } else {
            let new_message = || {
                let content = if ctx.op == Operation::Messages {
                    json!([{"type": "text", "text": self.prefix}])
                } else {
                    Value::String(self.prefix.clone())
                };
                json!({"role": self.role, "content": content})
            };
            let mut messages = json
                .get("messages")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let target = messages
                .iter()
                .position(|m| m.get("role").and_then(Value::as_str) == Some(self.role.as_str()));
            match target {
                Some(i) => {
                    let content = messages[i].get("content").cloned().unwrap_or(Value::Null);
                    let empty = match &content {
                        Value::String(s) => s.trim().is_empty(),
                        Value::Array(a) => a.is_empty(),
                        _ => false,
                    };
                    if self.only_if_empty && !empty {
                        return untouched;
                    }
                    if self.add_to_existing {
                        if let Some(m) = messages[i].as_object_mut() {
                            m.insert("content".into(), self.prefixed(&content));
                        }
                    } else {
                        messages.insert(i, new_message());
                    }
                }
                None if self.role == "system" => messages.insert(0, new_message()),
                None => messages.push(new_message()),
            }
            json.insert("messages".into(), Value::Array(messages));
        }
        CheckOutcome {
            verdict: true,
            data: json!({"prefix": self.prefix, "requestType": ctx.request_type(),
                         "applyToRole": self.role, "addToExisting": self.add_to_existing,
                         "onlyIfEmpty": self.only_if_empty})
            .into(),
            error: None,
            transform: Some(Transform::Request(json)),
        }
    }
}

#[derive(Debug)]
pub(crate) struct RegexReplace {
    pub rule: String,
    pub regex: fancy_regex::Regex,
    /// Memory the compiled pattern holds.
    pub compiled_bytes: usize,
    pub redact_text: String,
    pub fail_on_detection: bool,
}

impl RegexReplace {
    pub(crate) fn compile(q: &mut Params<'_>) -> Option<RegexReplace> {
        let rule = q.required_str("rule")?;
        let redact_text = q
            .opt_str("redactText")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "[REDACTED]".into());
        let fail_on_detection = q.bool("failOnDetection", false);
        match compile_pattern(&rule, true) {
            Ok((regex, compiled_bytes)) => Some(RegexReplace {
                rule,
                regex,
                compiled_bytes,
                redact_text,
                fail_on_detection,
            }),
            Err(e) => {
                q.problem("rule", e);
                None
            }
        }
    }

    pub(crate) fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        let part = ctx.part();
        if !part.present {
            return CheckOutcome::error(
                "Missing text to match",
                json!({"explanation": "An error occurred while processing the regex: Missing text to match",
                       "regexPattern": self.rule}),
            );
        }
        let mut matched = false;
        let texts: Vec<Option<String>> = part
            .texts
            .iter()
            .map(|t| {
                let t = t.as_deref().filter(|t| !t.is_empty())?;
                let replaced = self.regex.replace_all(t, self.redact_text.as_str());
                if replaced != t {
                    matched = true;
                }
                Some(replaced.into_owned())
            })
            .collect();
        let verdict = !(self.fail_on_detection && matched);
        let explanation = if matched {
            format!(
                "Pattern '{}' matched and was replaced with '{}'",
                self.rule, self.redact_text
            )
        } else {
            format!("The regex pattern '{}' did not match any text.", self.rule)
        };
        CheckOutcome {
            verdict,
            data:
                json!({"regexPattern": self.rule, "verdict": verdict, "explanation": explanation})
                    .into(),
            error: None,
            transform: if matched {
                write_back(ctx, &texts)
            } else {
                None
            },
        }
    }
}
