//! Parsers for option values. Every value is checked here, by clap, before anything else runs,
//! so that an invalid one exits 2 with a message naming the option, and never after a password
//! prompt or half the work.

use crate::output;
use cairn_engine::{Filter, KeepCount, KeepDuration, ReadData};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A repository location: a path, `local:PATH`, or (refused, naming what is supported) a scheme
/// this build does not reach. Any bytes a path may hold are accepted.
pub fn location() -> impl clap::builder::TypedValueParser<Value = cairn_repo::RepoLocation> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new()
        .try_map(|s| cairn_repo::RepoLocation::parse(&s).map_err(|e| e.message))
}

/// A time, absolute or relative to now (see `time::parse_at`), as nanoseconds since the epoch.
pub fn time(s: &str) -> Result<i64, String> {
    crate::time::parse(s).map_err(|e| format!("{e:#}"))
}

/// A time for `--at`: as `time`, but a whole day (`2026-12-02`, `20261202`, `yesterday`) means
/// the end of that day.
pub fn at(s: &str) -> Result<i64, String> {
    crate::time::parse_end(s).map_err(|e| format!("{e:#}"))
}

/// A glob, kept as given once it compiles. An empty one matches nothing, which no one means.
pub fn glob(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("a pattern may not be empty".into());
    }
    Filter::new(&[s.to_string()]).map(|_| s.to_string())
}

/// A name, such as a host or a tag, which may not be empty.
pub fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("may not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

pub fn absolute_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(format!("{s:?} must be an absolute path"))
    }
}

pub fn subset(s: &str) -> Result<ReadData, String> {
    ReadData::parse_subset(s)
}

/// Average chunk size in KiB: a power of two from 64 to 8192, so that min (half), average and
/// max (eight times) all fit the chunker's u32 bounds.
pub fn chunk_size(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} must be a power of two from 64 to 8192 (KiB)");
    let v: u32 = s.trim().parse().map_err(|_| bad())?;
    if v.is_power_of_two() && (64..=8192).contains(&v) {
        Ok(v)
    } else {
        Err(bad())
    }
}

/// Where `serve` listens: `HOST:PORT` (an IP address or a name that resolves), `[::1]:PORT`,
/// or `:PORT` for every IPv4 interface, as restic's rest-server takes it.
pub fn listen(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let full = match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_string(),
    };
    if let Ok(addr) = full.parse() {
        return Ok(addr);
    }
    let bad = || format!("{s:?} is no address: give HOST:PORT, like 127.0.0.1:8000, or :PORT");
    full.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// A size in bytes: a number with an optional unit B, KiB, MiB or GiB (K, M, G, KB, MB and GB
/// mean the same powers of 1024), from 1 MiB to 4 GiB less a byte.
pub fn byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("invalid size {s:?}: give a number and a unit, like 256MiB");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().map_err(|_| bad())?;
    let shift = match t[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(bad()),
    };
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("size {s:?} is too large"))?;
    if !(1 << 20..=u64::from(u32::MAX)).contains(&bytes) {
        return Err(format!("size {s:?} is out of range: from 1MiB to 4095MiB"));
    }
    Ok(bytes)
}

/// Which of host, paths and tags group snapshots for a retention policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

pub fn group_by(s: &str) -> Result<GroupBy, String> {
    let mut g = GroupBy::default();
    for f in s.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        match f {
            "host" => g.host = true,
            "paths" | "path" => g.paths = true,
            "tags" | "tag" => g.tags = true,
            _ => return Err(format!("{f:?}: use host, paths and tags, comma-separated")),
        }
    }
    Ok(g)
}

pub(crate) fn count(s: &str) -> Result<KeepCount, String> {
    cairn_engine::parse_keep_count(s).map_err(|e| e.message)
}

pub(crate) fn duration(s: &str) -> Result<KeepDuration, String> {
    cairn_engine::parse_keep_duration(s).map_err(|e| e.message)
}

pub(crate) fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("invalid percentage {s:?}: give a number like 5%"))?;
    if !(0.0..=1000.0).contains(&v) {
        return Err(format!("percentage {s:?} is out of range 0% to 1000%"));
    }
    Ok(v / 100.0)
}

pub(crate) fn grace(s: &str) -> Result<Duration, String> {
    let d = plain_duration(s)?;
    // A running backup renews its marker every few minutes; a shorter grace would fence off
    // backups that are merely running.
    if d < cairn_repo::MIN_GRACE {
        return Err(format!(
            "grace {s:?} is too short: it must be at least {}, two of a backup's marker renewals",
            output::duration(cairn_repo::MIN_GRACE.as_nanos() as u64)
        ));
    }
    Ok(d)
}

/// A duration like `90s`, `30m`, `1h` or `2d`.
pub(crate) fn plain_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("invalid duration {s:?}: give a number and a unit s, m, h or d, like 1h");
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: u64 = t[..split].parse().map_err(|_| bad())?;
    let unit = match &t[split..] {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    let secs = n
        .checked_mul(unit)
        .ok_or_else(|| format!("duration {s:?} is too long"))?;
    Ok(Duration::from_secs(secs))
}

