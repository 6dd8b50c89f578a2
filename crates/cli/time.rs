//! Parsing and showing times. Times are stored as nanoseconds since the Unix epoch (UTC) and
//! shown in the local time zone.
//!
//! "Now" comes from `CAIRN_NOW` when it is set (an RFC 3339 time), so that tests of relative
//! times do not depend on the clock.

use anyhow::{bail, Context, Result};
use cairn_format::tree::FileTime;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};

pub fn now() -> Result<Zoned> {
    let ts = match std::env::var("CAIRN_NOW") {
        Ok(s) => s
            .parse::<Timestamp>()
            .with_context(|| format!("CAIRN_NOW {s:?} is not an RFC 3339 time"))?,
        Err(_) => Timestamp::now(),
    };
    Ok(ts.to_zoned(TimeZone::system()))
}

pub fn now_ns() -> i64 {
    now()
        .map(|z| z.timestamp().as_nanosecond() as i64)
        .unwrap_or_else(|_| Timestamp::now().as_nanosecond() as i64)
}

const FORMS: &str = "use forms like 2026-11-20T14:00:00Z, \"2026-11-20 14:00\", 2026-11-20, \
                     202611201400, 20261120, \"2 days ago\", \"3h ago\", yesterday, \
                     \"yesterday 18:00\" or now";

/// The compact forms archives are often named with: `YYYYMMDD` and `YYYYMMDDHHMM[SS]`.
fn compact(s: &str) -> Option<DateTime> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<i16>().ok();
    let date = || Date::new(n(0..4)?, n(4..6)? as i8, n(6..8)? as i8).ok();
    match s.len() {
        8 => date().map(|d| d.at(0, 0, 0, 0)),
        12 => date().and_then(|d| {
            Time::new(n(8..10)? as i8, n(10..12)? as i8, 0, 0)
                .ok()
                .map(|t| d.to_datetime(t))
        }),
        14 => date().and_then(|d| {
            Time::new(n(8..10)? as i8, n(10..12)? as i8, n(12..14)? as i8, 0)
                .ok()
                .map(|t| d.to_datetime(t))
        }),
        _ => None,
    }
}

/// Whether `s` names a whole day (a date without a time, or `today`/`yesterday` alone):
/// `--at` takes the end of such a day, the state that day ended with.
pub fn is_whole_day(s: &str) -> bool {
    let s = s.trim();
    (s.len() == 10 && s.parse::<Date>().is_ok())
        || (s.len() == 8 && compact(s).is_some())
        || ["today", "yesterday"].contains(&s.to_ascii_lowercase().as_str())
}

/// Parses a time for `--at`: as `parse_at`, except that a whole day means its last instant.
pub fn parse_point(s: &str, now: &Zoned) -> Result<i64> {
    let start = parse_at(s, now)?;
    if !is_whole_day(s) {
        return Ok(start);
    }
    let tz = now.time_zone().clone();
    let day = Timestamp::from_nanosecond(i128::from(start))?
        .to_zoned(tz.clone())
        .date();
    let next = day.checked_add(Span::new().days(1))?.to_zoned(tz)?;
    Ok(next.timestamp().as_nanosecond() as i64 - 1)
}

/// Parses an absolute time (RFC 3339 with a zone; or `2026-11-20 14:00[:00]` and `2026-11-20`
/// in local time) or a relative one (`2 days ago`, `3h ago`, `now`, `today 09:00`,
/// `yesterday`, `yesterday 18:00`), relative to `now`.
pub fn parse_at(s: &str, now: &Zoned) -> Result<i64> {
    let s = s.trim();
    let ns = |z: Zoned| z.timestamp().as_nanosecond() as i64;
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts.as_nanosecond() as i64);
    }
    let tz = now.time_zone().clone();
    let civil = s
        .parse::<DateTime>()
        .ok()
        .or_else(|| s.parse::<Date>().ok().map(|d| d.at(0, 0, 0, 0)))
        .or_else(|| compact(s));
    if let Some(dt) = civil {
        return Ok(ns(dt.to_zoned(tz)?));
    }
    let lower = s.to_ascii_lowercase();
    if lower == "now" {
        return Ok(ns(now.clone()));
    }
    for (word, days) in [("today", 0), ("yesterday", -1)] {
        if let Some(rest) = lower.strip_prefix(word) {
            let rest = rest.trim();
            let time = if rest.is_empty() {
                Time::midnight()
            } else {
                rest.parse::<Time>()
                    .with_context(|| format!("invalid time {s:?}: {FORMS}"))?
            };
            let date = now.date().checked_add(Span::new().days(days))?;
            return Ok(ns(date.to_datetime(time).to_zoned(tz)?));
        }
    }
    if lower.ends_with(" ago") {
        if let Ok(span) = lower.parse::<Span>() {
            // Calendar units (days, months) follow the local calendar across DST changes.
            return Ok(ns(now.checked_add(span)?));
        }
    }
    bail!("invalid time {s:?}: {FORMS}")
}

