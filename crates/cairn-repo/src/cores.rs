//! Independent pieces of work shared out to every core.
//!
//! Invariant: each item is handed to exactly one thread, and the first error stops nothing
//! already running but is the one returned.

use crate::Result;
use std::sync::Mutex;

/// Runs `f` on each of `items`, on as many threads as there are cores, each taking the next
/// item when done with one; returns what `f` returned, in no particular order.
pub(crate) fn on_every_core<T: Send, R: Send>(
    items: Vec<T>,
    f: impl Fn(T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let items = Mutex::new(items);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let work = || -> Result<Vec<R>> {
        let mut out = Vec::new();
        loop {
            let item = items.lock().unwrap().pop();
            let Some(item) = item else {
                return Ok(out);
            };
            out.push(f(item)?);
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().expect("a worker thread panicked")?);
        }
        Ok(all)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, ErrorKind};

    #[test]
    fn every_item_is_done_once_and_an_error_is_returned() {
        let mut done = on_every_core((0..1000u64).collect(), |i| Ok(i * 2)).unwrap();
        done.sort();
        assert_eq!(done, (0..1000u64).map(|i| i * 2).collect::<Vec<_>>());
        let err = on_every_core((0..100u64).collect(), |i| {
            if i == 37 {
                Err(Error::new(ErrorKind::Io, "item 37"))
            } else {
                Ok(i)
            }
        })
        .unwrap_err();
        assert_eq!(err.message, "item 37");
    }
}
