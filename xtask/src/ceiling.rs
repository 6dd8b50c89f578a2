//! The hardware ceiling: runs `cargo bench --bench ceiling` on corpus C1 and reads the JSON
//! object it prints (benches/ceiling.rs says what it measures and how).
//!
//! Invariant: xtask links no cairn crate and no JSON library; the bench's output is a flat
//! object of numbers (and a string or two, skipped), which `members` reads.

use crate::Result;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// How much of C1 the bench holds in memory.
pub const SAMPLE_MIB: u64 = 256;

/// What one command's data path allows: CPU per plaintext byte, the rate on every core, and
/// the time for the whole corpus without and with one key derivation.
#[derive(Clone)]
pub struct Pipeline {
    pub ns_per_byte: f64,
    pub mbps: f64,
    pub seconds: f64,
    pub seconds_with_kdf: f64,
}

/// The bench's numbers. Rates are single-core decimal MB/s.
pub struct Ceiling {
    pub sample_bytes: f64,
    pub sample_files: f64,
    pub sample_chunks: f64,
    pub corpus_bytes: f64,
    pub cores: f64,
    pub passes: f64,
    pub zstd_level: f64,
    pub kdf_memory_kib: f64,
    pub kdf_iterations: f64,
    pub kdf_parallelism: f64,
    pub chunking: f64,
    pub blake3: f64,
    pub compress: f64,
    /// Stored bytes over plaintext bytes.
    pub ratio: f64,
    pub decompress: f64,
    pub seal: f64,
    pub open: f64,
    pub sha256: f64,
    pub kdf_seconds: f64,
    /// The file system's part, which the bench leaves out; measured by xtask.
    pub floors: Option<Floors>,
    pub backup: Pipeline,
    pub restore: Pipeline,
    pub check_read_data: Pipeline,
}

/// Reading every file of C1 (`cat`), the read side of a backup, and `cp -a` of C1 into a new
/// directory, the write side of a restore: (wall, CPU) seconds, medians of 3 runs.
pub struct Floors {
    pub read: (f64, f64),
    pub write: (f64, f64),
}

/// Times the floors on `corpus`, copying it to `scratch` (removed afterwards).
pub fn floors(corpus: &Path, scratch: &Path) -> Result<Floors> {
    let timed = |script: String| -> Result<(f64, f64)> {
        let out = scratch.with_extension("time");
        let status = Command::new("/usr/bin/time")
            .args(["-f", "%e %U %S", "-o"])
            .arg(&out)
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run /usr/bin/time: {e}"))?;
        let text = fs::read_to_string(&out).unwrap_or_default();
        let _ = fs::remove_file(&out);
        let v: Vec<f64> = text
            .split_whitespace()
            .rev()
            .take(3)
            .filter_map(|x| x.parse().ok())
            .collect();
        match (status.success(), v.as_slice()) {
            (true, [sys, user, wall]) => Ok((*wall, user + sys)),
            _ => Err(format!("`{script}` failed ({status}): {}", text.trim())),
        }
    };
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let (mut read, mut write) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let _ = fs::remove_dir_all(scratch);
        let _ = Command::new("sync").status();
        read.push(timed(format!(
            "find {} -type f -print0 | xargs -0 cat > /dev/null",
            quote(corpus)
        ))?);
        write.push(timed(format!(
            "cp -a {} {}",
            quote(corpus),
            quote(scratch)
        ))?);
    }
    let _ = fs::remove_dir_all(scratch);
    let median = |mut v: Vec<(f64, f64)>| {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    Ok(Floors {
        read: median(read),
        write: median(write),
    })
}

