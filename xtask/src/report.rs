//! BENCHMARKS.md from a bench's results: the machine, the tools, the corpora, a table of medians,
//! the repository sizes, the ceiling the primitives allow, and each target of issue 6 judged
//! against the numbers.
//!
//! Invariant: only the part above `<!-- hand-written below -->` is generated; what follows that
//! line is kept as it was.

use crate::bench::{Results, Sample, Step, SIZE_C1, SIZE_C3, SIZE_C3_PRUNED};
use crate::ceiling::{Ceiling, Pipeline};
use crate::tools::Kind;
use crate::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

pub const HAND_WRITTEN: &str = "<!-- hand-written below -->";

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The medians of wall time, CPU time and peak RSS, each taken separately.
fn median(samples: &[Sample]) -> Sample {
    Sample {
        wall: median_f64(samples.iter().map(|s| s.wall).collect()),
        cpu: median_f64(samples.iter().map(|s| s.cpu).collect()),
        rss_kib: median_f64(samples.iter().map(|s| s.rss_kib as f64).collect()) as u64,
    }
}

fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

fn mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / 1e6)
}

fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kib: u64 = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0);
    format!(
        "{} cores (`nproc`), {cpu}, {:.1} GiB of memory, Linux {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        mem_kib as f64 / (1u64 << 20) as f64,
        output("uname", &["-r"])
    )
}

enum Verdict {
    Met,
    NotMet,
    NotMeasured,
}

struct Judged {
    target: &'static str,
    measured: String,
    verdict: Verdict,
}

/// Looks up medians by step and tool.
struct Medians<'a> {
    r: &'a Results,
    timings: BTreeMap<Step, BTreeMap<Kind, Sample>>,
    sizes: BTreeMap<&'static str, BTreeMap<Kind, u64>>,
}

