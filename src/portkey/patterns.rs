//! Bounds on the regular expressions a config may carry (conditional routing's `$regex`, the
//! guardrail checks' patterns). Configs come from requests: unbounded, one pattern such as
//! `\w{150}` compiles to megabytes of automaton, and a config holds hundreds of them.
//! Compiled size and the lazy DFA's cache are capped per pattern, and so is the pattern's
//! length; a pattern past a bound is a 400 naming it, never a slow or large request.

/// Largest compiled program of one pattern (the `regex` crate's default is 10 MiB).
pub const SIZE_LIMIT: usize = 256 * 1024;
/// Largest lazy-DFA cache of one pattern (the default is 2 MiB).
pub const DFA_SIZE_LIMIT: usize = 256 * 1024;
/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 4096;

/// Refuses a pattern longer than [`MAX_PATTERN_BYTES`].
pub fn check_length(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "the pattern is longer than {MAX_PATTERN_BYTES} bytes"
        ));
    }
    Ok(())
}
