//! Checks on the text itself: regexMatch, sentenceCount, wordCount, characterCount,
//! alluppercase/alllowercase, endsWith, contains, containsCode, notNull. Verdicts, counting
//! rules and `data` fields follow Portkey's plugins.

use super::{invert, no_text, Check, CheckOutcome, Ctx, Params};
use crate::guardrails::content::excerpt;
use crate::guardrails::write::Obj;
use serde_json::{json, Value};

mod count;

pub(crate) use count::{Count, Counted, Unit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operator {
    Any,
    All,
    None,
}

impl Operator {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Operator::Any => "any",
            Operator::All => "all",
            Operator::None => "none",
        }
    }

    /// The verdict for `found` of `total` items present.
    pub(crate) fn holds(self, found: usize, total: usize) -> bool {
        match self {
            Operator::Any => found > 0,
            Operator::All => found == total,
            Operator::None => found == 0,
        }
    }
}

/// Compiles a JavaScript-style pattern: `fancy-regex` adds look-around and back-references to
/// the `regex` crate's syntax, so the patterns Portkey's users write (JS `RegExp`) mostly
/// compile unchanged. A `/pattern/flags` literal is accepted with flags `i`, `m`, `s`
/// (`g` is implied: every match is replaced). Also answers the memory the compiled pattern
/// holds ([`patterns::compiled_bytes`](crate::types::patterns::compiled_bytes)).
pub(crate) fn compile_pattern(
    raw: &str,
    literal_allowed: bool,
) -> Result<(fancy_regex::Regex, usize), String> {
    let (pattern, flags) = match raw.strip_prefix('/').and_then(|r| r.rsplit_once('/')) {
        Some((p, f))
            if literal_allowed && f.chars().all(|c| "gimsuyd".contains(c)) && !p.is_empty() =>
        {
            (p.to_string(), f.to_string())
        }
        _ => (raw.to_string(), String::new()),
    };
    let inline: String = flags.chars().filter(|c| "ims".contains(*c)).collect();
    let full = if inline.is_empty() {
        pattern
    } else {
        format!("(?{inline}){pattern}")
    };
    use crate::types::patterns;
    patterns::check_length(&full)?;
    // The same bounds as routing's patterns; the backtracking engine (look-around, back
    // references) also gives up after a bounded number of steps.
    fancy_regex::RegexBuilder::new(&full)
        .backtrack_limit(patterns::BACKTRACK_LIMIT)
        .delegate_size_limit(patterns::SIZE_LIMIT)
        .delegate_dfa_size_limit(patterns::DFA_SIZE_LIMIT)
        .build()
        .map(|re| (re, patterns::compiled_bytes(&full)))
        .map_err(|e| format!("the pattern does not compile: {e}"))
}

#[derive(Debug)]
pub(crate) struct RegexMatch {
    pub rule: String,
    pub regex: fancy_regex::Regex,
    /// Memory the compiled pattern holds.
    pub compiled_bytes: usize,
    pub not: bool,
}

impl RegexMatch {
    pub(crate) fn compile(q: &mut Params<'_>) -> Option<RegexMatch> {
        let rule = q.required_str("rule")?;
        let not = q.not();
        match compile_pattern(&rule, false) {
            Ok((regex, compiled_bytes)) => Some(RegexMatch {
                rule,
                regex,
                compiled_bytes,
                not,
            }),
            Err(e) => {
                q.problem("rule", e);
                None
            }
        }
    }

    pub(crate) fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        let text = ctx.text();
        if text.is_empty() {
            return no_text("match");
        }
        // The fast test first: the capture groups are only needed when the pattern matches.
        let found = match self.regex.is_match(text) {
            Ok(false) => Ok(None),
            Ok(true) => self.regex.captures(text),
            Err(e) => Err(e),
        };
        let found = match found {
            Ok(c) => c,
            Err(e) => return CheckOutcome::error(format!("regex: {e}"), Value::Null),
        };
        let verdict = invert(found.is_some(), self.not);
        let rule = self.rule.as_str();
        let explanation = match (verdict, self.not) {
            (true, true) => "' did not match the text as expected.",
            (true, false) => "' successfully matched the text.",
            (false, true) => "' matched the text when it should not have.",
            (false, false) => "' did not match the text.",
        };
        let details = found.as_ref().and_then(|c| {
            let m = c.get(0)?;
            let captures: Vec<Value> = (1..c.len())
                .map(|i| c.get(i).map_or(Value::Null, |g| Value::from(g.as_str())))
                .collect();
            let groups: serde_json::Map<String, Value> = self
                .regex
                .capture_names()
                .flatten()
                .filter_map(|n| Some((n.to_string(), Value::from(c.name(n)?.as_str()))))
                .collect();
            Some(json!({"matchedText": m.as_str(), "index": text.get(..m.start()).map_or(0, |t| t.encode_utf16().count()),
                        "groups": groups, "captures": captures}))
        });
        let data = Obj::new().text("explanation", &["The regex pattern '", rule, explanation]);
        let data = match &details {
            Some(d) => data.serde("matchDetails", d),
            None => data.null("matchDetails"),
        };
        CheckOutcome::pass(
            verdict,
            ctx.excerpt(data.bool("not", self.not).str("regexPattern", rule), text)
                .bool("verdict", verdict)
                .done(),
        )
    }
}

