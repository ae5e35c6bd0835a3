//! Cost from exact usage and a price table: Portkey's open model catalog (a snapshot built in,
//! or a fresher copy in `pricing.catalog_dir`), or a table in portgate's YAML form
//! (`pricing.file`), with `pricing.overrides` over either. Prices and costs are whole
//! picodollars (`types::money`): exact, so the cost metric adds without drift. A model with no
//! price costs nothing and is counted as unpriced: cost is never guessed.

mod catalog;

use crate::settings::{PricingSettings, SettingsError};
use crate::types::money::{picos, Picos, PER_USD_PER_MILLION};
use crate::types::usage::Usage;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// The date of the built-in snapshot of the catalog (its commit is in `conf/catalog/SOURCE.md`).
pub(crate) const SNAPSHOT_DATE: &str = "2026-08-21";

/// A model's prices in picodollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    /// Prompt tokens read from the provider's cache (defaults to `input`).
    pub cached_input: Option<u64>,
    /// Prompt tokens written to the provider's cache (defaults to `input`).
    pub cache_write: Option<u64>,
    /// Reasoning tokens, when priced apart from output (they are part of `output`).
    pub reasoning: Option<u64>,
}

/// The YAML table's form (`pricing.file`): US dollars per million tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PricingFile {
    #[allow(dead_code)]
    source: String,
    #[allow(dead_code)]
    date: String,
    prices: BTreeMap<String, BTreeMap<String, crate::settings::Price>>,
}

/// A map looked up once or twice per request by names from the request: FNV hashes a short
/// name in a fraction of SipHash's time, and a map that is only read after start-up has no
/// use for SipHash's defence against keys chosen to collide.
type Names<V> = HashMap<String, V, fnv::FnvBuildHasher>;

/// One source's prices of one provider: model → price.
pub(crate) type SourcePrices = Names<Price>;

/// A model priced by the size of its prompt, as the catalog writes it: `<model>-lte-128k` and
/// `<model>-gt-128k`.
#[derive(Debug, Clone, Copy)]
struct Tiered {
    /// The largest prompt (tokens) at the `lte` price.
    up_to: u64,
    lte: Option<Price>,
    gt: Option<Price>,
}

#[derive(Debug, Default)]
struct ProviderPrices {
    models: Names<Price>,
    tiered: Names<Tiered>,
}

/// How many models each source priced, and the units of the catalog that are not applied.
#[derive(Debug, Default)]
pub struct Summary {
    /// (source, models), in precedence order, lowest first.
    pub sources: Vec<(String, usize)>,
    /// Catalog units and fields not applied (web search, audio tokens, batch prices ...): name
    /// → how many models price it.
    pub ignored: BTreeMap<String, u64>,
}

