//! The retention policy of `forget` and `prune`: which snapshots of one group to keep. A pure
//! function of the snapshots' ids, times and tags, the policy and a time zone; it reads no clock,
//! so every time rule is relative to the newest snapshot of the group. The rules and their
//! reasons are restic's (`restic forget --keep-*`), so a restic policy means the same here.
//!
//! The snapshots are walked newest first. A snapshot is kept when any rule keeps it:
//!
//! - `--keep-last n`: the `n` newest snapshots.
//! - `--keep-hourly n`, `--keep-daily n`, `--keep-weekly n`, `--keep-monthly n`,
//!   `--keep-yearly n`: the newest snapshot of each of the `n` newest hours (days, weeks, months,
//!   years) that have a snapshot. Only periods with a snapshot count, and periods are calendar
//!   periods in the time zone: an hour runs from :00 to :59, a day from 00:00 to 23:59, a week
//!   from Monday 00:00 to Sunday 23:59 (ISO 8601 weeks, so 30 December 2024 is in week 1 of 2025).
//! - `--keep-within d`: every snapshot newer than `d` before the newest snapshot.
//! - `--keep-within-hourly d` (`-daily`, `-weekly`, `-monthly`, `-yearly`): the newest snapshot
//!   of each hour (day, ...) among the snapshots newer than `d` before the newest snapshot.
//! - `--keep-tag t1,t2`: every snapshot that has all of the tags `t1` and `t2`; the option may be
//!   given several times, and a snapshot matching any one of them is kept. `--keep-tag ''` keeps
//!   the snapshots without tags.
//! - While a count rule (or a `--keep-within-*` rule whose range reaches that far) has not used
//!   up its count, it also keeps the oldest snapshot of the group, shown as for example "oldest
//!   daily snapshot"; this keeps the longest history the counts allow.
//!
//! A count of `unlimited` (or `-1`) keeps one snapshot for every period; a count or duration of
//! zero turns the rule off. A duration is a number of years, months, days and hours, such as
//! `30d`, `1y6m` or `2y5m7d3h` (there is no unit for weeks: write `7d`). It is counted back on
//! the calendar from the newest snapshot, years and months first, in the time zone, then hours
//! as elapsed time; like restic, a day that the target month lacks runs over into the next month,
//! so `1m` before 31 March is 3 March (2 March in a leap year).
//!
//! For example, with one snapshot a day at noon for the whole of 2024,
//! `--keep-daily 7 --keep-weekly 4 --keep-monthly 12 --keep-within 2d` keeps 20 snapshots:
//! 25 to 31 December as daily; 31 December (in ISO week 1 of 2025), 29, 22 and 15 December
//! (Sundays) as weekly; the last day of each month from December back to January as monthly;
//! 30 and 31 December as within 2d. The reasons of 31 December are "within 2d, daily snapshot,
//! weekly snapshot, monthly snapshot".
//!
//! An empty policy (every count and duration zero, no tags) keeps every snapshot with the reason
//! "policy is empty"; `forget` refuses such a policy before it gets here.
//!
//! Invariant: the decision depends only on the arguments, not on their order: ties in time are
//! broken by id (the larger id counts as newer), so the walk is the reverse of the repository's
//! oldest-first listing.

use std::fmt;

use cairn_format::snapshot::Snapshot;
use cairn_format::SnapshotId;
use cairn_repo::{Error, ErrorKind};
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp};

/// The part of a snapshot the policy looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionInput {
    pub id: SnapshotId,
    /// Nanoseconds since the Unix epoch, UTC (`Snapshot::time`).
    pub time: i64,
    pub tags: Vec<Vec<u8>>,
}

impl RetentionInput {
    pub fn from_snapshot(id: SnapshotId, snapshot: &Snapshot) -> RetentionInput {
        RetentionInput {
            id,
            time: snapshot.time,
            tags: snapshot.tags.clone(),
        }
    }
}

/// How many snapshots a count rule (`--keep-last`, `--keep-daily`, ...) keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepCount {
    /// At most this many; `AtMost(0)`, the default, turns the rule off.
    AtMost(u32),
    /// One for every period, however many there are (restic's `-1`).
    Unlimited,
}

impl Default for KeepCount {
    fn default() -> KeepCount {
        KeepCount::AtMost(0)
    }
}

impl KeepCount {
    fn is_off(self) -> bool {
        self == KeepCount::AtMost(0)
    }
}

/// A calendar duration for the `--keep-within*` rules: years, months, days and hours, written
/// like `1y6m` (see the module documentation for how it is counted). All zero, the default,
/// turns the rule off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeepDuration {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl KeepDuration {
    pub fn is_zero(&self) -> bool {
        *self == KeepDuration::default()
    }
}

impl fmt::Display for KeepDuration {
    /// The parser's notation without the zero parts (`1y2d`); zero is `0h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// What to keep. `Policy::default()` is the empty policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: KeepCount,
    pub keep_hourly: KeepCount,
    pub keep_daily: KeepCount,
    pub keep_weekly: KeepCount,
    pub keep_monthly: KeepCount,
    pub keep_yearly: KeepCount,
    pub keep_within: KeepDuration,
    pub keep_within_hourly: KeepDuration,
    pub keep_within_daily: KeepDuration,
    pub keep_within_weekly: KeepDuration,
    pub keep_within_monthly: KeepDuration,
    pub keep_within_yearly: KeepDuration,
    /// Tag sets (one per `--keep-tag`, see `parse_keep_tag`): a snapshot with every tag of any
    /// one set is kept. An empty tag in a set matches only a snapshot without tags, and a set
    /// without tags matches every snapshot.
    pub keep_tags: Vec<Vec<Vec<u8>>>,
}

impl Policy {
    /// No rule is on: every count and duration is zero and there are no tag sets. Such a policy
    /// keeps everything; `forget` refuses it, as restic does.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(count, _)| count.is_off())
            && self.keep_within.is_zero()
            && self.withins().iter().all(|(within, _)| within.is_zero())
            && self.keep_tags.is_empty()
    }

    /// The count rules in the order their reasons are listed; `None` is `keep_last`.
    fn counts(&self) -> [(KeepCount, Option<Bucket>); 6] {
        [
            (self.keep_last, None),
            (self.keep_hourly, Some(Bucket::Hour)),
            (self.keep_daily, Some(Bucket::Day)),
            (self.keep_weekly, Some(Bucket::Week)),
            (self.keep_monthly, Some(Bucket::Month)),
            (self.keep_yearly, Some(Bucket::Year)),
        ]
    }

    fn withins(&self) -> [(KeepDuration, Bucket); 5] {
        [
            (self.keep_within_hourly, Bucket::Hour),
            (self.keep_within_daily, Bucket::Day),
            (self.keep_within_weekly, Bucket::Week),
            (self.keep_within_monthly, Bucket::Month),
            (self.keep_within_yearly, Bucket::Year),
        ]
    }
}

impl fmt::Display for Policy {
    /// One line for `--dry-run`, e.g. `keep 2 latest, 7 daily snapshots, all snapshots with tags
    /// release and all snapshots within 30d of the newest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("keep all snapshots (the policy is empty)");
        }
        let mut counts = Vec::new();
        for (count, bucket) in self.counts() {
            let name = bucket.map_or("latest", Bucket::adjective);
            match count {
                KeepCount::AtMost(0) => {}
                KeepCount::AtMost(n) => counts.push(format!("{n} {name}")),
                KeepCount::Unlimited => counts.push(format!("all {name}")),
            }
        }
        let mut parts = Vec::new();
        if !counts.is_empty() {
            parts.push(format!("{} snapshots", counts.join(", ")));
        }
        for (within, bucket) in self.withins() {
            if !within.is_zero() {
                parts.push(format!("{} snapshots within {within}", bucket.adjective()));
            }
        }
        let mut clauses = vec![parts.join(", ")];
        for tags in &self.keep_tags {
            clauses.push(format!("all snapshots with tags {}", TagsDisplay(tags)));
        }
        if !self.keep_within.is_zero() {
            clauses.push(format!(
                "all snapshots within {} of the newest",
                self.keep_within
            ));
        }
        clauses.retain(|c| !c.is_empty());
        write!(f, "keep {}", clauses.join(" and "))
    }
}

