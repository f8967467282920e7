//! What an answer means for the record that was sent, and how long to wait
//! before trying again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What to do after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The receiver took the record (2xx).
    Done,
    /// Worth another attempt: 408, 429, 5xx, or no answer at all. `after`
    /// is the receiver's `Retry-After`, when it gave one.
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// The receiver refuses this record (another 4xx): sending it again
    /// will not help, and it goes to the dead-letter topic.
    Refused(String),
    /// An answer that may be the record's fault or the setup's (3xx, 401,
    /// 403, 404, 405, 407): a wrong URL or credentials get it for every
    /// record, a receiver may give it for one (an order it does not know).
    /// What the other records get tells them apart (decision 0009).
    Suspect(String),
}

/// The verdict on an answer with `status`, its `Retry-After` header and the
/// start of its body.
pub(crate) fn classify(status: u16, retry_after: Option<&str>, excerpt: &str) -> Verdict {
    let answered = if excerpt.is_empty() {
        format!("the endpoint answered {status}")
    } else {
        format!("the endpoint answered {status}: {excerpt}")
    };
    match status {
        200..=299 => Verdict::Done,
        408 | 429 | 500..=599 => Verdict::Retry {
            after: retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())),
            why: answered,
        },
        300..=399 | 401 | 403 | 404 | 405 | 407 => Verdict::Suspect(answered),
        _ => Verdict::Refused(answered),
    }
}

/// `Retry-After` as a delay: delta-seconds, or an HTTP date (IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`) measured from `now`.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the epoch of an IMF-fixdate.
fn parse_http_date(value: &str) -> Option<u64> {
    let (_, rest) = value.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let (day, year): (u32, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<u64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    let days = crate::time::days_from_civil(year, month, day);
    let seconds = h
        .checked_mul(3600)?
        .checked_add(m.checked_mul(60)?)?
        .checked_add(*s)?;
    u64::try_from(days.checked_mul(86_400)?)
        .ok()?
        .checked_add(seconds)
}

/// The delay before attempt `attempt` (1 for the first retry): `base`
/// doubled each time up to `max`, then a random part of its upper half
/// taken away, so that many senders do not retry in step. A receiver's
/// `Retry-After` replaces it, up to `max`.
pub(crate) fn delay(
    attempt: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    if let Some(after) = retry_after {
        return after.min(max);
    }
    let full = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let half = full / 2;
    half + half.mul_f64(random_fraction())
}

/// A number in [0, 1), random enough for jitter.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(200, None, ""), Verdict::Done);
        assert_eq!(classify(204, None, ""), Verdict::Done);
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(status, None, ""), Verdict::Retry { .. }),
                "{status}"
            );
        }
        for status in [301, 401, 403, 404, 405] {
            assert!(
                matches!(classify(status, None, ""), Verdict::Suspect(_)),
                "{status}"
            );
        }
        for status in [400, 409, 410, 413, 415, 422] {
            assert!(
                matches!(classify(status, None, ""), Verdict::Refused(_)),
                "{status}"
            );
        }
        assert_eq!(
            classify(422, None, "sku is required"),
            Verdict::Refused("the endpoint answered 422: sku is required".into())
        );
        assert_eq!(
            classify(503, Some("7"), ""),
            Verdict::Retry {
                after: Some(Duration::from_secs(7)),
                why: "the endpoint answered 503".into()
            }
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        // A year or hour past any clock is no date, not an overflow.
        for far in [
            "Sun, 06 Nov 9223372036854775807 08:49:37 GMT",
            "Sun, 06 Nov -9223372036854775808 08:49:37 GMT",
            "Sun, 06 Nov 1994 18446744073709551615:00:00 GMT",
        ] {
            assert_eq!(parse_retry_after(far, now), None, "{far}");
        }
    }

    #[test]
    fn delays_double_with_jitter_and_stay_under_the_cap() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 1..=10 {
            let full = (base * (1 << (attempt - 1))).min(max);
            let d = delay(attempt, base, max, None);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert_eq!(delay(1, base, max, Some(Duration::from_secs(5))), max);
        assert_eq!(
            delay(1, base, max, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
    }
}
