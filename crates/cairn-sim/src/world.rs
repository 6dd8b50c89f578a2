//! The simulated world: one object store, the hosts and their clocks, and the processes that run
//! cairn's own code, each on a thread of its own.
//!
//! Invariant: exactly one process runs at a time. Every storage call and every wait is a *step*
//! that the scheduler grants, and a process runs alone from one step to its next, so the order
//! of all steps, and with it every result, is a function of the seed.

use cairn_backend::{Backend, BackendError, BackendErrorKind, Entry, FileType, Guarantees};
use cairn_repo::Host;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub const SEC: u64 = 1_000_000_000;
pub const MINUTE: u64 = 60 * SEC;
pub const HOUR: u64 = 60 * MINUTE;

/// 2026-06-01T00:00:00Z: where the hosts' wall clocks start, before their skew.
const EPOCH_NS: i64 = 1_780_272_000 * 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    List,
    Read,
    Create,
    Remove,
    Sleep,
}

/// A step a process asks to take.
#[derive(Clone, Debug)]
pub struct Op {
    pub kind: OpKind,
    pub t: FileType,
    pub name: String,
}

impl Op {
    pub fn is_write(&self) -> bool {
        matches!(self.kind, OpKind::Create | OpKind::Remove)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = &self.name[..self.name.len().min(8)];
        write!(f, "{:?} {}/{short}", self.kind, self.t.dir())
    }
}

struct Object {
    bytes: Arc<Vec<u8>>,
    /// When listings start to show it.
    listed_from: u64,
    /// Removed: reads fail at once, listings show it until then.
    listed_until: Option<u64>,
}

/// What the scheduler decided about a process's next write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    No,
    /// Dies before the write takes effect.
    Before,
    /// Dies once the write has taken effect, before it hears so.
    After,
    /// Dies in the middle of a create on a store that writes in place: a prefix of the bytes
    /// stays under the final name (rclone 1.60 serving a local or SFTP remote).
    Torn,
    Dead,
}

#[derive(Clone, Debug)]
pub enum Status {
    Running,
    Waiting { op: Op, not_before: u64 },
    Done,
}

pub struct Proc {
    pub host: usize,
    pub pid: u32,
    pub what: String,
    pub status: Status,
    /// Stopped (SIGSTOP, or its host suspended) until then.
    pub stopped_until: u64,
    pub crash: Crash,
}

impl Proc {
    pub fn alive(&self) -> bool {
        !matches!(self.status, Status::Done) && self.crash != Crash::Dead
    }
}

pub struct HostState {
    /// True time of the last boot: the boot clock counts from it, suspend included.
    pub booted: u64,
    pub boot_id: u64,
    /// Wall clock minus true time: skew, and steps forward and back.
    pub skew: i64,
}

pub struct State {
    /// True time, ns since the simulation began.
    pub now: u64,
    objects: BTreeMap<(&'static str, String), Object>,
    pub procs: Vec<Proc>,
    pub hosts: Vec<HostState>,
    grant: Option<usize>,
    pub guarantees: Guarantees,
    /// Whether a create killed midway leaves a prefix under its final name.
    pub tears: bool,
    /// Set while the create of a process dying with `Crash::Torn` takes effect.
    tearing: bool,
    rng: StdRng,
    /// Storage writes so far.
    pub writes: u64,
    pub log: Vec<String>,
}

impl State {
    pub fn wall_clock_ns(&self, host: usize) -> i64 {
        EPOCH_NS + self.now as i64 + self.hosts[host].skew
    }

    pub fn boot_clock(&self, host: usize) -> Duration {
        Duration::from_nanos(self.now - self.hosts[host].booted)
    }

    pub fn note(&mut self, line: String) {
        let t = self.now as f64 / HOUR as f64;
        self.log.push(format!("[{t:9.4}h] {line}"));
    }

    /// Objects of one type as storage holds them now, whatever listings show.
    pub fn present(&self, t: FileType) -> Vec<(String, Arc<Vec<u8>>)> {
        self.objects
            .iter()
            .filter(|((ty, _), o)| *ty == t.dir() && o.listed_until.is_none())
            .map(|((_, name), o)| (name.clone(), Arc::clone(&o.bytes)))
            .collect()
    }

    fn lag(&mut self) -> u64 {
        let max = self.guarantees.listing_lag.as_nanos() as u64;
        if max == 0 {
            0
        } else {
            self.rng.gen_range(0..=max)
        }
    }

    fn list(&mut self, t: FileType) -> Vec<Entry> {
        let now = self.now;
        self.objects
            .retain(|_, o| o.listed_until.is_none_or(|until| until > now));
        self.objects
            .iter()
            .filter(|((ty, _), o)| *ty == t.dir() && o.listed_from <= now)
            .map(|((_, name), o)| Entry {
                name: name.clone(),
                size: o.bytes.len() as u64,
            })
            .collect()
    }

