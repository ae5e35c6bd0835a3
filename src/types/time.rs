//! RFC 3339 timestamps with milliseconds (`2026-01-02T03:04:05.678Z`), as the access log and
//! hook results write them: one per-thread cache of the formatted second, so a timestamp costs
//! a few stores instead of a calendar computation (a visible part of an access-log line when
//! done in full), and no allocation until one is asked for as a `String`.

use std::time::{SystemTime, UNIX_EPOCH};

/// A formatted timestamp, held in place (it is `Copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    len: u8,
    bytes: [u8; 32],
}

impl Stamp {
    pub(crate) fn now() -> Stamp {
        Stamp::at(SystemTime::now())
    }

    /// The stamp of a wall-clock time, milliseconds truncated (as humantime's
    /// `format_rfc3339_millis` writes it).
    pub(crate) fn at(t: SystemTime) -> Stamp {
        thread_local! {
            /// The last second formatted: seconds since the epoch, and `YYYY-MM-DDTHH:MM:SS`.
            static SECOND: std::cell::Cell<(u64, [u8; 19])> =
                const { std::cell::Cell::new((0, [0; 19])) };
        }
        let mut stamp = Stamp {
            len: 0,
            bytes: [0; 32],
        };
        let Ok(since) = t.duration_since(UNIX_EPOCH) else {
            return Stamp::formatted(t);
        };
        let secs = since.as_secs();
        let prefix = SECOND.with(|second| match second.get() {
            (s, prefix) if s == secs && prefix[0] != 0 => Some(prefix),
            _ => {
                let whole = humantime::format_rfc3339_seconds(t).to_string();
                // `YYYY-MM-DDTHH:MM:SSZ`: any other shape is left to humantime whole.
                let prefix: [u8; 19] = whole.as_bytes().get(..19)?.try_into().ok()?;
                (whole.len() == 20).then_some(())?;
                second.set((secs, prefix));
                Some(prefix)
            }
        });
        let Some(prefix) = prefix else {
            return Stamp::formatted(t);
        };
        let millis = since.subsec_millis();
        let tail = [
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
        ];
        stamp.bytes[..19].copy_from_slice(&prefix);
        stamp.bytes[19..24].copy_from_slice(&tail);
        stamp.len = 24;
        stamp
    }

    /// Formatted by humantime in full (dates its cache does not take).
    fn formatted(t: SystemTime) -> Stamp {
        let mut stamp = Stamp {
            len: 0,
            bytes: [0; 32],
        };
        use std::fmt::Write;
        if write!(stamp, "{}", humantime::format_rfc3339_millis(t)).is_err() {
            stamp.len = 0;
        }
        stamp
    }

    /// The timestamp's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// Appends the timestamp as a JSON string (its characters need no escape).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        out.extend_from_slice(self.as_bytes());
        out.push(b'"');
    }
}

impl std::fmt::Write for Stamp {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let start = usize::from(self.len);
        let end = start + s.len();
        let slot = self.bytes.get_mut(start..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = u8::try_from(end).map_err(|_| std::fmt::Error)?;
        Ok(())
    }
}

/// The current time as RFC 3339 with milliseconds (UTC).
pub(crate) fn now_rfc3339() -> String {
    Stamp::now().as_str().to_string()
}

/// Unix time in milliseconds.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_humantimes() {
        use std::time::{Duration, UNIX_EPOCH};
        let instants: [u128; 10] = [
            0,
            999_999_999,
            1_000_000_000,
            1_709_164_799_999_999_999,
            1_709_164_800_000_000_000,
            1_796_000_000_123_456_789,
            1_796_000_000_999_000_000,
            1_796_000_001_000_999_999,
            1_796_000_001_001_000_000,
            253_402_300_799_999_999_999,
        ];
        for nanos in instants {
            let t = UNIX_EPOCH
                + Duration::new(
                    (nanos / 1_000_000_000) as u64,
                    (nanos % 1_000_000_000) as u32,
                );
            // Twice: formatting, then from the cached second.
            for _ in 0..2 {
                assert_eq!(
                    Stamp::at(t).as_str(),
                    humantime::format_rfc3339_millis(t).to_string()
                );
            }
        }
        assert_eq!(now_rfc3339().len(), 24);
    }
}
