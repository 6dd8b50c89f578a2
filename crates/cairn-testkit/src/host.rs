//! `ManualHost`: a machine whose clocks move only when the test moves them, so that what the
//! garbage-collection protocol decides by time is decided by the test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One machine with one process (`pid`), whose wall and boot clocks the test sets. Clones share
/// the clocks, so a test can hold one and move time for a repository that holds another.
#[derive(Clone, Debug)]
pub struct ManualHost {
    pub wall_ns: Arc<Mutex<i64>>,
    pub boot: Arc<Mutex<Duration>>,
    pub pid: u32,
}

impl Default for ManualHost {
    fn default() -> Self {
        ManualHost {
            // 2026-01-01T00:00:00Z: any fixed, plausible time.
            wall_ns: Arc::new(Mutex::new(1_767_225_600_000_000_000)),
            boot: Arc::new(Mutex::new(Duration::from_secs(1000))),
            pid: 1,
        }
    }
}

impl ManualHost {
    /// Another process of the same machine, sharing its clocks.
    pub fn process(&self, pid: u32) -> ManualHost {
        ManualHost {
            pid,
            ..self.clone()
        }
    }

    /// Moves both clocks forward, as time passing does.
    pub fn advance(&self, d: Duration) {
        *self.boot.lock().unwrap() += d;
        *self.wall_ns.lock().unwrap() += d.as_nanos() as i64;
    }

    /// Steps the wall clock alone, as an administrator or NTP does; the boot clock goes on.
    pub fn step_wall(&self, by_ns: i64) {
        *self.wall_ns.lock().unwrap() += by_ns;
    }
}

impl cairn_repo::Host for ManualHost {
    fn wall_clock_ns(&self) -> i64 {
        *self.wall_ns.lock().unwrap()
    }
    fn boot_clock(&self) -> Duration {
        *self.boot.lock().unwrap()
    }
    fn machine(&self) -> Vec<u8> {
        b"machine:boot:pid:[1]".to_vec()
    }
    fn pid(&self) -> u32 {
        self.pid
    }
    fn process_exists(&self, _: u32) -> Option<bool> {
        Some(true)
    }
    /// Sleeping is time passing.
    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}
