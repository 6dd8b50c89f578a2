//! A deterministic simulation of cairn's garbage-collection protocol (repo-format.md, "Garbage
//! collection"), in the manner of FoundationDB's and TigerBeetle's: backups, prunes (with and
//! without a retention policy), forgets, `repair index`, restores and checks from several
//! hosts run as interleaved steps over an in-memory store, and everything outside the
//! processes comes from one seed:
//!
//! - which process takes the next storage step, and how long each step takes;
//! - each host's wall clock (skewed, and stepped forward and back by hours) and boot clock
//!   (which counts suspended time and restarts at a reboot);
//! - processes stopped for any length of time (SIGSTOP, a sleeping laptop) and hosts suspended
//!   or rebooted;
//! - crashes at any write, before or after it takes effect, or, on a store that writes in place,
//!   midway through a pack's create, leaving half of it under its final name;
//! - listings that lag behind creates and removes, and whether creates are exclusive;
//! - hosts with caches of their own or one shared cache.
//!
//! After every write the oracle checks the invariant: every snapshot restores exactly the
//! files its backup read, and `check` finds nothing wrong. The same seed replays the same run.

mod model;
mod oracle;
mod procs;
mod world;

use cairn_backend::Guarantees;
use cairn_format::key::KdfParams;
use cairn_repo::InitOptions;
use procs::{Cx, Expected, Job};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use world::{Crash, HostState, SimBackend, Status, World, HOUR, MINUTE, SEC};

#[derive(Clone, Debug)]
pub struct Options {
    /// Storage steps to take before the simulation lets every process finish.
    pub steps: usize,
    /// Print the log of every run, not only of failing ones.
    pub verbose: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            steps: 1500,
            verbose: false,
        }
    }
}

/// What one seed's run did.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub steps: usize,
    pub writes: u64,
    pub oracle_checks: u64,
    /// The setting the seed chose: hosts, caches, store guarantees.
    pub setting: String,
    /// Processes run, by kind, and how many failed (crashes apart).
    pub processes: BTreeMap<&'static str, (u64, u64)>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// What the processes exercised: packs condemned and deleted, sessions fenced, ...
    pub exercised: BTreeMap<&'static str, u64>,
    pub log: Vec<String>,
}

/// A broken invariant, or a process that failed where it should not have.
#[derive(Debug)]
pub struct SeedFailure {
    pub seed: u64,
    /// The steps the run was asked for, which the replay must ask for too.
    pub steps: usize,
    pub step: usize,
    pub what: String,
    pub log: Vec<String>,
}

impl std::fmt::Display for SeedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail = &self.log[self.log.len().saturating_sub(60)..];
        writeln!(
            f,
            "seed {} failed at step {}: {}",
            self.seed, self.step, self.what
        )?;
        let steps = if self.steps == Options::default().steps {
            String::new()
        } else {
            format!(" --steps {}", self.steps)
        };
        writeln!(
            f,
            "replay it alone: cargo xtask simulate --seed {}{steps}",
            self.seed
        )?;
        writeln!(f, "last {} events:", tail.len())?;
        for line in tail {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

struct Outcome {
    proc: usize,
    kind: &'static str,
    result: Result<procs::Done, String>,
}

fn kind_of(job: &Job) -> &'static str {
    match job {
        Job::Backup(_) => "backup",
        Job::Prune { keep_last: None } => "prune",
        Job::Prune { keep_last: Some(_) } => "prune --keep-last",
        Job::Forget { .. } => "forget",
        Job::RepairIndex => "repair index",
        Job::Restore { .. } => "restore",
        Job::Check => "check",
    }
}

