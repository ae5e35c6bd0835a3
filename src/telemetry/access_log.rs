//! The access log: one JSON line per request (and per feedback), to stdout or a file. It never
//! contains keys; bodies only when `log.log_bodies` is on, with credential-like fields redacted.
//!
//! A request serialises its line straight into a shared buffer (no intermediate allocation, no
//! channel, no wake-up); a flusher thread writes the buffer out every `FLUSH_INTERVAL`, or sooner
//! when it passes `FLUSH_AT`, in one write call. Envoy's file access log works the same way. If
//! the output stalls (a full pipe), the buffer stops at `MAX_BUFFERED` and further lines are
//! dropped and counted in `portgate_access_log_dropped_total` rather than held in memory or
//! blocking a request.

use crate::settings::{LogSettings, SettingsError};
use prometheus::IntCounter;
use serde::Serialize;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
const FLUSH_AT: usize = 256 * 1024;
const MAX_BUFFERED: usize = 16 * 1024 * 1024;

pub struct AccessLog {
    sink: Option<Arc<Sink>>,
    flusher: Option<JoinHandle<()>>,
    pub log_bodies: bool,
}

struct Sink {
    buf: Mutex<Buffer>,
    wake: Condvar,
    /// Signalled by the flusher after each write, for `AccessLog::flush`.
    flushed: Condvar,
    dropped: IntCounter,
    max_buffered: usize,
}

#[derive(Default)]
struct Buffer {
    lines: Vec<u8>,
    stop: bool,
    /// Flushes asked for by `AccessLog::flush`, and how many of them the flusher completed:
    /// a caller waits until `flushes_done` reaches the number it was given.
    flushes_asked: u64,
    flushes_done: u64,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A panic while holding the lock cannot leave a half-written line worse than a torn
        // log line; keep logging rather than poisoning every later request.
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AccessLog {
    /// Opens the output named by `log.access_log` and starts the flusher; `dropped` counts
    /// lines lost to a stalled output.
    pub(crate) fn new(
        settings: &LogSettings,
        dropped: IntCounter,
    ) -> Result<AccessLog, SettingsError> {
        let out: Box<dyn Write + Send> = match settings.access_log.trim() {
            "off" => {
                return Ok(AccessLog {
                    sink: None,
                    flusher: None,
                    log_bodies: settings.log_bodies,
                })
            }
            "stdout" => Box::new(std::io::stdout()),
            path => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| SettingsError::new("log.access_log", format!("{path}: {e}")))?,
            ),
        };
        Self::start(out, dropped, MAX_BUFFERED, settings.log_bodies)
    }

    fn start(
        out: Box<dyn Write + Send>,
        dropped: IntCounter,
        max_buffered: usize,
        log_bodies: bool,
    ) -> Result<AccessLog, SettingsError> {
        let sink = Arc::new(Sink {
            buf: Mutex::new(Buffer::default()),
            wake: Condvar::new(),
            flushed: Condvar::new(),
            dropped,
            max_buffered,
        });
        let flusher = std::thread::Builder::new()
            .name("portgate-access-log".into())
            .spawn({
                let sink = sink.clone();
                move || flush_loop(&sink, out)
            })
            .map_err(|e| SettingsError::new("log.access_log", format!("flusher thread: {e}")))?;
        Ok(AccessLog {
            sink: Some(sink),
            flusher: Some(flusher),
            log_bodies,
        })
    }

    /// Appends one line (the value serialised on one line, then `\n`).
    pub(crate) fn write<T: Serialize + ?Sized>(&self, line: &T) {
        self.write_with(|out| serde_json::to_writer(out, line).is_ok());
    }

    /// Appends one line that `write` puts at the end of the buffer (without the `\n`); a line
    /// it says `false` about is taken back.
    pub(crate) fn write_with(&self, write: impl FnOnce(&mut Vec<u8>) -> bool) {
        let Some(sink) = &self.sink else {
            return;
        };
        let mut buf = sink.lock();
        if buf.lines.len() >= sink.max_buffered {
            drop(buf);
            sink.dropped.inc();
            return;
        }
        let start = buf.lines.len();
        if !write(&mut buf.lines) {
            buf.lines.truncate(start);
            return;
        }
        buf.lines.push(b'\n');
        if buf.lines.len() >= FLUSH_AT {
            sink.wake.notify_one();
        }
    }
}

