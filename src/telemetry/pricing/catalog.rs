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
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// What one file gave: its models' prices, and the units it priced that portgate ignores.
#[derive(Debug, Default)]
pub(crate) struct Read {
    pub prices: SourcePrices,
    pub ignored: BTreeMap<String, u64>,
}

/// The token prices portgate applies, by the catalog's names, in `Prices`' order.
const APPLIED: [&str; 5] = [
    "request_token",
    "response_token",
    "cache_read_input_token",
    "cache_write_input_token",
    "reasoning_token",
];

/// One model's entry, read field by field: the prices applied are kept, everything else is
/// skipped without being built (a file is read at start-up, and a JSON tree of the catalog
/// would cost several times its size in memory that the allocator keeps afterwards).
#[derive(Default)]
struct Entry {
    /// `APPLIED`'s prices in cents, as written.
    cents: [Option<f64>; 5],
    has_config: bool,
    currency: Option<String>,
}

/// Names of what a file prices that is not applied, with how many models price each.
type Ignored = BTreeMap<String, u64>;

fn count(ignored: &mut Ignored, name: String) {
    *ignored.entry(name).or_default() += 1;
}

/// `{"price": n}`.
#[derive(Deserialize)]
struct Leaf {
    price: Option<f64>,
}

/// Which object a map visitor is reading.
#[derive(Clone, Copy)]
enum Part {
    Entry,
    Config,
    PayAsYouGo,
}

struct Fields<'a>(Part, &'a mut Ignored);

/// `additional_units`: each unit's name is counted.
struct UnitNames<'a>(&'a mut Ignored);

impl<'de> serde::de::DeserializeSeed<'de> for UnitNames<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UnitNames<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of units")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            count(self.0, name);
        }
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

impl Fields<'_> {
    fn fill<'de, A: MapAccess<'de>>(self, map: &mut A, entry: &mut Entry) -> Result<(), A::Error> {
        let Fields(part, ignored) = self;
        while let Some(key) = map.next_key::<String>()? {
            match (part, key.as_str()) {
                (Part::Entry, "pricing_config") => {
                    let nested = map.next_value_seed(NestedSeed(Part::Config, &mut *ignored))?;
                    if let Some(n) = nested {
                        entry.has_config = true;
                        entry.merge(n);
                    }
                }
                (Part::Config, "pay_as_you_go") => {
                    let nested =
                        map.next_value_seed(NestedSeed(Part::PayAsYouGo, &mut *ignored))?;
                    if let Some(n) = nested {
                        entry.merge(n);
                    }
                }
                (Part::Config, "currency") => entry.currency = map.next_value()?,
                (Part::Config, "calculate") => {
                    map.next_value::<IgnoredAny>()?;
                }
                (Part::PayAsYouGo, "additional_units") => {
                    map.next_value_seed(UnitNames(&mut *ignored))?;
                }
                (Part::PayAsYouGo, name) if APPLIED.contains(&name) => {
                    let leaf: Option<Leaf> = map.next_value()?;
                    let at = APPLIED.iter().position(|a| *a == name).unwrap_or(0);
                    // A leaf without a price is an error, reported with the model.
                    entry.cents[at] = Some(leaf.and_then(|l| l.price).unwrap_or(f64::NAN));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    count(ignored, key);
                }
            }
        }
        Ok(())
    }
}

/// A nested object read into a partial entry (`null` is none).
struct NestedSeed<'a>(Part, &'a mut Ignored);

impl<'de> serde::de::DeserializeSeed<'de> for NestedSeed<'_> {
    type Value = Option<Entry>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NestedSeed<'_> {
    type Value = Option<Entry>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or null")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entry = Entry::default();
        Fields(self.0, self.1).fill(&mut map, &mut entry)?;
        Ok(Some(entry))
    }
}

/// A whole file, model by model: each entry becomes its price (or is counted as ignored) as it
/// is read, so no more than one entry is held at a time.
struct File<'a>(&'a mut Read);

impl<'de> Visitor<'de> for File<'_> {
    type Value = Result<(), String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of models")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let out = self.0;
        while let Some(model) = map.next_key::<String>()? {
            if model == "default" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let entry = map.next_value_seed(NestedSeed(Part::Entry, &mut out.ignored))?;
            let Some(entry) = entry.filter(|e| e.has_config) else {
                continue;
            };
            match price_of(&model, &entry, &mut out.ignored) {
                Ok(Some(price)) => {
                    out.prices.insert(model, price);
                }
                Ok(None) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(()))
    }
}

impl Entry {
    fn merge(&mut self, other: Entry) {
        for (mine, theirs) in self.cents.iter_mut().zip(other.cents) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        if other.currency.is_some() {
            self.currency = other.currency;
        }
    }
}

/// Reads one provider's file (its text); an error names what is wrong.
#[cfg(test)]
pub(crate) fn read(text: &[u8]) -> Result<Read, String> {
    read_from(text)
}

/// Reads one provider's file as it comes from `source` (a file, the decompressor), without
/// holding its text.
pub(crate) fn read_from(source: impl std::io::Read) -> Result<Read, String> {
    let mut out = Read::default();
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(source));
    let read = de
        .deserialize_map(File(&mut out))
        .and_then(|r| de.end().map(|()| r))
        .map_err(|e| format!("not a catalog price file: {e}"))?;
    read.map(|()| out)
}

/// One model's token prices, or `None` when it has no input price (an image or video model,
/// or one in another currency).
fn price_of(model: &str, entry: &Entry, ignored: &mut Ignored) -> Result<Option<Price>, String> {
    if let Some(currency) = entry.currency.as_deref().filter(|c| *c != "USD") {
        count(ignored, format!("currency {currency}"));
        return Ok(None);
    }
    let cents = |at: usize| -> Result<Option<u64>, String> {
        match entry.cents[at] {
            None => Ok(None),
            Some(p) => picos(p, PER_CENT)
                .map(Some)
                .ok_or_else(|| format!("{model}: {} is not a price ≥ 0", APPLIED[at])),
        }
    };
    let Some(input) = cents(0)? else {
        return Ok(None);
    };
    Ok(Some(Price {
        input,
        output: cents(1)?.unwrap_or(0),
        cached_input: cents(2)?,
        cache_write: cents(3)?,
        reasoning: cents(4)?,
    }))
}

/// The snapshot built into the binary: each file of `conf/catalog/pricing`, compressed by
/// the build script (`build.rs`) so that the catalog takes a fraction of its size in memory.
pub(crate) mod snapshot {
    include!(concat!(env!("OUT_DIR"), "/catalog_snapshot.rs"));

    /// Each provider's file, read as it is decompressed.
    pub(crate) fn read_all() -> impl Iterator<Item = (&'static str, Result<super::Read, String>)> {
        FILES.iter().map(|(name, packed)| {
            (
                *name,
                super::read_from(flate2::read::DeflateDecoder::new(*packed)),
            )
        })
    }

    /// Each provider's file, decompressed.
    #[cfg(test)]
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
