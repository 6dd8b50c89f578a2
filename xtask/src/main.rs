//! Project chores: `cargo xtask demo` (a backup and restore on a local repository) and
//! `cargo xtask bench` (cairn beside restic on the same data, written to BENCHMARKS.md).
//!
//! No dependencies, so it compiles in seconds.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

type Result<T> = std::result::Result<T, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("bench") => bench(&args[1..]),
        _ => Err(
            "usage: cargo xtask demo [PATH] | bench [--runs N] [--size-mib N] [--skip restic]"
                .into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e}");
        std::process::exit(1);
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}"));
    }
    Ok(())
}

fn build_release() -> Result<PathBuf> {
    run(Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "cairn"])
        .current_dir(root()))?;
    Ok(root().join("target/release/cairn"))
}

/// Backs up PATH (default /usr/share/doc) into target/demo/repo, restores it into
/// target/demo/restore and compares the two with `diff -r`.
fn demo(args: &[String]) -> Result<()> {
    let source = PathBuf::from(args.first().map(String::as_str).unwrap_or("/usr/share/doc"));
    let cairn = build_release()?;
    let dir = root().join("target/demo");
    let repo = dir.join("repo");
    let restore = dir.join("restore");
    let _ = fs::remove_dir_all(&restore);
    let cmd = |args: &[&str]| {
        let mut c = Command::new(&cairn);
        c.args(["-r", repo.to_str().unwrap()]).args(args);
        if std::env::var_os("CAIRN_PASSWORD").is_none() {
            c.env("CAIRN_PASSWORD", "cairn-demo-password");
        }
        c
    };
    if !repo.join("config").exists() {
        run(&mut cmd(&["init"]))?;
    }
    run(&mut cmd(&["backup", source.to_str().unwrap()]))?;
    run(&mut cmd(&["snapshots"]))?;
    run(&mut cmd(&[
        "restore",
        "latest",
        "--target",
        restore.to_str().unwrap(),
    ]))?;
    let restored = restore.join(source.strip_prefix("/").unwrap_or(&source));
    run(Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&source)
        .arg(&restored))?;
    println!(
        "demo: {} restored from {} is identical to the source",
        restored.display(),
        repo.display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// bench

struct Sample {
    wall: f64,
    cpu: f64,
    rss_kib: u64,
}

/// Runs a command under GNU time; returns wall seconds, CPU seconds and peak RSS.
fn timed(cmd: &mut Command) -> Result<Sample> {
    let out_file = std::env::temp_dir().join("cairn-bench-time");
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-o")
        .arg(&out_file)
        .arg("-f")
        .arg("%e %U %S %M")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped.stdout(Stdio::null()).stderr(Stdio::null());
    run(&mut wrapped)?;
    let text = fs::read_to_string(&out_file).map_err(|e| e.to_string())?;
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if f.len() < 4 {
        return Err(format!("cannot parse GNU time output {text:?}"));
    }
    Ok(Sample {
        wall: f[0],
        cpu: f[1] + f[2],
        rss_kib: f[3] as u64,
    })
}

fn ensure_installed(bin: &str, package: &str) -> Result<()> {
    if Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    {
        return Ok(());
    }
    eprintln!("bench: installing {package} from Debian");
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", package])
        .stdout(Stdio::null()))
}

/// Copies regular files from `sources` (sorted walk) into `dest` until `limit` bytes.
fn make_corpus(dest: &Path, sources: &[&str], limit: u64) -> Result<u64> {
    let marker = dest.join(".complete");
    if let Ok(s) = fs::read_to_string(&marker) {
        return s
            .trim()
            .parse()
            .map_err(|_| "bad corpus marker".to_string());
    }
    let _ = fs::remove_dir_all(dest);
    let mut total = 0u64;
    fn walk(src: &Path, dst: &Path, total: &mut u64, limit: u64) {
        let Ok(rd) = fs::read_dir(src) else { return };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if *total >= limit {
                return;
            }
            let Ok(t) = e.file_type() else { continue };
            let to = dst.join(e.file_name());
            if t.is_dir() {
                walk(&e.path(), &to, total, limit);
            } else if t.is_file() {
                let _ = fs::create_dir_all(dst);
                if let Ok(n) = fs::copy(e.path(), &to) {
                    *total += n;
                }
            }
        }
    }
    for s in sources {
        walk(
            Path::new(s),
            &dest.join(s.trim_start_matches('/')),
            &mut total,
            limit,
        );
    }
    fs::write(&marker, total.to_string()).map_err(|e| e.to_string())?;
    Ok(total)
}

fn du(path: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(m) = fs::symlink_metadata(p) else {
            return 0;
        };
        if m.is_dir() {
            fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0)
        } else {
            m.len()
        }
    }
    walk(path)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Tool {
    name: &'static str,
    init: Vec<String>,
    backup: Vec<String>,
    restore: Vec<String>,
    env: Vec<(String, String)>,
}

