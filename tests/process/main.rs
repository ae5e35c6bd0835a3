//! Tests that measure or change the whole process (resident memory under load, the global
//! logger), in a binary of their own so that no other test's allocations or settings disturb
//! them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod cardinality;
mod drain;
mod fault_matrix;
mod limits;
mod reload;
