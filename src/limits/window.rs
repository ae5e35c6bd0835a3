//! Time for counters: fixed rate windows aligned to the clock, and budget periods of the UTC
//! calendar. Each is named by its start, so a counter's key says which window or period it
//! counts, and a new one starts at zero by itself.

use crate::settings::limits::{Period, RateUnit};

const DAY_MS: u64 = 86_400_000;

/// The window of `unit` holding `now_ms` (Unix milliseconds): its start and its end.
pub(crate) fn window(unit: RateUnit, now_ms: u64) -> (u64, u64) {
    let size = unit.window_ms();
    let start = now_ms - now_ms % size;
    (start, start + size)
}

/// The budget period holding `now_ms`: its name (part of the counter's key) and its end
/// (Unix ms). Without a period the budget never starts again.
pub(crate) fn period(period: Option<Period>, now_ms: u64) -> (String, Option<u64>) {
    let Some(period) = period else {
        return ("all".into(), None);
    };
    let day = now_ms / DAY_MS;
    let (y, m, d) = civil(day);
    match period {
        Period::Daily => (format!("{y:04}-{m:02}-{d:02}"), Some((day + 1) * DAY_MS)),
        Period::Weekly => {
            // Days since Monday: 1970-01-01 was a Thursday.
            let monday = day - (day + 3) % 7;
            let (y, m, d) = civil(monday);
            (
                format!("week-{y:04}-{m:02}-{d:02}"),
                Some((monday + 7) * DAY_MS),
            )
        }
        Period::Monthly => {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (
                format!("{y:04}-{m:02}"),
                Some(days_from_civil(ny, nm, 1) * DAY_MS),
            )
        }
    }
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's civil-from-days).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07T14:29:42.123Z, a Monday.
    const NOW: u64 = 1_796_653_782_123;

    #[test]
    fn windows_are_aligned_to_the_clock() {
        assert_eq!(
            window(RateUnit::Rps, NOW),
            (1_796_653_782_000, 1_796_653_783_000)
        );
        assert_eq!(
            window(RateUnit::Rpm, NOW),
            (1_796_653_740_000, 1_796_653_800_000)
        );
        let (start, end) = window(RateUnit::Rph, NOW);
        assert_eq!((start % 3_600_000, end - start), (0, 3_600_000));
        let (start, end) = window(RateUnit::Rpd, NOW);
        assert_eq!((start % DAY_MS, end - start), (0, DAY_MS));
        assert!(start <= NOW && NOW < end);
    }

    #[test]
    fn periods_follow_the_utc_calendar() {
        let midnight = NOW - NOW % DAY_MS;
        assert_eq!(
            period(Some(Period::Daily), NOW),
            ("2026-12-07".into(), Some(midnight + DAY_MS))
        );
        // Monday 7 December: its own week, ending the next Monday.
        assert_eq!(
            period(Some(Period::Weekly), NOW),
            ("week-2026-12-07".into(), Some(midnight + 7 * DAY_MS))
        );
        // The Sunday before belongs to the week of 30 November.
        assert_eq!(
            period(Some(Period::Weekly), NOW - DAY_MS).0,
            "week-2026-11-30"
        );
        let (name, end) = period(Some(Period::Monthly), NOW);
        assert_eq!(name, "2026-12");
        // 2027-01-01T00:00:00Z.
        assert_eq!(end, Some(1_798_761_600_000));
        assert_eq!(period(None, NOW), ("all".into(), None));
        // Leap years and month ends.
        assert_eq!(civil(days_from_civil(2028, 2, 29)), (2028, 2, 29));
        assert_eq!(civil(days_from_civil(2027, 3, 1) - 1), (2027, 2, 28));
        assert_eq!(civil(0), (1970, 1, 1));
    }
}