/// Runs the bench on `corpus`, its stderr going to `log`.
pub fn run(corpus: &Path, log: &Path) -> Result<Ceiling> {
    let log_file =
        fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["bench", "--bench", "ceiling", "--", "--data"])
        .arg(corpus)
        .args(["--mib", &SAMPLE_MIB.to_string(), "--json"])
        .current_dir(crate::root())
        .stdin(Stdio::null())
        .stderr(Stdio::from(log_file));
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        // The bench's own last word, or the compiler's first error, says why.
        let text = fs::read_to_string(log).unwrap_or_default();
        let why = text
            .lines()
            .rev()
            .find(|l| l.starts_with("ceiling: "))
            .or_else(|| text.lines().find(|l| l.starts_with("error")))
            .map(|l| format!(": {}", l.trim_end()))
            .unwrap_or_default();
        let shown = log.strip_prefix(crate::root()).unwrap_or(log);
        return Err(format!(
            "`cargo bench --bench ceiling` failed ({}){why}; its output is in {}",
            out.status,
            shown.display()
        ));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
        .map_err(|e| format!("cannot read the output of `cargo bench --bench ceiling`: {e}"))
}

fn parse(text: &str) -> Result<Ceiling> {
    let m = members(text)?;
    let n = |key: &str| m.get(key).copied().ok_or(format!("no number {key:?}"));
    let pipeline = |name: &str| -> Result<Pipeline> {
        Ok(Pipeline {
            ns_per_byte: n(&format!("{name}_ns_per_byte"))?,
            mbps: n(&format!("{name}_mbps"))?,
            seconds: n(&format!("{name}_seconds"))?,
            seconds_with_kdf: n(&format!("{name}_seconds_with_kdf"))?,
        })
    };
    Ok(Ceiling {
        sample_bytes: n("sample_bytes")?,
        sample_files: n("sample_files")?,
        sample_chunks: n("sample_chunks")?,
        corpus_bytes: n("corpus_bytes")?,
        cores: n("cores")?,
        passes: n("passes")?,
        zstd_level: n("zstd_level")?,
        kdf_memory_kib: n("kdf_memory_kib")?,
        kdf_iterations: n("kdf_iterations")?,
        kdf_parallelism: n("kdf_parallelism")?,
        chunking: n("chunking_mbps")?,
        blake3: n("blake3_mbps")?,
        compress: n("zstd_compress_mbps")?,
        ratio: n("stored_ratio")?,
        decompress: n("zstd_decompress_mbps")?,
        seal: n("seal_mbps")?,
        open: n("open_mbps")?,
        sha256: n("sha256_mbps")?,
        kdf_seconds: n("argon2id_seconds")?,
        floors: None,
        backup: pipeline("backup")?,
        restore: pipeline("restore")?,
        check_read_data: pipeline("check_read_data")?,
    })
}

/// The members of a flat JSON object whose values are numbers. String values are skipped;
/// anything nested is an error.
fn members(text: &str) -> Result<BTreeMap<String, f64>> {
    let body = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or("not a JSON object")?;
    let mut out = BTreeMap::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let (key, after) = string(rest)?;
        let value = after
            .trim_start()
            .strip_prefix(':')
            .ok_or(format!("no ':' after {key:?}"))?
            .trim_start();
        rest = if value.starts_with('"') {
            string(value)?.1
        } else {
            let end = value.find(',').unwrap_or(value.len());
            let number = value[..end].trim();
            match number.parse::<f64>() {
                Ok(v) => {
                    out.insert(key.to_string(), v);
                }
                // serde_json writes a rate that is not finite as null: leave it out.
                Err(_) if number == "null" => {}
                Err(_) => return Err(format!("{key:?} is not a number: {number:?}")),
            }
            &value[end..]
        };
        rest = rest.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

/// A JSON string at the start of `s`, still escaped, and what follows it.
fn string(s: &str) -> Result<(&str, &str)> {
    let inner = s
        .strip_prefix('"')
        .ok_or(format!("expected a string at {:?}", &s[..s.len().min(20)]))?;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Ok((&inner[..i], &inner[i + 1..])),
            _ => {}
        }
    }
    Err("unterminated string".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_reads_numbers_and_skips_strings() {
        let m = members(r#"{"dir":"a \"b\", c","x":1.5,"n":-2e3 , "inf":null,"k":7}"#).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["x"], 1.5);
        assert_eq!(m["n"], -2000.0);
        assert_eq!(m["k"], 7.0);
        assert!(members(r#"{"a":{"b":1}}"#).is_err());
    }
}
