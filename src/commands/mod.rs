//! The commands of the `portgate` binary besides serving: each reads the same settings file
//! as the gateway and prints one line naming the cause when it fails.

pub mod dataset;
pub mod finetune;
