//! A throw-away PostgreSQL for the tests that need one (`make test` installs Debian's
//! `postgresql` through `scripts/ensure-deps.sh`). Each server has its own data directory,
//! copied from one `initdb` per test process, and runs as the `postgres` user when the tests
//! run as root (the server refuses to run as root).

use super::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directory of the server binaries: on PATH, else Debian's newest version.
fn bin_dir() -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("postgres").exists() {
                return dir;
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL (scripts/ensure-deps.sh installs it)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL under /usr/lib/postgresql")
}

fn as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// `psql`, beside the server or on PATH.
fn psql() -> Command {
    let beside = bin_dir().join("psql");
    Command::new(if beside.exists() {
        beside
    } else {
        PathBuf::from("psql")
    })
}

/// A command run as the server's user.
fn command(program: &Path) -> Command {
    if as_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--reset-env",
        ]);
        c.arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn give_to_server_user(dir: &Path) {
    if as_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .expect("chown")
            .success();
        assert!(ok, "chown {}", dir.display());
    }
}

/// Data directories of test processes that are gone (killed before their servers' `Drop`).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("portgate-pg-") else {
            continue;
        };
        let rest = rest.strip_prefix("template-").unwrap_or(rest);
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// One `initdb` per test process; servers start from copies of it.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        remove_stale();
        let root =
            std::env::temp_dir().join(format!("portgate-pg-template-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        give_to_server_user(&root);
        let data = root.join("data");
        let out = command(&bin_dir().join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "portgate",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        data
    })
}

/// A PostgreSQL server without durability (fsync off), killed and deleted when dropped.
pub struct PgServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl PgServer {
    pub fn start() -> PgServer {
        let dir = std::env::temp_dir().join(format!(
            "portgate-pg-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let ok = Command::new("cp")
            .arg("-a")
            .arg(template())
            .arg(&dir)
            .status()
            .expect("cp")
            .success();
        assert!(ok, "copying the template data directory");
        let mut server = PgServer {
            child: None,
            port: free_port(),
            dir,
        };
        server.resume();
        server
    }

    /// Starts the server (again, after `stop`) on its port and data.
    pub fn resume(&mut self) {
        let child = command(&bin_dir().join("postgres"))
            .arg("-D")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=16MB",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Accepting connections a moment before it accepts logins: ask until it answers.
        while !psql()
            .arg(self.url())
            .args(["-qtAc", "SELECT 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "postgres did not accept logins");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://portgate@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs SQL with `psql`; its unaligned output, `None` when it failed.
    pub fn try_query(&self, sql: &str) -> Option<String> {
        let out = psql().arg(self.url()).args(["-qtAc", sql]).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs SQL with `psql` and returns its unaligned output.
    pub fn query(&self, sql: &str) -> String {
        let out = psql()
            .arg(self.url())
            .args(["-qtAc", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops the server at once (an immediate shutdown: it ends its connections and exits
    /// without a checkpoint).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The postmaster's children notice its death within moments; its lock file would
        // stop a restart on the same data.
        let _ = std::fs::remove_file(self.dir.join("postmaster.pid"));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
