//! What the repository needs of the machine it runs on, beyond storage: clocks, which process
//! and which boot it is, whether another local process still runs, and waiting.
//!
//! Everything here comes from outside the process, so it is a trait: `SystemHost` asks the
//! kernel, and the deterministic simulation (crates/cairn-sim) injects skewed and stepped
//! clocks, suspends and reboots. Invariant: no decision that can lose data rests on a reading
//! of these clocks (repo-format.md, "Garbage collection"); they only decide when space is freed.

use std::fmt::Debug;
use std::time::Duration;

pub trait Host: Send + Sync + Debug {
    /// Wall-clock time, ns since the Unix epoch: what snapshots and key files record.
    fn wall_clock_ns(&self) -> i64;
    /// Time since this machine booted, time spent suspended included (`CLOCK_BOOTTIME`).
    /// Readings compare only within one `machine()`.
    fn boot_clock(&self) -> Duration;
    /// This boot of this machine and this process's pid namespace, `<boot id>:<namespace>`:
    /// where a pid means something. Empty when unknown.
    fn machine(&self) -> Vec<u8>;
    fn pid(&self) -> u32;
    /// Whether process `pid` of this `machine()` exists; `None` when that cannot be told.
    fn process_exists(&self, pid: u32) -> Option<bool>;
    fn sleep(&self, d: Duration);
}

/// The machine this process runs on. `shift` moves both clocks forward, as if that much time
/// had passed: tests use it (through `CAIRN_TEST_CLOCK_SHIFT`) to run commands hours apart.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemHost {
    pub shift: Duration,
}

impl Host for SystemHost {
    fn wall_clock_ns(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (now + self.shift).as_nanos() as i64
    }

    fn boot_clock(&self) -> Duration {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32) + self.shift
    }

    fn machine(&self) -> Vec<u8> {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id");
        let ns = std::fs::read_link("/proc/self/ns/pid");
        match (boot, ns) {
            (Ok(boot), Ok(ns)) => format!("{}:{}", boot.trim(), ns.display()).into_bytes(),
            _ => Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        rustix::process::getpid().as_raw_nonzero().get() as u32
    }

    fn process_exists(&self, pid: u32) -> Option<bool> {
        let pid = rustix::process::Pid::from_raw(pid as i32)?;
        match rustix::process::test_kill_process(pid) {
            Ok(()) => Some(true),
            Err(e) if e == rustix::io::Errno::SRCH => Some(false),
            // EPERM: it exists, owned by someone else.
            Err(_) => Some(true),
        }
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}
