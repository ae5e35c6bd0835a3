//! A rollout's drain with the real binary and a real SIGTERM: new connections are refused, a
//! stream shorter than the grace period ends normally, and a stream still open at the end of
//! the grace period is ended by the gateway with an SSE error event naming the shutdown and a
//! clean end of the body (not a dropped connection).

use crate::support::*;
use futures_util::StreamExt;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The grace period of the gateway under test: longer than the short stream, much shorter
/// than the long one.
const GRACE: u64 = 3;

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn stream(port: u16, words: &str) -> reqwest::Response {
    let resp = client()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .header("x-portkey-virtual-key", "mock")
        .json(&json!({"model": "gpt-4o", "stream": true,
                      "messages": [{"role": "user", "content": words}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

/// Reads a body to its end; panics if the connection ends without the body's clean end.
async fn read_all(
    mut body: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    mut received: Vec<u8>,
) -> String {
    while let Some(chunk) = body.next().await {
        received.extend_from_slice(&chunk.expect("the body ends cleanly"));
    }
    String::from_utf8(received).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_outliving_the_grace_period_end_with_an_error_event() {
    let mock = MockProvider::start().await;
    let short = ["a1", "a2", "a3", "a4"];
    let long: Vec<String> = (0..40).map(|i| format!("b{i}")).collect();
    let long_refs: Vec<&str> = long.iter().map(String::as_str).collect();
    // The short stream takes about 1 s; the long one about 20 s, far beyond the grace period.
    mock.script([
        Reply::Sse {
            events: chat_events("gpt-4o", &short),
            delay: Duration::from_millis(250),
        },
        Reply::Sse {
            events: chat_events("gpt-4o", &long_refs),
            delay: Duration::from_millis(500),
        },
    ]);
    let dir = std::env::temp_dir().join(format!("portgate-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, admin) = (free_port(), free_port());
    let settings = dir.join("portgate.yaml");
    std::fs::write(
        &settings,
        format!(
            "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\nthreads: 1\n\
             grace_period_seconds: {GRACE}\nlog: {{access_log: off, level: error}}\n\
             virtual_keys:\n  mock:\n    provider: openai\n    custom_host: {}\n",
            mock.base_url()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_portgate"))
        .arg("--config")
        .arg(&settings)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut gw = Gateway(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "portgate did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Both streams are in flight (their first events arrived) when SIGTERM comes.
    let mut short_body = stream(port, "short").await.bytes_stream();
    let short_first = short_body.next().await.unwrap().unwrap().to_vec();
    let mut long_body = stream(port, "long").await.bytes_stream();
    let long_first = long_body.next().await.unwrap().unwrap().to_vec();
    let term = Command::new("kill")
        .args(["-TERM", &gw.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());

    // Draining: a new connection is refused (polled: the signal is handled asynchronously).
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = fresh
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .header("x-portkey-virtual-key", "mock")
            .json(&json!({"model": "gpt-4o", "messages": []}))
            .send()
            .await;
        if r.as_ref().is_err_and(reqwest::Error::is_connect) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new connections still accepted: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // (a) The short stream completes: every event and its end.
    let short_text = read_all(short_body, short_first).await;
    for w in short {
        assert!(
            short_text.contains(&format!("\"content\":\"{w}\"")),
            "{w}: {short_text}"
        );
    }
    assert!(short_text.contains("data: [DONE]"), "{short_text}");
    assert!(!short_text.contains("shutting_down"), "{short_text}");

    // (b) The long stream is ended by the gateway at the deadline: the error event naming the
    // shutdown, then a clean end (`read_all` fails on a dropped connection).
    let long_text = read_all(long_body, long_first).await;
    assert!(long_text.contains("event: error\ndata: "), "{long_text}");
    assert!(
        long_text.contains("\"type\":\"shutting_down\""),
        "{long_text}"
    );
    assert!(
        long_text.contains("The gateway is shutting down"),
        "{long_text}"
    );
    assert!(!long_text.contains("data: [DONE]"), "{long_text}");
    assert!(!long_text.contains("\"content\":\"b39\""), "{long_text}");
    assert!(
        long_text.trim_end().ends_with('}'),
        "the error event is the last: {long_text}"
    );

    // The process exits, successfully, well before the long stream would have ended.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = gw.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "portgate did not exit after the drain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    // Both sides: the provider saw exactly the two streams (the refused request never left).
    assert_eq!(mock.request_count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
