//! Routing: the Plan a Portkey config becomes (a tree of targets with strategies, inherited
//! settings and resolved references), the choice of target at each level, retry policy and
//! budget, and the circuit breakers.

pub mod breaker;
pub mod budget;
pub mod configs;
pub mod cost;
pub mod plan;
pub mod retry;
pub mod select;
pub mod sticky;
pub mod target;
