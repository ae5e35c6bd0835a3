//! Response streams: an incremental SSE event splitter, and the meter that reads usage from a
//! response as it is relayed (and hides the usage chunk the gateway asked for itself).

pub mod meter;
pub mod sse;

pub use meter::Meter;
