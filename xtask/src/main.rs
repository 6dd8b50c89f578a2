//! Project chores: `cargo xtask demo` (a backup and restore on a local repository),
//! `cargo xtask bench` (cairn beside restic, borg and rustic on the same data, written to
//! BENCHMARKS.md), `cargo xtask simulate` (the garbage-collection simulation over many
//! seeds, `crates/cairn-sim`), `cargo xtask tidy` (the workspace's structural rules, also run
//! by `cargo test`), `cargo xtask servers` (installs the servers the remote-backend tests start)
//! and `cargo xtask test` (`servers`, then `cargo test --workspace`: the README's test command),
//! `cargo xtask man` (the man pages, written by the binary) and `cargo xtask deb` (a Debian
//! package: the binary, man pages, completions, systemd units).
//!
//! No dependencies, so it compiles in seconds.

mod bench;
mod ceiling;
mod corpus;
mod deb;
mod man;
mod report;
mod servers;
mod tidy;
mod tools;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

type Result<T> = std::result::Result<T, String>;

const USAGE: &str = "usage: cargo xtask demo [PATH]
       cargo xtask bench [--runs N] [--steps LIST] [--skip restic,borg,rustic] [--size-mib N]
                         [--quick] [--out FILE]
       cargo xtask bench --help
       cargo xtask simulate [--seeds N] [--start S] [--seed S] [--steps K] [--jobs J] [-v]
       cargo xtask tidy
       cargo xtask servers
       cargo xtask test [CARGO TEST ARGS]
       cargo xtask man [--out DIR]
       cargo xtask deb [--out DIR] [--binary PATH]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("bench") => bench::bench(&args[1..]).and_then(|r| match r {
            Some(results) => report::publish(&results),
            None => Ok(()),
        }),
        Some("simulate") => simulate(&args[1..]),
        Some("tidy") => tidy::tidy(&args[1..]),
        Some("servers") => servers::servers(&args[1..]),
        Some("test") => servers::test(&args[1..]),
        Some("man") => man::man(&args[1..]),
        Some("deb") => deb::deb(&args[1..]),
        _ => Err(USAGE.into()),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e}");
        std::process::exit(1);
    }
}

/// Runs the simulation, built with optimizations, over the seeds asked for (100 by default,
/// from 0); `--seed S` replays one seed alone, and `-v` prints every step.
fn simulate(args: &[String]) -> Result<()> {
    run(Command::new(env!("CARGO"))
        .args(["run", "--release", "--quiet", "-p", "cairn-sim", "--"])
        .args(args)
        .current_dir(root()))
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

/// Runs `cmd` and returns its stdout; its stderr passes through.
fn output(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", out.status));
    }
    Ok(out.stdout)
}

/// Where cargo puts what it builds: `CARGO_TARGET_DIR` when set (relative to the directory
/// cargo runs in, which is the root), else target/ at the root. Outputs of xtask itself (man
/// pages, packages, bench data) go under the root's target/ whatever this says.
fn cargo_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

fn build_release() -> Result<PathBuf> {
    run(Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "cairn"])
        .current_dir(root()))?;
    Ok(cargo_target_dir().join("release/cairn"))
}

/// `cargo build --bin cairn` (the dev profile, which `cargo test` keeps built).
fn build_debug() -> Result<PathBuf> {
    run(Command::new(env!("CARGO"))
        .args(["build", "--bin", "cairn"])
        .current_dir(root()))?;
    Ok(cargo_target_dir().join("debug/cairn"))
}

/// The value of `--NAME VALUE` in `args`, which must hold only such pairs with names in `names`.
fn options<'a>(args: &'a [String], names: &[&str]) -> Result<Vec<(&'a str, &'a str)>> {
    let mut found = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let name = arg
            .strip_prefix("--")
            .filter(|n| names.contains(n))
            .ok_or_else(|| format!("unknown argument {arg:?}\n{USAGE}"))?;
        let value = rest
            .next()
            .ok_or_else(|| format!("--{name} needs a value\n{USAGE}"))?;
        found.push((name, value.as_str()));
    }
    Ok(found)
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