pub(crate) fn case(ctx: &Ctx<'_>, upper: bool, not: bool) -> CheckOutcome {
    let text = ctx.text();
    if text.is_empty() {
        return no_text("analyze");
    }
    let letters = text.chars().filter(char::is_ascii_alphabetic);
    let holds = if upper {
        letters.clone().all(|c| c.is_ascii_uppercase())
    } else {
        letters.clone().all(|c| c.is_ascii_lowercase())
    };
    let verdict = invert(holds, not);
    let (case, other) = if upper {
        ("uppercase", "lowercase")
    } else {
        ("lowercase", "uppercase")
    };
    let explanation = match (verdict, not) {
        (true, true) => ["The text contains ", other, " characters as expected."],
        (true, false) => ["All alphabetic characters in the text are ", case, "."],
        (false, true) => [
            "All alphabetic characters in the text are ",
            case,
            " when they should not be.",
        ],
        (false, false) => ["The text contains ", other, " characters."],
    };
    CheckOutcome::pass(
        verdict,
        ctx.excerpt(
            Obj::new()
                .plain("explanation", &explanation)
                .bool("not", not),
            text,
        )
        .bool("verdict", verdict)
        .done(),
    )
}

pub(crate) fn ends_with(ctx: &Ctx<'_>, suffix: &str, not: bool) -> CheckOutcome {
    let text = ctx.text();
    if text.is_empty() {
        return no_text("analyze");
    }
    let with_period = text.ends_with(&format!("{suffix}."));
    let holds = text.ends_with(suffix) || with_period;
    let verdict = invert(holds, not);
    let explanation = match (verdict, not) {
        (true, true) => ["The text does not end with \"", suffix, "\" as expected."],
        (true, false) => [
            "The text ends with \"",
            suffix,
            if with_period {
                "\" (including trailing period)."
            } else {
                "\"."
            },
        ],
        (false, true) => ["The text ends with \"", suffix, "\" when it should not."],
        (false, false) => ["The text does not end with \"", suffix, "\"."],
    };
    CheckOutcome::pass(
        verdict,
        ctx.excerpt(
            Obj::new()
                .text("explanation", &explanation)
                .bool("not", not)
                .str("suffix", suffix),
            text,
        )
        .bool("verdict", verdict)
        .done(),
    )
}

#[derive(Debug)]
pub(crate) struct Contains {
    pub words: Vec<String>,
    pub operator: Operator,
}

impl Contains {
    pub(crate) fn read(q: &mut Params<'_>) -> Option<Contains> {
        let words = q.strings("words", true);
        let operator = q.operator(Operator::Any);
        Some(Contains {
            words: words?,
            operator,
        })
    }

    pub(crate) fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        let text = ctx.text();
        let (found, missing): (Vec<&String>, Vec<&String>) =
            self.words.iter().partition(|w| text.contains(w.as_str()));
        let verdict = self.operator.holds(found.len(), self.words.len());
        let op = self.operator.name();
        let tail = match (verdict, self.operator) {
            (true, Operator::Any) => "At least one word was found.",
            (true, Operator::All) => "All words were found.",
            (true, Operator::None) => "No words were found.",
            (false, Operator::Any) => "No words were found.",
            (false, Operator::All) => "Some words were missing.",
            (false, Operator::None) => "Some words were found.",
        };
        let status = if verdict { "passed" } else { "failed" };
        CheckOutcome::pass(
            verdict,
            Obj::new()
                .plain(
                    "explanation",
                    &["Check ", status, " for '", op, "' words. ", tail],
                )
                .strs("foundWords", found.iter().map(|w| w.as_str()))
                .strs("missingWords", missing.iter().map(|w| w.as_str()))
                .str("operator", op)
                .done(),
        )
    }
}

/// Markdown fence tags and the language names `format` uses (Portkey's table).
const LANGUAGES: &[(&str, &str)] = &[
    ("sql", "SQL"),
    ("py", "Python"),
    ("python", "Python"),
    ("gyp", "Python"),
    ("ts", "TypeScript"),
    ("tsx", "TypeScript"),
    ("typescript", "TypeScript"),
    ("js", "JavaScript"),
    ("jsx", "JavaScript"),
    ("javascript", "JavaScript"),
    ("java", "Java"),
    ("cs", "C#"),
    ("cpp", "C++"),
    ("c", "C"),
    ("rb", "Ruby"),
    ("php", "PHP"),
    ("swift", "Swift"),
    ("kt", "Kotlin"),
    ("go", "Go"),
    ("rs", "Rust"),
    ("scala", "Scala"),
    ("r", "R"),
    ("pl", "Perl"),
    ("sh", "Shell"),
    ("html", "HTML"),
    ("css", "CSS"),
    ("xml", "XML"),
    ("json", "JSON"),
    ("yml", "YAML"),
    ("md", "Markdown"),
    ("dockerfile", "Dockerfile"),
];

