//! Settings that change without a restart, with the real binary: a settings file replaced as
//! Kubernetes replaces a ConfigMap's (a new file renamed over it) adds a virtual key; an invalid
//! file is refused and the running settings stay; `SIGHUP` reloads; counters survive a reload.

use crate::support::*;
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Gateway {
    child: Child,
    port: u16,
    admin: u16,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn settings(port: u16, admin: u16, mock: &MockProvider, keys: &[&str]) -> String {
    let mut yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\nlog: {{access_log: off, level: warn}}\nvirtual_keys:\n"
    );
    for k in keys {
        yaml.push_str(&format!(
            "  {k}:\n    provider: openai\n    custom_host: {}\n    rate_limits: [{{type: requests, unit: rpd, value: 3}}]\n",
            mock.base_url()
        ));
    }
    yaml
}

/// Replaces the file atomically: written beside it, then renamed over it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn start(path: &Path, port: u16, admin: u16) -> Gateway {
    let child = Command::new(env!("CARGO_BIN_EXE_portgate"))
        .arg("--config")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gw = Gateway { child, port, admin };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", admin)).is_err() {
        assert!(Instant::now() < deadline, "portgate did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    gw
}

async fn ask(gw: &Gateway, vk: &str) -> u16 {
    client()
        .post(format!("http://127.0.0.1:{}/v1/chat/completions", gw.port))
        .header("x-portkey-virtual-key", vk)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn reloads(gw: &Gateway, result: &str) -> f64 {
    let text = client()
        .get(format!("http://127.0.0.1:{}/metrics", gw.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sample(
        &text,
        "portgate_settings_reloads_total",
        &[("result", result)],
    )
    .unwrap_or(0.0)
}

/// Waits (polling, the watch looks every second) until `check` holds.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_reload_without_a_restart() {
    let mock = MockProvider::start().await;
    let (port, admin) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("portgate-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("portgate.yaml");
    std::fs::write(&path, settings(port, admin, &mock, &["team-a"])).unwrap();
    let gw = start(&path, port, admin);
    assert_eq!(ask(&gw, "team-a").await, 200);
    assert_eq!(ask(&gw, "team-b").await, 401, "no such key yet");

    // A new file with a second key: swapped in, no restart.
    replace(&path, &settings(port, admin, &mock, &["team-a", "team-b"]));
    until("team-b is served", || async {
        ask(&gw, "team-b").await == 200
    })
    .await;
    assert_eq!(reloads(&gw, "ok").await, 1.0);
    // team-a's counter survived the reload: 1 before, 1 now, 1 more, then refused.
    assert_eq!(ask(&gw, "team-a").await, 200);
    assert_eq!(ask(&gw, "team-a").await, 200);
    assert_eq!(ask(&gw, "team-a").await, 429);

    // An invalid file is refused whole; the running settings stay.
    replace(&path, "virtual_keys: [this is not a map\n");
    until("the bad file is refused", || async {
        reloads(&gw, "error").await == 1.0
    })
    .await;
    assert_eq!(ask(&gw, "team-b").await, 200);

    // SIGHUP reloads too (the file is valid again).
    replace(&path, &settings(port, admin, &mock, &["team-b"]));
    until("the good file is back", || async {
        reloads(&gw, "ok").await == 2.0
    })
    .await;
    assert_eq!(ask(&gw, "team-a").await, 401, "team-a was removed");
    let pid = gw.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    until("SIGHUP reloads", || async {
        reloads(&gw, "ok").await == 3.0
    })
    .await;
    drop(gw);

    // A key rotated in its secret file is picked up without touching the settings file.
    let (port, admin) = (free_port(), free_port());
    let key = dir.join("openai-key");
    std::fs::write(&key, "sk-old").unwrap();
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin}\nlog: {{access_log: off, level: warn}}\nvirtual_keys:\n  team-k:\n    provider: openai\n    custom_host: {}\n    api_key_file: {}\n",
            mock.base_url(),
            key.display()
        ),
    )
    .unwrap();
    let gw = start(&path, port, admin);
    assert_eq!(ask(&gw, "team-k").await, 200);
    let last_key = || {
        mock.requests()
            .last()
            .and_then(|r| r.header("authorization").map(str::to_string))
    };
    assert_eq!(last_key().as_deref(), Some("Bearer sk-old"));
    replace(&key, "sk-new");
    until("the rotated key is used", || async {
        ask(&gw, "team-k").await == 200 && last_key().as_deref() == Some("Bearer sk-new")
    })
    .await;
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
