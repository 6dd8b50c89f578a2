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
    /// This machine, this boot of it and this process's pid namespace,
    /// `<machine id>:<boot id>:<namespace>`: where a pid means something, and where boot clock
    /// readings compare. Empty when unknown.
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
        let id = std::fs::read_to_string("/etc/machine-id")
            .or_else(|_| std::fs::read_to_string("/var/lib/dbus/machine-id"));
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id");
        let ns = std::fs::read_link("/proc/self/ns/pid");
        match (id, boot, ns) {
            (Ok(id), Ok(boot), Ok(ns)) => {
                format!("{}:{}:{}", id.trim(), boot.trim(), ns.display()).into_bytes()
            }
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

/// Whether the process `pid` that wrote `marker_machine` (a `Host::machine`) is certainly gone,
/// as seen from `host`: the same machine has booted since, or it runs in this boot and pid
/// namespace no more. Anything that cannot be told is not gone.
pub(crate) fn process_gone(host: &dyn Host, marker_machine: &[u8], pid: u32) -> bool {
    let here = host.machine();
    match (split(marker_machine), split(&here)) {
        (Some([id, boot, ns]), Some([here_id, here_boot, here_ns]))
            if !id.is_empty() && id == here_id =>
        {
            boot != here_boot || (ns == here_ns && host.process_exists(pid) == Some(false))
        }
        _ => false,
    }
}

/// A `Host::machine` in its three parts: machine id, boot id, pid namespace.
fn split(machine: &[u8]) -> Option<[&[u8]; 3]> {
    let mut parts = machine.splitn(3, |b| *b == b':');
    Some([parts.next()?, parts.next()?, parts.next()?])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host whose only live process is pid 7.
    #[derive(Debug)]
    struct At(&'static str);

    impl Host for At {
        fn wall_clock_ns(&self) -> i64 {
            0
        }
        fn boot_clock(&self) -> Duration {
            Duration::ZERO
        }
        fn machine(&self) -> Vec<u8> {
            self.0.as_bytes().to_vec()
        }
        fn pid(&self) -> u32 {
            1
        }
        fn process_exists(&self, pid: u32) -> Option<bool> {
            Some(pid == 7)
        }
        fn sleep(&self, _: Duration) {}
    }

    #[test]
    fn a_process_is_gone_only_where_that_can_be_told() {
        let here = At("m1:boot2:pid:[40]");
        // Same boot and namespace: the pid tells.
        assert!(process_gone(&here, b"m1:boot2:pid:[40]", 8));
        assert!(!process_gone(&here, b"m1:boot2:pid:[40]", 7));
        // The machine has booted since: whatever ran before is gone.
        assert!(process_gone(&here, b"m1:boot1:pid:[40]", 7));
        // Another pid namespace, another machine, or no machine: cannot be told.
        assert!(!process_gone(&here, b"m1:boot2:pid:[41]", 8));
        assert!(!process_gone(&here, b"m2:boot1:pid:[40]", 8));
        assert!(!process_gone(&here, b"", 8));
        assert!(!process_gone(&At(""), b"m1:boot1:pid:[40]", 8));
        assert!(!process_gone(&here, b":boot1:pid:[40]", 8));
    }
}
