//! Dollar counters kept in whole picodollars: a counter of floats adds each cost with a
//! rounding error, and millions of small costs drift; integers add exactly. The exposition
//! shows dollars (the count divided once, when scraped), under the family's own name.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

/// An integer counter (or family of them) of picodollars, exposed in dollars.
#[derive(Clone)]
pub(crate) struct Usd<C>(pub C);

impl<C: Collector> Collector for Usd<C> {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.0.collect();
        for family in &mut families {
            for metric in family.mut_metric() {
                let counter = metric.counter.mut_or_insert_default();
                let picos = counter.value();
                counter.set_value(picos / 1e12);
            }
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounterVec, Opts, Registry};

    #[test]
    fn picodollars_add_exactly_and_show_as_dollars() {
        let vec = IntCounterVec::new(Opts::new("spend_usd_total", "spend"), &["model"]).unwrap();
        let r = Registry::new();
        r.register(Box::new(Usd(vec.clone()))).unwrap();
        // A million costs of 1.25e-6 dollars: $1.25 exactly (as floats they drift).
        for _ in 0..1_000_000 {
            vec.with_label_values(&["gpt-5"]).inc_by(1_250_000);
        }
        let families = r.gather();
        let value = families[0].get_metric()[0].get_counter().value();
        assert_eq!(value, 1.25);
        let mut drifting = 0.0f64;
        for _ in 0..1_000_000 {
            drifting += 1.25e-6;
        }
        assert_ne!(drifting, 1.25, "what integers avoid");
    }
}
