//! Cost from exact usage and the pricing table (`conf/pricing.yaml`, built in, with its source
//! and date; replaceable by a file and extendable from the settings). A model with no price
//! costs nothing and is counted as unpriced: cost is never guessed.

use crate::settings::{PricingSettings, SettingsError};
use crate::types::usage::Usage;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

pub(crate) use crate::settings::Price;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PricingFile {
    #[allow(dead_code)]
    source: String,
    #[allow(dead_code)]
    date: String,
    prices: BTreeMap<String, BTreeMap<String, Price>>,
}

const BUILT_IN: &str = include_str!("../../conf/pricing.yaml");

/// A map looked up once or twice per request by names from the request: FNV hashes a short
/// name in a fraction of SipHash's time, and a map that is only read after start-up has no
/// use for SipHash's defence against keys chosen to collide.
type Names<V> = HashMap<String, V, fnv::FnvBuildHasher>;

pub struct Pricing {
    /// provider → model → price: nested so a lookup borrows the names instead of allocating.
    prices: Names<Names<Price>>,
}

impl Pricing {
    pub(crate) fn from_settings(s: &PricingSettings) -> Result<Pricing, SettingsError> {
        let text = match &s.file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| SettingsError::new("pricing.file", format!("{path}: {e}")))?,
            None => BUILT_IN.to_string(),
        };
        let file: PricingFile =
            serde_yaml_ng::from_str(&text).map_err(|e| SettingsError::new("pricing.file", e))?;
        let mut prices: Names<Names<Price>> = Names::default();
        for (provider, models) in file.prices.into_iter().chain(s.overrides.clone()) {
            prices.entry(provider).or_default().extend(models);
        }
        for (provider, models) in &prices {
            for (model, p) in models {
                let ok = [Some(p.input), Some(p.output), p.cached_input, p.cache_write]
                    .iter()
                    .flatten()
                    .all(|v| v.is_finite() && *v >= 0.0);
                if !ok {
                    return Err(SettingsError::new(
                        &format!("pricing.{provider}.{model}"),
                        "prices are numbers ≥ 0",
                    ));
                }
            }
        }
        Ok(Pricing { prices })
    }

    /// The price of a model: exact name, then without a trailing `-YYYY-MM-DD` snapshot date.
    pub(crate) fn price(&self, provider: &str, model: &str) -> Option<&Price> {
        let models = self.prices.get(provider)?;
        models.get(model).or_else(|| models.get(strip_date(model)))
    }
}

impl Price {
    /// USD for the usage at this price.
    pub(crate) fn cost(&self, usage: &Usage) -> f64 {
        let p = self;
        // Each input token is priced once, at its own rate: cache reads and cache writes are
        // subsets of `input`, never billed twice, never missed.
        let cached = usage.cached_input.min(usage.input);
        let written = usage.cache_write.min(usage.input - cached);
        let fresh = usage.input - cached - written;
        let cached_price = p.cached_input.unwrap_or(p.input);
        let write_price = p.cache_write.unwrap_or(p.input);
        (fresh as f64 * p.input
            + cached as f64 * cached_price
            + written as f64 * write_price
            + usage.output as f64 * p.output)
            / 1_000_000.0
    }
}

fn strip_date(model: &str) -> &str {
    // Works on bytes: a model name is client input and may hold multi-byte characters, so no
    // `str` slicing at an offset that could fall inside one. The suffix is all ASCII when it
    // matches, so the cut is then on a character boundary. Two spellings: OpenAI's
    // `-2024-08-06` and Anthropic's `-20241022`.
    let b = model.as_bytes();
    let dashed = |t: &[u8]| {
        t[0] == b'-'
            && t[5] == b'-'
            && t[8] == b'-'
            && t.iter()
                .enumerate()
                .all(|(i, c)| matches!(i, 0 | 5 | 8) || c.is_ascii_digit())
    };
    let compact = |t: &[u8]| t[0] == b'-' && t[1..].iter().all(u8::is_ascii_digit);
    for (len, shape) in [(11, &dashed as &dyn Fn(&[u8]) -> bool), (9, &compact)] {
        if let Some(cut) = b.len().checked_sub(len).filter(|&c| c > 0) {
            if shape(&b[cut..]) {
                return model.get(..cut).unwrap_or(model);
            }
        }
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_table_loads_and_prices_exactly() {
        let p = Pricing::from_settings(&PricingSettings::default()).unwrap();
        let u = Usage {
            input: 1_000_000,
            output: 500_000,
            cached_input: 200_000,
            cache_write: 0,
            reasoning: 0,
        };
        // gpt-4o: 800k × 2.50 + 200k × 1.25 + 500k × 10.00 per million.
        let c = p.price("openai", "gpt-4o-2024-08-06").unwrap().cost(&u);
        assert!((c - (2.0 + 0.25 + 5.0)).abs() < 1e-9, "{c}");
        // Cache writes at their own rate, each input token priced once.
        let u = Usage {
            input: 1_000_000,
            output: 0,
            cached_input: 100_000,
            cache_write: 300_000,
            reasoning: 0,
        };
        let c = p
            .price("anthropic", "claude-3-5-sonnet-20241022")
            .unwrap()
            .cost(&u);
        // 600k × 3.00 + 100k × 0.30 + 300k × 3.75 per million.
        assert!((c - (1.8 + 0.03 + 1.125)).abs() < 1e-9, "{c}");
        assert!(p.price("openai", "my-finetune").is_none());
        assert!(p.price("openai", "gpt-4o").is_some());
        assert!(p
            .price("anyscale", "mistralai/Mistral-7B-Instruct-v0.1")
            .is_some());
    }

    #[test]
    fn overrides_extend_the_table() {
        let mut s = PricingSettings::default();
        s.overrides.insert(
            "ollama".into(),
            BTreeMap::from([(
                "llama3".into(),
                Price {
                    input: 0.0,
                    output: 0.0,
                    cached_input: None,
                    cache_write: None,
                },
            )]),
        );
        let p = Pricing::from_settings(&s).unwrap();
        assert!(p.price("ollama", "llama3").is_some());
        assert_eq!(strip_date("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(
            strip_date("claude-3-5-sonnet-20241022"),
            "claude-3-5-sonnet"
        );
        assert_eq!(strip_date("gpt-4-0613"), "gpt-4-0613");
        assert_eq!(strip_date("gpt-4o"), "gpt-4o");
    }

    #[test]
    fn multi_byte_model_names_never_panic() {
        // Each of these once sliced a `str` inside a character.
        assert_eq!(strip_date("gpt-4o-é-2024-08-06"), "gpt-4o-é");
        assert_eq!(strip_date("gpt-4o-é2024-08-06"), "gpt-4o-é2024-08-06");
        assert_eq!(strip_date("é2024-08-06"), "é2024-08-06");
        assert_eq!(strip_date("日本語モデル"), "日本語モデル");
        let p = Pricing::from_settings(&PricingSettings::default()).unwrap();
        assert!(p.price("openai", "gpt-4o-é2024-08-06").is_none());
        assert!(p.price("openai", "gpt-4o-é-2024-08-06").is_none());
    }
}