impl<'a> Medians<'a> {
    fn new(r: &'a Results) -> Medians<'a> {
        let timings = r
            .timings
            .iter()
            .map(|(step, by)| (*step, by.iter().map(|(k, v)| (*k, median(v))).collect()))
            .collect();
        let sizes = r
            .sizes
            .iter()
            .map(|(what, by)| {
                let by = by
                    .iter()
                    .map(|(k, v)| (*k, median_f64(v.iter().map(|&b| b as f64).collect()) as u64))
                    .collect();
                (*what, by)
            })
            .collect();
        Medians { r, timings, sizes }
    }

    fn get(&self, step: Step, kind: Kind) -> Option<Sample> {
        self.timings.get(&step)?.get(&kind).copied()
    }

    fn size(&self, what: &str, kind: Kind) -> Option<u64> {
        self.sizes.get(what)?.get(&kind).copied()
    }

    /// The fastest anchor at `step`, and the anchors that were not run.
    fn best_anchor(&self, step: Step) -> (Option<(Kind, Sample)>, String) {
        let measured: Vec<(Kind, Sample)> = Kind::ANCHORS
            .into_iter()
            .filter_map(|k| Some((k, self.get(step, k)?)))
            .collect();
        let best = measured
            .iter()
            .copied()
            .min_by(|a, b| a.1.wall.partial_cmp(&b.1.wall).unwrap());
        (best, self.missing(measured.iter().map(|m| m.0).collect()))
    }

    fn smallest_anchor(&self, what: &str) -> (Option<(Kind, u64)>, String) {
        let measured: Vec<(Kind, u64)> = Kind::ANCHORS
            .into_iter()
            .filter_map(|k| Some((k, self.size(what, k)?)))
            .collect();
        let best = measured.iter().copied().min_by_key(|m| m.1);
        (best, self.missing(measured.iter().map(|m| m.0).collect()))
    }

    fn missing(&self, measured: Vec<Kind>) -> String {
        let missing: Vec<&str> = Kind::ANCHORS
            .into_iter()
            .filter(|k| !measured.contains(k))
            .map(Kind::name)
            .collect();
        if missing.is_empty() {
            String::new()
        } else {
            format!(" ({} not run)", missing.join(", "))
        }
    }

    /// Throughput in `unit` per second of `amount` processed by the step.
    fn rate(&self, amount: f64, unit: &str, s: Sample) -> String {
        if unit == "MB" {
            format!("{:.0} MB/s", amount / 1e6 / s.wall.max(1e-9))
        } else {
            format!("{:.0} {unit}/s", amount / s.wall.max(1e-9))
        }
    }
}

fn verdict(ok: bool) -> Verdict {
    if ok {
        Verdict::Met
    } else {
        Verdict::NotMet
    }
}

fn targets(m: &Medians) -> Vec<Judged> {
    let c1_bytes = m.r.corpora.c1.as_ref().map_or(0, |c| c.bytes) as f64;
    let c2_files = m.r.corpora.c2.as_ref().map_or(0, |c| c.files) as f64;
    let not_measured = |target, why: String| Judged {
        target,
        measured: why,
        verdict: Verdict::NotMeasured,
    };
    let mut out = Vec::new();

    // Throughput against one anchor: the same bytes or files, so the ratio of wall times.
    let faster_than = |target, step: Step, anchor: Kind, need: f64, amount: f64, unit: &str| match (
        m.get(step, Kind::Cairn),
        m.get(step, anchor),
    ) {
        (Some(c), Some(a)) => {
            let x = a.wall / c.wall.max(1e-9);
            Judged {
                target,
                measured: format!(
                    "cairn {}, {} {}: {x:.2}x",
                    m.rate(amount, unit, c),
                    anchor.name(),
                    m.rate(amount, unit, a)
                ),
                verdict: verdict(x >= need),
            }
        }
        _ => not_measured(target, format!("cairn or {} not run", anchor.name())),
    };
    out.push(faster_than(
        "C1 first backup: at least 2.5x rustic's throughput",
        Step::C1Backup,
        Kind::Rustic,
        2.5,
        c1_bytes,
        "MB",
    ));
    out.push(faster_than(
        "C1 first backup: at least 3.5x restic's throughput",
        Step::C1Backup,
        Kind::Restic,
        3.5,
        c1_bytes,
        "MB",
    ));
    out.push(faster_than(
        "C2 first backup: at least 3x restic's files per second",
        Step::C2Backup,
        Kind::Restic,
        3.0,
        c2_files,
        "files",
    ));

    let at_most = |target, step: Step, anchor: Kind, factor: f64| match (
        m.get(step, Kind::Cairn),
        m.get(step, anchor),
    ) {
        (Some(c), Some(a)) => Judged {
            target,
            measured: format!(
                "cairn {}, {} {}: {:.2}x",
                secs(c.wall),
                anchor.name(),
                secs(a.wall),
                c.wall / a.wall.max(1e-9)
            ),
            verdict: verdict(c.wall <= factor * a.wall),
        },
        _ => not_measured(target, format!("cairn or {} not run", anchor.name())),
    };
    out.push(at_most(
        "C1 re-backup, nothing changed: at most 0.5x rustic's time",
        Step::C1NoChange,
        Kind::Rustic,
        0.5,
    ));
    out.push(at_most(
        "C2 re-backup, nothing changed: at most 0.5x rustic's time",
        Step::C2NoChange,
        Kind::Rustic,
        0.5,
    ));

    // Against the fastest anchor.
    let vs_best =
        |target, step: Step, factor: f64| match (m.get(step, Kind::Cairn), m.best_anchor(step)) {
            (Some(c), (Some((k, a)), missing)) => {
                let x = a.wall / c.wall.max(1e-9);
                let ok = if factor >= 1.0 {
                    x >= factor
                } else {
                    c.wall <= factor * a.wall
                };
                (
                    Some(c),
                    Judged {
                        target,
                        measured: format!(
                            "cairn {}, fastest anchor {} {}: cairn {x:.2}x as fast{missing}",
                            secs(c.wall),
                            k.name(),
                            secs(a.wall)
                        ),
                        verdict: verdict(ok),
                    },
                )
            }
            _ => (
                None,
                not_measured(target, "cairn or every anchor not run".into()),
            ),
        };
    let (restore, mut judged) = vs_best(
        "C1 restore: at least 3x the fastest anchor's throughput, peak RSS below 256 MiB",
        Step::C1Restore,
        3.0,
    );
    if let Some(c) = restore {
        let _ = write!(judged.measured, "; peak RSS {} MiB", c.rss_kib / 1024);
        if c.rss_kib >= 256 * 1024 {
            judged.verdict = Verdict::NotMet;
        }
    }
    out.push(judged);
    out.push(
        vs_best(
            "C1 check, reading all data: at least 3x the fastest anchor's throughput",
            Step::C1CheckData,
            3.0,
        )
        .1,
    );

    let size_target =
        |target, what: &str| match (m.size(what, Kind::Cairn), m.smallest_anchor(what)) {
            (Some(c), (Some((k, a)), missing)) => Judged {
                target,
                measured: format!(
                    "cairn {}, smallest anchor {} {}: {:+.1}%{missing}",
                    mb(c as f64),
                    k.name(),
                    mb(a as f64),
                    (c as f64 / a as f64 - 1.0) * 100.0
                ),
                verdict: verdict(c as f64 <= a as f64 * 1.02),
            },
            _ => not_measured(target, "cairn or every anchor not run".into()),
        };
    out.push(size_target(
        "C1 repository size: at most the smallest anchor's + 2%",
        SIZE_C1,
    ));
    out.push(size_target(
        "C3 repository size after 8 versions: at most the smallest anchor's + 2%",
        SIZE_C3,
    ));

    out.push(
        vs_best(
            "C1 check (structure): no slower than the fastest anchor",
            Step::C1Check,
            1.0,
        )
        .1,
    );

    let rss_target = "Peak RSS at every step: at most restic's";
    let mut compared = 0;
    let mut above = Vec::new();
    for step in Step::ALL {
        if let (Some(c), Some(r)) = (m.get(step, Kind::Cairn), m.get(step, Kind::Restic)) {
            compared += 1;
            if c.rss_kib > r.rss_kib {
                above.push(format!(
                    "{} ({:.1} vs {:.1} MiB)",
                    step.label(),
                    c.rss_kib as f64 / 1024.0,
                    r.rss_kib as f64 / 1024.0
                ));
            }
        }
    }
    out.push(if compared == 0 {
        not_measured(rss_target, "cairn or restic not run".into())
    } else if above.is_empty() {
        Judged {
            target: rss_target,
            measured: format!("at or below restic's at all {compared} steps"),
            verdict: Verdict::Met,
        }
    } else {
        Judged {
            target: rss_target,
            measured: format!("above restic's at {}", above.join(", ")),
            verdict: Verdict::NotMet,
        }
    });

    out.push(
        vs_best(
            "C3 forget all but 2 + prune: at most 0.5x the fastest anchor's time",
            Step::C3Prune,
            0.5,
        )
        .1,
    );

    let start_target = "Fixed cost of a command, on a tiny repository: at most 0.15 s (issue 18)";
    let starts: Vec<(Step, Sample)> = [Step::StartSnapshots, Step::StartNoChange, Step::StartCheck]
        .into_iter()
        .filter_map(|step| Some((step, m.get(step, Kind::Cairn)?)))
        .collect();
    out.push(if starts.is_empty() {
        not_measured(start_target, "the start-up steps not run".into())
    } else {
        let worst = starts.iter().map(|(_, s)| s.wall).fold(0.0, f64::max);
        Judged {
            target: start_target,
            measured: starts
                .iter()
                .map(|(step, s)| format!("{}: {}", step.id(), secs(s.wall)))
                .collect::<Vec<_>>()
                .join(", "),
            verdict: verdict(worst <= 0.15),
        }
    });

    // Against the machine rather than the anchors: the file system and the primitives.
    let c1_bytes = m.r.corpora.c1.as_ref().map_or(0.0, |c| c.bytes as f64);
    let ceiling = m.r.ceiling.as_ref().and_then(|c| c.as_ref().ok());
    let floors = ceiling.and_then(|c| Some((c, c.floors.as_ref()?)));
    let restore_target = "C1 restore: no slower than `cp -a` of C1 (issue 18)";
    out.push(match (m.get(Step::C1Restore, Kind::Cairn), floors) {
        (Some(s), Some((_, f))) => Judged {
            target: restore_target,
            measured: format!(
                "cairn {}, `cp -a` {}: {:.2}x its time",
                secs(s.wall),
                secs(f.write.0),
                s.wall / f.write.0.max(1e-9)
            ),
            verdict: verdict(s.wall <= f.write.0),
        },
        _ => not_measured(
            restore_target,
            "C1 restore or the floors not measured".into(),
        ),
    });
    let backup_target = "C1 first backup: at least 90% of the ceiling, with reading the files and the key derivation (issue 18)";
    out.push(match (m.get(Step::C1Backup, Kind::Cairn), floors) {
        (Some(s), Some((c, f))) => {
            let p = with_fs(c, &c.backup, f.read.1, c1_bytes);
            let share = p.seconds_with_kdf / s.wall.max(1e-9);
            Judged {
                target: backup_target,
                measured: format!(
                    "cairn {}, ceiling {}: {:.0}%",
                    secs(s.wall),
                    secs(p.seconds_with_kdf),
                    share * 100.0
                ),
                verdict: verdict(share >= 0.9),
            }
        }
        _ => not_measured(
            backup_target,
            "C1 first backup or the ceiling not measured".into(),
        ),
    });
    out
}

/// Writes the report into its file (BENCHMARKS.md unless --out says otherwise) and prints it.
pub fn publish(results: &Results) -> Result<()> {
    let md = markdown(results);
    let out = &results.opts.out;
    write(out, &md)?;
    print!("{md}");
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}

pub fn markdown(r: &Results) -> String {
    let m = Medians::new(r);
    let kinds: Vec<Kind> = r.tools.iter().map(|t| t.0).collect();
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Benchmarks\n");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(
        w,
        "Written by `cargo xtask {}` on {}.\n",
        args.join(" "),
        output("date", &["-u"])
    );
    let _ = writeln!(w, "Machine: {}.\n", machine());
    let mut versions: Vec<String> = r.tools.iter().map(|t| t.1.clone()).collect();
    versions.extend(
        r.skipped
            .iter()
            .map(|(k, why)| format!("{} {why}", k.name())),
    );
    let _ = writeln!(w, "Tools: {}.\n", versions.join("; "));
    let _ = writeln!(
        w,
        "Method: medians of {} round{}. In each round the tools take turns, each with a new \
         repository and an empty cache directory of its own; warm page cache, `sync` before every \
         timed step; each restore goes to a new empty directory, and the restored trees are \
         deleted only after the last round (ext4 skips inodes freed in the last minute, so a \
         restore right after another's deletion would pay for it). Each cell: wall time (CPU seconds, peak RSS) as `/usr/bin/time` reports them \
         (the median of each). Encryption is on for every tool; compression is each tool's \
         default zstd: cairn's (level 3), restic's (`auto`), rustic's (level 3), and borg's \
         `--compression zstd,3` (borg's default is lz4). A repository's size is the sum of its \
         files' lengths; by default rustic's prune only marks the packs it repacks for deletion \
         and removes them in a later prune, so its size after pruning still counts them.\n",
        r.opts.runs,
        if r.opts.runs == 1 { "" } else { "s" }
    );

