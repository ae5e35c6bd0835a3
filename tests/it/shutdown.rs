//! Graceful shutdown: on a graceful terminate `/readyz` turns 503 at once while `/healthz`
//! stays 200, the proxy stops accepting, a stream in flight finishes with all its events, and
//! the gateway stops as soon as nothing is in flight (not after the grace period). The binary
//! does the same on a real SIGTERM and flushes its access log.

use crate::support::*;
use futures_util::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

/// Far longer than any test below may take: a gateway that stops before it did not sit out
/// its grace period.
const GRACE: u64 = 30;
/// Generous bound for "soon" on a loaded 2-core machine, still well under `GRACE`.
const SOON: Duration = Duration::from_secs(10);

async fn status(url: &str) -> u16 {
    client().get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_flight_finishes_then_the_gateway_stops() {
    let mock = MockProvider::start().await;
    let words = [
        "one", "two", "three", "four", "five", "six", "seven", "eight",
    ];
    mock.script([Reply::Sse {
        events: chat_events("gpt-4o", &words),
        delay: Duration::from_millis(250),
    }]);
    let mut s = test_settings();
    s.grace_period_seconds = GRACE;
    route_to(&mut s, &mock, &["openai"]);
    let gw = TestGateway::start(s);

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut received = Vec::new();
    // The first event arrived: the stream is in flight.
    received.extend_from_slice(&body.next().await.unwrap().unwrap());

    gw.terminate();
    // Readiness flips at once (polled only to let the signal cross threads); liveness stays.
    let deadline = Instant::now() + SOON;
    while status(&gw.admin_url("/readyz")).await != 503 {
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(status(&gw.admin_url("/healthz")).await, 200);
    assert!(!gw.stopped(), "the gateway must wait for the stream");

    // No new request is served: the listener is closed, so the connection is refused.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let refused = fresh
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await;
    assert!(
        refused.as_ref().is_err_and(reqwest::Error::is_connect),
        "a new connection was accepted while draining: {refused:?}"
    );

    // The stream in flight still gets every event and its end.
    while let Some(chunk) = body.next().await {
        received.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8(received).unwrap();
    for w in words {
        assert!(
            text.contains(&format!("\"content\":\"{w}\"")),
            "{w} missing: {text}"
        );
    }
    assert!(text.contains("data: [DONE]"), "{text}");
    assert_eq!(
        mock.request_count(),
        1,
        "the refused request reached no provider"
    );

    // Nothing in flight any more: the gateway stops well before its 30 s grace period.
    let took = gw.wait_stopped(SOON).await;
    assert!(
        took.is_some(),
        "the gateway did not stop after the stream ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_gateway_stops_without_waiting_out_the_grace_period() {
    let mut s = test_settings();
    s.grace_period_seconds = GRACE;
    let gw = TestGateway::start(s);
    assert_eq!(status(&gw.admin_url("/readyz")).await, 200);
    gw.terminate();
    assert!(
        gw.wait_stopped(SOON).await.is_some(),
        "an idle gateway with a {GRACE} s grace period did not stop within {SOON:?}"
    );
    // Both listeners are gone.
    assert!(std::net::TcpStream::connect(gw.addr).is_err());
    assert!(std::net::TcpStream::connect(gw.admin).is_err());
}

/// Kills the spawned binary if the test fails before it exited.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The built binary on a real SIGTERM: exits 0 well before its grace period, with the
/// access-log line of the request it served written out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_drains_and_exits_zero_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("portgate-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let access_log = dir.join("access.log");
    let _ = std::fs::remove_file(&access_log);
    let (listen, admin) = (free_port(), free_port());
    let config = dir.join("portgate.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{listen}\nadmin_listen: 127.0.0.1:{admin}\nthreads: 1\n\
             grace_period_seconds: {GRACE}\nlog:\n  level: error\n  access_log: {}\n",
            access_log.display()
        ),
    )
    .unwrap();
    let stderr = std::fs::File::create(dir.join("stderr.txt")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_portgate"))
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client().get(&ready).send().await {
            Ok(r) if r.status() == 200 => break,
            _ => {
                if Instant::now() > deadline {
                    panic!("the binary never became ready");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // One request the access log must record (refused for want of a provider: no mock needed).
    let r = client()
        .get(format!("http://127.0.0.1:{listen}/v1/no-such-route"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > SOON {
            panic!("the binary did not exit within {SOON:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    let log = std::fs::read_to_string(&access_log).unwrap();
    assert!(log.contains("/v1/no-such-route"), "access log: {log:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stream longer than the grace period is ended when it ends, with the shutdown's error event
/// and a clean end of the body: the drain is bounded and the client told why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_bounds_the_drain() {
    let mock = MockProvider::start().await;
    let words = [
        "one", "two", "three", "four", "five", "six", "seven", "eight",
    ];
    // About 16 s of stream against a 1 s grace period.
    mock.script([Reply::Sse {
        events: chat_events("gpt-4o", &words),
        delay: Duration::from_secs(2),
    }]);
    let mut s = test_settings();
    s.grace_period_seconds = 1;
    route_to(&mut s, &mock, &["openai"]);
    let gw = TestGateway::start(s);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-portkey-provider", "openai")
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut received = body.next().await.unwrap().unwrap().to_vec();
    gw.terminate();
    assert!(
        gw.wait_stopped(SOON).await.is_some(),
        "the gateway outlived its grace period by far"
    );
    while let Some(chunk) = body.next().await {
        received.extend_from_slice(&chunk.expect("the body ends cleanly"));
    }
    let text = String::from_utf8_lossy(&received);
    assert!(!text.contains("data: [DONE]"), "the stream was cut: {text}");
    assert!(text.contains("\"type\":\"shutting_down\""), "{text}");
}