/// A calendar period of the bucket rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bucket {
    Hour,
    Day,
    /// An ISO 8601 week, Monday to Sunday, numbered within its ISO week-numbering year.
    Week,
    Month,
    Year,
}

impl Bucket {
    fn adjective(self) -> &'static str {
        match self {
            Bucket::Hour => "hourly",
            Bucket::Day => "daily",
            Bucket::Week => "weekly",
            Bucket::Month => "monthly",
            Bucket::Year => "yearly",
        }
    }

    /// A number that is equal for two local times exactly when they fall in the same period:
    /// restic's YYYYMMDDHH, YYYYMMDD, YYYYWW, YYYYMM and YYYY.
    fn key(self, local: DateTime) -> i64 {
        let (y, m, d, h) = (
            i64::from(local.year()),
            i64::from(local.month()),
            i64::from(local.day()),
            i64::from(local.hour()),
        );
        match self {
            Bucket::Hour => ((y * 100 + m) * 100 + d) * 100 + h,
            Bucket::Day => (y * 100 + m) * 100 + d,
            Bucket::Week => {
                let week = local.date().iso_week_date();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Bucket::Month => y * 100 + m,
            Bucket::Year => y,
        }
    }
}

/// Why a snapshot is kept. `Display` gives restic's wording (`daily snapshot`, `within 30d`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The policy is empty, so everything is kept.
    EmptyPolicy,
    /// It has every tag of this `keep_tags` set.
    Tags(Vec<Vec<u8>>),
    /// `keep_within`: it is newer than this long before the newest snapshot.
    Within(KeepDuration),
    /// `keep_last`.
    Last,
    /// A count rule: the newest snapshot of its period, or, with `oldest`, the oldest snapshot
    /// of the group kept because the rule had counts left.
    Bucket { bucket: Bucket, oldest: bool },
    /// A `keep_within_*` rule, with `oldest` as for `Bucket`.
    BucketWithin {
        bucket: Bucket,
        within: KeepDuration,
        oldest: bool,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let oldest = |oldest: bool| if oldest { "oldest " } else { "" };
        match self {
            Reason::EmptyPolicy => f.write_str("policy is empty"),
            Reason::Tags(tags) if tags.len() == 1 => write!(f, "tag {}", TagsDisplay(tags)),
            Reason::Tags(tags) => write!(f, "tags {}", TagsDisplay(tags)),
            Reason::Within(within) => write!(f, "within {within}"),
            Reason::Last => f.write_str("last snapshot"),
            Reason::Bucket { bucket, oldest: o } => {
                write!(f, "{}{} snapshot", oldest(*o), bucket.adjective())
            }
            Reason::BucketWithin {
                bucket,
                within,
                oldest: o,
            } => write!(f, "{}{} within {within}", oldest(*o), bucket.adjective()),
        }
    }
}

/// A tag set as the user wrote it: comma-separated, an empty tag as `''`.
struct TagsDisplay<'a>(&'a [Vec<u8>]);

impl fmt::Display for TagsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, tag) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if tag.is_empty() {
                f.write_str("''")?;
            } else {
                f.write_str(&String::from_utf8_lossy(tag))?;
            }
        }
        Ok(())
    }
}

/// The verdict on one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub id: SnapshotId,
    /// `!reasons.is_empty()`.
    pub keep: bool,
    /// Every rule that keeps it, in this order: tag sets, `keep_within`, `keep_last`, the count
    /// rules from hourly to yearly, the `keep_within_*` rules from hourly to yearly.
    pub reasons: Vec<Reason>,
}

