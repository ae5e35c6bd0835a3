//! Semantic cache lookup cost: brute-force nearest neighbour over one scope's contiguous unit
//! vectors (`portgate::cache::semantic::Index`), at 10k and 100k entries, 1536 dimensions
//! (OpenAI's text-embedding-3-small) and 384 (small local models). Prints the mean and worst
//! time per lookup over a few hundred random queries. Run it with
//! `cargo run --release --example bench_semantic` (pinned with `taskset -c 1` on a shared box).

use portgate::cache::semantic::{normalise, Index};
use std::time::{Duration, Instant};

/// xorshift: deterministic vectors, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
    fn unit(&mut self, dim: usize) -> std::sync::Arc<[f32]> {
        let v: Vec<f32> = (0..dim).map(|_| self.next()).collect();
        normalise(v).unwrap_or_else(|| std::sync::Arc::from(vec![1.0; dim]))
    }
}

fn main() {
    let queries = 200;
    println!("| entries | dimensions | index MiB | mean lookup | worst lookup |");
    println!("|---:|---:|---:|---:|---:|");
    for dim in [384usize, 1536] {
        for entries in [10_000usize, 100_000] {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (dim * entries) as u64);
            let gauge = prometheus::IntGauge::new("vectors", "vectors").unwrap_or_else(|_| {
                std::process::exit(1);
            });
            let rejected = prometheus::IntCounter::new("rejected", "rejected")
                .unwrap_or_else(|_| std::process::exit(1));
            let index = Index::new(entries, gauge, rejected);
            let scope = [7u8; 32];
            for i in 0..entries {
                let mut key = [0u8; 32];
                key[..8].copy_from_slice(&(i as u64).to_le_bytes());
                index.insert(scope, &rng.unit(dim), key, u64::MAX);
            }
            let mut total = Duration::ZERO;
            let mut worst = Duration::ZERO;
            let mut found = 0;
            for _ in 0..queries {
                let q = rng.unit(dim);
                let t = Instant::now();
                if index.nearest(&scope, &q, 1).is_some() {
                    found += 1;
                }
                let e = t.elapsed();
                total += e;
                worst = worst.max(e);
            }
            assert_eq!(found, queries);
            let mib = (entries * dim * 4) as f64 / (1024.0 * 1024.0);
            println!(
                "| {entries} | {dim} | {mib:.0} | {:.2} ms | {:.2} ms |",
                total.as_secs_f64() * 1000.0 / queries as f64,
                worst.as_secs_f64() * 1000.0
            );
        }
    }
}
