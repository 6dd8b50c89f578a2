//! Project chores: `cargo xtask demo` (a backup and restore on a local repository),
//! `cargo xtask bench` (cairn beside restic, borg and rustic on the same data, written to
//! BENCHMARKS.md), `cargo xtask simulate` (the garbage-collection simulation over many
//! seeds, `crates/cairn-sim`), `cargo xtask tidy` (the workspace's structural rules, also run
//! by `cargo test`), `cargo xtask servers` (installs the servers the remote-backend tests start)
//! and `cargo xtask test` (`servers`, then `cargo test --workspace`: the README's test command).
//!
//! No dependencies, so it compiles in seconds.

mod bench;
mod ceiling;
mod corpus;
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
       cargo xtask test [CARGO TEST ARGS]";

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
