//! Starts portgate in-process on ephemeral ports and stops it cleanly when dropped: no fixed
//! ports, no `run_forever` (which would exit the test process).

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use portgate::Settings;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The test's signal source: a fast shutdown when the gateway is dropped, a graceful
/// terminate (what SIGTERM sends) after `TestGateway::terminate`.
struct NotifyWatch {
    notify: Arc<Notify>,
    graceful: Arc<AtomicBool>,
}

#[async_trait]
impl ShutdownSignalWatch for NotifyWatch {
    async fn recv(&self) -> ShutdownSignal {
        self.notify.notified().await;
        if self.graceful.load(Ordering::Acquire) {
            ShutdownSignal::GracefulTerminate
        } else {
            ShutdownSignal::FastShutdown
        }
    }
}

/// A free loopback port, not handed out twice in this process, taken from below the kernel's
/// ephemeral range. A port found by binding `:0` is free again once the probe closes, and the
/// kernel may hand it to the next `:0` bind (a mock provider) or outgoing connection before
/// the gateway binds it: seen once as a gateway that never started while a mock answered its
/// requests. Ports below the range are only ever taken by explicit binds.
pub fn free_port() -> u16 {
    static NEXT: OnceLock<Mutex<u16>> = OnceLock::new();
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let floor = ephemeral_low.saturating_sub(12_000).max(1024);
    let span = ephemeral_low.saturating_sub(floor).max(1);
    // Test binaries run one after another; the process id spreads their starting points.
    let next =
        NEXT.get_or_init(|| Mutex::new(floor + (std::process::id() % u32::from(span)) as u16));
    for _ in 0..span {
        let port = {
            let mut n = next.lock().unwrap();
            let port = *n;
            *n = if port + 1 >= ephemeral_low {
                floor
            } else {
                port + 1
            };
            port
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below the ephemeral range");
}

/// Settings for a test gateway: ephemeral ports, one thread, no grace period.
pub fn test_settings() -> Settings {
    let mut s = Settings {
        listen: format!("127.0.0.1:{}", free_port()),
        admin_listen: format!("127.0.0.1:{}", free_port()),
        threads: 1,
        grace_period_seconds: 0,
        graceful_shutdown_timeout_seconds: 1,
        ..Settings::default()
    };
    // The mocks listen on ephemeral loopback ports: trust loopback on every port (the
    // gateway's own ports stay refused).
    s.custom_hosts.trusted = vec!["127.0.0.1:*".into(), "localhost:*".into()];
    s.log.level = "error".into();
    s.log.access_log = "off".into();
    s
}

/// A running gateway.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Arc<Notify>,
    graceful: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestGateway {
    pub fn start(settings: Settings) -> TestGateway {
        portgate::telemetry::init(&settings.log);
        let addr: SocketAddr = settings.listen.parse().unwrap();
        let admin: SocketAddr = settings.admin_listen.parse().unwrap();
        let server = portgate::build_server(settings, None).expect("valid test settings");
        let stop = Arc::new(Notify::new());
        let graceful = Arc::new(AtomicBool::new(false));
        let watch = NotifyWatch {
            notify: stop.clone(),
            graceful: graceful.clone(),
        };
        let thread = std::thread::spawn(move || server.run(watch));
        let deadline = Instant::now() + Duration::from_secs(15);
        for a in [addr, admin] {
            while TcpStream::connect(a).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "gateway did not start listening on {a}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        TestGateway {
            addr,
            admin,
            stop,
            graceful,
            thread: Some(thread),
        }
    }

    /// Sends the gateway a graceful terminate, as SIGTERM does in the binary.
    pub fn terminate(&self) {
        self.graceful.store(true, Ordering::Release);
        self.stop.notify_one();
    }

    /// Whether `Portgate::run` has returned.
    pub fn stopped(&self) -> bool {
        self.thread.as_ref().map_or(true, |t| t.is_finished())
    }

    /// Waits (polling, without blocking an async runtime for long) until `run` returned or
    /// `limit` passed; returns how long it took, `None` when it did not stop in time.
    pub async fn wait_stopped(&self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        while !self.stopped() {
            if start.elapsed() >= limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Some(start.elapsed())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An HTTP client that never pools (each test sees fresh connections) and never retries.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}
