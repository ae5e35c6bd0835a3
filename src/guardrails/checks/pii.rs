//! `portgate.pii`: local detection and redaction of personal data and secrets — what Portkey
//! keeps in its paid plugins, done here without any call out. Categories: `email`, `phone`,
//! `credit_card` (13-19 digits passing the Luhn check), `iban` (ISO 13616 mod-97 check), `ip`
//! (IPv4 and IPv6), `secret` (API-key-shaped tokens: OpenAI/Anthropic `sk-`, AWS `AKIA`,
//! GitHub `ghp_`..., Slack `xox?-`, Google `AIza`, JWTs).
//!
//! Parameters: `categories` (default all), `redact` (default false: a detection fails the
//! check; true: every finding is replaced by `redactText`, default `[REDACTED_<CATEGORY>]`, and
//! the check passes unless `failOnDetection`). `data` reports counts per category, never the
//! values found.

use super::mutate::write_back;
use super::{CheckOutcome, Ctx, Params};
use crate::guardrails::write::{self, Obj};
use once_cell::sync::Lazy;
use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    Secret,
    CreditCard,
    Iban,
    Email,
    Ip,
    Phone,
}

/// In the order findings claim text (a card number is not also a phone number).
const ALL: [Category; 6] = [
    Category::Secret,
    Category::CreditCard,
    Category::Iban,
    Category::Email,
    Category::Ip,
    Category::Phone,
];

/// The category names in sorted order.
const BY_NAME: [&str; 6] = ["credit_card", "email", "iban", "ip", "phone", "secret"];

impl Category {
    /// The category's position in [`BY_NAME`].
    fn by_name(self) -> usize {
        match self {
            Category::CreditCard => 0,
            Category::Email => 1,
            Category::Iban => 2,
            Category::Ip => 3,
            Category::Phone => 4,
            Category::Secret => 5,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Category::Secret => "secret",
            Category::CreditCard => "credit_card",
            Category::Iban => "iban",
            Category::Email => "email",
            Category::Ip => "ip",
            Category::Phone => "phone",
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Category::Secret => {
                r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
            }
            Category::CreditCard => r"\b\d(?:[ -]?\d){12,18}\b",
            Category::Iban => r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b",
            Category::Email => r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
            Category::Ip => {
                r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b|(?:[0-9A-Fa-f]{1,4}:){2,7}:?[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{1,4})*"
            }
            Category::Phone => r"(?:\+|\b)\d[\d ().-]{6,}\d\b",
        }
    }

    /// The checksum or shape test beyond the pattern.
    fn valid(self, found: &str) -> bool {
        let digits: Vec<u32> = found.chars().filter_map(|c| c.to_digit(10)).collect();
        match self {
            Category::CreditCard => (13..=19).contains(&digits.len()) && luhn(&digits),
            Category::Iban => iban_ok(found),
            Category::Ip => found.contains('.') || found.parse::<std::net::Ipv6Addr>().is_ok(),
            Category::Phone => (8..=15).contains(&digits.len()),
            _ => true,
        }
    }
}

static PATTERNS: Lazy<Vec<(Category, Option<regex::Regex>)>> = Lazy::new(|| {
    ALL.iter()
        .map(|c| (*c, regex::Regex::new(c.pattern()).ok()))
        .collect()
});

/// The Luhn checksum of card numbers.
pub(crate) fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                *d
            }
        })
        .sum();
    sum % 10 == 0
}

/// ISO 13616: move the first four characters to the end, letters to 10..35, mod 97 == 1.
pub(crate) fn iban_ok(raw: &str) -> bool {
    let s: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&s.len()) {
        return false;
    }
    let (head, tail) = s.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// The findings in `text`: (category, byte range), not overlapping, in text order.
pub(crate) fn find(text: &str, categories: &[Category]) -> Vec<(Category, Range<usize>)> {
    let mut out: Vec<(Category, Range<usize>)> = Vec::new();
    for (cat, re) in PATTERNS.iter() {
        let (Some(re), true) = (re, categories.contains(cat)) else {
            continue;
        };
        for m in re.find_iter(text) {
            let r = m.range();
            if out.iter().any(|(_, o)| o.start < r.end && r.start < o.end) {
                continue;
            }
            if cat.valid(m.as_str()) {
                out.push((*cat, r));
            }
        }
    }
    out.sort_by_key(|(_, r)| r.start);
    out
}

#[derive(Debug)]
pub(crate) struct Pii {
    pub categories: Vec<Category>,
    pub redact: bool,
    pub redact_text: Option<String>,
    pub fail_on_detection: bool,
}

