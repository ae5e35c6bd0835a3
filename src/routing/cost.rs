//! What a config costs to keep and to run, and the caps on it (`limits.guardrails`). A config
//! arrives in a request header; within its 64 KiB it could otherwise hold about 900 webhook
//! checks or a thousand patterns, each compiled to its own automaton. The counts are taken on
//! the parsed config, before its plan is built, so a config over a cap is a 400 naming the cap
//! and never reaches the cache.

use crate::guardrails::parse::HookRef;
use crate::portkey::config::{ConfigNode, Problems};
use crate::settings::GuardrailLimits;

/// A config's guardrail checks and patterns, counted over every node.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cost {
    pub checks: usize,
    /// Checks that call out (webhook, log, validUrls).
    pub remote: usize,
    /// Regular expressions: guardrail patterns, JSON-schema patterns and routing's `$regex`.
    pub patterns: usize,
    /// Memory the compiled patterns hold.
    pub compiled_bytes: usize,
}

/// Counts `node`'s cost and checks it against `limits`; a problem names the cap it passes.
pub(crate) fn check(node: &ConfigNode, limits: &GuardrailLimits) -> Result<Cost, Problems> {
    let mut cost = Cost::default();
    let mut p = Problems::default();
    add(node, limits, &mut cost, &mut p);
    let caps = [
        (
            cost.checks,
            limits.checks_per_config,
            "guardrail checks",
            "checks_per_config",
        ),
        (
            cost.remote,
            limits.remote_checks_per_config,
            "webhook, log and validUrls checks",
            "remote_checks_per_config",
        ),
        (
            cost.patterns,
            limits.patterns_per_config,
            "regular expressions",
            "patterns_per_config",
        ),
    ];
    for (count, cap, what, name) in caps {
        if count > cap {
            p.push(
                "config",
                format!("the config has {count} {what}; at most {cap} are allowed (limits.guardrails.{name})"),
            );
        }
    }
    if p.0.is_empty() {
        Ok(cost)
    } else {
        Err(p)
    }
}

fn add(node: &ConfigNode, limits: &GuardrailLimits, cost: &mut Cost, p: &mut Problems) {
    if let Some(strategy) = &node.strategy {
        for c in &strategy.conditions {
            let (n, bytes) = c.query.patterns();
            cost.patterns += n;
            cost.compiled_bytes += bytes;
        }
    }
    if let Some(hooks) = &node.hooks {
        let lists = [&hooks.before, &hooks.after];
        for r in lists.into_iter().flatten().flatten() {
            // A reference to a named guardrail costs what the operator wrote in the settings.
            let HookRef::Inline { hook, path } = r else {
                continue;
            };
            if hook.checks.len() > limits.checks_per_hook {
                p.push(
                    path,
                    format!(
                        "the hook has {} checks; at most {} are allowed (limits.guardrails.checks_per_hook)",
                        hook.checks.len(),
                        limits.checks_per_hook
                    ),
                );
            }
            for spec in hook.checks.iter() {
                cost.checks += 1;
                cost.remote += usize::from(spec.check.is_remote());
                let (n, bytes) = spec.check.patterns();
                cost.patterns += n;
                cost.compiled_bytes += bytes;
            }
        }
    }
    for t in &node.targets {
        add(t, limits, cost, p);
    }
}
