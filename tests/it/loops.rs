//! No loops: the gateway marks what it sends upstream and refuses a
//! request carrying its own mark (508), and its own ports are never a custom host.

use crate::support::*;
use portgate::settings::ProviderRow;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_pointing_back_at_the_gateway_is_a_508_not_a_storm() {
    let mut s = test_settings();
    let own = s.listen.clone();
    s.providers.insert(
        "loopy".into(),
        ProviderRow {
            base_url: format!("http://{own}/v1"),
            auth_header: "authorization".into(),
            stream_usage: false,
        },
    );
    let gw = TestGateway::start(s);
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-provider", "loopy")],
        user_chat("m", "hi"),
    )
    .await;
    // The inner pass refused the request; the outer one relays that answer as the provider's.
    assert_eq!(status, 508, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Loop detected"));
    // The passthrough route too.
    let resp = client()
        .get(gw.url("/v1/models"))
        .header("x-portkey-provider", "loopy")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 508);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_are_sent_upstream_and_other_gateways_pass() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    let (status, _, _) = chat(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-portkey-provider", "openai"),
            ("x-portgate-hop", "0123456789abcdef"),
        ],
        user_chat("m", "hi"),
    )
    .await;
    assert_eq!(status, 200);
    let mark = mock.requests()[0]
        .header("x-portgate-hop")
        .unwrap()
        .to_string();
    let (first, own) = mark.split_once(',').unwrap();
    assert_eq!(first, "0123456789abcdef");
    assert_eq!(own.len(), 16);
    // The same gateway's mark coming back is refused before anything is sent.
    let (status, _, v) = chat(
        &gw,
        "/v1/chat/completions",
        &[("x-portkey-provider", "openai"), ("x-portgate-hop", own)],
        user_chat("m", "hi"),
    )
    .await;
    assert_eq!(status, 508);
    assert_eq!(v["status"], "failure");
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_ports_are_never_a_custom_host() {
    let mock = MockProvider::start().await;
    let gw = gateway_for(&mock);
    // Loopback is trusted on every port in the test settings, but not on the gateway's own.
    for port in [gw.addr.port(), gw.admin.port()] {
        let host = format!("http://127.0.0.1:{port}/v1");
        let (status, _, v) = chat(
            &gw,
            "/v1/chat/completions",
            &[
                ("x-portkey-provider", "openai"),
                ("x-portkey-custom-host", &host),
            ],
            user_chat("m", "hi"),
        )
        .await;
        assert_eq!(
            (status, &v["message"]),
            (400, &json!("Invalid custom host"))
        );
    }
    assert_eq!(mock.request_count(), 0);
}