impl Pii {
    pub(crate) fn read(q: &mut Params<'_>) -> Option<Pii> {
        let categories = match q.strings("categories", false) {
            None => ALL.to_vec(),
            Some(names) => {
                let mut out = Vec::new();
                for n in names {
                    match ALL.iter().find(|c| c.name() == n) {
                        Some(c) => out.push(*c),
                        None => q.problem(
                            "categories",
                            format!("unknown category {n:?} (email, phone, credit_card, iban, ip, secret)"),
                        ),
                    }
                }
                out
            }
        };
        Some(Pii {
            categories,
            redact: q.bool("redact", false),
            redact_text: q.opt_str("redactText"),
            fail_on_detection: q.bool("failOnDetection", false),
        })
    }

    fn redacted(&self, text: &str, findings: &[(Category, Range<usize>)]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (cat, r) in findings {
            out.push_str(text.get(at..r.start).unwrap_or(""));
            match &self.redact_text {
                Some(t) => out.push_str(t),
                None => {
                    out.push_str("[REDACTED_");
                    out.push_str(&cat.name().to_ascii_uppercase());
                    out.push(']');
                }
            }
            at = r.end;
        }
        out.push_str(text.get(at..).unwrap_or(""));
        out
    }

    pub(crate) fn run(&self, ctx: &Ctx<'_>) -> CheckOutcome {
        let part = ctx.part();
        // Counts by category, in the order of their names (as `data.detected` lists them).
        let mut counts = [0u64; 6];
        let mut any = false;
        let findings: Vec<Vec<(Category, Range<usize>)>> = part
            .texts
            .iter()
            .map(|t| {
                let found = t
                    .as_deref()
                    .map_or_else(Vec::new, |t| find(t, &self.categories));
                for (c, _) in &found {
                    any = true;
                    counts[c.by_name()] += 1;
                }
                found
            })
            .collect();
        let verdict = if self.redact {
            !(any && self.fail_on_detection)
        } else {
            !any
        };
        let explanation = match (any, self.redact) {
            (false, _) => "No personal data or secrets were found.",
            (true, true) => "Personal data or secrets were found and redacted.",
            (true, false) => "Personal data or secrets were found.",
        };
        let mut detected = Vec::with_capacity(64);
        detected.push(b'{');
        for (name, n) in BY_NAME.iter().zip(counts).filter(|(_, n)| *n > 0) {
            if detected.len() > 1 {
                detected.push(b',');
            }
            write::string(&mut detected, name);
            detected.push(b':');
            write::int(&mut detected, n);
        }
        detected.push(b'}');
        let transform = if any && self.redact {
            let texts: Vec<Option<String>> = part
                .texts
                .iter()
                .zip(&findings)
                .map(|(t, found)| {
                    let t = t.as_deref()?;
                    Some(if found.is_empty() {
                        t.to_string()
                    } else {
                        self.redacted(t, found)
                    })
                })
                .collect();
            write_back(ctx, &texts)
        } else {
            None
        };
        CheckOutcome {
            verdict,
            data: Obj::new()
                .raw("detected", &detected)
                .str("explanation", explanation)
                .bool("redacted", any && self.redact)
                .bool("verdict", verdict)
                .done(),
            error: None,
            transform,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(text: &str) -> Vec<&'static str> {
        find(text, &ALL).iter().map(|(c, _)| c.name()).collect()
    }

    #[test]
    fn finds_each_category_with_its_checksum() {
        assert_eq!(cats("write to jane.doe@example.com please"), ["email"]);
        assert_eq!(cats("card 4111 1111 1111 1111 exp"), ["credit_card"]);
        // Same length, Luhn fails: not a card (read as a long digit run, not a phone either).
        assert!(!cats("card 4111 1111 1111 1112").contains(&"credit_card"));
        assert_eq!(cats("IBAN GB82 WEST 1234 5698 7654 32"), ["iban"]);
        assert!(!cats("IBAN GB82 WEST 1234 5698 7654 33").contains(&"iban"));
        assert_eq!(cats("server at 192.168.10.4 now"), ["ip"]);
        assert_eq!(cats("v6 2001:db8::1 here"), ["ip"]);
        assert_eq!(cats("call +1 (415) 555-0132"), ["phone"]);
        assert_eq!(
            cats("key sk-proj-abcdefghijklmnopqrstuvwxyz0123"),
            ["secret"]
        );
        assert_eq!(cats("AKIAIOSFODNN7EXAMPLE"), ["secret"]);
        assert!(cats("nothing personal in 2024, version 1.2.3").is_empty());
    }

    #[test]
    fn checksums() {
        assert!(luhn(&[4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2]));
        assert!(iban_ok("DE89370400440532013000"));
        assert!(!iban_ok("DE89370400440532013001"));
    }
}