    let _ = writeln!(w, "## Corpora\n");
    if let Some(c1) = &r.corpora.c1 {
        // The changed files are counted only when that step ran.
        let changed = match r.corpora.c1_changed_files {
            0 => String::new(),
            n => format!(
                " \"1% of files changed\" overwrites up to 4 KiB at a seeded offset in {n} files \
                 (1%, picked by a seeded generator) of a working copy, and puts the bytes and \
                 times back after the step."
            ),
        };
        let _ = writeln!(
            w,
            "- **C1**: {} in {} files copied from /usr/lib and /usr/share (a sorted walk, regular \
             files only).{changed}",
            mb(c1.bytes as f64),
            c1.files,
        );
    }
    if let Some(c2) = &r.corpora.c2 {
        let _ = writeln!(
            w,
            "- **C2**: {} in {} files: the regular files of at most 1 MiB under /usr/share/doc, \
             /usr/include, the cargo registry's sources (~/.cargo/registry/src), \
             /usr/lib/python3*, and the Rust toolchain's HTML documentation (without which a \
             lean machine has far fewer than the 73,000 to 100,000 files issue 6 asks for), in that order, \
             up to 100,000 files or 1 GB.",
            mb(c2.bytes as f64),
            c2.files
        );
    }
    if let Some(tiny) = &r.corpora.tiny {
        let _ = writeln!(
            w,
            "- **Tiny**, for the start-up steps: {} files of 2 KiB of text in 4 directories, \
             backed up once before the steps, so that a command's time is its fixed cost \
             (start, key derivation, opening the repository and the cache).",
            tiny.files
        );
    }
    if let Some(c3) = &r.corpora.c3 {
        let (files8, bytes8) = r.corpora.c3_last;
        let per_release = r
            .corpora
            .c3_releases
            .first()
            .map(|rel| {
                format!(
                    " (release 2: {} modified, {} added, {} deleted)",
                    rel.modified, rel.added, rel.deleted
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            w,
            "- **C3**: 8 successive releases of a source tree, synthesized from real source: \
             version 1 is {} in {} files copied from the cargo registry's sources \
             (~/.cargo/registry/src, then /usr/include if those are short). Each next version \
             modifies 2% of the files (a line of code-like words inserted after a line break, and \
             every other time a span of up to 256 bytes deleted), adds 1% (edited copies of \
             existing files, beside them) and deletes 0.5%{per_release}, all picked from the \
             sorted file list by a generator seeded with the version number, so every tool and \
             every round sees the same 8 trees. Version 8 is {} in {files8} files. The versions \
             are backed up one after another from the same path; \"forget all but 2\" keeps the \
             last two.",
            mb(c3.bytes as f64),
            c3.files,
            mb(bytes8 as f64)
        );
    }

    let _ = writeln!(w, "\n## Results\n");
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    if m.timings.is_empty() {
        let _ = writeln!(w, "No step of the tools was run.");
    } else {
        let _ = writeln!(
            w,
            "| step | {} | cairn speed-up (other's time / cairn's) |\n|---|{}---|",
            names.join(" | "),
            "---|".repeat(names.len())
        );
    }
    for (step, by) in &m.timings {
        let cells: Vec<String> = kinds
            .iter()
            .map(|k| match by.get(k) {
                Some(s) => format!(
                    "{} ({:.1} CPU-s, {} MiB)",
                    secs(s.wall),
                    s.cpu,
                    s.rss_kib / 1024
                ),
                None => "-".into(),
            })
            .collect();
        let ratio = match by.get(&Kind::Cairn) {
            Some(c) => {
                let others: Vec<(Kind, f64)> = kinds[1..]
                    .iter()
                    .filter_map(|k| Some((*k, by.get(k)?.wall / c.wall.max(1e-9))))
                    .collect();
                // The best other tool is the fastest, so the smallest speed-up.
                match others.iter().min_by(|a, b| a.1.partial_cmp(&b.1).unwrap()) {
                    Some((best, x)) => {
                        let each: Vec<String> = others
                            .iter()
                            .map(|(k, x)| format!("{} {x:.2}x", k.name()))
                            .collect();
                        format!(
                            "**{x:.2}x** vs the best ({}); {}",
                            best.name(),
                            each.join(", ")
                        )
                    }
                    None => "-".into(),
                }
            }
            None => "-".into(),
        };
        let _ = writeln!(w, "| {} | {} | {ratio} |", step.label(), cells.join(" | "));
    }

    if !m.sizes.is_empty() {
        let _ = writeln!(w, "\n## Repository sizes\n");
        let _ = writeln!(
            w,
            "| repository | {} | cairn vs the smallest other |\n|---|{}---|",
            names.join(" | "),
            "---|".repeat(names.len())
        );
        for what in [SIZE_C1, SIZE_C3, SIZE_C3_PRUNED] {
            let Some(by) = m.sizes.get(what) else {
                continue;
            };
            let cells: Vec<String> = kinds
                .iter()
                .map(|k| by.get(k).map_or("-".into(), |b| mb(*b as f64)))
                .collect();
            let smallest = kinds[1..]
                .iter()
                .filter_map(|k| Some((*k, *by.get(k)?)))
                .min_by_key(|x| x.1);
            let ratio = match (by.get(&Kind::Cairn), smallest) {
                (Some(c), Some((k, b))) => format!(
                    "{:+.1}% ({})",
                    (*c as f64 / b as f64 - 1.0) * 100.0,
                    k.name()
                ),
                _ => "-".into(),
            };
            let _ = writeln!(w, "| {what} | {} | {ratio} |", cells.join(" | "));
        }
    }

    if let Some(ceiling) = &r.ceiling {
        write_ceiling(w, ceiling, &m);
    }

    let _ = writeln!(w, "\n## Targets (issues 6 and 18)\n");
    let _ = writeln!(
        w,
        "Judged from the medians above; the anchors are restic, borg and rustic.\n"
    );
    let _ = writeln!(w, "| target | measured | verdict |\n|---|---|---|");
    for t in targets(&m) {
        let v = match t.verdict {
            Verdict::Met => "met",
            Verdict::NotMet => "**not met**",
            Verdict::NotMeasured => "not measured",
        };
        let _ = writeln!(w, "| {} | {} | {v} |", t.target, t.measured);
    }
    md
}

/// The ceiling section: the primitives on one core, what they imply for backup, restore and
/// check --read-data on every core, and how close cairn's medians come to that.
fn write_ceiling(w: &mut String, ceiling: &Result<Ceiling>, m: &Medians) {
    let _ = writeln!(w, "\n## The ceiling\n");
    let c = match ceiling {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(
                w,
                "Not measured: the ceiling bench failed. {e}. The other sections do not depend on it."
            );
            return;
        }
    };
    let cores = c.cores;
    let _ = writeln!(
        w,
        "What the primitives alone allow on this machine, from `cargo bench --bench ceiling`: it \
         read {} {:.0} MiB of C1 ({:.0} files, cut file by file into {:.0} chunks) into \
         memory and timed each primitive on one thread as cairn's data path applies it, the best \
         of {:.0} passes in the thread's CPU time. MB/s are decimal and count plaintext, except \
         where the stored bytes are named.\n",
        if c.sample_bytes < c.corpus_bytes {
            "the first"
        } else {
            "all"
        },
        c.sample_bytes / (1u64 << 20) as f64,
        c.sample_files,
        c.sample_chunks,
        c.passes
    );
    let _ = writeln!(w, "| primitive (one core) | rate |\n|---|---|");
    let rows = [
        (
            "FastCDC chunking, 512 KiB / 1 MiB / 8 MiB, keyed gear table".to_string(),
            format!("{:.0} MB/s", c.chunking),
        ),
        (
            "keyed BLAKE3 blob id of each chunk".into(),
            format!("{:.0} MB/s", c.blake3),
        ),
        (
            format!(
                "zstd level {:.0} compression of each chunk (one context)",
                c.zstd_level
            ),
            format!(
                "{:.0} MB/s; stored bytes are r = {:.3} of the plaintext",
                c.compress, c.ratio
            ),
        ),
        (
            "zstd decompression (one context; blobs stored raw are copied)".into(),
            format!("{:.0} MB/s", c.decompress),
        ),
        (
            "XChaCha20-Poly1305 seal, of the stored bytes".into(),
            format!("{:.0} MB/s", c.seal),
        ),
        (
            "XChaCha20-Poly1305 open, of the stored bytes".into(),
            format!("{:.0} MB/s", c.open),
        ),
        (
            "SHA-256 of the stored bytes, pack by pack".into(),
            format!("{:.0} MB/s", c.sha256),
        ),
        (
            format!(
                "Argon2id key derivation, {:.0} MiB, {:.0} iterations, {:.0} lanes (wall time)",
                c.kdf_memory_kib / 1024.0,
                c.kdf_iterations,
                c.kdf_parallelism
            ),
            format!("{:.3} s", c.kdf_seconds),
        ),
    ];
    for (what, rate) in rows {
        let _ = writeln!(w, "| {what} | {rate} |");
    }
    let _ = writeln!(
        w,
        "\nA primitive costs 1 / its rate seconds per byte it processes. Per byte of plaintext, \
         backup costs chunking + BLAKE3 + compression + r × (seal + SHA-256), restore costs \
         r × open + decompression + BLAKE3, and check --read-data costs r × (SHA-256 + open) + \
         decompression + BLAKE3 (restore reads packs by range and does not hash them; check \
         hashes each whole pack). On {cores:.0} cores the ceiling rate is {cores:.0} / cost, and \
         the ceiling time for C1's {} is its bytes × cost / {cores:.0}, plus {:.2} s when the one \
         key derivation each command makes before reading data is counted. Cairn's share of the \
         ceiling is the ceiling time / cairn's median wall time (without the derivation, that is \
         cairn's MB/s / the ceiling rate). The ceiling leaves out reading and writing files, \
         system calls, copies, trees and the index, so a run stays below it but for the noise \
         of the measurements.\n",
        mb(c.corpus_bytes),
        c.kdf_seconds
    );
    if let Some(f) = &c.floors {
        let _ = writeln!(
            w,
            "The file system's part, measured on all of C1 (medians of 3): reading every file \
             (`cat`) takes {} ({:.2} CPU-s), and `cp -a` into a new directory takes {} ({:.2} \
             CPU-s). The rows \"with reading the files\" and \"with writing the files\" add that \
             CPU to the primitives' before dividing by the cores: a backup must also read C1, a \
             restore must also write it.\n",
            secs(f.read.0),
            f.read.1,
            secs(f.write.0),
            f.write.1
        );
    }
    let c1_bytes =
        m.r.corpora
            .c1
            .as_ref()
            .map_or(c.corpus_bytes, |c1| c1.bytes as f64);
    let _ = writeln!(
        w,
        "| step | CPU per plaintext byte | ceiling on {cores:.0} cores | ceiling time for C1 | \
         with the key derivation | cairn (median) | cairn's share of the ceiling | \
         counting the key derivation |\n|---|---|---|---|---|---|---|---|"
    );
    let with_fs = |p: &Pipeline, fs_cpu: f64| with_fs(c, p, fs_cpu, c1_bytes);
    let mut rows = vec![
        (Step::C1Backup, "", c.backup.clone()),
        (Step::C1Restore, "", c.restore.clone()),
        (Step::C1CheckData, "", c.check_read_data.clone()),
    ];
    if let Some(f) = &c.floors {
        rows.insert(
            1,
            (
                Step::C1Backup,
                ", with reading the files",
                with_fs(&c.backup, f.read.1),
            ),
        );
        rows.insert(
            3,
            (
                Step::C1Restore,
                ", with writing the files",
                with_fs(&c.restore, f.write.1),
            ),
        );
    }
    for (step, extra, p) in &rows {
        let step = *step;
        let (measured, share, share_kdf) = match m.get(step, Kind::Cairn) {
            Some(s) => (
                format!("{}, {}", secs(s.wall), m.rate(c1_bytes, "MB", s)),
                format!("{:.0}%", p.seconds / s.wall.max(1e-9) * 100.0),
                format!("{:.0}%", p.seconds_with_kdf / s.wall.max(1e-9) * 100.0),
            ),
            None => (
                "not measured".into(),
                "not measured".into(),
                "not measured".into(),
            ),
        };
        let _ = writeln!(
            w,
            "| {}{extra} | {:.2} ns | {:.0} MB/s | {} | {} | {measured} | {share} | {share_kdf} |",
            step.label(),
            p.ns_per_byte,
            p.mbps,
            secs(p.seconds),
            secs(p.seconds_with_kdf)
        );
    }
}

/// A pipeline with the file system's part added: the kernel's CPU for reading or writing C1,
/// spread over the cores like the primitives' (the floors were measured on the whole corpus).
fn with_fs(c: &Ceiling, p: &Pipeline, fs_cpu: f64, c1_bytes: f64) -> Pipeline {
    let seconds = (p.ns_per_byte * 1e-9 * c1_bytes + fs_cpu) / c.cores;
    Pipeline {
        ns_per_byte: p.ns_per_byte + fs_cpu / c1_bytes * 1e9,
        mbps: c1_bytes / seconds / 1e6,
        seconds,
        seconds_with_kdf: seconds + c.kdf_seconds,
    }
}

/// Writes `generated` to `path`, keeping the marker line and everything after it.
pub fn write(path: &Path, generated: &str) -> Result<()> {
    let old = fs::read_to_string(path).unwrap_or_default();
    let kept = match old.find(HAND_WRITTEN) {
        Some(at) => old[at..].to_string(),
        None => format!("{HAND_WRITTEN}\n"),
    };
    fs::write(path, format!("{generated}\n{kept}"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
