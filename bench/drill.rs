//! Outage drill: the Anyscale guide's fallback config (Llama 2, then Mistral, both on one
//! provider) through a sustained outage of its primary, for each way a primary fails, with and
//! without a circuit breaker, at 1 and 16 concurrent clients. For each cell it reports the
//! share of requests answered 2xx, the p50/p99 latency added over a healthy run of the same
//! config, and the sends per request to the failing upstream (as the mock counted them, or as
//! the gateway counted its attempts where the upstream refuses connections).
//!
//! The drill starts its own mock provider (in this process) and a portgate per cell (the
//! release binary, one thread, pinned by `bench/drill.sh`), so budgets and circuits start
//! empty in every cell. Not part of `make test`: `make drill`.
//!
//! Environment: PORTGATE_BIN (default target/release/portgate), DRILL_REQUESTS (requests per
//! cell at one client, default 200; four times as many at 16 clients), GW_CPU (the CPU list the
//! gateway is pinned to, default 1; empty for none), OUT (default bench/results/drill.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LLAMA: &str = "meta-llama/Llama-2-7b-chat-hf";
const MISTRAL: &str = "mistralai/Mistral-7B-Instruct-v0.1";
/// `request_timeout` of the slow scenario and `upstream.first_token_timeout_ms` (ms).
const TIMEOUT_MS: u64 = 300;
/// `retry.backoff_base_ms` (the default, 1 s, would make the retry scenario at one client last
/// many minutes: every retried request waits 1 s + 2 s + 4 s).
const BACKOFF_MS: u64 = 50;

/// How the primary model (Llama 2) answers.
#[derive(Clone, Copy, PartialEq)]
#[repr(u8)]
enum Fault {
    None = 0,
    Status503 = 1,
    Storm429 = 2,
    /// Answers after ten times the request timeout.
    Slow = 3,
    /// Sends a stream's head, then nothing until the gateway gives up.
    NoFirstToken = 4,
}

struct Mock {
    fault: AtomicU8,
    primary_sends: AtomicU64,
}

struct Scenario {
    name: &'static str,
    fault: Fault,
    stream: bool,
    /// The primary is the same model on a provider whose host refuses connections.
    refused: bool,
    /// Config members added to the primary target.
    primary_extra: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "primary model answers 503",
        fault: Fault::Status503,
        stream: false,
        refused: false,
        primary_extra: "",
    },
    Scenario {
        name: "primary 503, with `retry: {attempts: 3}`",
        fault: Fault::Status503,
        stream: false,
        refused: false,
        primary_extra: r#","retry":{"attempts":3}"#,
    },
    Scenario {
        name: "primary 429 storm with Retry-After",
        fault: Fault::Storm429,
        stream: false,
        refused: false,
        primary_extra: "",
    },
    Scenario {
        name: "primary refuses connections",
        fault: Fault::None,
        stream: false,
        refused: true,
        primary_extra: "",
    },
    Scenario {
        name: "primary slow past `request_timeout` (300 ms)",
        fault: Fault::Slow,
        stream: false,
        refused: false,
        primary_extra: r#","request_timeout":300"#,
    },
    Scenario {
        name: "stream, primary sends no first token (300 ms)",
        fault: Fault::NoFirstToken,
        stream: true,
        refused: false,
        primary_extra: "",
    },
];

const BREAKER: &str = r#","cb_config":{"failure_threshold":5,"cooldown_interval":30000}"#;

