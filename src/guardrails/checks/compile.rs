//! Reading a check's parameters (each problem with its JSON path) and compiling the check.

use super::*;

/// Reads one check's parameters, pushing a problem (with its path) for each bad one.
pub(crate) struct Params<'a> {
    pub map: &'a Map<String, Value>,
    pub path: &'a str,
    pub p: &'a mut Problems,
}

impl Params<'_> {
    pub(super) fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    pub(crate) fn bool(&mut self, key: &str, default: bool) -> bool {
        match self.map.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                let at = self.at(key);
                self.p.push(&at, "must be true or false");
                default
            }
        }
    }

    pub(crate) fn not(&mut self) -> bool {
        self.bool("not", false)
    }

    pub(crate) fn required_str(&mut self, key: &str) -> Option<String> {
        match self.map.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            None | Some(Value::Null) => {
                let at = self.at(key);
                self.p.push(&at, "is required");
                None
            }
            Some(_) => {
                let at = self.at(key);
                self.p.push(&at, "must be a non-empty string");
                None
            }
        }
    }

    pub(crate) fn opt_str(&mut self, key: &str) -> Option<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                let at = self.at(key);
                self.p.push(&at, "must be a string");
                None
            }
        }
    }

    pub(crate) fn int(&mut self, key: &str, default: i64) -> i64 {
        match self.map.get(key) {
            None | Some(Value::Null) => default,
            Some(v) => match v.as_i64() {
                Some(n) => n,
                None => {
                    let at = self.at(key);
                    self.p.push(&at, "must be a whole number");
                    default
                }
            },
        }
    }

    /// An array of strings; `required` pushes a problem when it is missing or empty.
    pub(crate) fn strings(&mut self, key: &str, required: bool) -> Option<Vec<String>> {
        match self.map.get(key) {
            None | Some(Value::Null) => {
                if required {
                    let at = self.at(key);
                    self.p.push(&at, "is required");
                }
                None
            }
            Some(Value::Array(a)) => {
                let list: Option<Vec<String>> =
                    a.iter().map(|v| v.as_str().map(str::to_string)).collect();
                match list {
                    Some(l) if !(required && l.is_empty()) => Some(l),
                    _ => {
                        let at = self.at(key);
                        self.p.push(&at, "must be a non-empty array of strings");
                        None
                    }
                }
            }
            Some(_) => {
                let at = self.at(key);
                self.p.push(&at, "must be an array of strings");
                None
            }
        }
    }

    pub(crate) fn operator(&mut self, default: text::Operator) -> text::Operator {
        match self.map.get("operator") {
            None | Some(Value::Null) => default,
            Some(Value::String(s)) if s == "any" => text::Operator::Any,
            Some(Value::String(s)) if s == "all" => text::Operator::All,
            Some(Value::String(s)) if s == "none" => text::Operator::None,
            Some(_) => {
                let at = self.at("operator");
                self.p.push(&at, "must be \"any\", \"all\" or \"none\"");
                default
            }
        }
    }

    pub(crate) fn problem(&mut self, key: &str, message: impl std::fmt::Display) {
        let at = self.at(key);
        self.p.push(&at, message);
    }
}

/// Compiles check `id` with its parameters. `trusted`: the check comes from the settings (a
/// webhook may then reach private hosts; from a request it follows the custom-host rules).
pub(crate) fn compile(
    id: &str,
    params: &Map<String, Value>,
    id_path: &str,
    params_path: &str,
    _event: Event,
    trusted: bool,
    p: &mut Problems,
) -> Option<Check> {
    let before = p.0.len();
    let mut q = Params {
        map: params,
        path: params_path,
        p,
    };
    let check = match id {
        "default.regexMatch" => text::RegexMatch::compile(&mut q).map(Check::RegexMatch),
        "default.sentenceCount" => Some(Check::SentenceCount(text::Count::read(
            &mut q,
            ("minSentences", 0),
            ("maxSentences", 99_999),
        ))),
        "default.wordCount" => Some(Check::WordCount(text::Count::read(
            &mut q,
            ("minWords", 0),
            ("maxWords", 99_999),
        ))),
        "default.characterCount" => Some(Check::CharacterCount(text::Count::read(
            &mut q,
            ("minCharacters", 0),
            ("maxCharacters", 9_999_999),
        ))),
        "default.alluppercase" | "default.alllowercase" => Some(Check::Case {
            upper: id == "default.alluppercase",
            not: q.not(),
        }),
        "default.endsWith" => {
            let suffix = q.required_str("suffix");
            let not = q.not();
            suffix.map(|suffix| Check::EndsWith { suffix, not })
        }
        "default.contains" => text::Contains::read(&mut q).map(Check::Contains),
        "default.containsCode" => {
            let format = q.required_str("format");
            let not = q.not();
            format.map(|format| Check::ContainsCode { format, not })
        }
        "default.notNull" => Some(Check::NotNull { not: q.not() }),
        "default.jsonSchema" => json::JsonSchema::compile(&mut q).map(Check::JsonSchema),
        "default.jsonKeys" => json::JsonKeys::read(&mut q).map(Check::JsonKeys),
        "default.modelWhitelist" | "default.modelwhitelist" => {
            let models = q.strings("models", true);
            let not = q.not();
            models.map(|models| Check::ModelWhitelist { models, not })
        }
        "default.modelRules" => request::ModelRules::read(&mut q).map(Check::ModelRules),
        "default.allowedRequestTypes" => Some(Check::AllowedRequestTypes(
            request::AllowedTypes::read(&mut q),
        )),
        "default.requiredMetadataKeys" => {
            request::MetadataKeys::read(&mut q).map(Check::RequiredMetadataKeys)
        }
        "default.webhook" => remote::Webhook::read(&mut q, trusted).map(Check::Webhook),
        "default.log" => remote::Log::read(&mut q, trusted).map(Check::Log),
        "default.validUrls" => Some(Check::ValidUrls {
            only_dns: q.bool("onlyDNS", false),
            not: q.not(),
        }),
        "default.addPrefix" => mutate::AddPrefix::read(&mut q).map(Check::AddPrefix),
        "default.regexReplace" => mutate::RegexReplace::compile(&mut q).map(Check::RegexReplace),
        "portgate.pii" => pii::Pii::read(&mut q).map(Check::Pii),
        "default.jwt" => {
            p.push(
                id_path,
                "default.jwt is not supported by portgate (verify tokens before the gateway)",
            );
            None
        }
        other => {
            p.push(id_path, format!("unknown check {other:?}"));
            None
        }
    };
    if p.0.len() > before {
        return None;
    }
    check
}
