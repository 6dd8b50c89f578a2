//! Parsing and showing times. Times are stored as nanoseconds since the Unix epoch (UTC) and
//! shown in the local time zone.

use anyhow::{bail, Result};
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Parses `2026-11-20T14:00:00Z` (any RFC 3339 time), or `2026-11-20 14:00[:00]` and
/// `2026-11-20` in local time.
pub fn parse(s: &str) -> Result<i64> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts.as_nanosecond() as i64);
    }
    let tz = TimeZone::system();
    let civil = s
        .parse::<DateTime>()
        .ok()
        .or_else(|| s.parse::<Date>().ok().map(|d| d.at(0, 0, 0, 0)));
    match civil.and_then(|dt| dt.to_zoned(tz).ok()) {
        Some(z) => Ok(z.timestamp().as_nanosecond() as i64),
        None => bail!("invalid time {s:?}: use forms like 2026-11-20T14:00:00Z, \"2026-11-20 14:00\" or 2026-11-20"),
    }
}

pub fn now_ns() -> i64 {
    Timestamp::now().as_nanosecond() as i64
}

/// `2026-11-20 14:00:05` in the local time zone.
pub fn show(ns: i64) -> String {
    match Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(ts) => ts
            .to_zoned(TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => format!("@{ns}ns"),
    }
}

/// RFC 3339 in UTC, for JSON.
pub fn rfc3339(ns: i64) -> String {
    Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_forms() {
        assert_eq!(
            parse("2026-11-20T14:00:00Z").unwrap(),
            1_795_701_600_000_000_000
        );
        assert!(parse("2026-11-20 14:00").is_ok());
        assert!(parse("2026-11-20").is_ok());
        assert!(parse("yesterdayish").is_err());
        assert_eq!(rfc3339(1_795_701_600_000_000_000), "2026-11-20T14:00:00Z");
    }
}