/// Parses a time given to `backup --time` and friends: absolute or relative to now.
pub fn parse(s: &str) -> Result<i64> {
    parse_at(s, &now()?)
}

/// Parses a time given to `--at`: a whole day means its end.
pub fn parse_end(s: &str) -> Result<i64> {
    parse_point(s, &now()?)
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

/// A file time in the local time zone, like `show`; `@SECONDS` beyond the years -9999 to 9999.
pub fn show_file(t: FileTime) -> String {
    match Timestamp::new(t.secs, t.nanos as i32) {
        Ok(ts) => ts
            .to_zoned(TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => format!("@{}", t.secs),
    }
}

/// A file time in RFC 3339, UTC; `@SECONDS` beyond the years -9999 to 9999.
pub fn rfc3339_file(t: FileTime) -> String {
    Timestamp::new(t.secs, t.nanos as i32)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| format!("@{}", t.secs))
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

    fn at(s: &str) -> String {
        let now: Zoned = "2026-11-20T14:30:00+01:00[Europe/Paris]".parse().unwrap();
        let ns = parse_at(s, &now).unwrap();
        Timestamp::from_nanosecond(i128::from(ns))
            .unwrap()
            .to_zoned(now.time_zone().clone())
            .strftime("%F %T")
            .to_string()
    }

    #[test]
    fn absolute_forms() {
        assert_eq!(
            parse("2026-11-20T14:00:00Z").unwrap(),
            1_795_183_200_000_000_000
        );
        assert_eq!(at("2026-11-20T14:00:00Z"), "2026-11-20 15:00:00");
        assert_eq!(at("2026-11-20 14:00"), "2026-11-20 14:00:00");
        assert_eq!(at("2026-11-20"), "2026-11-20 00:00:00");
        assert_eq!(rfc3339(1_795_183_200_000_000_000), "2026-11-20T14:00:00Z");
    }

    #[test]
    fn compact_forms_and_whole_days() {
        assert_eq!(at("202611201405"), "2026-11-20 14:05:00");
        assert_eq!(at("20261120140509"), "2026-11-20 14:05:09");
        assert_eq!(at("20261120"), "2026-11-20 00:00:00");
        let now: Zoned = "2026-11-20T14:30:00+01:00[Europe/Paris]".parse().unwrap();
        let end = |s: &str| {
            let ns = parse_point(s, &now).unwrap();
            let z = Timestamp::from_nanosecond(i128::from(ns))
                .unwrap()
                .to_zoned(now.time_zone().clone());
            (z.strftime("%F %T").to_string(), z.subsec_nanosecond())
        };
        let last = |day: &str| (format!("{day} 23:59:59"), 999_999_999);
        assert_eq!(end("2026-12-02"), last("2026-12-02"));
        assert_eq!(end("20261202"), last("2026-12-02"));
        assert_eq!(end("yesterday"), last("2026-11-19"));
        assert_eq!(end("2026-12-02 10:00"), ("2026-12-02 10:00:00".into(), 0));
        assert_eq!(end("202612021730"), ("2026-12-02 17:30:00".into(), 0));
        for bad in ["20261332", "2026120", "202612021799"] {
            assert!(parse_at(bad, &now).is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_forms() {
        assert_eq!(at("now"), "2026-11-20 14:30:00");
        assert_eq!(at("2 days ago"), "2026-11-18 14:30:00");
        assert_eq!(at("3h ago"), "2026-11-20 11:30:00");
        assert_eq!(at("90 minutes ago"), "2026-11-20 13:00:00");
        assert_eq!(at("yesterday"), "2026-11-19 00:00:00");
        assert_eq!(at("yesterday 18:00"), "2026-11-19 18:00:00");
        assert_eq!(at("today 09:15"), "2026-11-20 09:15:00");
        let now: Zoned = "2026-11-20T14:30:00+01:00[Europe/Paris]".parse().unwrap();
        for bad in ["yesterdayish", "2 days", "tomorrow", "", "yesterday 25:00"] {
            assert!(parse_at(bad, &now).is_err(), "{bad}");
        }
    }
}