impl AccessLog {
    /// Writes out every line buffered so far and returns once it is written, or `false` after
    /// `within`. The graceful shutdown calls it after the last request finished: the process
    /// exits right after, and the flusher's 100 ms tick would otherwise lose the last lines.
    pub(crate) fn flush(&self, within: Duration) -> bool {
        let Some(sink) = &self.sink else {
            return true;
        };
        let deadline = Instant::now() + within;
        let mut buf = sink.lock();
        buf.flushes_asked += 1;
        let ticket = buf.flushes_asked;
        sink.wake.notify_one();
        while buf.flushes_done < ticket {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            buf = match sink.flushed.wait_timeout(buf, left) {
                Ok((b, _)) => b,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }
}

impl Drop for AccessLog {
    /// Writes what is buffered (tests and embedders drop the state; the binary's graceful
    /// shutdown calls `flush` instead, as Pingora exits without dropping the state).
    fn drop(&mut self) {
        if let Some(sink) = &self.sink {
            sink.lock().stop = true;
            sink.wake.notify_one();
        }
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

fn flush_loop(sink: &Sink, mut out: Box<dyn Write + Send>) {
    let mut spare = Vec::new();
    loop {
        let (stop, ticket) = {
            let mut buf = sink.lock();
            if !buf.stop && buf.lines.len() < FLUSH_AT && buf.flushes_done == buf.flushes_asked {
                buf = match sink.wake.wait_timeout(buf, FLUSH_INTERVAL) {
                    Ok((b, _)) => b,
                    Err(p) => p.into_inner().0,
                };
            }
            std::mem::swap(&mut buf.lines, &mut spare);
            (buf.stop, buf.flushes_asked)
        };
        if !spare.is_empty() {
            // A failed write (disk full, closed stdout) loses this batch; there is nowhere
            // better to report it than the diagnostics log.
            if let Err(e) = out.write_all(&spare).and_then(|()| out.flush()) {
                tracing::warn!(error = %e, "access log write failed");
            }
            spare.clear();
        }
        {
            let mut buf = sink.lock();
            buf.flushes_done = ticket;
            sink.flushed.notify_all();
        }
        if stop {
            return;
        }
    }
}

pub(crate) use crate::types::time::now_rfc3339;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The once-a-second prefix writes what humantime writes, across seconds, days, leap days
    /// and the epoch itself, milliseconds truncated.
    #[test]
    fn writes_lines_to_a_file() {
        let path = std::env::temp_dir().join(format!("pg-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let settings = LogSettings {
            access_log: path.display().to_string(),
            ..LogSettings::default()
        };
        {
            let log = AccessLog::new(&settings, IntCounter::new("d", "d").unwrap()).unwrap();
            log.write(&json!({"a": 1}));
            log.write(&json!({"b": 2}));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
    }

    /// A writer shared with the test, to read what the flusher wrote.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn flushes_without_being_dropped() {
        let out = Shared::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        let log = AccessLog::start(Box::new(out.clone()), dropped, MAX_BUFFERED, false).unwrap();
        log.write(&json!({"a": 1}));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.0.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(&*out.0.lock().unwrap(), b"{\"a\":1}\n");
        drop(log);
    }

    #[test]
    fn flush_writes_the_buffer_before_returning() {
        let out = Shared::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        let log = AccessLog::start(Box::new(out.clone()), dropped, MAX_BUFFERED, false).unwrap();
        // Let the flusher park in its 100 ms wait, so only `flush` can write the next line now.
        std::thread::sleep(Duration::from_millis(20));
        log.write(&json!({"last": 1}));
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(&*out.0.lock().unwrap(), b"{\"last\":1}\n");
        // Nothing buffered: still returns.
        assert!(log.flush(Duration::from_secs(10)));
        drop(log);
    }

    #[test]
    fn a_full_buffer_drops_and_counts_lines() {
        let out = Shared::default();
        let dropped = IntCounter::new("d", "d").unwrap();
        // Room for one line: the rest of the burst arrives before the flusher's first turn.
        let log = AccessLog::start(Box::new(out.clone()), dropped.clone(), 8, false).unwrap();
        for i in 0..100 {
            log.write(&json!({"line": i}));
        }
        drop(log);
        let written = out
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        assert!(written >= 1);
        assert_eq!(written + dropped.get(), 100);
        assert!(dropped.get() >= 90, "dropped {}", dropped.get());
    }
}
