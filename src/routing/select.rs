//! Choosing among a group's targets: weighted random for load balancing (Portkey semantics:
//! missing weight = 1, weight 0 never chosen, weights not normalised) and conditions for
//! conditional routing.

use super::plan::{Group, Leaf, Node};
use crate::portkey::conditions::QueryContext;
use crate::portkey::config::Mode;
use serde_json::{Map, Value};

/// Weighted random pick among the children whose `usable` is true. `None` when no usable child
/// has a weight above 0.
pub(crate) fn weighted(weights: &[f64], usable: &[bool], r: f64) -> Option<usize> {
    let total: f64 = weights
        .iter()
        .zip(usable)
        .filter(|(w, u)| **u && **w > 0.0)
        .map(|(w, _)| *w)
        .sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = r * total;
    let mut last = None;
    for (i, (w, u)) in weights.iter().zip(usable).enumerate() {
        if !*u || *w <= 0.0 {
            continue;
        }
        last = Some(i);
        if x < *w {
            return Some(i);
        }
        x -= w;
    }
    last
}

/// The first condition that matches, else the default; `None` when neither applies.
pub(crate) fn conditional(group: &Group, ctx: &QueryContext<'_>) -> Option<usize> {
    group
        .conditions
        .iter()
        .find(|(q, _)| q.matches(ctx))
        .map(|(_, i)| *i)
        .or(group.default)
}

/// The leaf a plan picks first without sending anything: the first target of single and
/// fallback, a weighted pick for load balancing, the matching condition (on metadata and the
/// path; a streamed body has no params) for conditional routing.
pub(crate) fn first_leaf<'p>(
    node: &'p Node,
    metadata: &Map<String, Value>,
    pathname: &str,
) -> Option<&'p Leaf> {
    match node {
        Node::Leaf(l) => Some(l),
        Node::Group(g) => {
            let i = match g.mode {
                Mode::Single | Mode::Fallback => 0,
                Mode::Loadbalance => {
                    let usable = vec![true; g.children.len()];
                    weighted(&g.weights, &usable, rand::random::<f64>())?
                }
                Mode::Conditional => {
                    let params = Map::new();
                    conditional(
                        g,
                        &QueryContext {
                            metadata,
                            params: &params,
                            pathname,
                        },
                    )?
                }
            };
            first_leaf(g.children.get(i)?, metadata, pathname)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_partition_the_unit_interval() {
        let w = [0.7, 0.3];
        let u = [true, true];
        assert_eq!(weighted(&w, &u, 0.0), Some(0));
        assert_eq!(weighted(&w, &u, 0.69), Some(0));
        assert_eq!(weighted(&w, &u, 0.71), Some(1));
        assert_eq!(weighted(&w, &u, 0.999), Some(1));
    }

    #[test]
    fn zero_weights_and_unusable_targets_are_never_chosen() {
        let w = [0.0, 1.0, 2.0];
        for i in 0..100 {
            let r = f64::from(i) / 100.0;
            assert_ne!(weighted(&w, &[true, true, true], r), Some(0));
            assert_eq!(weighted(&w, &[true, true, false], r), Some(1));
        }
        assert_eq!(weighted(&w, &[true, false, false], 0.5), None);
    }
}
