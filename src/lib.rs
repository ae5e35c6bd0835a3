//! portgate: a Portkey-compatible AI gateway on Pingora, run as a sidecar next to an
//! application. See `README.md` for what it does and how it is built.

pub mod admin;
pub mod buffers;
pub mod cache;
pub mod commands;
pub mod dispatch;
pub mod error;
pub mod feedback;
pub mod guardrails;
pub mod limits;
pub mod log_store;
pub mod pipeline;
pub mod portkey;
pub mod providers;
pub mod proxy;
pub mod reload;
pub mod request;
pub mod routing;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod types;

pub use error::GatewayError;
pub use server::{build_server, Portgate};
pub use settings::Settings;
