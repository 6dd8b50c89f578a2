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

/// Runs `work` while a progress bar, fed by `read` (files done, files in all, bytes done, bytes
/// in all), is redrawn on its own thread.
pub fn with_progress<T>(
    enabled: bool,
    verb: &str,
    read: impl Fn() -> (u64, u64, u64, u64) + Sync,
    work: impl FnOnce() -> T,
) -> T {
    if !enabled {
        return work();
    }
    let bar = ProgressBar::new(0);
    let template = format!("{verb} {{msg}} {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} [{{wide_bar}}] ETA {{eta}}");
    bar.set_style(
        ProgressStyle::with_template(&template)
            .unwrap()
            .progress_chars("=> "),
    );
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let (files, total_files, bytes, total_bytes) = read();
                bar.set_length(total_bytes.max(bytes));
                bar.set_position(bytes);
                bar.set_message(format!("{files}/{total_files} files"));
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
