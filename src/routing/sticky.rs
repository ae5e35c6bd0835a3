//! Sticky load balancing without shared state: a weighted rendezvous hash (highest random
//! weight). Each target's score for a request is `-weight / ln(h)`, `h` being a hash of the
//! request's sticky values and the target's identity mapped into (0, 1); the highest score
//! wins. Every replica given the same config computes the same scores, so a session reaches
//! the same target whichever replica it lands on, with no session table to share or expire.
//! Leaving a target out (its circuit is open, it was skipped) moves only the sessions it had
//! won: every other target's score is unchanged. The chance of winning is proportional to the
//! weight, as with the weighted random choice.
//!
//! The hash is SHA-256 (truncated): its output is fixed by its standard, so scores stay the
//! same across builds, Rust versions and platforms, which a replica fleet in the middle of a
//! rollout needs (std's hasher makes no such promise).

use crate::portkey::config::StickyField;
use http::HeaderMap;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A group's sticky settings, with its targets' identities hashed once when the plan is built.
#[derive(Debug)]
pub(crate) struct Sticky {
    pub fields: Vec<StickyField>,
    /// One per target, in order: see [`target_id`].
    pub ids: Vec<[u8; 16]>,
    /// Whether a field reads the body (which is then parsed as JSON).
    pub reads_params: bool,
}

impl Sticky {
    pub(crate) fn new(fields: Vec<StickyField>, ids: Vec<[u8; 16]>) -> Sticky {
        let reads_params = fields.iter().any(|f| matches!(f, StickyField::Params(_)));
        Sticky {
            fields,
            ids,
            reads_params,
        }
    }
}

/// A target's identity: the same on every replica given the same config, and independent of
/// where in memory the plan lives. The target's `name` when it has one (so that editing the
/// list around a named target keeps its sessions), else its JSON path, plus the provider and
/// virtual key it sends to.
pub(crate) fn target_id(
    name: Option<&str>,
    path: &str,
    provider: Option<&str>,
    virtual_key: Option<&str>,
) -> [u8; 16] {
    let mut h = Sha256::new();
    match name {
        Some(n) => field(&mut h, b"name", n.as_bytes()),
        None => field(&mut h, b"path", path.as_bytes()),
    }
    field(&mut h, b"provider", provider.unwrap_or("").as_bytes());
    field(&mut h, b"virtual_key", virtual_key.unwrap_or("").as_bytes());
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// Length-prefixed, so that no two different field lists hash the same bytes.
fn field(h: &mut Sha256, tag: &[u8], value: &[u8]) {
    h.update((tag.len() as u64).to_be_bytes());
    h.update(tag);
    h.update((value.len() as u64).to_be_bytes());
    h.update(value);
}

/// Writes a JSON value into the hash without building its text first.
struct HashWriter<'h>(&'h mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The request's sticky key: a digest of the named fields' values, `None` when none of them
/// has a value (the request then gets the ordinary weighted random choice). A string counts
/// by its text; any other JSON value by its compact JSON.
pub(crate) fn key(
    fields: &[StickyField],
    metadata: &Map<String, Value>,
    params: Option<&Map<String, Value>>,
    headers: &HeaderMap,
) -> Option<[u8; 32]> {
    let mut h = Sha256::new();
    let mut any = false;
    for (i, f) in fields.iter().enumerate() {
        // The field's position and source, so that a value counts only where it was found.
        let mut tag = [0u8; 9];
        tag[..8].copy_from_slice(&(i as u64).to_be_bytes());
        tag[8] = match f {
            StickyField::Metadata(_) => b'm',
            StickyField::Params(_) => b'p',
            StickyField::Header(_) => b'h',
        };
        let value = match f {
            StickyField::Metadata(k) => metadata.get(k),
            StickyField::Params(path) => params.and_then(|p| lookup(p, path)),
            StickyField::Header(name) => {
                // Every value of a repeated header, in order.
                let mut found = false;
                for v in headers.get_all(name) {
                    found = true;
                    field(&mut h, &tag, v.as_bytes());
                }
                any |= found;
                continue;
            }
        };
        match value {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                any = true;
                field(&mut h, &tag, s.as_bytes());
            }
            Some(other) => {
                any = true;
                h.update(tag);
                h.update([b'j']);
                // Writing into a hash cannot fail; a serialisation error would only mean a
                // different key for this request, never a wrong answer.
                let _ = serde_json::to_writer(HashWriter(&mut h), other);
            }
        }
    }
    any.then(|| h.finalize().into())
}

fn lookup<'v>(params: &'v Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    let mut v = params.get(first)?;
    for k in rest {
        v = v.as_object()?.get(k)?;
    }
    Some(v)
}

/// The usable target with the highest weighted score for `key`; `None` when no usable target
/// has a weight above 0. Ties (practically impossible) go to the first.
pub(crate) fn pick(
    ids: &[[u8; 16]],
    weights: &[f64],
    usable: &[bool],
    key: &[u8; 32],
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, ((id, w), u)) in ids.iter().zip(weights).zip(usable).enumerate() {
        if !*u || *w <= 0.0 {
            continue;
        }
        let s = score(key, id, *w);
        best = match best {
            Some((_, b)) if b >= s => best,
            _ => Some((i, s)),
        };
    }
    best.map(|(i, _)| i)
}