    fn read(&self, t: FileType, name: &str) -> Result<Arc<Vec<u8>>, BackendError> {
        match self.objects.get(&(t.dir(), name.to_string())) {
            Some(o) if o.listed_until.is_none() => Ok(Arc::clone(&o.bytes)),
            _ => Err(error(
                BackendErrorKind::NotFound,
                format!("{}/{name} not found", t.dir()),
            )),
        }
    }

    fn create(&mut self, t: FileType, name: &str, bytes: Vec<u8>) -> Result<(), BackendError> {
        let key = (t.dir(), name.to_string());
        if self
            .objects
            .get(&key)
            .is_some_and(|o| o.listed_until.is_none())
        {
            return Err(error(
                BackendErrorKind::AlreadyExists,
                format!("{}/{name} exists", t.dir()),
            ));
        }
        self.writes += 1;
        let mut bytes = bytes;
        if self.tearing {
            bytes.truncate(bytes.len() / 2);
        }
        let listed_from = self.now + self.lag();
        self.objects.insert(
            key,
            Object {
                bytes: Arc::new(bytes),
                listed_from,
                listed_until: None,
            },
        );
        Ok(())
    }

    fn remove(&mut self, t: FileType, name: &str) -> Result<(), BackendError> {
        let until = self.now + self.lag();
        match self.objects.get_mut(&(t.dir(), name.to_string())) {
            Some(o) if o.listed_until.is_none() => {
                o.listed_until = Some(until.max(o.listed_from));
                self.writes += 1;
                Ok(())
            }
            _ => Err(error(
                BackendErrorKind::NotFound,
                format!("{}/{name} not found", t.dir()),
            )),
        }
    }

    /// Processes the scheduler may let take their next step now.
    pub fn runnable(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| {
                let p = &self.procs[i];
                match &p.status {
                    Status::Waiting { not_before, .. } => {
                        p.crash == Crash::Dead
                            || (*not_before <= self.now && p.stopped_until <= self.now)
                    }
                    _ => false,
                }
            })
            .collect()
    }

    /// The earliest time a waiting process becomes runnable, if one is waiting.
    pub fn next_wake(&self) -> Option<u64> {
        self.procs
            .iter()
            .filter_map(|p| match &p.status {
                Status::Waiting { not_before, .. } => Some((*not_before).max(p.stopped_until)),
                _ => None,
            })
            .min()
    }

    pub fn pending(&self, i: usize) -> Option<&Op> {
        match &self.procs[i].status {
            Status::Waiting { op, .. } => Some(op),
            _ => None,
        }
    }
}

fn error(kind: BackendErrorKind, message: String) -> BackendError {
    BackendError { kind, message }
}

fn crashed() -> BackendError {
    error(BackendErrorKind::Io, "the process crashed".into())
}

pub struct World {
    state: Mutex<State>,
    changed: Condvar,
}

