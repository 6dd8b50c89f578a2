//! Hooks through which end-to-end tests drive the real binary: crash it before its N-th storage
//! write (`CAIRN_TEST_CRASH_AFTER`), or move its clocks (`CAIRN_TEST_CLOCK_SHIFT`).
//!
//! Invariant: without the `test-hooks` feature, which only the workspace's tests turn on, the
//! hooks are compiled out, variable names and all, so no environment can make a user's `cairn`
//! abort or misread time.

use crate::Backend;

/// How far a test moves this process's clocks forward, as given (a duration like `25h`).
pub fn clock_shift() -> Option<String> {
    #[cfg(feature = "test-hooks")]
    if let Some(s) = std::env::var_os("CAIRN_TEST_CLOCK_SHIFT") {
        return Some(s.to_string_lossy().into_owned());
    }
    None
}

/// `backend`, wrapped to crash before its N-th write when a test asks for it.
pub fn wrap(backend: Box<dyn Backend>) -> Result<Box<dyn Backend>, String> {
    #[cfg(feature = "test-hooks")]
    if let Some(n) = std::env::var_os("CAIRN_TEST_CRASH_AFTER") {
        let n: u64 = n
            .to_str()
            .and_then(|n| n.parse().ok())
            .ok_or("CAIRN_TEST_CRASH_AFTER must be a number of writes")?;
        return Ok(Box::new(crate::CrashAfter::new(backend, n)));
    }
    Ok(backend)
}
