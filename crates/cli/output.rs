//! Human output: sizes, durations, modes, and the progress bars shown on a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

pub fn duration(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s < 60.0 {
        format!("{s:.2} s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

/// `drwxr-xr-x` style.
pub fn mode(kind: cairn_format::tree::NodeKind, mode: u32) -> String {
    use cairn_format::tree::NodeKind as K;
    let t = match kind {
        K::File => '-',
        K::Dir => 'd',
        K::Symlink => 'l',
        K::Fifo => 'p',
        K::CharDevice => 'c',
        K::BlockDevice => 'b',
        K::Socket => 's',
    };
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

/// Whether to draw progress: only on a terminal, and never in quiet or JSON mode.
pub fn show_progress(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// What a progress display counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Files,
    Packs,
}

/// One count of a progress display: how much is done, and of how much once that is known.
#[derive(Clone, Copy, Debug)]
pub struct Count {
    pub unit: Unit,
    pub done: u64,
    pub total: Option<u64>,
}

impl Count {
    pub fn of(unit: Unit, done: u64, total: Option<u64>) -> Count {
        Count { unit, done, total }
    }

    /// `3/10 files`, `1.00 MiB/4.00 MiB`, or without a total `3 files`.
    fn show(&self) -> String {
        let n = |v: u64| match self.unit {
            Unit::Bytes => bytes(v),
            _ => v.to_string(),
        };
        let text = match self.total {
            Some(t) => format!("{}/{}", n(self.done), n(t.max(self.done))),
            None => n(self.done),
        };
        match self.unit {
            Unit::Bytes => text,
            Unit::Files => format!("{text} files"),
            Unit::Packs => format!("{text} packs"),
        }
    }
}

/// One redraw: a bar (position, length, counted in bytes or not) when some count has a total
/// that is known and not zero, else a spinner; and the counts as text.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub bar: Option<(u64, u64, Unit)>,
    pub message: String,
}

/// The bar follows the first count with a real total; a total of zero is no total, so that a
/// bar is never drawn full at `0 B/0 B` before anything is known, or for nothing to do.
pub fn frame(counts: &[Count]) -> Frame {
    let bar = counts
        .iter()
        .find(|c| c.total.is_some_and(|t| t > 0))
        .map(|c| (c.done, c.total.unwrap_or(0).max(c.done), c.unit));
    let message = counts
        .iter()
        .map(|c| match c.total {
            Some(0) => Count { total: None, ..*c }.show(),
            _ => c.show(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    Frame { bar, message }
}

/// A progress display on stderr, redrawn on a thread of its own while work runs; inert when
/// not enabled. Cloning it gives another handle on the same display.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
    verb: &'static str,
}

impl Progress {
    pub fn new(enabled: bool, verb: &'static str) -> Progress {
        let bar = enabled.then(ProgressBar::no_length);
        Progress { bar, verb }
    }

    /// Runs `f` with the display taken off the screen, so that lines it prints do not mix with
    /// the bar.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Runs `work` while the display shows the counts `read` gives, every 100 ms.
    pub fn run<T>(&self, read: impl Fn() -> Vec<Count> + Sync, work: impl FnOnce() -> T) -> T {
        let Some(bar) = &self.bar else {
            return work();
        };
        let verb = self.verb;
        let spinner = ProgressStyle::with_template(&format!("{{spinner}} {verb} {{msg}}"))
            .expect("a valid template");
        let style = |unit: Unit| {
            let rate = if unit == Unit::Bytes {
                " {binary_bytes_per_sec}"
            } else {
                ""
            };
            ProgressStyle::with_template(&format!(
                "{verb} {{msg}}{rate} [{{wide_bar}}] ETA {{eta}}"
            ))
            .expect("a valid template")
            .progress_chars("=> ")
        };
        bar.set_style(spinner.clone());
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                let mut shown: Option<Unit> = None;
                let mut shown_length = 0;
                while !done.load(Ordering::Relaxed) {
                    let f = frame(&read());
                    // Style, message, then position: each setter may redraw, and a bar drawn
                    // a step behind its counts is better than one ahead of them.
                    let unit = f.bar.map(|(_, _, unit)| unit);
                    if unit != shown {
                        bar.set_style(unit.map_or_else(|| spinner.clone(), style));
                    }
                    bar.set_message(f.message);
                    match f.bar {
                        Some((position, length, _)) => {
                            bar.set_position(position);
                            if length != shown_length {
                                bar.set_length(length);
                                shown_length = length;
                            }
                            if unit != shown {
                                // The rate and ETA count from here, not from the spinner's
                                // zero, which would make the first step look instant.
                                bar.reset_eta();
                            }
                        }
                        None => bar.tick(),
                    }
                    shown = unit;
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            let result = work();
            done.store(true, Ordering::Relaxed);
            result
        });
        bar.finish_and_clear();
        result
    }
}

/// Runs `work` while a progress display (when `enabled`) shows the counts `read` gives.
pub fn with_progress<T>(
    enabled: bool,
    verb: &'static str,
    read: impl Fn() -> Vec<Count> + Sync,
    work: impl FnOnce() -> T,
) -> T {
    Progress::new(enabled, verb).run(read, work)
}

/// A path as printed to stdout: its bytes as they are for a pipe (scripts get the exact name),
/// but with control characters escaped (`\n`, `\x1b`) on a terminal, where a name could
/// otherwise move the cursor, recolour the screen or fake a line of output.
pub fn path(p: &std::path::Path) -> std::borrow::Cow<'_, [u8]> {
    use std::os::unix::ffi::OsStrExt;
    static TERMINAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let bytes = p.as_os_str().as_bytes();
    if !*TERMINAL.get_or_init(|| std::io::stdout().is_terminal()) {
        return bytes.into();
    }
    escape_controls(bytes).into_bytes().into()
}

/// `bytes` as text with control characters escaped; invalid UTF-8 bytes as `\xNN`.
pub fn escape_controls(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{frame, Count, Unit};

    /// Regression: the bar was drawn full at "0 B/0 B, ETA 0s" before the totals were known,
    /// and for check, which counts packs, always.
    #[test]
    fn a_bar_needs_a_real_total() {
        let f = frame(&[
            Count::of(Unit::Bytes, 0, None),
            Count::of(Unit::Files, 0, None),
        ]);
        assert_eq!(f.bar, None);
        assert_eq!(f.message, "0 B, 0 files");
        let f = frame(&[
            Count::of(Unit::Bytes, 0, Some(0)),
            Count::of(Unit::Files, 0, Some(3)),
        ]);
        assert_eq!(f.bar, Some((0, 3, Unit::Files)));
        assert_eq!(f.message, "0 B, 0/3 files");
        let f = frame(&[
            Count::of(Unit::Bytes, 2048, Some(4096)),
            Count::of(Unit::Files, 1, Some(3)),
        ]);
        assert_eq!(f.bar, Some((2048, 4096, Unit::Bytes)));
        assert_eq!(f.message, "2.00 KiB/4.00 KiB, 1/3 files");
        // A count past its total (a file that grew) stretches the total.
        let f = frame(&[Count::of(Unit::Packs, 5, Some(4))]);
        assert_eq!(f.bar, Some((5, 5, Unit::Packs)));
        assert_eq!(f.message, "5/5 packs");
        let f = frame(&[Count::of(Unit::Packs, 0, Some(0))]);
        assert_eq!((f.bar, f.message.as_str()), (None, "0 packs"));
    }

    #[test]
    fn control_characters_are_escaped() {
        let name = b"a\nb\x1b[31mred\x7f\xff\tz";
        assert_eq!(
            super::escape_controls(name),
            "a\\nb\\x1b[31mred\\x7f\\xff\\tz"
        );
        assert_eq!(super::escape_controls("caf\u{e9}".as_bytes()), "caf\u{e9}");
    }
}
