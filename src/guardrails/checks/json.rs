//! Checks on JSON inside the text: jsonSchema (the `jsonschema` crate, schema compiled once
//! per config) and jsonKeys. JSON is looked for as Portkey does — in fenced code blocks, else
//! as `{...}` spans — and, in addition, the whole text when it is one JSON document (Portkey's
//! shortest-span search alone misses nested objects).

use super::text::Operator;
use super::{CheckOutcome, Ctx, Params};
use crate::guardrails::content::excerpt;
use once_cell::sync::Lazy;
use serde_json::{json, Value};

static CODE_BLOCK: Lazy<Option<regex::Regex>> =
    Lazy::new(|| regex::Regex::new(r"```+(?:json)?\s*([\s\S]*?)```+").ok());
static BRACES: Lazy<Option<regex::Regex>> = Lazy::new(|| regex::Regex::new(r"\{[\s\S]*?\}").ok());

/// Candidate JSON texts: the whole text, fenced blocks, then (if `spans_always` or no block
/// was found) `{...}` spans.
fn candidates(text: &str, spans_always: bool) -> Vec<String> {
    let mut out = Vec::new();
    let trimmed = text.trim();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        out.push(trimmed.to_string());
    }
    let mut blocks = 0;
    if let Some(re) = CODE_BLOCK.as_ref() {
        for c in re.captures_iter(text) {
            if let Some(m) = c.get(1) {
                out.push(m.as_str().trim().to_string());
                blocks += 1;
            }
        }
    }
    if spans_always || blocks == 0 {
        if let Some(re) = BRACES.as_ref() {
            out.extend(re.find_iter(text).map(|m| m.as_str().to_string()));
        }
    }
    out
}

#[derive(Debug)]
pub(crate) struct JsonSchema {
    pub validator: jsonschema::Validator,
    pub not: bool,
    /// The schema's `pattern` and `patternProperties` patterns: how many, and the memory their
    /// compiled forms hold.
    pub patterns: (usize, usize),
}

/// The patterns a schema holds (`pattern` values, `patternProperties` keys), each within the
/// pattern length bound.
fn schema_patterns(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("pattern", Value::String(p)) => out.push(p.clone()),
                    ("patternProperties", Value::Object(props)) => {
                        out.extend(props.keys().cloned());
                    }
                    _ => {}
                }
                schema_patterns(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| schema_patterns(v, out)),
        _ => {}
    }
}

impl JsonSchema {
    pub(crate) fn compile(q: &mut Params<'_>) -> Option<JsonSchema> {
        let not = q.not();
        let schema = match q.map.get("schema") {
            Some(s @ Value::Object(_)) => s.clone(),
            None | Some(Value::Null) => {
                q.problem("schema", "is required");
                return None;
            }
            Some(_) => {
                q.problem("schema", "must be a JSON schema object");
                return None;
            }
        };
        use crate::types::patterns;
        let mut found = Vec::new();
        schema_patterns(&schema, &mut found);
        for pattern in &found {
            if let Err(e) = patterns::check_length(pattern) {
                q.problem("schema", e);
                return None;
            }
        }
        let bytes = found.iter().map(|p| patterns::compiled_bytes(p)).sum();
        // The schema's patterns get the bounds of every other pattern a config carries.
        let engine = jsonschema::PatternOptions::fancy_regex()
            .backtrack_limit(patterns::BACKTRACK_LIMIT)
            .size_limit(patterns::SIZE_LIMIT)
            .dfa_size_limit(patterns::DFA_SIZE_LIMIT);
        match jsonschema::options()
            .with_pattern_options(engine)
            .build(&schema)
        {
            Ok(validator) => Some(JsonSchema {
                validator,
                not,
                patterns: (found.len(), bytes),
            }),
            Err(e) => {
                q.problem("schema", format!("is not a valid JSON schema: {e}"));
                None
            }
        }
    }

