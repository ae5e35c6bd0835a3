//! Bounds on the regular expressions a config may carry (conditional routing's `$regex`, the
//! guardrail checks' patterns). Configs come from requests: unbounded, one pattern such as
//! `\w{150}` compiles to megabytes of automaton, and a config holds hundreds of them.
//! Compiled size and the lazy DFA's cache are capped per pattern, and so is the pattern's
//! length; a pattern past a bound is a 400 naming it, never a slow or large request.

/// Largest compiled program of one pattern (the `regex` crate's default is 10 MiB). Unicode
/// classes are large: `\w{10}` compiles to about 550 KiB, `\w{40}` is refused.
pub(crate) const SIZE_LIMIT: usize = 1024 * 1024;
/// Largest lazy-DFA cache of one pattern (the default is 2 MiB).
pub(crate) const DFA_SIZE_LIMIT: usize = 256 * 1024;
/// Most backtracking steps of one match by the backtracking engine (look-around and
/// back-references): past it, the match ends with an error instead of running on.
pub(crate) const BACKTRACK_LIMIT: usize = 100_000;
/// Longest pattern accepted, in bytes.
pub(crate) const MAX_PATTERN_BYTES: usize = 4096;

/// Refuses a pattern longer than [`MAX_PATTERN_BYTES`].
pub(crate) fn check_length(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "the pattern is longer than {MAX_PATTERN_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Memory a compiled pattern holds, for the config cache's byte budget: measured on the
/// `regex` crate's engine with the same bounds; a pattern only the backtracking engine takes
/// (look-around, back-references) is charged the bound of its compiled parts.
pub(crate) fn compiled_bytes(pattern: &str) -> usize {
    use regex_automata::meta;
    meta::Builder::new()
        .configure(meta::Config::new().nfa_size_limit(Some(SIZE_LIMIT)))
        .build(pattern)
        .map_or(SIZE_LIMIT, |re| re.memory_usage())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_size_grows_with_the_automaton_not_the_text() {
        let small = compiled_bytes("(?i)BEGIN (RSA )?PRIVATE KEY");
        let large = compiled_bytes(r"\w{10}");
        assert!(small < 64 * 1024, "{small}");
        assert!(large > 8 * small, "{large} vs {small}");
        assert!(large < SIZE_LIMIT, "{large}");
        // Look-around is only for the backtracking engine: charged its bound.
        assert_eq!(compiled_bytes("a(?=b)"), SIZE_LIMIT);
    }
}