/// Applies `policy` to the snapshots of one group, with periods taken in `tz`. Returns one
/// decision per snapshot, newest first (equal times: larger id first). See the module
/// documentation for the rules.
pub fn apply_policy(snapshots: &[RetentionInput], policy: &Policy, tz: &TimeZone) -> Vec<Decision> {
    let mut order: Vec<&RetentionInput> = snapshots.iter().collect();
    order.sort_by_key(|s| std::cmp::Reverse((s.time, s.id)));
    if policy.is_empty() {
        return order
            .iter()
            .map(|s| Decision {
                id: s.id,
                keep: true,
                reasons: vec![Reason::EmptyPolicy],
            })
            .collect();
    }
    let Some(newest) = order.first() else {
        return Vec::new();
    };
    let newest = newest.time;
    let within_cutoff = cutoff(newest, policy.keep_within, tz);
    // Per rule: the key of the period of the snapshot it kept last, and for count rules the
    // count left (`None` for unlimited).
    let mut counts: Vec<(Option<u32>, Option<Bucket>, Option<i64>)> = policy
        .counts()
        .into_iter()
        .filter(|(count, _)| !count.is_off())
        .map(|(count, bucket)| {
            let left = match count {
                KeepCount::AtMost(n) => Some(n),
                KeepCount::Unlimited => None,
            };
            (left, bucket, None)
        })
        .collect();
    let mut withins: Vec<(KeepDuration, Bucket, Option<Timestamp>, Option<i64>)> = policy
        .withins()
        .into_iter()
        .filter(|(within, _)| !within.is_zero())
        .map(|(within, bucket)| (within, bucket, cutoff(newest, within, tz), None))
        .collect();

    let n_snapshots = order.len();
    let mut decisions = Vec::with_capacity(n_snapshots);
    for (nr, snapshot) in order.into_iter().enumerate() {
        let is_oldest = nr + 1 == n_snapshots;
        let local = tz.to_datetime(timestamp(snapshot.time));
        let mut reasons = Vec::new();
        for tags in &policy.keep_tags {
            if has_tags(&snapshot.tags, tags) {
                reasons.push(Reason::Tags(tags.clone()));
            }
        }
        if !policy.keep_within.is_zero() && is_after(snapshot.time, within_cutoff) {
            reasons.push(Reason::Within(policy.keep_within));
        }
        for (left, bucket, last_key) in &mut counts {
            if *left == Some(0) {
                continue;
            }
            // keep_last's "period" is the snapshot itself.
            let key = bucket.map_or(nr as i64, |b| b.key(local));
            let same_period = *last_key == Some(key);
            if !same_period || is_oldest {
                *last_key = Some(key);
                if let Some(left) = left {
                    *left -= 1;
                }
                reasons.push(match bucket {
                    None => Reason::Last,
                    Some(bucket) => Reason::Bucket {
                        bucket: *bucket,
                        oldest: same_period,
                    },
                });
            }
        }
        for (within, bucket, cutoff, last_key) in &mut withins {
            if !is_after(snapshot.time, *cutoff) {
                continue;
            }
            let key = bucket.key(local);
            let same_period = *last_key == Some(key);
            if !same_period || is_oldest {
                *last_key = Some(key);
                reasons.push(Reason::BucketWithin {
                    bucket: *bucket,
                    within: *within,
                    oldest: same_period,
                });
            }
        }
        decisions.push(Decision {
            id: snapshot.id,
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    decisions
}

fn timestamp(time_ns: i64) -> Timestamp {
    // jiff spans years -9999 to 9999, far more than the ±292 years of i64 nanoseconds.
    Timestamp::from_nanosecond(i128::from(time_ns)).expect("i64 nanoseconds fit a jiff Timestamp")
}

/// `within` before `newest_ns`, counted as restic does with Go's `AddDate` followed by `Add`:
/// years and months move the month (a day past its end runs over into the next month), days
/// move the date, the local time of day is kept, and then hours are subtracted as elapsed time.
/// `None` when that lies before anything jiff can represent, that is before every snapshot.
fn cutoff(newest_ns: i64, within: KeepDuration, tz: &TimeZone) -> Option<Timestamp> {
    let local = tz.to_datetime(timestamp(newest_ns));
    let months = i64::from(local.year()) * 12 + i64::from(local.month())
        - 1
        - i64::from(within.years) * 12
        - i64::from(within.months);
    let year = i16::try_from(months.div_euclid(12)).ok()?;
    let month = i8::try_from(months.rem_euclid(12) + 1).ok()?;
    let day_offset = i64::from(local.day()) - 1 - i64::from(within.days);
    let date = Date::new(year, month, 1)
        .ok()?
        .checked_add(Span::new().try_days(day_offset).ok()?)
        .ok()?;
    // A local time that a DST change skips or repeats resolves the "compatible" way (later in
    // a gap, earlier in a fold); Go's choice may differ by that hour.
    let start = tz
        .to_ambiguous_timestamp(date.to_datetime(local.time()))
        .compatible()
        .ok()?;
    start
        .checked_sub(SignedDuration::from_hours(i64::from(within.hours)))
        .ok()
}

/// Strictly newer than the cutoff, as restic's `After`; no cutoff means every snapshot.
fn is_after(time_ns: i64, cutoff: Option<Timestamp>) -> bool {
    cutoff.is_none_or(|c| i128::from(time_ns) > c.as_nanosecond())
}

/// The snapshot has every tag of `wanted`; an empty wanted tag means "has no tags".
fn has_tags(tags: &[Vec<u8>], wanted: &[Vec<u8>]) -> bool {
    wanted.iter().all(|w| {
        if w.is_empty() {
            tags.is_empty()
        } else {
            tags.contains(w)
        }
    })
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

/// Parses a `--keep-within*` duration: numbers each followed by a unit, `y` (years), `m`
/// (months), `d` (days) or `h` (hours), in any order, each unit at most once, e.g. `30d`,
/// `1y6m`, `2y5m7d3h`. Surrounding white space is ignored. `0d` is valid and turns the rule off.
pub fn parse_keep_duration(s: &str) -> Result<KeepDuration, Error> {
    let bad = |why: String| invalid(format!("invalid duration {s:?}: {why}"));
    let text = s.trim();
    if text.is_empty() {
        return Err(bad(
            "give a number and a unit (y, m, d or h), e.g. 30d or 1y6m".into(),
        ));
    }
    let mut duration = KeepDuration::default();
    let mut seen = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let n_digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (digits, after) = rest.split_at(n_digits);
        let Some(unit) = after.chars().next() else {
            return Err(bad(format!("{digits} has no unit (y, m, d or h)")));
        };
        if digits.is_empty() {
            return Err(bad(format!("expected a number at {rest:?}")));
        }
        let n: u32 = digits
            .parse()
            .map_err(|_| bad(format!("{digits} is too large")))?;
        let field = match unit {
            'y' => &mut duration.years,
            'm' => &mut duration.months,
            'd' => &mut duration.days,
            'h' => &mut duration.hours,
            _ => {
                return Err(bad(format!(
                    "unknown unit {unit:?} (use y, m, d or h; a week is 7d)"
                )))
            }
        };
        if seen.contains(&unit) {
            return Err(bad(format!("unit {unit:?} is given twice")));
        }
        seen.push(unit);
        *field = n;
        rest = &after[unit.len_utf8()..];
    }
    Ok(duration)
}

/// Parses a `--keep-last`/`--keep-daily`/... count: a number, or `unlimited` or `-1` for no
/// limit. `0` turns the rule off.
pub fn parse_keep_count(s: &str) -> Result<KeepCount, Error> {
    match s.trim() {
        "unlimited" | "-1" => Ok(KeepCount::Unlimited),
        text => text.parse().map(KeepCount::AtMost).map_err(|_| {
            invalid(format!(
                "invalid count {s:?}: give a number, or \"unlimited\" (or -1) for no limit"
            ))
        }),
    }
}

/// Parses one `--keep-tag` value into a tag set: tags separated by commas, white space around
/// each removed. `''` gives the one empty tag, which matches snapshots without tags.
pub fn parse_keep_tag(s: &str) -> Vec<Vec<u8>> {
    s.split(',').map(|t| t.trim().as_bytes().to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::Id;
    use jiff::tz::offset;

    /// A wall-clock time ("2024-01-07T23:59") in `tz`, as nanoseconds.
    fn at_in(s: &str, tz: &TimeZone) -> i64 {
        let dt: DateTime = s.parse().unwrap();
        let ts = tz.to_ambiguous_timestamp(dt).compatible().unwrap();
        i64::try_from(ts.as_nanosecond()).unwrap()
    }

    fn at(s: &str) -> i64 {
        at_in(s, &TimeZone::UTC)
    }

    /// The id of the `n`-th snapshot of a test list; ids grow with `n`.
    fn id(n: usize) -> SnapshotId {
        let mut bytes = [0xaa; 32];
        bytes[..8].copy_from_slice(&(n as u64).to_be_bytes());
        SnapshotId(Id(bytes))
    }

    /// Snapshots at wall-clock times in `tz`; a time may carry tags after a space: `"...T12:00
    /// a,b"`, or `"...T12:00 -"` for none (the default).
    fn inputs_in(times: &[&str], tz: &TimeZone) -> Vec<RetentionInput> {
        times
            .iter()
            .enumerate()
            .map(|(n, spec)| {
                let (time, tags) = spec.split_once(' ').unwrap_or((spec, "-"));
                let tags = match tags {
                    "-" => Vec::new(),
                    tags => tags.split(',').map(|t| t.as_bytes().to_vec()).collect(),
                };
                RetentionInput {
                    id: id(n),
                    time: at_in(time, tz),
                    tags,
                }
            })
            .collect()
    }

    /// A policy in a compact notation: `"last=2 daily=unlimited within=30d tag=a,b"`.
    fn policy(spec: &str) -> Policy {
        let mut p = Policy::default();
        for item in spec.split_whitespace() {
            let (key, value) = item.split_once('=').unwrap();
            let count = || parse_keep_count(value).unwrap();
            let duration = || parse_keep_duration(value).unwrap();
            match key {
                "last" => p.keep_last = count(),
                "hourly" => p.keep_hourly = count(),
                "daily" => p.keep_daily = count(),
                "weekly" => p.keep_weekly = count(),
                "monthly" => p.keep_monthly = count(),
                "yearly" => p.keep_yearly = count(),
                "within" => p.keep_within = duration(),
                "within-hourly" => p.keep_within_hourly = duration(),
                "within-daily" => p.keep_within_daily = duration(),
                "within-weekly" => p.keep_within_weekly = duration(),
                "within-monthly" => p.keep_within_monthly = duration(),
                "within-yearly" => p.keep_within_yearly = duration(),
                "tag" => p.keep_tags.push(parse_keep_tag(value.trim_matches('"'))),
                _ => panic!("unknown policy key {key}"),
            }
        }
        p
    }

    /// The decisions as lines "<time as given> <reasons>" (or "<time> remove"), newest first.
    fn run_in(times: &[&str], spec: &str, tz: &TimeZone) -> Vec<String> {
        let snapshots = inputs_in(times, tz);
        let decisions = apply_policy(&snapshots, &policy(spec), tz);
        assert_eq!(decisions.len(), snapshots.len());
        decisions
            .iter()
            .map(|d| {
                assert_eq!(d.keep, !d.reasons.is_empty());
                let n = snapshots.iter().position(|s| s.id == d.id).unwrap();
                let time = times[n].split(' ').next().unwrap();
                if d.keep {
                    let reasons: Vec<String> = d.reasons.iter().map(|r| r.to_string()).collect();
                    format!("{time} {}", reasons.join(", "))
                } else {
                    format!("{time} remove")
                }
            })
            .collect()
    }

    fn run(times: &[&str], spec: &str) -> Vec<String> {
        run_in(times, spec, &TimeZone::UTC)
    }

    struct Case {
        name: &'static str,
        /// Oldest first, as the repository lists them (the function must not care).
        times: &'static [&'static str],
        policy: &'static str,
        /// Newest first.
        expect: &'static [&'static str],
    }

    fn check(cases: &[Case], tz: &TimeZone) {
        for case in cases {
            let got = run_in(case.times, case.policy, tz);
            assert_eq!(got, case.expect, "case {:?}", case.name);
            // The order of the input must not matter.
            let mut reversed = case.times.to_vec();
            reversed.reverse();
            let mut got_reversed = run_in(&reversed, case.policy, tz);
            let mut expect = case.expect.to_vec();
            got_reversed.sort();
            expect.sort();
            assert_eq!(got_reversed, expect, "case {:?} reversed", case.name);
        }
    }

    const FIVE_DAYS: &[&str] = &[
        "2024-03-01T12:00",
        "2024-03-02T12:00",
        "2024-03-03T12:00",
        "2024-03-04T12:00",
        "2024-03-05T12:00",
    ];

    #[test]
    fn keep_last() {
        check(
            &[
                Case {
                    name: "the three newest",
                    times: FIVE_DAYS,
                    policy: "last=3",
                    expect: &[
                        "2024-03-05T12:00 last snapshot",
                        "2024-03-04T12:00 last snapshot",
                        "2024-03-03T12:00 last snapshot",
                        "2024-03-02T12:00 remove",
                        "2024-03-01T12:00 remove",
                    ],
                },
                Case {
                    name: "one",
                    times: FIVE_DAYS,
                    policy: "last=1",
                    expect: &[
                        "2024-03-05T12:00 last snapshot",
                        "2024-03-04T12:00 remove",
                        "2024-03-03T12:00 remove",
                        "2024-03-02T12:00 remove",
                        "2024-03-01T12:00 remove",
                    ],
                },
                Case {
                    name: "fewer snapshots than the count",
                    times: &["2024-03-01T12:00", "2024-03-01T12:05"],
                    policy: "last=10",
                    expect: &[
                        "2024-03-01T12:05 last snapshot",
                        "2024-03-01T12:00 last snapshot",
                    ],
                },
                Case {
                    name: "unlimited",
                    times: &["2024-03-01T12:00", "2024-03-01T12:05", "2024-03-01T12:10"],
                    policy: "last=unlimited",
                    expect: &[
                        "2024-03-01T12:10 last snapshot",
                        "2024-03-01T12:05 last snapshot",
                        "2024-03-01T12:00 last snapshot",
                    ],
                },
                Case {
                    name: "zero is off, another rule decides",
                    times: FIVE_DAYS,
                    policy: "last=0 daily=1",
                    expect: &[
                        "2024-03-05T12:00 daily snapshot",
                        "2024-03-04T12:00 remove",
                        "2024-03-03T12:00 remove",
                        "2024-03-02T12:00 remove",
                        "2024-03-01T12:00 remove",
                    ],
                },
            ],
            &TimeZone::UTC,
        );
    }

    #[test]
    fn bucket_rules_keep_the_newest_of_each_period() {
        check(
            &[
                Case {
                    name: "hourly: newest of each hour, count used up",
                    times: &[
                        "2024-03-01T09:10",
                        "2024-03-01T10:05",
                        "2024-03-01T10:30",
                        "2024-03-01T11:10",
                        "2024-03-01T11:59",
                        "2024-03-01T12:00",
                    ],
                    policy: "hourly=3",
                    expect: &[
                        "2024-03-01T12:00 hourly snapshot",
                        "2024-03-01T11:59 hourly snapshot",
                        "2024-03-01T11:10 remove",
                        "2024-03-01T10:30 hourly snapshot",
                        "2024-03-01T10:05 remove",
                        "2024-03-01T09:10 remove",
                    ],
                },
                Case {
                    name: "daily: several a day",
                    times: &[
                        "2024-03-01T08:00",
                        "2024-03-01T20:00",
                        "2024-03-02T00:00",
                        "2024-03-02T23:59",
                        "2024-03-04T01:00",
                    ],
                    policy: "daily=2",
                    expect: &[
                        "2024-03-04T01:00 daily snapshot",
                        "2024-03-02T23:59 daily snapshot",
                        "2024-03-02T00:00 remove",
                        "2024-03-01T20:00 remove",
                        "2024-03-01T08:00 remove",
                    ],
                },
                Case {
                    // restic's manual: a backup every Sunday for 12 weeks, --keep-daily 4.
                    name: "daily counts days with a snapshot, not calendar days",
                    times: &[
                        "2019-09-01T11:00",
                        "2019-09-08T11:00",
                        "2019-09-15T11:00",
                        "2019-09-22T11:00",
                        "2019-09-29T11:00",
                        "2019-10-06T11:00",
                        "2019-10-13T11:00",
                        "2019-10-20T11:00",
                        "2019-10-27T11:00",
                        "2019-11-03T11:00",
                        "2019-11-10T11:00",
                        "2019-11-17T11:00",
                    ],
                    policy: "daily=4",
                    expect: &[
                        "2019-11-17T11:00 daily snapshot",
                        "2019-11-10T11:00 daily snapshot",
                        "2019-11-03T11:00 daily snapshot",
                        "2019-10-27T11:00 daily snapshot",
                        "2019-10-20T11:00 remove",
                        "2019-10-13T11:00 remove",
                        "2019-10-06T11:00 remove",
                        "2019-09-29T11:00 remove",
                        "2019-09-22T11:00 remove",
                        "2019-09-15T11:00 remove",
                        "2019-09-08T11:00 remove",
                        "2019-09-01T11:00 remove",
                    ],
                },
                Case {
                    name: "monthly",
                    times: &[
                        "2024-01-15T12:00",
                        "2024-01-31T23:59",
                        "2024-02-01T00:00",
                        "2024-02-29T12:00",
                        "2024-04-02T12:00",
                    ],
                    policy: "monthly=3",
                    expect: &[
                        "2024-04-02T12:00 monthly snapshot",
                        "2024-02-29T12:00 monthly snapshot",
                        "2024-02-01T00:00 remove",
                        "2024-01-31T23:59 monthly snapshot",
                        "2024-01-15T12:00 remove",
                    ],
                },
                Case {
                    name: "yearly: Dec 31 23:59 and Jan 1 00:00 are different years",
                    times: &[
                        "2022-06-01T12:00",
                        "2022-12-31T23:59",
                        "2023-01-01T00:00",
                        "2023-12-31T23:59",
                        "2024-01-01T00:00",
                    ],
                    policy: "yearly=2",
                    expect: &[
                        "2024-01-01T00:00 yearly snapshot",
                        "2023-12-31T23:59 yearly snapshot",
                        "2023-01-01T00:00 remove",
                        "2022-12-31T23:59 remove",
                        "2022-06-01T12:00 remove",
                    ],
                },
                Case {
                    name: "daily: Dec 31 and Jan 1",
                    times: &["2023-12-31T00:00", "2023-12-31T23:59", "2024-01-01T00:00"],
                    policy: "daily=1 monthly=2",
                    expect: &[
                        "2024-01-01T00:00 daily snapshot, monthly snapshot",
                        "2023-12-31T23:59 monthly snapshot",
                        "2023-12-31T00:00 remove",
                    ],
                },
                Case {
                    name: "unlimited daily keeps one a day, and the oldest",
                    times: &[
                        "2024-03-01T08:00",
                        "2024-03-01T20:00",
                        "2024-03-02T08:00",
                        "2024-03-02T20:00",
                        "2024-03-09T08:00",
                    ],
                    policy: "daily=unlimited",
                    expect: &[
                        "2024-03-09T08:00 daily snapshot",
                        "2024-03-02T20:00 daily snapshot",
                        "2024-03-02T08:00 remove",
                        "2024-03-01T20:00 daily snapshot",
                        "2024-03-01T08:00 oldest daily snapshot",
                    ],
                },
            ],
            &TimeZone::UTC,
        );
    }

    #[test]
    fn weeks_are_iso_weeks() {
        check(
            &[
                Case {
                    name: "Sunday 23:59 and Monday 00:00 are different weeks",
                    times: &[
                        "2023-12-31T12:00", // Sunday of 2023-W52
                        "2024-01-01T00:00", // Monday of 2024-W01
                        "2024-01-07T23:59", // Sunday of 2024-W01
                        "2024-01-08T00:00", // Monday of 2024-W02
                    ],
                    policy: "weekly=2",
                    expect: &[
                        "2024-01-08T00:00 weekly snapshot",
                        "2024-01-07T23:59 weekly snapshot",
                        "2024-01-01T00:00 remove",
                        "2023-12-31T12:00 remove",
                    ],
                },
                Case {
                    name: "week 53 spans the new year",
                    times: &[
                        "2020-12-27T12:00", // Sunday of 2020-W52
                        "2020-12-28T12:00", // Monday of 2020-W53
                        "2020-12-31T12:00", // 2020-W53
                        "2021-01-03T12:00", // Sunday of 2020-W53
                        "2021-01-04T12:00", // Monday of 2021-W01
                    ],
                    policy: "weekly=3 yearly=1",
                    expect: &[
                        "2021-01-04T12:00 weekly snapshot, yearly snapshot",
                        "2021-01-03T12:00 weekly snapshot",
                        "2020-12-31T12:00 remove",
                        "2020-12-28T12:00 remove",
                        "2020-12-27T12:00 weekly snapshot",
                    ],
                },
                Case {
                    // 2024-12-30 is in 2025-W01: a week number paired with the calendar year
                    // would put it in a week of its own.
                    name: "the week's year is the ISO year",
                    times: &["2024-12-23T12:00", "2024-12-30T12:00", "2025-01-03T12:00"],
                    policy: "weekly=2",
                    expect: &[
                        "2025-01-03T12:00 weekly snapshot",
                        "2024-12-30T12:00 remove",
                        "2024-12-23T12:00 weekly snapshot",
                    ],
                },
            ],
            &TimeZone::UTC,
        );
    }

    #[test]
    fn rules_with_counts_left_keep_the_oldest_snapshot() {
        check(
            &[
                Case {
                    name: "hourly with counts left",
                    times: &[
                        "2024-03-01T10:05",
                        "2024-03-01T10:30",
                        "2024-03-01T11:10",
                        "2024-03-01T12:00",
                    ],
                    policy: "hourly=5",
                    expect: &[
                        "2024-03-01T12:00 hourly snapshot",
                        "2024-03-01T11:10 hourly snapshot",
                        "2024-03-01T10:30 hourly snapshot",
                        "2024-03-01T10:05 oldest hourly snapshot",
                    ],
                },
                Case {
                    name: "hourly with the count used up",
                    times: &[
                        "2024-03-01T10:05",
                        "2024-03-01T10:30",
                        "2024-03-01T11:10",
                        "2024-03-01T12:00",
                    ],
                    policy: "hourly=3",
                    expect: &[
                        "2024-03-01T12:00 hourly snapshot",
                        "2024-03-01T11:10 hourly snapshot",
                        "2024-03-01T10:30 hourly snapshot",
                        "2024-03-01T10:05 remove",
                    ],
                },
                Case {
                    // The oldest snapshot in a period of its own is an ordinary keep.
                    name: "oldest in its own period",
                    times: &["2022-05-01T12:00", "2024-03-01T12:00"],
                    policy: "yearly=5",
                    expect: &[
                        "2024-03-01T12:00 yearly snapshot",
                        "2022-05-01T12:00 yearly snapshot",
                    ],
                },
                Case {
                    name: "yearly from a first backup in mid-year",
                    times: &["2023-06-01T12:00", "2023-12-01T12:00", "2024-03-01T12:00"],
                    policy: "yearly=3",
                    expect: &[
                        "2024-03-01T12:00 yearly snapshot",
                        "2023-12-01T12:00 yearly snapshot",
                        "2023-06-01T12:00 oldest yearly snapshot",
                    ],
                },
                Case {
                    name: "keep-last never says oldest",
                    times: &["2024-03-01T12:00", "2024-03-01T12:00"],
                    policy: "last=3",
                    expect: &[
                        "2024-03-01T12:00 last snapshot",
                        "2024-03-01T12:00 last snapshot",
                    ],
                },
            ],
            &TimeZone::UTC,
        );
    }

    #[test]
    fn combinations_keep_the_union_with_every_reason() {
        // The module documentation's example: one snapshot a day at noon for the whole of 2024.
        let mut day = Date::new(2024, 1, 1).unwrap();
        let mut times = Vec::new();
        while day.year() == 2024 {
            times.push(format!("{day}T12:00"));
            day = day.tomorrow().unwrap();
        }
        let times: Vec<&str> = times.iter().map(String::as_str).collect();
        let got = run(&times, "daily=7 weekly=4 monthly=12 within=2d");
        let kept: Vec<&String> = got.iter().filter(|l| !l.ends_with(" remove")).collect();
        assert_eq!(
            kept,
            [
                "2024-12-31T12:00 within 2d, daily snapshot, weekly snapshot, monthly snapshot",
                "2024-12-30T12:00 within 2d, daily snapshot",
                "2024-12-29T12:00 daily snapshot, weekly snapshot",
                "2024-12-28T12:00 daily snapshot",
                "2024-12-27T12:00 daily snapshot",
                "2024-12-26T12:00 daily snapshot",
                "2024-12-25T12:00 daily snapshot",
                "2024-12-22T12:00 weekly snapshot",
                "2024-12-15T12:00 weekly snapshot",
                "2024-11-30T12:00 monthly snapshot",
                "2024-10-31T12:00 monthly snapshot",
                "2024-09-30T12:00 monthly snapshot",
                "2024-08-31T12:00 monthly snapshot",
                "2024-07-31T12:00 monthly snapshot",
                "2024-06-30T12:00 monthly snapshot",
                "2024-05-31T12:00 monthly snapshot",
                "2024-04-30T12:00 monthly snapshot",
                "2024-03-31T12:00 monthly snapshot",
                "2024-02-29T12:00 monthly snapshot",
                "2024-01-31T12:00 monthly snapshot",
            ]
        );
        // The week of 30 December (2025-W01) is the first of the four weekly ones, so the
        // Sunday 8 December is not kept, and neither is 1 January: every count is used up.
        assert!(got.contains(&"2024-12-08T12:00 remove".to_string()));
        assert!(got.contains(&"2024-01-01T12:00 remove".to_string()));
        assert_eq!(got.len(), 366);

        check(
            &[Case {
                name: "last, daily and a tag on the same snapshots",
                times: &[
                    "2024-03-01T08:00 release",
                    "2024-03-01T20:00",
                    "2024-03-02T08:00",
                    "2024-03-02T20:00 release",
                ],
                policy: "last=1 daily=1 tag=release",
                expect: &[
                    "2024-03-02T20:00 tag release, last snapshot, daily snapshot",
                    "2024-03-02T08:00 remove",
                    "2024-03-01T20:00 remove",
                    "2024-03-01T08:00 tag release",
                ],
            }],
            &TimeZone::UTC,
        );
    }

    #[test]
    fn periods_are_taken_in_the_time_zone() {
        let times = &["2024-04-29T12:00", "2024-05-01T21:00", "2024-05-01T23:30"];
        // In UTC the two last are one day...
        assert_eq!(
            run(times, "daily=2"),
            [
                "2024-05-01T23:30 daily snapshot",
                "2024-05-01T21:00 remove",
                "2024-04-29T12:00 daily snapshot",
            ]
        );
        // ...but at UTC+2, 23:30 UTC is 01:30 the next day. These are the same instants.
        let plus2 = TimeZone::fixed(offset(2));
        let local = &["2024-04-29T14:00", "2024-05-01T23:00", "2024-05-02T01:30"];
        for (utc, local) in times.iter().zip(local) {
            assert_eq!(at(utc), at_in(local, &plus2));
        }
        assert_eq!(
            run_in(local, "daily=2", &plus2),
            [
                "2024-05-02T01:30 daily snapshot",
                "2024-05-01T23:00 daily snapshot",
                "2024-04-29T14:00 remove",
            ]
        );

        // West of UTC the week changes too: Monday 8 January 01:00 UTC is Sunday at UTC-5.
        let times = &["2024-01-01T12:00", "2024-01-07T12:00", "2024-01-08T01:00"];
        assert_eq!(
            run(times, "weekly=2"),
            [
                "2024-01-08T01:00 weekly snapshot",
                "2024-01-07T12:00 weekly snapshot",
                "2024-01-01T12:00 remove",
            ]
        );
        let minus5 = TimeZone::fixed(offset(-5));
        let local = &["2024-01-01T07:00", "2024-01-07T07:00", "2024-01-07T20:00"];
        for (utc, local) in times.iter().zip(local) {
            assert_eq!(at(utc), at_in(local, &minus5));
        }
        // All three are in 2024-W01 there: the newest is kept, and the oldest because the
        // count is not used up.
        assert_eq!(
            run_in(local, "weekly=2", &minus5),
            [
                "2024-01-07T20:00 weekly snapshot",
                "2024-01-07T07:00 remove",
                "2024-01-01T07:00 oldest weekly snapshot",
            ]
        );
    }

    #[test]
    fn keep_within_is_relative_to_the_newest_snapshot() {
        check(
            &[
                Case {
                    // Years old, as seen from today: only the newest snapshot counts.
                    name: "exactly 2d before the newest is out",
                    times: &[
                        "2010-03-01T12:00",
                        "2010-03-03T11:59",
                        "2010-03-03T12:00",
                        "2010-03-03T12:01",
                        "2010-03-05T12:00",
                    ],
                    policy: "within=2d",
                    expect: &[
                        "2010-03-05T12:00 within 2d",
                        "2010-03-03T12:01 within 2d",
                        "2010-03-03T12:00 remove",
                        "2010-03-03T11:59 remove",
                        "2010-03-01T12:00 remove",
                    ],
                },
                Case {
                    name: "hours",
                    times: &["2024-03-01T00:00", "2024-03-01T00:01", "2024-03-02T01:00"],
                    policy: "within=1d1h",
                    expect: &[
                        "2024-03-02T01:00 within 1d1h",
                        "2024-03-01T00:01 within 1d1h",
                        "2024-03-01T00:00 remove",
                    ],
                },
                Case {
                    // Go's AddDate: 31 February 2023 is 3 March.
                    name: "a month before 31 March",
                    times: &[
                        "2023-02-28T12:00",
                        "2023-03-03T12:00",
                        "2023-03-03T12:01",
                        "2023-03-31T12:00",
                    ],
                    policy: "within=1m",
                    expect: &[
                        "2023-03-31T12:00 within 1m",
                        "2023-03-03T12:01 within 1m",
                        "2023-03-03T12:00 remove",
                        "2023-02-28T12:00 remove",
                    ],
                },
                Case {
                    name: "a year before 29 February is 1 March",
                    times: &[
                        "2023-02-28T23:00",
                        "2023-03-01T00:00",
                        "2023-03-01T00:01",
                        "2024-02-29T00:00",
                    ],
                    policy: "within=1y",
                    expect: &[
                        "2024-02-29T00:00 within 1y",
                        "2023-03-01T00:01 within 1y",
                        "2023-03-01T00:00 remove",
                        "2023-02-28T23:00 remove",
                    ],
                },
                Case {
                    name: "months cross the year",
                    times: &["2023-10-15T12:00", "2023-10-15T12:01", "2024-01-15T12:00"],
                    policy: "within=3m",
                    expect: &[
                        "2024-01-15T12:00 within 3m",
                        "2023-10-15T12:01 within 3m",
                        "2023-10-15T12:00 remove",
                    ],
                },
                Case {
                    name: "days cross months backwards",
                    times: &["2024-02-20T12:00", "2024-02-20T12:01", "2024-03-01T12:00"],
                    policy: "within=10d",
                    expect: &[
                        "2024-03-01T12:00 within 10d",
                        "2024-02-20T12:01 within 10d",
                        "2024-02-20T12:00 remove",
                    ],
                },
                Case {
                    name: "longer than time itself keeps everything",
                    times: &["1700-01-01T00:00", "2024-03-01T12:00"],
                    policy: "within=4000000000d",
                    expect: &[
                        "2024-03-01T12:00 within 4000000000d",
                        "1700-01-01T00:00 within 4000000000d",
                    ],
                },
                Case {
                    name: "far beyond jiff's years keeps everything",
                    times: &["1700-01-01T00:00", "2024-03-01T12:00"],
                    policy: "within=4000000000y",
                    expect: &[
                        "2024-03-01T12:00 within 4000000000y",
                        "1700-01-01T00:00 within 4000000000y",
                    ],
                },
                Case {
                    name: "zero is off",
                    times: &["2024-03-01T12:00", "2024-03-02T12:00"],
                    policy: "within=0d last=1",
                    expect: &["2024-03-02T12:00 last snapshot", "2024-03-01T12:00 remove"],
                },
            ],
            &TimeZone::UTC,
        );
    }

    #[test]
    fn keep_within_counts_days_on_the_local_calendar() {
        // Central Europe; summer time began on 31 March 2024 at 02:00, so the day before the
        // newest snapshot is 23 hours long.
        let berlin = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let times = &["2024-03-30T11:30", "2024-03-30T12:30", "2024-03-31T12:00"];
        assert_eq!(
            run_in(times, "within=1d", &berlin),
            [
                "2024-03-31T12:00 within 1d",
                "2024-03-30T12:30 within 1d",
                "2024-03-30T11:30 remove",
            ]
        );
        assert_eq!(
            run_in(times, "within=24h", &berlin),
            [
                "2024-03-31T12:00 within 24h",
                "2024-03-30T12:30 within 24h",
                "2024-03-30T11:30 within 24h",
            ]
        );
        // In UTC, where every day has 24 hours, the same instants give 1d and 24h alike.
        let snapshots = inputs_in(times, &berlin);
        for spec in ["within=1d", "within=24h"] {
            let keep: Vec<bool> = apply_policy(&snapshots, &policy(spec), &TimeZone::UTC)
                .iter()
                .map(|d| d.keep)
                .collect();
            assert_eq!(keep, [true, true, true], "{spec} in UTC");
        }
        // The rule is in effect: winter time (UTC+1) on the 30th, summer time (UTC+2) after.
        assert_eq!(at_in("2024-03-30T11:30", &berlin), at("2024-03-30T10:30"));
        assert_eq!(at_in("2024-03-31T12:00", &berlin), at("2024-03-31T10:00"));
    }

    #[test]
    fn keep_within_buckets() {
        check(
            &[
                Case {
                    name: "daily within 3d of the newest",
                    times: &[
                        "2024-02-20T12:00",
                        "2024-03-01T08:00",
                        "2024-03-02T08:00",
                        "2024-03-02T20:00",
                        "2024-03-03T08:00",
                        "2024-03-04T08:00",
                        "2024-03-04T09:00",
                    ],
                    policy: "within-daily=3d",
                    expect: &[
                        "2024-03-04T09:00 daily within 3d",
                        "2024-03-04T08:00 remove",
                        "2024-03-03T08:00 daily within 3d",
                        "2024-03-02T20:00 daily within 3d",
                        "2024-03-02T08:00 remove",
                        "2024-03-01T08:00 remove", // 3d before 09:00 on 4 March is 09:00 on 1 March
                        "2024-02-20T12:00 remove",
                    ],
                },
                Case {
                    name: "the oldest is kept when within range",
                    times: &["2024-03-04T08:00", "2024-03-04T09:00"],
                    policy: "within-daily=3d",
                    expect: &[
                        "2024-03-04T09:00 daily within 3d",
                        "2024-03-04T08:00 oldest daily within 3d",
                    ],
                },
                Case {
                    name: "hourly, weekly, monthly and yearly",
                    times: &[
                        "2022-07-01T12:00",
                        "2023-07-01T12:00",
                        "2024-01-15T12:00",
                        "2024-02-05T12:00",
                        "2024-02-06T12:00",
                        "2024-02-12T10:00",
                        "2024-02-12T11:30",
                        "2024-02-12T11:45",
                    ],
                    policy: "within-hourly=2h within-weekly=7d within-monthly=1m within-yearly=1y",
                    expect: &[
                        "2024-02-12T11:45 hourly within 2h, weekly within 7d, monthly within 1m, yearly within 1y",
                        "2024-02-12T11:30 remove",
                        "2024-02-12T10:00 hourly within 2h",
                        "2024-02-06T12:00 weekly within 7d",
                        "2024-02-05T12:00 remove",
                        "2024-01-15T12:00 monthly within 1m",
                        "2023-07-01T12:00 yearly within 1y",
                        "2022-07-01T12:00 remove",
                    ],
                },
                Case {
                    name: "within and within-daily together",
                    times: &["2024-03-01T12:00", "2024-03-02T08:00", "2024-03-02T12:00"],
                    policy: "within=12h within-daily=7d",
                    expect: &[
                        "2024-03-02T12:00 within 12h, daily within 7d",
                        "2024-03-02T08:00 within 12h",
                        "2024-03-01T12:00 daily within 7d",
                    ],
                },
            ],
            &TimeZone::UTC,
        );
    }

    #[test]
    fn keep_tag() {
        const TAGGED: &[&str] = &[
            "2024-03-01T12:00 a",
            "2024-03-02T12:00 a,b",
            "2024-03-03T12:00 b,c",
            "2024-03-04T12:00",
            "2024-03-05T12:00 c",
        ];
        check(
            &[
                Case {
                    name: "one tag",
                    times: TAGGED,
                    policy: "tag=a",
                    expect: &[
                        "2024-03-05T12:00 remove",
                        "2024-03-04T12:00 remove",
                        "2024-03-03T12:00 remove",
                        "2024-03-02T12:00 tag a",
                        "2024-03-01T12:00 tag a",
                    ],
                },
                Case {
                    name: "a comma list needs every tag",
                    times: TAGGED,
                    policy: "tag=b,a",
                    expect: &[
                        "2024-03-05T12:00 remove",
                        "2024-03-04T12:00 remove",
                        "2024-03-03T12:00 remove",
                        "2024-03-02T12:00 tags b,a",
                        "2024-03-01T12:00 remove",
                    ],
                },
                Case {
                    name: "several options need any one",
                    times: TAGGED,
                    policy: "tag=a,b tag=c",
                    expect: &[
                        "2024-03-05T12:00 tag c",
                        "2024-03-04T12:00 remove",
                        "2024-03-03T12:00 tag c",
                        "2024-03-02T12:00 tags a,b",
                        "2024-03-01T12:00 remove",
                    ],
                },
                Case {
                    name: "the empty tag keeps untagged snapshots",
                    times: TAGGED,
                    policy: "tag=\"\"",
                    expect: &[
                        "2024-03-05T12:00 remove",
                        "2024-03-04T12:00 tag ''",
                        "2024-03-03T12:00 remove",
                        "2024-03-02T12:00 remove",
                        "2024-03-01T12:00 remove",
                    ],
                },
                Case {
                    name: "a tag nobody has keeps nothing",
                    times: TAGGED,
                    policy: "tag=d",
                    expect: &[
                        "2024-03-05T12:00 remove",
                        "2024-03-04T12:00 remove",
                        "2024-03-03T12:00 remove",
                        "2024-03-02T12:00 remove",
                        "2024-03-01T12:00 remove",
                    ],
                },
                Case {
                    name: "tags are not counted against other rules",
                    times: TAGGED,
                    policy: "tag=c last=2",
                    expect: &[
                        "2024-03-05T12:00 tag c, last snapshot",
                        "2024-03-04T12:00 last snapshot",
                        "2024-03-03T12:00 tag c",
                        "2024-03-02T12:00 remove",
                        "2024-03-01T12:00 remove",
                    ],
                },
            ],
            &TimeZone::UTC,
        );
        // Tags are compared whole: "a" is not "ab".
        assert!(!has_tags(&[b"ab".to_vec()], &[b"a".to_vec()]));
        // A set without tags matches everything.
        assert!(has_tags(&[b"x".to_vec()], &[]));
        assert!(has_tags(&[], &[]));
        // An empty tag beside another never matches: no snapshot is both untagged and tagged.
        assert!(!has_tags(&[], &[Vec::new(), b"a".to_vec()]));
        assert!(!has_tags(&[b"a".to_vec()], &[Vec::new(), b"a".to_vec()]));
    }

    #[test]
    fn empty_policy_keeps_everything() {
        assert!(Policy::default().is_empty());
        assert!(policy("last=0 daily=0 within=0d within-yearly=0y").is_empty());
        for spec in [
            "last=1",
            "hourly=unlimited",
            "yearly=1",
            "within=1h",
            "within-hourly=1h",
            "within-yearly=1y",
            "tag=x",
        ] {
            assert!(!policy(spec).is_empty(), "{spec}");
        }
        assert_eq!(
            run(FIVE_DAYS, ""),
            [
                "2024-03-05T12:00 policy is empty",
                "2024-03-04T12:00 policy is empty",
                "2024-03-03T12:00 policy is empty",
                "2024-03-02T12:00 policy is empty",
                "2024-03-01T12:00 policy is empty",
            ]
        );
        assert!(apply_policy(&[], &Policy::default(), &TimeZone::UTC).is_empty());
        assert!(apply_policy(&[], &policy("last=1"), &TimeZone::UTC).is_empty());
    }

    #[test]
    fn equal_times_are_ordered_by_id() {
        let snapshots: Vec<RetentionInput> = (0..3)
            .map(|n| RetentionInput {
                id: id(n),
                time: at("2024-03-01T12:00"),
                tags: Vec::new(),
            })
            .collect();
        let mut reversed = snapshots.clone();
        reversed.reverse();
        let p = policy("last=1");
        let forward = apply_policy(&snapshots, &p, &TimeZone::UTC);
        assert_eq!(forward, apply_policy(&reversed, &p, &TimeZone::UTC));
        let ids: Vec<SnapshotId> = forward.iter().map(|d| d.id).collect();
        assert_eq!(ids, [id(2), id(1), id(0)]);
        assert_eq!(forward[0].reasons, [Reason::Last]);
        assert!(!forward[1].keep && !forward[2].keep);
        // Daily keeps the first in that order, and the oldest while counts are left.
        let daily: Vec<(SnapshotId, Vec<Reason>)> =
            apply_policy(&snapshots, &policy("daily=2"), &TimeZone::UTC)
                .into_iter()
                .map(|d| (d.id, d.reasons))
                .collect();
        let day = |oldest| Reason::Bucket {
            bucket: Bucket::Day,
            oldest,
        };
        assert_eq!(
            daily,
            [
                (id(2), vec![day(false)]),
                (id(1), vec![]),
                (id(0), vec![day(true)]),
            ]
        );
    }

    #[test]
    fn from_snapshot_takes_id_time_and_tags() {
        use cairn_format::snapshot::{Kind, Summary};
        let snapshot = Snapshot {
            time: 1_700_000_000_000_000_000,
            host: b"h".to_vec(),
            user: Vec::new(),
            paths: vec![b"/etc".to_vec()],
            tags: vec![b"t".to_vec()],
            kind: Kind::Full,
            parent: None,
            tree: cairn_format::TreeId::default(),
            summary: Summary::default(),
            program: Vec::new(),
        };
        assert_eq!(
            RetentionInput::from_snapshot(id(7), &snapshot),
            RetentionInput {
                id: id(7),
                time: 1_700_000_000_000_000_000,
                tags: vec![b"t".to_vec()],
            }
        );
    }

    #[test]
    fn durations_parse() {
        let d = |years, months, days, hours| KeepDuration {
            years,
            months,
            days,
            hours,
        };
        for (text, want) in [
            ("30d", d(0, 0, 30, 0)),
            ("1y6m", d(1, 6, 0, 0)),
            ("2y5m7d3h", d(2, 5, 7, 3)),
            ("3h7d", d(0, 0, 7, 3)),
            (" 12h ", d(0, 0, 0, 12)),
            ("0d", d(0, 0, 0, 0)),
            ("007d", d(0, 0, 7, 0)),
            ("4294967295h", d(0, 0, 0, u32::MAX)),
        ] {
            assert_eq!(parse_keep_duration(text).unwrap(), want, "{text:?}");
        }
        for (text, message) in [
            (
                "",
                "invalid duration \"\": give a number and a unit (y, m, d or h), e.g. 30d or 1y6m",
            ),
            (
                "2w",
                "invalid duration \"2w\": unknown unit 'w' (use y, m, d or h; a week is 7d)",
            ),
            (
                "1D",
                "invalid duration \"1D\": unknown unit 'D' (use y, m, d or h; a week is 7d)",
            ),
            (
                "30",
                "invalid duration \"30\": 30 has no unit (y, m, d or h)",
            ),
            (
                "1y30",
                "invalid duration \"1y30\": 30 has no unit (y, m, d or h)",
            ),
            ("d", "invalid duration \"d\": expected a number at \"d\""),
            (
                "-1d",
                "invalid duration \"-1d\": expected a number at \"-1d\"",
            ),
            (
                "1.5d",
                "invalid duration \"1.5d\": unknown unit '.' (use y, m, d or h; a week is 7d)",
            ),
            (
                "1d 2h",
                "invalid duration \"1d 2h\": expected a number at \" 2h\"",
            ),
            ("1d1d", "invalid duration \"1d1d\": unit 'd' is given twice"),
            (
                "4294967296h",
                "invalid duration \"4294967296h\": 4294967296 is too large",
            ),
            (
                "1é",
                "invalid duration \"1é\": unknown unit 'é' (use y, m, d or h; a week is 7d)",
            ),
        ] {
            let err = parse_keep_duration(text).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{text:?}");
            assert_eq!(err.message, message, "{text:?}");
        }
        // Display writes what the parser reads, without the zero parts.
        for text in ["30d", "1y6m", "2y5m7d3h", "1y2h"] {
            assert_eq!(parse_keep_duration(text).unwrap().to_string(), text);
        }
        assert_eq!(KeepDuration::default().to_string(), "0h");
    }

    #[test]
    fn counts_and_tags_parse() {
        assert_eq!(parse_keep_count("0").unwrap(), KeepCount::AtMost(0));
        assert_eq!(parse_keep_count("7").unwrap(), KeepCount::AtMost(7));
        assert_eq!(parse_keep_count("-1").unwrap(), KeepCount::Unlimited);
        assert_eq!(parse_keep_count("unlimited").unwrap(), KeepCount::Unlimited);
        assert_eq!(KeepCount::default(), KeepCount::AtMost(0));
        for bad in ["", "-2", "x", "1.5", "4294967296"] {
            let err = parse_keep_count(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput);
            assert!(err.message.starts_with(&format!("invalid count {bad:?}")));
        }
        assert_eq!(parse_keep_tag("a"), [b"a".to_vec()]);
        assert_eq!(
            parse_keep_tag("a, b ,c"),
            [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(parse_keep_tag(""), [Vec::<u8>::new()]);
    }

    #[test]
    fn policy_and_reasons_display() {
        assert_eq!(
            policy("last=2 daily=7 weekly=unlimited within-daily=30d tag=a,b tag=c within=1y")
                .to_string(),
            "keep 2 latest, 7 daily, all weekly snapshots, daily snapshots within 30d \
             and all snapshots with tags a,b and all snapshots with tags c \
             and all snapshots within 1y of the newest"
        );
        assert_eq!(
            policy("within=2d").to_string(),
            "keep all snapshots within 2d of the newest"
        );
        assert_eq!(
            Policy::default().to_string(),
            "keep all snapshots (the policy is empty)"
        );
        let within = parse_keep_duration("30d").unwrap();
        for (reason, text) in [
            (Reason::EmptyPolicy, "policy is empty"),
            (Reason::Tags(vec![b"release".to_vec()]), "tag release"),
            (Reason::Tags(vec![b"a".to_vec(), b"b".to_vec()]), "tags a,b"),
            (Reason::Tags(vec![Vec::new()]), "tag ''"),
            (Reason::Within(within), "within 30d"),
            (Reason::Last, "last snapshot"),
            (
                Reason::Bucket {
                    bucket: Bucket::Hour,
                    oldest: false,
                },
                "hourly snapshot",
            ),
            (
                Reason::Bucket {
                    bucket: Bucket::Year,
                    oldest: true,
                },
                "oldest yearly snapshot",
            ),
            (
                Reason::BucketWithin {
                    bucket: Bucket::Week,
                    within,
                    oldest: false,
                },
                "weekly within 30d",
            ),
            (
                Reason::BucketWithin {
                    bucket: Bucket::Month,
                    within,
                    oldest: true,
                },
                "oldest monthly within 30d",
            ),
        ] {
            assert_eq!(reason.to_string(), text);
        }
    }
}
