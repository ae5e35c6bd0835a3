//! Test support shared by the integration tests: a scripted mock provider and an in-process
//! gateway harness. Not every test file uses every helper.
#![allow(dead_code, unused_imports)]

pub mod harness;
pub mod mock;

pub use harness::{client, free_port, test_settings, TestGateway};
pub use mock::{chat_body, chat_events, MockProvider, Recorded, Reply};

use portgate::settings::ProviderRow;
use portgate::Settings;

/// Points the given provider slugs at the mock.
pub fn route_to(settings: &mut Settings, mock: &MockProvider, slugs: &[&str]) {
    for slug in slugs {
        settings.providers.insert(
            slug.to_string(),
            ProviderRow {
                base_url: mock.base_url(),
                auth_header: "authorization".into(),
            },
        );
    }
}

/// A gateway whose `openai` and `anyscale` providers are the mock.
pub fn gateway_for(mock: &MockProvider) -> TestGateway {
    let mut s = test_settings();
    route_to(&mut s, mock, &["openai", "anyscale"]);
    TestGateway::start(s)
}