impl Summary {
    /// The lines `portgate --check` prints (as YAML comments) and start-up logs.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "prices: {}",
            self.sources
                .iter()
                .rev()
                .map(|(source, n)| format!("{n} models from {source}"))
                .collect::<Vec<_>>()
                .join(", ")
        )];
        if !self.ignored.is_empty() {
            let mut units: Vec<(&String, &u64)> = self.ignored.iter().collect();
            units.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            out.push(format!(
                "price units not applied (usage does not report them): {}",
                units
                    .iter()
                    .map(|(u, n)| format!("{u} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out
    }
}

pub struct Pricing {
    /// provider → its prices: nested so a lookup borrows the names instead of allocating.
    providers: Names<ProviderPrices>,
    pub summary: Summary,
}

impl Pricing {
    pub(crate) fn from_settings(s: &PricingSettings) -> Result<Pricing, SettingsError> {
        let mut pricing = Pricing {
            providers: Names::default(),
            summary: Summary::default(),
        };
        match (&s.catalog_dir, &s.file) {
            (None, None) => {
                for (provider, read) in catalog::snapshot::read_all() {
                    let read = read.map_err(|e| {
                        SettingsError::new("pricing", format!("built-in catalog {provider}: {e}"))
                    })?;
                    pricing.add_catalog(provider, read);
                }
                pricing.counted(format!(
                    "the built-in catalog snapshot (Portkey-AI/models, {SNAPSHOT_DATE})"
                ));
            }
            (Some(dir), _) => {
                pricing.load_dir(dir)?;
                pricing.counted(format!("pricing.catalog_dir {dir}"));
            }
            (None, Some(_)) => {}
        }
        if let Some(path) = &s.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| SettingsError::new("pricing.file", format!("{path}: {e}")))?;
            let file: PricingFile = serde_yaml_ng::from_str(&text)
                .map_err(|e| SettingsError::new("pricing.file", e))?;
            pricing.add_table(file.prices, "pricing.file")?;
            pricing.counted(format!("pricing.file {path}"));
        }
        pricing.add_table(s.overrides.clone(), "pricing")?;
        pricing.counted("pricing.overrides".into());
        Ok(pricing)
    }

    /// Records the models added since the last source was counted.
    fn counted(&mut self, source: String) {
        let total: usize = self
            .providers
            .values()
            .map(|p| p.models.len() + p.tiered.len())
            .sum();
        let before: usize = self.summary.sources.iter().map(|(_, n)| n).sum();
        self.summary
            .sources
            .push((source, total.saturating_sub(before)));
    }

    /// A catalog directory: `{provider}.json` files, directly or under `pricing/` (a checkout
    /// of the catalog).
    fn load_dir(&mut self, dir: &str) -> Result<(), SettingsError> {
        let field = "pricing.catalog_dir";
        let root = std::path::Path::new(dir);
        let pricing_dir = root.join("pricing");
        let root = if pricing_dir.is_dir() {
            pricing_dir
        } else {
            root.to_path_buf()
        };
        let entries = std::fs::read_dir(&root)
            .map_err(|e| SettingsError::new(field, format!("{dir}: {e}")))?;
        let mut files = 0;
        for entry in entries {
            let path = entry
                .map_err(|e| SettingsError::new(field, format!("{dir}: {e}")))?
                .path();
            let (Some(provider), Some("json")) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            let file = std::fs::File::open(&path)
                .map_err(|e| SettingsError::new(field, format!("{}: {e}", path.display())))?;
            let read = catalog::read_from(file)
                .map_err(|e| SettingsError::new(field, format!("{}: {e}", path.display())))?;
            self.add_catalog(provider, read);
            files += 1;
        }
        if files == 0 {
            return Err(SettingsError::new(
                field,
                format!("{dir}: no {{provider}}.json price files"),
            ));
        }
        Ok(())
    }

    fn add_catalog(&mut self, provider: &str, read: catalog::Read) {
        for (unit, n) in read.ignored {
            *self.summary.ignored.entry(unit).or_default() += n;
        }
        let prices = self.providers.entry(provider.to_string()).or_default();
        if prices.models.is_empty() {
            prices.models.reserve(read.prices.len());
        }
        for (model, price) in read.prices {
            match tier_of(&model) {
                Some((base, lte, up_to)) => {
                    let t = prices.tiered.entry(base.to_string()).or_insert(Tiered {
                        up_to,
                        lte: None,
                        gt: None,
                    });
                    if lte {
                        t.lte = Some(price);
                    } else {
                        t.gt = Some(price);
                    }
                }
                None => {
                    prices.models.insert(model, price);
                }
            }
        }
    }

    /// Rows in US dollars per million tokens (the YAML table, the overrides), over what is
    /// there.
    fn add_table(
        &mut self,
        table: BTreeMap<String, BTreeMap<String, crate::settings::Price>>,
        field: &str,
    ) -> Result<(), SettingsError> {
        for (provider, models) in table {
            for (model, p) in models {
                let price = exact(&p).ok_or_else(|| {
                    SettingsError::new(
                        &format!("{field}.{provider}.{model}"),
                        "prices are numbers ≥ 0",
                    )
                })?;
                let prices = self.providers.entry(provider.clone()).or_default();
                prices.models.insert(model, price);
            }
        }
        Ok(())
    }

    /// The price of a model for a prompt of `input` tokens: its exact name, then without a
    /// trailing `-YYYY-MM-DD` snapshot date, then without the provider's own prefix
    /// (Fireworks' `accounts/fireworks/models/`, a Bedrock cross-region profile's `us.`); a
    /// model the catalog prices by prompt size takes the tier the prompt falls in.
    pub(crate) fn price(&self, provider: &str, model: &str, input: u64) -> Option<&Price> {
        let prices = self.providers.get(provider)?;
        prices.find(model, input).or_else(|| {
            let bare = without_prefix(provider, model);
            [strip_date(model), bare, strip_date(bare)]
                .into_iter()
                .find_map(|name| prices.find(name, input))
        })
    }

    /// Whether a model has a price (at any prompt size).
    pub(crate) fn is_priced(&self, provider: &str, model: &str) -> bool {
        self.price(provider, model, 0).is_some()
    }
}

impl ProviderPrices {
    fn find(&self, name: &str, input: u64) -> Option<&Price> {
        if let Some(p) = self.models.get(name) {
            return Some(p);
        }
        let t = self.tiered.get(name)?;
        let (first, second) = if input <= t.up_to {
            (&t.lte, &t.gt)
        } else {
            (&t.gt, &t.lte)
        };
        first.as_ref().or(second.as_ref())
    }
}

/// `<base>-lte-<n>k` / `<base>-gt-<n>k` → (base, whether it is the `lte` tier, n × 1,000).
fn tier_of(model: &str) -> Option<(&str, bool, u64)> {
    let rest = model.strip_suffix('k')?;
    let (head, n) = rest.rsplit_once('-')?;
    let n: u64 = n.parse().ok()?;
    let (base, lte) = match head.strip_suffix("-lte") {
        Some(base) => (base, true),
        None => (head.strip_suffix("-gt")?, false),
    };
    (!base.is_empty()).then_some((base, lte, n.checked_mul(1000)?))
}

/// The model name without a provider-specific prefix the catalog does not write.
fn without_prefix<'a>(provider: &str, model: &'a str) -> &'a str {
    match provider {
        "fireworks-ai" => model
            .strip_prefix("accounts/fireworks/models/")
            .unwrap_or(model),
        "bedrock" => match model.split_once('.') {
            Some((geo, rest))
                if matches!(
                    geo,
                    "us" | "eu" | "apac" | "global" | "us-gov" | "ca" | "jp" | "au"
                ) && rest.contains('.') =>
            {
                rest
            }
            _ => model,
        },
        _ => model,
    }
}