    pub(crate) fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        let text = ctx.text();
        let not = self.not;
        let mut best: Option<(Value, Vec<Value>, bool)> = None;
        for c in candidates(text, false) {
            let Ok(doc) = serde_json::from_str::<Value>(&c) else {
                continue;
            };
            let valid = self.validator.is_valid(&doc);
            if valid || best.is_none() {
                let errors = self
                    .validator
                    .iter_errors(&doc)
                    .map(|e| json!({"path": e.instance_path.to_string(), "message": e.to_string()}))
                    .collect();
                best = Some((doc, errors, valid));
            }
            if valid {
                break;
            }
        }
        let Some((doc, errors, valid)) = best else {
            return CheckOutcome::pass(
                false,
                json!({"explanation": "No valid JSON found in the response.", "not": not}),
            );
        };
        let verdict = valid != not;
        let explanation = match (verdict, not) {
            (true, true) => "Successfully validated JSON does not match the schema as expected.",
            (true, false) => "Successfully validated JSON against the provided schema.",
            (false, true) => "JSON matches the schema when it should not.",
            (false, false) => "Failed to validate JSON against the provided schema.",
        };
        CheckOutcome::pass(
            verdict,
            json!({"matchedJson": doc, "not": not, "explanation": explanation,
                   "validationErrors": errors}),
        )
    }
}

#[derive(Debug)]
pub(crate) struct JsonKeys {
    pub keys: Vec<String>,
    pub operator: Operator,
}

impl JsonKeys {
    pub(crate) fn read(q: &mut Params<'_>) -> Option<JsonKeys> {
        let keys = q.strings("keys", true);
        let operator = q.operator(Operator::Any);
        Some(JsonKeys {
            keys: keys?,
            operator,
        })
    }

    pub(crate) fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        let text = ctx.text();
        let op = self.operator.name();
        if text.is_empty() {
            return super::no_text("analyze");
        }
        let mut best: Option<(Value, Vec<String>, Vec<String>, bool)> = None;
        let mut parsed_any = false;
        for c in candidates(text, true) {
            let Ok(doc) = serde_json::from_str::<Value>(&c) else {
                continue;
            };
            parsed_any = true;
            let (present, missing): (Vec<String>, Vec<String>) = self
                .keys
                .iter()
                .cloned()
                .partition(|k| doc.get(k.as_str()).is_some());
            let verdict = self.operator.holds(present.len(), self.keys.len());
            // Portkey keeps the first candidate and replaces it only with one presenting more.
            let better = best
                .as_ref()
                .map_or(true, |(_, p, _, _)| present.len() > p.len());
            if verdict || better {
                best = Some((doc, present, missing, verdict));
            }
            if verdict {
                break;
            }
        }
        let Some((doc, present, missing, verdict)) = best.filter(|_| parsed_any) else {
            return CheckOutcome::pass(
                false,
                json!({"explanation": "No valid JSON found in the text.", "requiredKeys": self.keys,
                       "operator": op, "textExcerpt": excerpt(text)}),
            );
        };
        let found = if present.is_empty() {
            "No matching keys found".to_string()
        } else {
            format!("Found keys: [{}]", present.join(", "))
        };
        let lacking = if missing.is_empty() {
            "No missing keys".to_string()
        } else {
            format!("Missing keys: [{}]", missing.join(", "))
        };
        let explanation = match (self.operator, verdict) {
            (Operator::Any, true) => {
                format!("Successfully found at least one required key. {found}.")
            }
            (Operator::Any, false) => format!("Failed to find any required keys. {lacking}."),
            (Operator::All, true) => format!("Successfully found all required keys. {found}."),
            (Operator::All, false) => format!("Failed to find all required keys. {lacking}."),
            (Operator::None, true) => {
                format!("Successfully verified no required keys are present. {lacking}.")
            }
            (Operator::None, false) => {
                format!("Found some keys that should not be present. {found}.")
            }
        };
        CheckOutcome::pass(
            verdict,
            json!({"matchedJson": doc, "verdict": verdict, "explanation": explanation,
                   "presentKeys": present, "missingKeys": missing, "operator": op,
                   "textExcerpt": excerpt(text)}),
        )
    }
}
