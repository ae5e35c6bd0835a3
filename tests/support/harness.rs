//! Starts portgate in-process on ephemeral ports and stops it cleanly when dropped: no fixed
//! ports, no `run_forever` (which would exit the test process).

use async_trait::async_trait;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use portgate::Settings;
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

struct NotifyWatch(Arc<Notify>);

#[async_trait]
impl ShutdownSignalWatch for NotifyWatch {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::FastShutdown
    }
}

/// A free loopback port, never handed out twice in this process.
pub fn free_port() -> u16 {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("ephemeral port")
            .port();
        if used.lock().unwrap().insert(port) {
            return port;
        }
    }
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
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestGateway {
    pub fn start(settings: Settings) -> TestGateway {
        portgate::telemetry::init(&settings.log);
        let addr: SocketAddr = settings.listen.parse().unwrap();
        let admin: SocketAddr = settings.admin_listen.parse().unwrap();
        let server = portgate::build_server(settings).expect("valid test settings");
        let stop = Arc::new(Notify::new());
        let watch = NotifyWatch(stop.clone());
        let thread = std::thread::spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(watch),
            });
        });
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
            thread: Some(thread),
        }
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