fn config(s: &Scenario, breaker: bool) -> String {
    let primary_provider = if s.refused { "dead" } else { "anyscale" };
    format!(
        r#"{{"mode":"fallback"{b},"options":[{{"provider":"{primary_provider}","api_key":"...","override_params":{{"model":"{LLAMA}"}}{x}}},{{"provider":"anyscale","api_key":"...","override_params":{{"model":"{MISTRAL}"}}}}]}}"#,
        b = if breaker { BREAKER } else { "" },
        x = s.primary_extra,
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bin = std::env::var("PORTGATE_BIN").unwrap_or_else(|_| "target/release/portgate".into());
    let n: usize = std::env::var("DRILL_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let out = std::env::var("OUT").unwrap_or_else(|_| "bench/results/drill.md".into());
    let cpu = std::env::var("GW_CPU").unwrap_or_else(|_| "1".into());

    let mock = Arc::new(Mock {
        fault: AtomicU8::new(0),
        primary_sends: AtomicU64::new(0),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
    let mock_addr = listener.local_addr().expect("mock addr");
    tokio::spawn(serve_mock(listener, mock.clone()));
    // A port nothing listens on: the refused primary's host.
    let dead = free_port();

    let gateway = Gateway {
        bin,
        cpu,
        mock: mock_addr.to_string(),
        dead,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");

    let mut table = String::new();
    let started = Instant::now();
    for clients in [1usize, 16] {
        let requests = if clients == 1 { n } else { 4 * n };
        // Healthy runs of the same config: the latency the scenarios are compared with.
        let mut healthy = [(0.0, 0.0); 2];
        for stream in [false, true] {
            mock.fault.store(Fault::None as u8, Ordering::SeqCst);
            let cfg = config(&SCENARIOS[0], false);
            let run = gateway.run(&client, &cfg, stream, clients, requests).await;
            healthy[usize::from(stream)] = (run.p50, run.p99);
            eprintln!(
                "drill: healthy{} c={clients}: p50 {:.2} ms p99 {:.2} ms",
                if stream { " stream" } else { "" },
                run.p50,
                run.p99
            );
        }
        for s in SCENARIOS {
            for breaker in [false, true] {
                mock.fault.store(s.fault as u8, Ordering::SeqCst);
                mock.primary_sends.store(0, Ordering::SeqCst);
                let cfg = config(s, breaker);
                let run = gateway
                    .run(&client, &cfg, s.stream, clients, requests)
                    .await;
                let sends = if s.refused {
                    run.refused_attempts
                } else {
                    mock.primary_sends.load(Ordering::SeqCst) as f64
                };
                let (h50, h99) = healthy[usize::from(s.stream)];
                let line = format!(
                    "| {} | {} | {clients} | {requests} | {:.1} % | {:+.2} | {:+.2} | {:.3} |",
                    s.name,
                    if breaker { "yes" } else { "no" },
                    run.ok as f64 * 100.0 / requests as f64,
                    run.p50 - h50,
                    run.p99 - h99,
                    sends / requests as f64,
                );
                eprintln!("drill: {line}");
                table.push_str(&line);
                table.push('\n');
            }
        }
        let _ = writeln!(
            table,
            "| *healthy run, for reference* | | {clients} | {requests} | | p50 {:.2} ms, p99 {:.2} ms | stream: p50 {:.2} ms, p99 {:.2} ms | |",
            healthy[0].0, healthy[0].1, healthy[1].0, healthy[1].1
        );
    }
    let report = format!(
        "| scenario | breaker | clients | requests | answered 2xx | p50 added (ms) | p99 added (ms) | sends/request to the failing upstream |\n|---|---|---:|---:|---:|---:|---:|---:|\n{table}\nDrill time: {:.0} s.\n",
        started.elapsed().as_secs_f64()
    );
    println!("{report}");
    if let Some(dir) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&out, report).expect("write the report");
    eprintln!("drill: written to {out}");
}

struct Gateway {
    bin: String,
    cpu: String,
    mock: String,
    dead: u16,
}

struct Run {
    ok: usize,
    p50: f64,
    p99: f64,
    /// The gateway's attempts to the refused host (`portgate_upstream_attempts_total` of the
    /// `dead` provider).
    refused_attempts: f64,
}

impl Gateway {
    /// Starts a fresh gateway (empty budgets and circuits), sends `requests` requests with the
    /// config from `clients` clients, and stops it.
    async fn run(
        &self,
        client: &reqwest::Client,
        config: &str,
        stream: bool,
        clients: usize,
        requests: usize,
    ) -> Run {
        let (port, admin) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("portgate-drill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let settings = dir.join("portgate.yaml");
        std::fs::write(
            &settings,
            format!(
                "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\nthreads: 1\n\
                 grace_period_seconds: 0\n\
                 providers:\n  anyscale:\n    base_url: http://{mock}/v1\n  \
                 dead:\n    base_url: http://127.0.0.1:{dead}/v1\n\
                 upstream:\n  first_token_timeout_ms: {TIMEOUT_MS}\n\
                 retry:\n  backoff_base_ms: {BACKOFF_MS}\n\
                 cache:\n  enabled: false\n\
                 log:\n  level: error\n  access_log: \"off\"\n",
                mock = self.mock,
                dead = self.dead,
            ),
        )
        .expect("write settings");
        let mut child = self.spawn(&settings);
        let ready = format!("http://127.0.0.1:{admin}/readyz");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "portgate did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = format!("http://127.0.0.1:{port}/v1/chatComplete");
        let per_client = requests / clients;
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (client, url, config) = (client.clone(), url.clone(), config.to_string());
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let body = serde_json::json!({
                        "messages": [{"role": "user",
                            "content": format!("What happens when you mix red & yellow? ({c}/{i})")}],
                        "stream": stream,
                    });
                    let t = Instant::now();
                    let ok = match client
                        .post(&url)
                        .header("x-portkey-config", &config)
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(r) => {
                            // A stream must be one (not an error answered as JSON).
                            let sse = r
                                .headers()
                                .get("content-type")
                                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
                            let good = r.status().is_success() && sse == stream;
                            // The whole answer: a stream counts when it has ended.
                            r.bytes().await.is_ok() && good
                        }
                        Err(_) => false,
                    };
                    seen.push((ok, t.elapsed().as_secs_f64() * 1000.0));
                }
                seen
            }));
        }
        let mut seen = Vec::with_capacity(requests);
        for t in tasks {
            seen.extend(t.await.expect("client task"));
        }
        let metrics = client
            .get(format!("http://127.0.0.1:{admin}/metrics"))
            .send()
            .await
            .expect("metrics");
        let metrics = metrics.text().await.unwrap_or_default();
        let refused_attempts = metrics
            .lines()
            .filter(|l| {
                l.starts_with("portgate_upstream_attempts_total{")
                    && l.contains("provider=\"dead\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        let _ = child.kill();
        let _ = child.wait();
        let mut latencies: Vec<f64> = seen.iter().map(|s| s.1).collect();
        latencies.sort_by(f64::total_cmp);
        let at =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        Run {
            ok: seen.iter().filter(|s| s.0).count(),
            p50: at(0.5),
            p99: at(0.99),
            refused_attempts,
        }
    }

    fn spawn(&self, settings: &std::path::Path) -> Child {
        let mut cmd = if self.cpu.is_empty() {
            Command::new(&self.bin)
        } else {
            let mut c = Command::new("taskset");
            c.args(["-c", &self.cpu, &self.bin]);
            c
        };
        cmd.arg("--config")
            .arg(settings)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start portgate")
    }
}

async fn serve_mock(listener: TcpListener, mock: Arc<Mock>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, mock.clone()));
    }
}