/// Whether a process may fail this way. A crashed process may fail any way; a backup may
/// refuse to commit when what it stored was deleted under it, with a clear error, and so may a
/// repair of the index whose packs a prune deleted while it ran; restores
/// and checks beside a prune may find a pack deleted under them. Nothing may ever read wrong
/// bytes, and nothing else may fail.
fn failure_allowed(kind: &str, message: &str) -> bool {
    if message.contains("WRONG BYTES") {
        return false;
    }
    match kind {
        "restore" | "check" => true,
        "backup" => message.contains("run the backup again"),
        "repair index" => message.contains("run `cairn repair index` again"),
        _ if std::env::var_os("SIM_OLD").is_some() => {
            message.contains("snapshots/") && message.contains("not found")
        }
        _ => false,
    }
}

struct Sim {
    rng: StdRng,
    world: Arc<World>,
    files: Vec<model::Files>,
    caches: Vec<PathBuf>,
    scratch: PathBuf,
    expected: Expected,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next_pid: u32,
    max_alive: usize,
    /// Steps taken so far.
    step: usize,
    report: Report,
}

pub fn run(seed: u64, opts: &Options) -> Result<Report, SeedFailure> {
    // The setting's own random bytes (repository keys and ids) follow the seed too.
    cairn_crypto::random::seed_this_thread(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let n_hosts = rng.gen_range(1..=3);
    let shared_cache = n_hosts > 1 && rng.gen_bool(0.3);
    let guarantees = Guarantees {
        exclusive_create: rng.gen_bool(0.8),
        listing_lag: if rng.gen_bool(0.3) {
            Duration::from_millis(rng.gen_range(100..5_000))
        } else {
            Duration::ZERO
        },
    };
    let world = World::new(seed, guarantees);
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut caches = Vec::new();
    let mut files = Vec::new();
    {
        let mut st = world.lock();
        for h in 0..n_hosts {
            st.hosts.push(HostState {
                booted: 0,
                boot_id: rng.gen(),
                skew: rng.gen_range(-2 * HOUR as i64..2 * HOUR as i64),
            });
            let cache = if shared_cache && h == 1 { 0 } else { h };
            caches.push(tmp.path().join(format!("cache-{cache}")));
            files.push(model::initial(&mut rng));
        }
    }
    let setting = format!(
        "{n_hosts} hosts{}, exclusive create {}, listing lag up to {:?}{}",
        if shared_cache {
            " (two share a cache)"
        } else {
            ""
        },
        guarantees.exclusive_create,
        guarantees.listing_lag,
        if world.lock().tears {
            ", a killed create leaves a torn object"
        } else {
            ""
        }
    );
    cairn_repo::init(
        &SimBackend {
            world: Arc::clone(&world),
            proc: None,
        },
        procs::PASSWORD,
        &InitOptions {
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            chunk_min: 4 << 10,
            chunk_avg: 8 << 10,
            chunk_max: 16 << 10,
            pack_size: 64 << 10,
            zstd_level: 1,
            ..InitOptions::default()
        },
    )
    .expect("the simulated store takes a new repository");
    // Listings show the new repository once they have caught up with its creation.
    world.lock().now += guarantees.listing_lag.as_nanos() as u64;
    let expected: Expected = Arc::default();
    let mut oracle =
        oracle::Oracle::open(&world, &tmp.path().join("oracle"), Arc::clone(&expected));
    let mut sim = Sim {
        max_alive: rng.gen_range(2..=5),
        rng,
        world: Arc::clone(&world),
        files,
        caches,
        scratch: tmp.path().to_path_buf(),
        expected,
        outcomes: Arc::default(),
        threads: Vec::new(),
        next_pid: 100,
        step: 0,
        report: Report {
            seed,
            setting,
            ..Report::default()
        },
    };
    let grace_passes = GRACE + HOUR;
    let result = sim
        .run(opts.steps, &mut oracle)
        .and_then(|()| sim.settle(grace_passes, &mut oracle));
    // Every process ends before the store goes away; their threads are joined.
    for t in std::mem::take(&mut sim.threads) {
        let _ = t.join();
    }
    let log = std::mem::take(&mut world.lock().log);
    match result {
        Ok(()) => {
            sim.report.log = log;
            Ok(sim.report)
        }
        Err((step, what)) => Err(SeedFailure {
            seed,
            steps: opts.steps,
            step,
            what,
            log,
        }),
    }
}

/// The `--grace` the simulated prunes use, as the command's default.
const GRACE: u64 = 24 * HOUR;

impl Sim {
    /// Once every process has ended, every host prunes, then again once the grace period has
    /// passed, and once more: whatever no snapshot needs must then be gone (garbage
    /// collection is not only safe but also finishes), at least where silent sessions can be
    /// fenced off.
    fn settle(
        &mut self,
        grace_passes: u64,
        oracle: &mut oracle::Oracle,
    ) -> Result<(), (usize, String)> {
        let n_hosts = self.files.len();
        for round in 0..3 {
            for host in 0..n_hosts {
                self.spawn(host, Job::Prune { keep_last: None });
                self.run(0, oracle)?;
            }
            if round == 0 {
                let mut st = self.world.lock();
                st.now += grace_passes;
                st.note("the grace period passes".into());
            }
        }
        if !self.world.lock().guarantees.exclusive_create {
            return Ok(());
        }
        let left = oracle.garbage().map_err(|e| (self.step, e))?;
        if !left.is_empty() {
            return Err((
                self.step,
                format!("garbage left after the final prunes: {left}"),
            ));
        }
        Ok(())
    }

    fn run(&mut self, steps: usize, oracle: &mut oracle::Oracle) -> Result<(), (usize, String)> {
        let mut step = 0;
        let mut checked_writes = u64::MAX;
        let world = Arc::clone(&self.world);
        loop {
            let mut st = world.quiesce();
            if let Err(what) = self.collect_outcomes(&mut st) {
                drop(st);
                self.abandon();
                return Err((self.step, what));
            }
            if st.writes != checked_writes {
                checked_writes = st.writes;
                drop(st);
                self.report.oracle_checks += 1;
                if let Err(what) = oracle.verify() {
                    self.abandon();
                    return Err((self.step, format!("invariant broken: {what}")));
                }
                continue;
            }
            let runnable = st.runnable();
            // A crashed process fails its every step; let it run to its end at once.
            if let Some(&i) = runnable.iter().find(|&&i| st.procs[i].crash == Crash::Dead) {
                world.grant(st, i);
                continue;
            }
            let draining = step >= steps;
            if draining {
                for p in &mut st.procs {
                    p.stopped_until = 0;
                }
            } else if self.rng.gen_bool(0.01) {
                st = self.fault(st);
            }
            let alive = st.procs.iter().filter(|p| p.alive()).count();
            if !draining
                && alive < self.max_alive
                && (runnable.is_empty() || self.rng.gen_bool(0.06))
            {
                drop(st);
                self.spawn_random();
                continue;
            }
            let runnable = st.runnable();
            if runnable.is_empty() {
                match st.next_wake() {
                    Some(t) => {
                        st.now = st.now.max(t);
                        continue;
                    }
                    None if draining => return Ok(()),
                    None => continue,
                }
            }
            let i = runnable[self.rng.gen_range(0..runnable.len())];
            st.now += self.rng.gen_range(SEC / 1000..2 * SEC);
            let op = st.pending(i).cloned().expect("a runnable process waits");
            if !draining && op.is_write() && self.rng.gen_bool(0.03) {
                let when = if self.rng.gen_bool(0.5) {
                    Crash::Before
                } else if st.tears
                    && op.kind == world::OpKind::Create
                    && op.t == cairn_backend::FileType::Pack
                {
                    *self
                        .report
                        .faults
                        .entry("pack torn by a crash")
                        .or_default() += 1;
                    Crash::Torn
                } else {
                    Crash::After
                };
                st.procs[i].crash = when;
                *self.report.faults.entry("crash at a write").or_default() += 1;
                let line = format!("CRASH {:?} {} at {op}", when, st.procs[i].what);
                st.note(line);
            }
            // A process stopped for long right after it wrote a pack: its packs are then not
            // yet named by any index file while prunes go on.
            if !draining
                && op.kind == world::OpKind::Create
                && op.t == cairn_backend::FileType::Pack
                && self.rng.gen_bool(0.05)
            {
                // Half the time beyond the grace period, so that it is fenced off.
                let d = if self.rng.gen_bool(0.5) {
                    self.rng.gen_range(GRACE..GRACE * 5 / 2)
                } else {
                    self.long_duration()
                };
                st.procs[i].stopped_until = st.now + d;
                *self
                    .report
                    .faults
                    .entry("process stopped after a pack")
                    .or_default() += 1;
                let line = format!(
                    "STOP {} after this step for {:.2}h",
                    st.procs[i].what,
                    d as f64 / HOUR as f64
                );
                st.note(line);
            }
            let line = format!("{}: {op}", st.procs[i].what);
            st.note(line);
            step += 1;
            self.step += 1;
            self.report.steps = self.step;
            self.report.writes = st.writes;
            world.grant(st, i);
        }
    }

    /// One fault, chosen by the seed.
    fn fault<'a>(
        &mut self,
        mut st: std::sync::MutexGuard<'a, world::State>,
    ) -> std::sync::MutexGuard<'a, world::State> {
        let alive: Vec<usize> = (0..st.procs.len())
            .filter(|&i| st.procs[i].alive())
            .collect();
        let n_hosts = st.hosts.len();
        let host = self.rng.gen_range(0..n_hosts);
        let (kind, line) = match self.rng.gen_range(0..100) {
            // Time passes with nothing to do: the night between two backups.
            0..=29 => {
                let d = self.rng.gen_range(MINUTE..30 * HOUR);
                st.now += d;
                (
                    "time passes",
                    format!("{:.2}h pass", d as f64 / HOUR as f64),
                )
            }
            30..=59 if !alive.is_empty() => {
                let i = alive[self.rng.gen_range(0..alive.len())];
                let d = self.long_duration();
                st.procs[i].stopped_until = st.now + d;
                (
                    "process stopped",
                    format!(
                        "STOP {} for {:.2}h",
                        st.procs[i].what,
                        d as f64 / HOUR as f64
                    ),
                )
            }
            60..=74 => {
                let d = self.long_duration();
                let until = st.now + d;
                for p in st.procs.iter_mut().filter(|p| p.host == host) {
                    p.stopped_until = p.stopped_until.max(until);
                }
                (
                    "host suspended",
                    format!("SUSPEND host{host} for {:.2}h", d as f64 / HOUR as f64),
                )
            }
            75..=94 => {
                let step = self.rng.gen_range(HOUR as i64..30 * HOUR as i64);
                let step = if self.rng.gen_bool(0.5) { step } else { -step };
                st.hosts[host].skew += step;
                (
                    "wall clock stepped",
                    format!(
                        "CLOCK host{host} wall clock steps {:+.2}h",
                        step as f64 / HOUR as f64
                    ),
                )
            }
            _ => {
                let now = st.now;
                for p in st.procs.iter_mut().filter(|p| p.host == host && p.alive()) {
                    p.crash = Crash::Dead;
                }
                st.hosts[host].booted = now;
                st.hosts[host].boot_id = self.rng.gen();
                ("host rebooted", format!("REBOOT host{host}"))
            }
        };
        *self.report.faults.entry(kind).or_default() += 1;
        st.note(line);
        st
    }

    /// Seconds to days: minutes to hours as often as beyond the grace period.
    fn long_duration(&mut self) -> u64 {
        match self.rng.gen_range(0..10) {
            0..=2 => self.rng.gen_range(SEC..10 * MINUTE),
            3..=6 => self.rng.gen_range(10 * MINUTE..6 * HOUR),
            _ => self.rng.gen_range(6 * HOUR..60 * HOUR),
        }
    }

    fn spawn_random(&mut self) {
        let n_hosts = self.files.len();
        let host = self.rng.gen_range(0..n_hosts);
        let job = match self.rng.gen_range(0..100) {
            0..=39 => {
                model::mutate(&mut self.files[host], &mut self.rng);
                Job::Backup(self.files[host].clone())
            }
            40..=59 => Job::Prune {
                keep_last: self.rng.gen_bool(0.5).then(|| self.rng.gen_range(1..4)),
            },
            60..=67 => Job::Forget {
                keep_last: self.rng.gen_range(1..4),
            },
            68..=74 => Job::RepairIndex,
            75..=89 => Job::Restore {
                pick: self.rng.gen(),
            },
            _ => Job::Check,
        };
        self.spawn(host, job);
    }

    fn spawn(&mut self, host: usize, job: Job) {
        let kind = kind_of(&job);
        self.report.processes.entry(kind).or_default().0 += 1;
        let pid = self.next_pid;
        self.next_pid += 1;
        let what = format!("{kind} #{pid}@host{host}");
        let i = self.world.add_proc(host, pid, what.clone());
        self.world.lock().note(format!("START {what}"));
        let cx = Cx {
            world: Arc::clone(&self.world),
            proc: i,
            host,
            host_name: format!("host{host}"),
            cache_dir: self.caches[host].clone(),
            scratch: self.scratch.clone(),
            expected: Arc::clone(&self.expected),
        };
        let outcomes = Arc::clone(&self.outcomes);
        let seed = self.rng.gen();
        let world = Arc::clone(&self.world);
        self.threads.push(std::thread::spawn(move || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("a thread pool");
            let result = pool.install(|| {
                cairn_crypto::random::seed_this_thread(seed);
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| procs::run(&job, &cx)))
            });
            let result = match result {
                Ok(Ok(done)) => Ok(done),
                Ok(Err(e)) => Err(e.to_string()),
                Err(panic) => Err(format!(
                    "PANIC: {}",
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                )),
            };
            outcomes.lock().unwrap().push(Outcome {
                proc: i,
                kind,
                result,
            });
            world.finish(i);
        }));
    }

    /// Logs the processes that ended; fails on one that failed where it must not.
    fn collect_outcomes(&mut self, st: &mut world::State) -> Result<(), String> {
        for o in std::mem::take(&mut *self.outcomes.lock().unwrap()) {
            let crashed = st.procs[o.proc].crash == Crash::Dead;
            let what = st.procs[o.proc].what.clone();
            match &o.result {
                Ok((done, counts)) => {
                    st.note(format!("END {what}: {done}"));
                    if !crashed {
                        for (k, n) in counts {
                            *self.report.exercised.entry(k).or_default() += n;
                        }
                    }
                }
                Err(e) => {
                    st.note(format!(
                        "FAIL {what}{}: {e}",
                        if crashed { " (crashed)" } else { "" }
                    ));
                    if !crashed {
                        self.report.processes.entry(o.kind).or_default().1 += 1;
                        if e.contains("run the backup again") {
                            *self.report.exercised.entry("backups refused").or_default() += 1;
                        }
                        if e.starts_with("PANIC") || !failure_allowed(o.kind, e) {
                            return Err(format!("{what} failed: {e}"));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends a failed run: every process is crashed and let run to its end.
    fn abandon(&mut self) {
        loop {
            let mut st = self.world.quiesce();
            for p in &mut st.procs {
                if p.alive() {
                    p.crash = Crash::Dead;
                }
            }
            let waiting: Vec<usize> = (0..st.procs.len())
                .filter(|&i| matches!(st.procs[i].status, Status::Waiting { .. }))
                .collect();
            match waiting.first() {
                Some(&i) => self.world.grant(st, i),
                None => return,
            }
        }
    }
}
