//! Time shared by the connectors and the runtime: the wall clock, read in
//! one place, and calendar arithmetic (days and microseconds since the
//! Unix epoch, to and from proleptic Gregorian dates and times).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now: the one clock that event times,
/// and so lags, are read against. 0 on a clock set before 1970.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whole seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Days from 1970-01-01 to a proleptic Gregorian date. Worked in 128 bits,
/// so that any year a message names gives an answer, not an overflow; one
/// past what 64 bits hold is clamped.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = i128::from(year);
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i128::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i128::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    i64::try_from(days).unwrap_or(if days < 0 { i64::MIN } else { i64::MAX })
}

/// The date of a day count from 1970-01-01, for any count: worked in 128
/// bits (the year of any `i64` count fits an `i64`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i128::from(m <= 2);
    (y as i64, m, d)
}

/// Microseconds since midnight as `HH:MM:SS[.ffffff]`.
pub(crate) fn format_time(micros: i64) -> String {
    let micros = micros.rem_euclid(86_400_000_000);
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    let base = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac == 0 {
        base
    } else {
        format!("{base}.{frac:06}")
    }
}

/// Microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
pub(crate) fn format_utc(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{}Z",
        format_time(micros.rem_euclid(86_400_000_000))
    )
}
