//! The report as Prometheus gauges, in a file for node_exporter's textfile collector. Several
//! cairn processes share one file (backup, prune and check; several profiles or repositories,
//! told apart by their labels), so an update rewrites only its own samples.
//!
//! Invariant: the file is only ever replaced whole (a temp file beside it, fsynced, renamed
//! over it), so node_exporter reads either the old file or the new one; and updates are
//! serialised by an exclusive flock on `PATH.lock`, so no update is lost to a concurrent one.
//! The lock file is left in place: deleting it would let two updaters hold locks on different
//! files of the same name.

use rustix::fs::{flock, FlockOperation};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One gauge of the report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub value: f64,
}

/// A sample's labels as (name, value) pairs, sorted by name.
pub type Labels = Vec<(String, String)>;

/// A sample's labels and its value.
type Series = (Labels, f64);

/// A metric of the file: its help (escaped, as written after `# HELP name `) and its samples.
struct Family {
    name: String,
    help: Option<String>,
    series: Vec<Series>,
}

/// Updates the Prometheus textfile-collector file at `path`: samples already in the file whose
/// name and label set equal one of `samples` (with `labels`) are replaced, every other sample in
/// the file is kept (other commands, hosts or profiles write the same file), and the file is
/// rewritten atomically (a temp file in the same directory, fsync, rename), so node_exporter
/// never reads half a file. Every metric is a gauge, with one `# HELP` and one `# TYPE` line,
/// its samples grouped under them; label values are escaped as the text format requires
/// (backslash, double quote, newline). Concurrent updaters are serialised by flock on a sidecar
/// file `PATH.lock` so that no update is lost. A missing file is an empty one; a line that does
/// not parse in the existing file is dropped (and the rest kept).
///
/// Timestamps on samples in the file are dropped: the textfile collector refuses them. A
/// metric kept from the file without a `# HELP` line is written without one.
pub fn update(path: &Path, labels: &[(&str, &str)], samples: &[Sample]) -> io::Result<()> {
    let labels = checked_labels(labels)?;
    for sample in samples {
        if !is_metric_name(sample.name) {
            return Err(invalid(format!(
                "metric name {:?} is not valid in Prometheus",
                sample.name
            )));
        }
    }
    let context = |what: &str, file: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("cannot {what} {}: {e}", file.display()))
    };

    let lock_path = sidecar(path, ".lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| context("open the metrics lock", &lock_path, e))?;
    flock(&lock, FlockOperation::LockExclusive)
        .map_err(|e| context("lock", &lock_path, e.into()))?;

    let old = match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(context("read the metrics file", path, e)),
    };
    let text = merge(&old, &labels, samples);
    replace(path, &text).map_err(|e| context("write the metrics file", path, e))
    // The lock goes with `lock`, after the rename.
}

/// Parses a textfile back into (name, labels sorted by name, value) triples; the tests and the
/// updater both use it.
pub fn parse(text: &str) -> Vec<(String, Labels, f64)> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(parse_sample)
        .collect()
}

/// The new text of the file: `old`'s families and samples in their order, `samples` (with
/// `labels`) replacing theirs in place or added after them.
fn merge(old: &str, labels: &[(String, String)], samples: &[Sample]) -> String {
    let mut families: Vec<Family> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut family_at = |families: &mut Vec<Family>, name: &str| -> usize {
        *index.entry(name.to_string()).or_insert_with(|| {
            families.push(Family {
                name: name.to_string(),
                help: None,
                series: Vec::new(),
            });
            families.len() - 1
        })
    };
    for line in old.lines() {
        if let Some((name, help)) = parse_help(line) {
            helps.insert(name, help);
        } else if let Some((name, labels, value)) = parse_sample(line) {
            let at = family_at(&mut families, &name);
            set(&mut families[at].series, labels, value);
        }
        // Anything else (TYPE lines, other comments, blank or broken lines) is dropped: TYPE
        // and HELP are written anew for each family.
    }
    for family in &mut families {
        family.help = helps.remove(&family.name);
    }
    for sample in samples {
        let at = family_at(&mut families, sample.name);
        families[at].help = Some(escape_help(sample.help));
        set(&mut families[at].series, labels.to_vec(), sample.value);
    }

    let mut text = String::new();
    for family in families {
        if let Some(help) = &family.help {
            text.push_str(&format!("# HELP {} {help}\n", family.name));
        }
        text.push_str(&format!("# TYPE {} gauge\n", family.name));
        for (labels, value) in &family.series {
            text.push_str(&family.name);
            if !labels.is_empty() {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
                    .collect();
                text.push_str(&format!("{{{}}}", pairs.join(",")));
            }
            text.push_str(&format!(" {}\n", format_value(*value)));
        }
    }
    text
}