impl World {
    pub fn new(seed: u64, guarantees: Guarantees) -> Arc<World> {
        Arc::new(World {
            state: Mutex::new(State {
                now: 0,
                objects: BTreeMap::new(),
                procs: Vec::new(),
                hosts: Vec::new(),
                grant: None,
                guarantees,
                // A stream of its own, so that the choice leaves every other draw of the seed
                // as it was.
                tears: StdRng::seed_from_u64(seed ^ 0x7465_6172).gen_bool(0.3),
                tearing: false,
                rng: StdRng::seed_from_u64(seed ^ 0x6c69_7374),
                writes: 0,
                log: Vec::new(),
            }),
            changed: Condvar::new(),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until no process runs: all wait for a step or are done.
    pub fn quiesce(&self) -> MutexGuard<'_, State> {
        let mut st = self.lock();
        while st.procs.iter().any(|p| matches!(p.status, Status::Running)) {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st
    }

    /// Lets process `i` take its step; it runs until its next one.
    pub fn grant(&self, mut st: MutexGuard<'_, State>, i: usize) {
        st.procs[i].status = Status::Running;
        st.grant = Some(i);
        drop(st);
        self.changed.notify_all();
    }

    /// Marks a new process running (its thread starts at once and runs to its first step).
    pub fn add_proc(&self, host: usize, pid: u32, what: String) -> usize {
        let mut st = self.lock();
        st.procs.push(Proc {
            host,
            pid,
            what,
            status: Status::Running,
            stopped_until: 0,
            crash: Crash::No,
        });
        st.procs.len() - 1
    }

    pub fn finish(&self, i: usize) {
        self.lock().procs[i].status = Status::Done;
        self.changed.notify_all();
    }

    /// One step of process `i`: waits for the scheduler, then does `f` on the store alone.
    fn step<T>(
        &self,
        i: usize,
        op: Op,
        not_before: u64,
        f: impl FnOnce(&mut State) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut st = self.lock();
        st.procs[i].status = Status::Waiting { op, not_before };
        self.changed.notify_all();
        while st.grant != Some(i) {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.grant = None;
        match st.procs[i].crash {
            Crash::Dead => Err(crashed()),
            Crash::Before => {
                st.procs[i].crash = Crash::Dead;
                Err(crashed())
            }
            Crash::After => {
                let _ = f(&mut st);
                st.procs[i].crash = Crash::Dead;
                Err(crashed())
            }
            Crash::Torn => {
                st.tearing = true;
                let _ = f(&mut st);
                st.tearing = false;
                st.procs[i].crash = Crash::Dead;
                Err(crashed())
            }
            Crash::No => f(&mut st),
        }
    }
}

/// Storage as one process sees it (`proc: Some`), every call a step; or as it is, for setting
/// up and for the oracle (`proc: None`): no steps, no lag.
#[derive(Clone)]
pub struct SimBackend {
    pub world: Arc<World>,
    pub proc: Option<usize>,
}

impl SimBackend {
    fn call<T>(
        &self,
        kind: OpKind,
        t: FileType,
        name: &str,
        f: impl FnOnce(&mut State) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let op = Op {
            kind,
            t,
            name: name.to_string(),
        };
        match self.proc {
            Some(i) => self.world.step(i, op, 0, f),
            None => f(&mut self.world.lock()),
        }
    }
}

impl Backend for SimBackend {
    fn location(&self) -> String {
        "sim:".into()
    }

    fn guarantees(&self) -> Guarantees {
        let g = self.world.lock().guarantees;
        match self.proc {
            Some(_) => g,
            // The store as it is lags behind nothing.
            None => Guarantees {
                listing_lag: Duration::ZERO,
                ..g
            },
        }
    }

    fn list(&self, t: FileType) -> cairn_backend::Result<Vec<Entry>> {
        if self.proc.is_none() {
            let st = self.world.lock();
            return Ok(st
                .present(t)
                .into_iter()
                .map(|(name, b)| Entry {
                    name,
                    size: b.len() as u64,
                })
                .collect());
        }
        self.call(OpKind::List, t, "", |st| Ok(st.list(t)))
    }

    fn read(&self, t: FileType, name: &str) -> cairn_backend::Result<Vec<u8>> {
        self.call(OpKind::Read, t, name, |st| {
            st.read(t, name).map(|b| b.to_vec())
        })
    }

    fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> cairn_backend::Result<Vec<u8>> {
        self.call(OpKind::Read, t, name, |st| {
            let all = st.read(t, name)?;
            all.get(offset as usize..(offset + len) as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| error(BackendErrorKind::Io, format!("{name} is shorter")))
        })
    }

    fn create(&self, t: FileType, name: &str, bytes: &[u8]) -> cairn_backend::Result<()> {
        self.call(OpKind::Create, t, name, |st| {
            st.create(t, name, bytes.to_vec())
        })
    }

    fn remove(&self, t: FileType, name: &str) -> cairn_backend::Result<()> {
        self.call(OpKind::Remove, t, name, |st| st.remove(t, name))
    }
}

/// A host as one of its processes sees it.
#[derive(Clone)]
pub struct SimHost {
    pub world: Arc<World>,
    pub host: usize,
    pub proc: usize,
}

impl fmt::Debug for SimHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimHost({}, process {})", self.host, self.proc)
    }
}

pub fn machine(st: &State, host: usize) -> Vec<u8> {
    format!(
        "host{host}:{:016x}:pid:[4026531836]",
        st.hosts[host].boot_id
    )
    .into_bytes()
}

impl Host for SimHost {
    fn wall_clock_ns(&self) -> i64 {
        self.world.lock().wall_clock_ns(self.host)
    }

    fn boot_clock(&self) -> Duration {
        self.world.lock().boot_clock(self.host)
    }

    fn machine(&self) -> Vec<u8> {
        machine(&self.world.lock(), self.host)
    }

    fn pid(&self) -> u32 {
        self.world.lock().procs[self.proc].pid
    }

    fn process_exists(&self, pid: u32) -> Option<bool> {
        let st = self.world.lock();
        Some(
            st.procs
                .iter()
                .any(|p| p.host == self.host && p.pid == pid && p.alive()),
        )
    }

    fn sleep(&self, d: Duration) {
        let until = self.world.lock().now + d.as_nanos() as u64;
        let op = Op {
            kind: OpKind::Sleep,
            t: FileType::Lock,
            name: String::new(),
        };
        let _ = self.world.step(self.proc, op, until, |_| Ok(()));
    }
}
