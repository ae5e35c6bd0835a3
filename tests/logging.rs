#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The `log` bridge (Pingora logs through `log`) runs at the subscriber's level, not `Trace`:
//! `log`'s macros build their arguments before a subscriber can drop the record, and Pingora's
//! chunked-body reader formats its whole buffer in a trace line on every chunk.

use portgate::settings::LogSettings;

#[test]
fn pingoras_log_lines_below_the_level_are_not_even_formatted() {
    let settings = LogSettings {
        level: "info".into(),
        ..LogSettings::default()
    };
    portgate::telemetry::init(&settings);
    assert_eq!(log::max_level(), log::LevelFilter::Info);
    assert!(!log::log_enabled!(log::Level::Trace));
    assert!(!log::log_enabled!(log::Level::Debug));
    assert!(log::log_enabled!(log::Level::Info));
    // A second call changes nothing and does not panic.
    portgate::telemetry::init(&settings);
    assert_eq!(log::max_level(), log::LevelFilter::Info);
}
