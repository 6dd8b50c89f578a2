//! `cairn-sim`: runs the simulation over many seeds (`cargo xtask simulate` calls it).
//!
//! cairn-sim [--seeds N] [--start S] [--seed S] [--steps K] [--jobs J] [-v]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

fn main() -> std::process::ExitCode {
    let mut seeds = 100u64;
    let mut start = 0u64;
    let mut opts = cairn_sim::Options::default();
    let mut jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> u64 {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("cairn-sim: {name} needs a number");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--seeds" => seeds = value("--seeds"),
            "--start" => start = value("--start"),
            "--seed" => {
                start = value("--seed");
                seeds = 1;
            }
            "--steps" => opts.steps = value("--steps") as usize,
            "--jobs" => jobs = value("--jobs").max(1) as usize,
            "-v" | "--verbose" => opts.verbose = true,
            _ => {
                eprintln!("usage: cairn-sim [--seeds N] [--start S] [--seed S] [--steps K] [--jobs J] [-v]");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let next = AtomicU64::new(start);
    let failures = Mutex::new(Vec::new());
    let totals = Mutex::new(cairn_sim::Report::default());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed >= start + seeds {
                    return;
                }
                match cairn_sim::run(seed, &opts) {
                    Ok(report) => {
                        if opts.verbose {
                            println!("seed {seed}: {}", report.setting);
                            for line in &report.log {
                                println!("  {line}");
                            }
                        }
                        let mut t = totals.lock().unwrap();
                        t.steps += report.steps;
                        t.writes += report.writes;
                        t.oracle_checks += report.oracle_checks;
                        for (k, (n, f)) in report.processes {
                            let e = t.processes.entry(k).or_default();
                            e.0 += n;
                            e.1 += f;
                        }
                        for (k, n) in report.faults {
                            *t.faults.entry(k).or_default() += n;
                        }
                        for (k, n) in report.exercised {
                            *t.exercised.entry(k).or_default() += n;
                        }
                    }
                    Err(failure) => {
                        if opts.verbose {
                            for line in &failure.log {
                                println!("  {line}");
                            }
                        }
                        eprintln!("{failure}");
                        failures.lock().unwrap().push(seed);
                    }
                }
            });
        }
    });
    let t = totals.into_inner().unwrap();
    let failures = failures.into_inner().unwrap();
    println!(
        "{} seeds from {start}: {} steps, {} writes, {} oracle checks",
        seeds, t.steps, t.writes, t.oracle_checks
    );
    println!("processes (run, failed without a crash):");
    for (k, (n, f)) in &t.processes {
        println!("  {k}: {n}, {f}");
    }
    println!("faults injected:");
    for (k, n) in &t.faults {
        println!("  {k}: {n}");
    }
    println!("exercised:");
    for (k, n) in &t.exercised {
        println!("  {k}: {n}");
    }
    if failures.is_empty() {
        println!("no invariant broken");
        std::process::ExitCode::SUCCESS
    } else {
        let mut failures = failures;
        failures.sort();
        println!("{} seeds failed: {failures:?}", failures.len());
        std::process::ExitCode::FAILURE
    }
}