/// Sets the value of the series with `labels`, adding it if it is not there.
fn set(series: &mut Vec<Series>, labels: Labels, value: f64) {
    match series.iter_mut().find(|(l, _)| *l == labels) {
        Some(existing) => existing.1 = value,
        None => series.push((labels, value)),
    }
}

/// Replaces `path` with `text`: the temp file is `PATH.tmp`, which node_exporter skips (it
/// reads only `*.prom`), and which the lock keeps to one writer at a time.
fn replace(path: &Path, text: &str) -> io::Result<()> {
    let temp = sidecar(path, ".tmp");
    let written = (|| {
        let mut file = File::create(&temp)?;
        // An operator may have opened the file to node_exporter's user alone; keep its mode.
        if let Ok(meta) = fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        // The rename is durable once the directory is.
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

/// `path` with `suffix` appended to its file name.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// `labels` sorted by name, each name checked.
fn checked_labels(labels: &[(&str, &str)]) -> io::Result<Labels> {
    let mut sorted: Labels = labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    sorted.sort();
    for (i, (name, _)) in sorted.iter().enumerate() {
        if !is_label_name(name) {
            return Err(invalid(format!(
                "label name {name:?} is not valid in Prometheus"
            )));
        }
        if i > 0 && sorted[i - 1].0 == *name {
            return Err(invalid(format!("label {name:?} is given twice")));
        }
    }
    Ok(sorted)
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A label name cairn may write: not `__`-prefixed, which is reserved for Prometheus's own.
fn is_label_name(name: &str) -> bool {
    !name.starts_with("__") && is_label_syntax(name)
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: a label name the text format accepts.
fn is_label_syntax(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The text format's spelling of special values; Rust's `{}` gives the shortest text that
/// reads back as the same f64 for the rest.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{value}")
    }
}

/// `# HELP name text`: the name and the text as written (still escaped).
fn parse_help(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start().strip_prefix("HELP")?;
    let rest = rest.strip_prefix([' ', '\t'])?.trim_start();
    let (name, help) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    is_metric_name(name).then(|| (name.to_string(), help.trim_start().to_string()))
}

/// `name{label="value",...} value [timestamp]`, labels sorted by name; None if the line is not
/// a well-formed sample.
fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let line = line.trim();
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inside)?;
        labels = parsed;
        rest = after;
    }
    // One value, then at most a timestamp (milliseconds), which is dropped.
    let mut fields = rest.split_whitespace();
    let value: f64 = fields.next()?.parse().ok()?;
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    labels.sort();
    if labels.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    Some((name.to_string(), labels, value))
}

/// The labels after a sample's `{`, and the text after the closing `}`.
fn parse_labels(mut text: &str) -> Option<(Labels, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, rest) = text.split_once('=')?;
        let name = name.trim();
        if !is_label_syntax(name) {
            return None;
        }
        let mut chars = rest.trim_start().strip_prefix('"')?.char_indices();
        let quoted = rest.trim_start();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    _ => return None,
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        // `end` indexes the text after the opening quote.
        text = quoted[1 + end + 1..].trim_start();
        if let Some(after) = text.strip_prefix(',') {
            text = after;
        } else if !text.starts_with('}') {
            return None;
        }
    }
}

#[cfg(test)]
mod tests;