fn score(key: &[u8; 32], id: &[u8; 16], weight: f64) -> f64 {
    let mut h = Sha256::new();
    h.update(key);
    h.update(id);
    let d = h.finalize();
    let mut top = [0u8; 8];
    top.copy_from_slice(&d[..8]);
    // 53 bits and a half step: strictly inside (0, 1), so the logarithm is finite and negative.
    let unit = ((u64::from_be_bytes(top) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -weight / unit.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<[u8; 16]> {
        (0..n)
            .map(|i| target_id(None, &format!("config.targets[{i}]"), Some("openai"), None))
            .collect()
    }

    fn key_of(session: &str) -> [u8; 32] {
        let mut m = Map::new();
        m.insert("session".into(), Value::from(session));
        key(
            &[StickyField::Metadata("session".into())],
            &m,
            None,
            &HeaderMap::new(),
        )
        .unwrap()
    }

    #[test]
    fn the_same_key_always_picks_the_same_target() {
        let ids = ids(4);
        let w = [1.0; 4];
        let u = [true; 4];
        for s in 0..200 {
            let k = key_of(&format!("s{s}"));
            let first = pick(&ids, &w, &u, &k);
            assert!(first.is_some());
            for _ in 0..3 {
                assert_eq!(pick(&ids, &w, &u, &key_of(&format!("s{s}"))), first);
            }
        }
    }

    /// The scores are a pure function of the key and the config: a fixed expectation guards
    /// against a change of hash, which would move every session of a running fleet.
    #[test]
    fn picks_are_stable_across_builds() {
        let ids = ids(3);
        let picks: Vec<usize> = (0..12)
            .map(|s| pick(&ids, &[1.0; 3], &[true; 3], &key_of(&format!("s{s}"))).unwrap())
            .collect();
        assert_eq!(picks, STABLE_PICKS);
    }
    const STABLE_PICKS: [usize; 12] = [1, 1, 1, 0, 0, 1, 0, 1, 2, 2, 2, 0];

    #[test]
    fn weights_are_respected_over_many_keys() {
        let ids = ids(3);
        let w = [1.0, 2.0, 5.0];
        let u = [true; 3];
        let n = 16_000;
        let mut counts = [0usize; 3];
        for s in 0..n {
            counts[pick(&ids, &w, &u, &key_of(&format!("user-{s}"))).unwrap()] += 1;
        }
        for (i, c) in counts.iter().enumerate() {
            let expected = w[i] / 8.0;
            let share = *c as f64 / n as f64;
            assert!(
                (share - expected).abs() < 0.02,
                "target {i}: {share} of keys, {expected} expected ({counts:?})"
            );
        }
    }

    #[test]
    fn removing_a_target_moves_only_its_keys() {
        let ids = ids(5);
        let w = [1.0, 1.0, 3.0, 1.0, 2.0];
        let all = [true; 5];
        let mut moved = 0;
        for removed in 0..5 {
            let mut u = all;
            u[removed] = false;
            for s in 0..2_000 {
                let k = key_of(&format!("k{s}"));
                let before = pick(&ids, &w, &all, &k).unwrap();
                let after = pick(&ids, &w, &u, &k).unwrap();
                if before == removed {
                    assert_ne!(after, removed);
                    moved += 1;
                } else {
                    assert_eq!(after, before, "key k{s} moved off a target still there");
                }
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn zero_weights_and_unusable_targets_are_never_picked() {
        let ids = ids(3);
        for s in 0..300 {
            let k = key_of(&format!("z{s}"));
            assert_ne!(pick(&ids, &[0.0, 1.0, 1.0], &[true; 3], &k), Some(0));
            assert_eq!(
                pick(&ids, &[1.0, 1.0, 1.0], &[false, true, false], &k),
                Some(1)
            );
        }
        assert_eq!(
            pick(&ids, &[0.0, 1.0, 1.0], &[true, false, false], &key_of("x")),
            None
        );
    }

    #[test]
    fn keys_read_metadata_params_and_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-session-id", "abc".parse().unwrap());
        let mut params = Map::new();
        params.insert("user".into(), Value::from("u1"));
        params.insert("metadata".into(), serde_json::json!({"session": 7}));
        let meta = Map::new();
        let header = [StickyField::Header(http::HeaderName::from_static(
            "x-session-id",
        ))];
        let nested = [StickyField::Params(vec![
            "metadata".into(),
            "session".into(),
        ])];
        let user = [StickyField::Params(vec!["user".into()])];
        let missing = [StickyField::Metadata("nope".into())];
        assert!(key(&header, &meta, None, &headers).is_some());
        assert!(key(&nested, &meta, Some(&params), &headers).is_some());
        assert_ne!(
            key(&nested, &meta, Some(&params), &headers),
            key(&user, &meta, Some(&params), &headers)
        );
        assert_eq!(key(&missing, &meta, Some(&params), &headers), None);
        assert_eq!(key(&user, &meta, None, &headers), None);
        // The same value under another field is another key.
        let mut m = Map::new();
        m.insert("session".into(), Value::from("abc"));
        let by_meta = key(
            &[StickyField::Metadata("session".into())],
            &m,
            None,
            &headers,
        );
        assert_ne!(by_meta, key(&header, &meta, None, &headers));
    }

    #[test]
    fn a_target_is_known_by_its_name_before_its_path() {
        let a = target_id(Some("primary"), "config.targets[0]", Some("openai"), None);
        let b = target_id(Some("primary"), "config.targets[3]", Some("openai"), None);
        let c = target_id(None, "config.targets[0]", Some("openai"), None);
        let d = target_id(None, "config.targets[0]", Some("openai"), Some("vk"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(c, d);
    }
}