/// `--full-every`: a weekday (`mon`, `Monday`) or a duration with unit h, d or w (`7d`, `2w`).
pub(crate) fn full_every(s: &str) -> Result<cairn_engine::FullEvery, String> {
    use jiff::civil::Weekday as W;
    let t = s.trim().to_ascii_lowercase();
    let days = [
        ("mon", W::Monday),
        ("tue", W::Tuesday),
        ("wed", W::Wednesday),
        ("thu", W::Thursday),
        ("fri", W::Friday),
        ("sat", W::Saturday),
        ("sun", W::Sunday),
    ];
    for (short, day) in days {
        let long = format!("{:?}", day).to_ascii_lowercase();
        if t == short || t == long {
            return Ok(cairn_engine::FullEvery::Weekday(day));
        }
    }
    let weeks = t.strip_suffix('w').and_then(|n| n.parse::<u64>().ok());
    let every = match weeks {
        Some(w) => Duration::from_secs(w.saturating_mul(7 * 86400)),
        None => plain_duration(&t).map_err(|_| {
            format!("invalid --full-every {s:?}: give a weekday like mon, or a duration like 7d")
        })?,
    };
    if every < Duration::from_secs(3600) {
        return Err(format!("--full-every {s:?} is shorter than an hour"));
    }
    Ok(cairn_engine::FullEvery::Age(every))
}

/// An http:// or https:// URL.
pub(crate) fn http_url(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(s.to_string()),
        _ => Err("give an http:// or https:// URL with a host".into()),
    }
}

/// An HTTP header `Name: value`; a message about it never repeats the value (a token).
pub(crate) fn header(s: &str) -> Result<String, String> {
    let (name, _) = s
        .split_once(':')
        .ok_or("give a header as \"Name: value\"")?;
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("invalid header name {name:?}"));
    }
    if s.contains(['\r', '\n']) {
        return Err(format!("header {name} holds a line break"));
    }
    Ok(s.to_string())
}

/// `HOST:PORT`.
pub(crate) fn host_port(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} must be HOST:PORT, like smtp.example.com:587");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_refused() {
        assert!(time("tomorrow").is_err());
        assert!(time("garbage").is_err());
        assert!(time("2026-11-20").is_ok());
        assert!(glob("a[").is_err());
        assert!(glob("*.tmp").is_ok());
        assert!(glob("").is_err());
        assert!(non_empty(" ").is_err());
        assert!(absolute_path("rel/x").is_err());
        assert!(subset("0/0").is_err());
        assert!(subset("0%").is_err());
        assert!(subset("2/7").is_ok());
        for bad in ["0", "100", "16384", "x", "-64"] {
            assert!(chunk_size(bad).is_err(), "{bad}");
        }
        assert_eq!(chunk_size("1024"), Ok(1024));
        assert!(group_by("host,colour").is_err());
        assert!(group_by("").is_ok());
        assert!(plain_duration("99999999999999999d")
            .unwrap_err()
            .contains("too long"));
        assert_eq!(plain_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(listen(":8000").unwrap().to_string(), "0.0.0.0:8000");
        assert_eq!(listen("[::1]:0").unwrap().to_string(), "[::1]:0");
        assert_eq!(listen("127.0.0.1:9").unwrap().port(), 9);
        for bad in ["", "8000", "127.0.0.1", "127.0.0.1:99999", "no host:1"] {
            assert!(listen(bad).is_err(), "{bad}");
        }
        use cairn_engine::FullEvery;
        assert_eq!(
            full_every("Mon"),
            Ok(FullEvery::Weekday(jiff::civil::Weekday::Monday))
        );
        assert_eq!(
            full_every("7d"),
            Ok(FullEvery::Age(Duration::from_secs(7 * 86400)))
        );
        assert_eq!(
            full_every("2w"),
            Ok(FullEvery::Age(Duration::from_secs(14 * 86400)))
        );
        for bad in ["", "moon", "10m", "7", "x1w"] {
            assert!(full_every(bad).is_err(), "{bad}");
        }
        assert!(http_url("https://api.example/runs").is_ok());
        assert!(http_url("ftp://x").is_err());
        assert!(http_url("http:///x").is_err());
        assert!(header("Authorization: Bearer x").is_ok());
        assert!(header("no colon").is_err());
        let e = header("Bad Name: secret-token").unwrap_err();
        assert!(!e.contains("secret-token"), "{e}");
        assert!(host_port("smtp.example:587").is_ok());
        for bad in ["smtp.example", ":25", "h:0", "h:99999"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
        assert_eq!(byte_size("256MiB"), Ok(256 << 20));
        assert_eq!(byte_size("1g"), Ok(1 << 30));
        assert_eq!(byte_size("2097152"), Ok(2 << 20));
        for bad in [
            "",
            "MiB",
            "1KiB",
            "4GiB",
            "12 parsecs",
            "-1MiB",
            "99999999999999999999G",
        ] {
            assert!(byte_size(bad).is_err(), "{bad}");
        }
    }
}