/// A row in dollars per million tokens, in picodollars per token.
fn exact(p: &crate::settings::Price) -> Option<Price> {
    let opt = |v: Option<f64>| match v {
        Some(v) => picos(v, PER_USD_PER_MILLION).map(Some),
        None => Some(None),
    };
    Some(Price {
        input: picos(p.input, PER_USD_PER_MILLION)?,
        output: picos(p.output, PER_USD_PER_MILLION)?,
        cached_input: opt(p.cached_input)?,
        cache_write: opt(p.cache_write)?,
        reasoning: opt(p.reasoning)?,
    })
}

impl Price {
    /// The cost of the usage at this price.
    pub(crate) fn cost(&self, usage: &Usage) -> Picos {
        // Each input token is priced once, at its own rate: cache reads and cache writes are
        // subsets of `input`, never billed twice, never missed. Reasoning tokens are part of
        // the output, at their own rate when they have one.
        let cached = usage.cached_input.min(usage.input);
        let written = usage.cache_write.min(usage.input - cached);
        let fresh = usage.input - cached - written;
        let reasoning = usage.reasoning.min(usage.output);
        let said = usage.output - reasoning;
        let at = |n: u64, price: u64| u128::from(n) * u128::from(price);
        Picos(
            at(fresh, self.input)
                + at(cached, self.cached_input.unwrap_or(self.input))
                + at(written, self.cache_write.unwrap_or(self.input))
                + at(said, self.output)
                + at(reasoning, self.reasoning.unwrap_or(self.output)),
        )
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

    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input,
            output,
            ..Usage::default()
        }
    }

    fn built_in() -> Pricing {
        Pricing::from_settings(&PricingSettings::default()).unwrap()
    }

    #[test]
    fn the_catalog_prices_current_models_to_the_cent() {
        let p = built_in();
        // gpt-5: $1.25 and $10 per million, exactly.
        let gpt5 = p.price("openai", "gpt-5", 0).unwrap();
        assert_eq!(gpt5.cost(&usage(1_000_000, 1_000_000)).usd(), 11.25);
        assert_eq!(gpt5.cost(&usage(1, 0)), Picos(1_250_000));
        // A dated snapshot name falls back to the model's own price.
        assert!(p.price("openai", "gpt-5-mini-2099-01-01", 0).is_some());
        for (provider, model) in [
            ("anthropic", "claude-sonnet-4-5"),
            ("google", "gemini-2.5-flash-lite"),
            ("deepseek", "deepseek-chat"),
            ("groq", "llama-3.3-70b-versatile"),
            ("anyscale", "mistralai/Mistral-7B-Instruct-v0.1"),
            ("cohere", "rerank-v3.5"),
        ] {
            assert!(p.price(provider, model, 0).is_some(), "{provider} {model}");
        }
        assert!(p.price("openai", "my-finetune", 0).is_none());
        assert!(
            p.price("openai", "default", 0).is_none(),
            "a file's default is no model"
        );
        let s = &p.summary;
        assert!(s.sources[0].0.contains(SNAPSHOT_DATE));
        assert!(s.sources[0].1 > 2500, "{:?}", s.sources);
        assert!(s.ignored.get("web_search").is_some_and(|n| *n > 0));
    }

    #[test]
    fn each_token_kind_at_its_own_rate() {
        let price = Price {
            input: 3_000_000,
            output: 15_000_000,
            cached_input: Some(300_000),
            cache_write: Some(3_750_000),
            reasoning: None,
        };
        let u = Usage {
            input: 1_000_000,
            output: 100,
            cached_input: 100_000,
            cache_write: 300_000,
            reasoning: 40,
        };
        // 600k × 3 + 100k × 0.30 + 300k × 3.75 per million, and 100 output tokens at 15.
        assert_eq!(price.cost(&u).usd(), 1.8 + 0.03 + 1.125 + 0.0015);
        // Reasoning at its own rate when it has one.
        let priced = Price {
            reasoning: Some(1_000_000),
            ..price
        };
        assert_eq!(
            priced.cost(&u).0,
            price.cost(&u).0 - 40 * 15_000_000 + 40 * 1_000_000
        );
    }

    #[test]
    fn tiers_prefixes_and_overrides() {
        let mut s = PricingSettings::default();
        let row = |input: f64| crate::settings::Price {
            input,
            output: 0.0,
            cached_input: None,
            cache_write: None,
            reasoning: None,
        };
        s.overrides.insert(
            "ollama".into(),
            BTreeMap::from([("llama3".into(), row(0.0))]),
        );
        s.overrides.insert(
            "openai".into(),
            BTreeMap::from([("gpt-5".into(), row(2.0))]),
        );
        let p = Pricing::from_settings(&s).unwrap();
        assert!(p.price("ollama", "llama3", 0).is_some());
        assert_eq!(
            p.price("openai", "gpt-5", 0).unwrap().input,
            2_000_000,
            "overrides win"
        );
        // Gemini 2.5 Pro is priced by prompt size, as `-lte-200k` / `-gt-200k` or `-128k`.
        let small = p.price("google", "gemini-2.5-pro", 1_000).unwrap();
        let large = p.price("google", "gemini-2.5-pro", 10_000_000).unwrap();
        assert!(small.input < large.input, "{small:?} {large:?}");
        assert!(p.is_priced("google", "gemini-2.5-pro"));
        // Provider prefixes the catalog does not write.
        assert_eq!(
            p.price("fireworks-ai", "accounts/fireworks/models/deepseek-v3", 0),
            p.price("fireworks-ai", "deepseek-v3", 0)
        );
        assert!(p.price("fireworks-ai", "deepseek-v3", 0).is_some());
        assert_eq!(
            p.price("bedrock", "us.anthropic.claude-3-haiku-20240307-v1:0", 0),
            p.price("bedrock", "anthropic.claude-3-haiku-20240307-v1:0", 0)
        );
        assert!(p
            .price("bedrock", "anthropic.claude-3-haiku-20240307-v1:0", 0)
            .is_some());
        assert_eq!(
            tier_of("gemini-2.5-pro-lte-128k"),
            Some(("gemini-2.5-pro", true, 128_000))
        );
        assert_eq!(
            tier_of("gemini-2.5-pro-gt-128k"),
            Some(("gemini-2.5-pro", false, 128_000))
        );
        assert_eq!(tier_of("gpt-4o"), None);
        assert_eq!(tier_of("-lte-1k"), None);
        let bad = {
            let mut s = PricingSettings::default();
            s.overrides
                .insert("x".into(), BTreeMap::from([("m".into(), row(-1.0))]));
            s
        };
        assert!(Pricing::from_settings(&bad).is_err());
    }

    #[test]
    fn a_catalog_dir_or_a_table_replaces_the_snapshot() {
        let dir = std::env::temp_dir().join(format!("portgate-catalog-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("pricing")).unwrap();
        std::fs::write(
            dir.join("pricing/openai.json"),
            br#"{"gpt-9": {"pricing_config": {"pay_as_you_go": {"request_token": {"price": 0.0001}, "response_token": {"price": 0.0002}}}}}"#,
        )
        .unwrap();
        let s = PricingSettings {
            catalog_dir: Some(dir.to_string_lossy().into_owned()),
            ..Default::default()
        };
        let p = Pricing::from_settings(&s).unwrap();
        assert_eq!(p.price("openai", "gpt-9", 0).unwrap().input, 1_000_000);
        assert!(
            p.price("openai", "gpt-5", 0).is_none(),
            "the snapshot is replaced"
        );
        assert_eq!(p.summary.sources[0].1, 1);
        std::fs::write(dir.join("pricing/broken.json"), b"{").unwrap();
        let e = Pricing::from_settings(&s).err().unwrap();
        assert!(e.to_string().contains("broken.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let table = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/examples/pricing.yaml");
        let s = PricingSettings {
            file: Some(table.into()),
            ..Default::default()
        };
        let p = Pricing::from_settings(&s).unwrap();
        assert_eq!(p.price("openai", "gpt-4o", 0).unwrap().input, 2_500_000);
        assert!(p.price("openai", "gpt-5", 0).is_none());
    }

    #[test]
    fn multi_byte_model_names_never_panic() {
        // Each of these once sliced a `str` inside a character.
        assert_eq!(strip_date("gpt-4o-é-2024-08-06"), "gpt-4o-é");
        assert_eq!(strip_date("gpt-4o-é2024-08-06"), "gpt-4o-é2024-08-06");
        assert_eq!(strip_date("é2024-08-06"), "é2024-08-06");
        assert_eq!(strip_date("日本語モデル"), "日本語モデル");
        assert_eq!(strip_date("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(
            strip_date("claude-3-5-sonnet-20241022"),
            "claude-3-5-sonnet"
        );
        assert_eq!(strip_date("gpt-4-0613"), "gpt-4-0613");
        let p = built_in();
        assert!(p.price("openai", "gpt-4o-é2024-08-06", 0).is_none());
        assert!(p.price("openai", "gpt-4o-é-2024-08-06", 0).is_none());
        assert!(p.price("bedrock", "é.日本", 0).is_none());
        assert!(p.price("google", "é-lte-1k", 0).is_none());
    }
}
