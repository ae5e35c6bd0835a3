//! Retry budget: across requests, re-sends to an upstream resource (retries, and fallbacks that
//! land on a resource this request already tried; see `Target::resource`) are limited to a
//! share of that resource's recent first sends plus a small floor per second — the scheme
//! Linkerd and Envoy use — so a provider outage is not multiplied by every client's retry
//! policy. A fallback to another model or credential is a first send there. No Portkey version
//! has one.
//!
//! The window is kept as per-second buckets, so the figures are exact over the last
//! `window_seconds` and memory per target is constant.

use crate::settings::RetryBudgetSettings;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Targets tracked at most; a gateway talks to a handful, so this bound only stops abuse.
const MAX_TARGETS: usize = 4096;

struct Window {
    /// (second, first sends, extra sends) per bucket, indexed by second % len.
    buckets: Vec<(u64, u32, u32)>,
}

impl Window {
    fn new(len: usize) -> Self {
        Window {
            buckets: vec![(u64::MAX, 0, 0); len.max(1)],
        }
    }

    fn bucket(&mut self, sec: u64) -> &mut (u64, u32, u32) {
        let len = self.buckets.len() as u64;
        let b = &mut self.buckets[(sec % len) as usize];
        if b.0 != sec {
            *b = (sec, 0, 0);
        }
        b
    }

    fn totals(&self, now: u64) -> (u64, u64) {
        let len = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|(s, _, _)| *s != u64::MAX && now.saturating_sub(*s) < len)
            .fold((0, 0), |(f, e), (_, bf, be)| {
                (f + *bf as u64, e + *be as u64)
            })
    }
}

pub struct RetryBudget {
    settings: RetryBudgetSettings,
    started: Instant,
    windows: Mutex<HashMap<String, Window>>,
}

impl RetryBudget {
    pub(crate) fn new(settings: &RetryBudgetSettings) -> Self {
        RetryBudget {
            settings: settings.clone(),
            started: Instant::now(),
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Records a first send to `target`.
    pub(crate) fn deposit(&self, target: &str) {
        let now = self.now();
        let len = self.settings.window_seconds as usize;
        if let Ok(mut map) = self.windows.lock() {
            // A known resource (nearly every request) is found without copying its key.
            if let Some(w) = map.get_mut(target) {
                w.bucket(now).1 += 1;
                return;
            }
            if map.len() >= MAX_TARGETS {
                map.clear();
            }
            let mut w = Window::new(len);
            w.bucket(now).1 += 1;
            map.insert(target.to_string(), w);
        }
    }

    /// Asks for one extra send to `target`; `false` when the budget is spent (the caller then
    /// returns the failure it has instead of sending again).
    pub(crate) fn withdraw(&self, target: &str) -> bool {
        if !self.settings.enabled {
            return true;
        }
        let now = self.now();
        let len = self.settings.window_seconds as usize;
        let Ok(mut map) = self.windows.lock() else {
            return true;
        };
        let w = map
            .entry(target.to_string())
            .or_insert_with(|| Window::new(len));
        let (firsts, extras) = w.totals(now);
        let allowed = self.settings.ratio * firsts as f64
            + self.settings.min_retries_per_second * self.settings.window_seconds as f64;
        if (extras as f64) < allowed {
            w.bucket(now).2 += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, floor: f64) -> RetryBudget {
        RetryBudget::new(&RetryBudgetSettings {
            enabled: true,
            ratio,
            min_retries_per_second: floor,
            window_seconds: 10,
        })
    }

    #[test]
    fn extras_are_a_share_of_first_sends_plus_a_floor() {
        let b = budget(0.2, 0.1); // floor: 0.1/s × 10 s = 1 extra
        for _ in 0..10 {
            b.deposit("openai@api");
        }
        // 0.2 × 10 + 1 = 3 extras allowed.
        assert!(b.withdraw("openai@api"));
        assert!(b.withdraw("openai@api"));
        assert!(b.withdraw("openai@api"));
        assert!(!b.withdraw("openai@api"));
        // Other targets have their own budget.
        assert!(b.withdraw("groq@api"));
        assert!(!b.withdraw("groq@api"));
    }

    #[test]
    fn disabled_budget_always_allows() {
        let b = RetryBudget::new(&RetryBudgetSettings {
            enabled: false,
            ..Default::default()
        });
        for _ in 0..100 {
            assert!(b.withdraw("t"));
        }
    }
}