/// The languages of the text's fenced code blocks (```` ```lang\n ... \n``` ````).
fn fenced_languages(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = rest.get(start + 3..).unwrap_or("");
        let tag_len = after
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(after.len(), |(i, _)| i);
        let tag = after.get(..tag_len).unwrap_or("");
        let body = after.get(tag_len..).unwrap_or("");
        if tag.is_empty() || !body.starts_with('\n') {
            rest = after;
            continue;
        }
        let Some(end) = body.get(1..).and_then(|b| b.find("\n```")) else {
            break;
        };
        let lower = tag.to_lowercase();
        let name = LANGUAGES
            .iter()
            .find(|(k, _)| *k == lower)
            .map_or(lower.clone(), |(_, v)| v.to_string());
        out.push(name);
        rest = body.get(1 + end + 4..).unwrap_or("");
    }
    out
}

pub(crate) fn contains_code(ctx: &Ctx<'_>, format: &str, not: bool) -> CheckOutcome {
    let text = ctx.text();
    if text.is_empty() {
        return CheckOutcome::error(
            "No text content to analyze",
            json!({"explanation": "Error while checking for code blocks: No text content to analyze",
                   "searchedFormat": format, "not": not, "textExcerpt": "No text available"}),
        );
    }
    let found = fenced_languages(text);
    if found.is_empty() {
        return CheckOutcome::pass(
            not,
            json!({"explanation": "No code blocks found in the text", "searchedFormat": format,
                   "not": not, "foundFormats": [], "textExcerpt": excerpt(text)}),
        );
    }
    let has = found.iter().any(|l| l == format);
    let verdict = invert(has, not);
    let explanation = match (verdict, not) {
        (true, true) => format!("No code blocks in {format} format found as expected"),
        (true, false) => format!("Found code block(s) in {format} format"),
        (false, true) => format!("Found code block(s) in {format} format when none were expected"),
        (false, false) => format!("No code blocks in {format} format found"),
    };
    CheckOutcome::pass(
        verdict,
        json!({"explanation": explanation, "searchedFormat": format, "not": not,
               "foundFormats": found, "textExcerpt": excerpt(text)}),
    )
}

pub(crate) fn not_null(ctx: &Ctx<'_>, not: bool) -> CheckOutcome {
    let part = ctx.part();
    let is_null = !part.present
        || part.texts.is_empty()
        || part
            .texts
            .iter()
            .all(|t| t.as_deref().map_or(true, |t| t.trim().is_empty()));
    let verdict = invert(!is_null, not);
    CheckOutcome::pass(
        verdict,
        Obj::new()
            .str(
                "explanation",
                if is_null {
                    "Content is null, undefined, or empty."
                } else {
                    "Content exists and is not null."
                },
            )
            .bool("isNull", is_null)
            .int("textArrayLength", part.texts.len())
            .str("verdict", if verdict { "passed" } else { "failed" })
            .done(),
    )
}

#[cfg(test)]
mod counted {
    use super::{Count, Counted, Unit};
    use proptest::prelude::*;

    proptest! {
        /// Counting piece by piece gives the counts of the whole text, wherever it is cut.
        #[test]
        fn pieces_add_up_to_the_whole(pieces in proptest::collection::vec("[a-z .!?\\n é]{0,12}", 0..24)) {
            let mut c = Counted::default();
            for p in &pieces {
                c.add(p);
            }
            let whole: String = pieces.concat();
            for unit in [Unit::Sentences, Unit::Words, Unit::Characters] {
                prop_assert_eq!(c.get(unit), Count::count(&whole, unit));
            }
        }
    }
}

#[cfg(test)]
mod bounds {
    use super::compile_pattern;

    /// Guardrail patterns have the routing patterns' bounds: compiled size, lazy-DFA cache,
    /// length.
    #[test]
    fn patterns_are_bounded_in_size_and_length() {
        let huge = compile_pattern(&r"\w{150}".repeat(20), false).unwrap_err();
        assert!(huge.contains("does not compile"), "{huge}");
        let long = "a".repeat(crate::types::patterns::MAX_PATTERN_BYTES + 1);
        assert!(compile_pattern(&long, false)
            .unwrap_err()
            .contains("longer than"));
        assert!(compile_pattern("/secret/i", true).is_ok());
        assert!(
            compile_pattern(r"(?<=a)b", false).is_ok(),
            "look-behind still works"
        );
    }
}