/// One keep-alive connection: requests with a Content-Length body, as the gateway sends them.
async fn connection(mut s: TcpStream, mock: Arc<Mock>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: serde_json::Value =
            serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or_default();
        buf.drain(..head_end + length);
        let model = body["model"].as_str().unwrap_or("").to_string();
        let stream = body["stream"].as_bool().unwrap_or(false);
        let fault = if model == LLAMA {
            mock.primary_sends.fetch_add(1, Ordering::SeqCst);
            match mock.fault.load(Ordering::SeqCst) {
                1 => Fault::Status503,
                2 => Fault::Storm429,
                3 => Fault::Slow,
                4 => Fault::NoFirstToken,
                _ => Fault::None,
            }
        } else {
            Fault::None
        };
        match fault {
            Fault::Status503 => {
                error(&mut s, "503 Service Unavailable", "", "model overloaded").await?
            }
            Fault::Storm429 => {
                error(
                    &mut s,
                    "429 Too Many Requests",
                    "retry-after: 1\r\n",
                    "rate limited",
                )
                .await?
            }
            Fault::NoFirstToken => {
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await?;
                // Nothing more: the gateway's first-token timeout ends it.
                tokio::time::sleep(Duration::from_millis(TIMEOUT_MS * 10)).await;
                return Ok(());
            }
            Fault::Slow => {
                tokio::time::sleep(Duration::from_millis(TIMEOUT_MS * 10)).await;
                answer(&mut s, &model, stream).await?
            }
            Fault::None => answer(&mut s, &model, stream).await?,
        }
    }
}

async fn error(s: &mut TcpStream, status: &str, extra: &str, message: &str) -> std::io::Result<()> {
    let body = format!(r#"{{"error":{{"message":"{message}","type":"server_error"}}}}"#);
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(format!("{head}{body}").as_bytes()).await
}

async fn answer(s: &mut TcpStream, model: &str, stream: bool) -> std::io::Result<()> {
    if !stream {
        let body = format!(
            r#"{{"id":"chatcmpl-drill","object":"chat.completion","created":1700000000,"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"Orange."}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":17,"completion_tokens":2,"total_tokens":19}}}}"#
        );
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        return s.write_all(format!("{head}{body}").as_bytes()).await;
    }
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    let mut events: Vec<String> = ["Or", "ange", "."]
        .iter()
        .map(|w| {
            format!(
                r#"data: {{"id":"chatcmpl-drill","object":"chat.completion.chunk","created":1700000000,"model":"{model}","choices":[{{"index":0,"delta":{{"content":"{w}"}},"finish_reason":null}}]}}"#
            )
        })
        .collect();
    events.push(format!(
        r#"data: {{"id":"chatcmpl-drill","object":"chat.completion.chunk","created":1700000000,"model":"{model}","choices":[],"usage":{{"prompt_tokens":17,"completion_tokens":3,"total_tokens":20}}}}"#
    ));
    events.push("data: [DONE]".into());
    for e in events {
        let e = format!("{e}\n\n");
        let _ = write!(out, "{:x}\r\n{e}\r\n", e.len());
    }
    out.push_str("0\r\n\r\n");
    s.write_all(out.as_bytes()).await
}
