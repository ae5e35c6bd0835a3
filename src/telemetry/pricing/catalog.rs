//! Price files in the format of Portkey's open model catalog: one `{provider}.json` per
//! provider, each an object of model → `pricing_config`, prices in US cents per unit
//! (`{"price": n}`), token prices under `pay_as_you_go`.
//!
//! What portgate applies: `request_token` (input), `response_token` (output),
//! `cache_read_input_token`, `cache_write_input_token` and `reasoning_token` (else reasoning
//! tokens are output). Everything else a file prices (`additional_units` such as web search,
//! audio and image tokens, per-image prices, batch and regional prices, fixed fees) is not
//! read from an answer's usage: it is ignored and counted by name, never guessed. Each file's
//! `default` entry (zero prices) is not a model: an unknown model stays unpriced.

use super::{Price, SourcePrices};
use crate::types::money::{picos, PER_CENT};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// What one file gave: its models' prices, and the units it priced that portgate ignores.
#[derive(Debug, Default)]
pub(crate) struct Read {
    pub prices: SourcePrices,
    pub ignored: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    pricing_config: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    custom_pricing: Option<serde::de::IgnoredAny>,
}

/// The token prices portgate applies, by the catalog's names.
const APPLIED: [&str; 5] = [
    "request_token",
    "response_token",
    "cache_read_input_token",
    "cache_write_input_token",
    "reasoning_token",
];

/// Reads one provider's file (its text); an error names what is wrong.
pub(crate) fn read(text: &[u8]) -> Result<Read, String> {
    let entries: BTreeMap<String, Entry> =
        serde_json::from_slice(text).map_err(|e| format!("not a catalog price file: {e}"))?;
    let mut out = Read::default();
    for (model, entry) in entries {
        if model == "default" {
            continue;
        }
        if entry.custom_pricing.is_some() {
            count(&mut out.ignored, "custom_pricing");
        }
        let Some(config) = entry.pricing_config else {
            continue;
        };
        if let Some(price) = price_of(&model, &config, &mut out.ignored)? {
            out.prices.insert(model, price);
        }
    }
    Ok(out)
}

fn count(ignored: &mut BTreeMap<String, u64>, unit: &str) {
    *ignored.entry(unit.to_string()).or_default() += 1;
}

/// One model's `pricing_config`: its token prices, or `None` when it has no input price (an
/// image or video model, or one in another currency).
fn price_of(
    model: &str,
    config: &BTreeMap<String, Value>,
    ignored: &mut BTreeMap<String, u64>,
) -> Result<Option<Price>, String> {
    for key in config.keys() {
        if !matches!(key.as_str(), "pay_as_you_go" | "currency" | "calculate") {
            count(ignored, key);
        }
    }
    if let Some(currency) = config.get("currency").and_then(Value::as_str) {
        if currency != "USD" {
            count(ignored, &format!("currency {currency}"));
            return Ok(None);
        }
    }
    let Some(paygo) = config.get("pay_as_you_go").and_then(Value::as_object) else {
        return Ok(None);
    };
    for (key, value) in paygo {
        match key.as_str() {
            k if APPLIED.contains(&k) => {}
            "additional_units" => {
                for unit in value.as_object().into_iter().flat_map(|u| u.keys()) {
                    count(ignored, unit);
                }
            }
            other => count(ignored, other),
        }
    }
    let cents = |key: &str| -> Result<Option<u64>, String> {
        let Some(leaf) = paygo.get(key) else {
            return Ok(None);
        };
        let price = leaf.get("price").and_then(Value::as_f64);
        price
            .and_then(|p| picos(p, PER_CENT))
            .map(Some)
            .ok_or_else(|| format!("{model}: {key} is not a price ≥ 0 ({leaf})"))
    };
    let Some(input) = cents("request_token")? else {
        return Ok(None);
    };
    Ok(Some(Price {
        input,
        output: cents("response_token")?.unwrap_or(0),
        cached_input: cents("cache_read_input_token")?,
        cache_write: cents("cache_write_input_token")?,
        reasoning: cents("reasoning_token")?,
    }))
}

/// The snapshot built into the binary: each file of `conf/catalog/pricing`, compressed by
/// the build script (`build.rs`) so that the catalog takes a fraction of its size in memory.
pub(crate) mod snapshot {
    include!(concat!(env!("OUT_DIR"), "/catalog_snapshot.rs"));

    /// Each provider's file, decompressed.
    pub(crate) fn files() -> impl Iterator<Item = (&'static str, Result<Vec<u8>, String>)> {
        FILES.iter().map(|(name, packed)| {
            let mut text = Vec::new();
            let read = std::io::Read::read_to_end(
                &mut flate2::read::DeflateDecoder::new(*packed),
                &mut text,
            );
            (*name, read.map(|_| text).map_err(|e| e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_prices_are_read_exactly_and_other_units_counted() {
        let file = br#"{
            "default": {"pricing_config": {"pay_as_you_go": {"request_token": {"price": 0}}}},
            "gpt-5": {"pricing_config": {"pay_as_you_go": {
                "request_token": {"price": 0.000125}, "response_token": {"price": 0.001},
                "cache_read_input_token": {"price": 0.0000125},
                "cache_write_input_token": {"price": 0},
                "additional_units": {"web_search": {"price": 1}, "file_search": {"price": 0.25}}},
                "batch_config": {"request_token": {"price": 0.0000625}}},
                "custom_pricing": {"regions": {}}},
            "dall-e-3": {"pricing_config": {"pay_as_you_go": {"image": {"standard": {}}}}},
            "old": {"pricing_config": null}
        }"#;
        let r = read(file).unwrap();
        assert_eq!(
            r.prices.len(),
            1,
            "default, image-only and null entries are not priced"
        );
        let p = r.prices.get("gpt-5").unwrap();
        assert_eq!(
            (
                p.input,
                p.output,
                p.cached_input,
                p.cache_write,
                p.reasoning
            ),
            (1_250_000, 10_000_000, Some(125_000), Some(0), None)
        );
        let ignored: Vec<(&str, u64)> = r.ignored.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            ignored,
            [
                ("batch_config", 1),
                ("custom_pricing", 1),
                ("file_search", 1),
                ("image", 1),
                ("web_search", 1)
            ]
        );
        assert!(read(b"[]").is_err());
        let negative =
            br#"{"m": {"pricing_config": {"pay_as_you_go": {"request_token": {"price": -1}}}}}"#;
        assert!(read(negative).unwrap_err().contains("m: request_token"));
    }

    /// Every file of `conf/catalog/pricing` is in the snapshot, and every one reads.
    #[test]
    fn the_snapshot_holds_every_catalog_file() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/catalog/pricing");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .replace(".json", "")
            })
            .collect();
        on_disk.sort();
        let mut built: Vec<String> = Vec::new();
        for (name, text) in snapshot::files() {
            let text = text.unwrap();
            read(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                text,
                std::fs::read(format!("{dir}/{name}.json")).unwrap(),
                "{name}"
            );
            built.push(name.to_string());
        }
        assert_eq!(built, on_disk);
    }
}