fn bench(args: &[String]) -> Result<()> {
    let mut runs = 3;
    let mut size_mib = 1024u64;
    let mut skip: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--runs needs a number")?
            }
            "--size-mib" => {
                size_mib = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--size-mib needs a number")?
            }
            "--skip" => skip.extend(
                it.next()
                    .ok_or("--skip needs a list")?
                    .split(',')
                    .map(String::from),
            ),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let cairn = build_release()?;
    ensure_installed("/usr/bin/time", "time")?;
    let work = root().join("target/bench");
    let corpus = work.join("c1");
    let corpus_bytes = make_corpus(&corpus, &["/usr/lib", "/usr/share"], size_mib << 20)?;
    eprintln!(
        "bench: corpus C1 {} has {:.2} GB",
        corpus.display(),
        corpus_bytes as f64 / 1e9
    );

    let repo = work.join("repo");
    let target = work.join("restore");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut tools = vec![Tool {
        name: "cairn",
        init: vec![s(&cairn), "-r".into(), s(&repo), "init".into()],
        backup: vec![
            s(&cairn),
            "-r".into(),
            s(&repo),
            "backup".into(),
            s(&corpus),
        ],
        restore: vec![
            s(&cairn),
            "-r".into(),
            s(&repo),
            "restore".into(),
            "latest".into(),
            "--target".into(),
            s(&target),
        ],
        env: vec![
            ("CAIRN_PASSWORD".into(), "bench".into()),
            ("CAIRN_CACHE_DIR".into(), s(&work.join("cache-cairn"))),
        ],
    }];
    if skip.iter().any(|t| t == "restic") {
        eprintln!("bench: skipping restic as asked");
    } else {
        ensure_installed("restic", "restic")?;
        tools.push(Tool {
            name: "restic",
            init: vec!["restic".into(), "-r".into(), s(&repo), "init".into()],
            backup: vec![
                "restic".into(),
                "-r".into(),
                s(&repo),
                "backup".into(),
                s(&corpus),
            ],
            restore: vec![
                "restic".into(),
                "-r".into(),
                s(&repo),
                "restore".into(),
                "latest".into(),
                "--target".into(),
                s(&target),
            ],
            env: vec![
                ("RESTIC_PASSWORD".into(), "bench".into()),
                ("RESTIC_CACHE_DIR".into(), s(&work.join("cache-restic"))),
            ],
        });
    }

    // step -> tool -> samples
    let mut results: BTreeMap<(usize, &str), BTreeMap<&str, Vec<Sample>>> = BTreeMap::new();
    let mut sizes: BTreeMap<&str, u64> = BTreeMap::new();
    let steps = [
        "first backup",
        "re-backup, nothing changed",
        "restore to an empty dir",
    ];
    for round in 0..runs {
        for tool in &tools {
            eprintln!("bench: round {} of {runs}, {}", round + 1, tool.name);
            let _ = fs::remove_dir_all(&repo);
            for c in ["cache-cairn", "cache-restic"] {
                let _ = fs::remove_dir_all(work.join(c));
            }
            let cmd = |argv: &[String]| {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                for (k, v) in &tool.env {
                    c.env(k, v);
                }
                c
            };
            run(cmd(&tool.init).stdout(Stdio::null()).stderr(Stdio::null()))?;
            let first = timed(&mut cmd(&tool.backup))?;
            let again = timed(&mut cmd(&tool.backup))?;
            sizes.insert(tool.name, du(&repo));
            let _ = fs::remove_dir_all(&target);
            let restore = timed(&mut cmd(&tool.restore))?;
            for (i, sample) in [first, again, restore].into_iter().enumerate() {
                results
                    .entry((i, steps[i]))
                    .or_default()
                    .entry(tool.name)
                    .or_default()
                    .push(sample);
            }
        }
    }
    let _ = fs::remove_dir_all(&target);

    let names: Vec<&str> = tools.iter().map(|t| t.name).collect();
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(&format!(
        "Written by `cargo xtask bench` on {} ({} cores). Corpus C1: {:.2} GB of files copied from \
         /usr/lib and /usr/share. Medians of {runs} runs, tools run alternately, warm page cache. \
         Each cell: wall time (CPU seconds, peak RSS).\n\n",
        String::from_utf8_lossy(&Command::new("date").arg("-u").output().map(|o| o.stdout).unwrap_or_default()).trim(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        corpus_bytes as f64 / 1e9
    ));
    md.push_str(&format!(
        "| step | {} | ratio (cairn speed-up) |\n|---|{}---|\n",
        names.join(" | "),
        "---|".repeat(names.len())
    ));
    for ((_, step), by_tool) in &results {
        let med = |t: &str| -> (f64, f64, u64) {
            let v = &by_tool[t];
            (
                median(v.iter().map(|s| s.wall).collect()),
                median(v.iter().map(|s| s.cpu).collect()),
                v.iter().map(|s| s.rss_kib).max().unwrap_or(0),
            )
        };
        let cells: Vec<String> = names
            .iter()
            .map(|t| {
                let (w, c, r) = med(t);
                format!("{w:.2} s ({c:.1} CPU-s, {} MiB)", r / 1024)
            })
            .collect();
        let ratio = if names.len() > 1 {
            let base = med("cairn").0;
            names[1..]
                .iter()
                .map(|t| format!("{:.2}x vs {t}", med(t).0 / base.max(1e-9)))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            "-".into()
        };
        md.push_str(&format!(
            "| C1 {step} | {} | {ratio} |\n",
            cells.join(" | ")
        ));
    }
    let size_cells: Vec<String> = names
        .iter()
        .map(|t| format!("{:.1} MB", sizes[t] as f64 / 1e6))
        .collect();
    md.push_str(&format!(
        "| C1 repository size | {} | |\n",
        size_cells.join(" | ")
    ));
    let versions: Vec<String> = names
        .iter()
        .map(|t| {
            let out = Command::new(if *t == "cairn" {
                s(&cairn)
            } else {
                t.to_string()
            })
            .arg("version")
            .output();
            let out = out
                .ok()
                .filter(|o| o.status.success())
                .map(|o| o.stdout)
                .unwrap_or_else(|| {
                    Command::new(s(&cairn))
                        .arg("--version")
                        .output()
                        .map(|o| o.stdout)
                        .unwrap_or_default()
                });
            String::from_utf8_lossy(&out)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    md.push_str(&format!("\nVersions: {}.\n", versions.join("; ")));
    fs::write(root().join("BENCHMARKS.md"), &md).map_err(|e| e.to_string())?;
    print!("{md}");
    Ok(())
}
