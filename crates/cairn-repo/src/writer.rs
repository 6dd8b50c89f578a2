//! Pack files are written on threads of their own, so the worker that filled a pack goes back to
//! compressing while the pack is written and made durable: an fsync (or, on a remote backend,
//! an upload) takes longer than filling the next pack. A local directory gets one writer; a
//! remote one a few, so that each upload's round trips (a look, the answer after the last
//! byte) overlap another's transfer instead of leaving the link idle.
//!
//! Invariant: a pack's write is reported back (`take_done`) only once `Backend::create` has
//! returned, so what the repository learns from it (the pack's blobs in the session, an index
//! file naming it) always follows the pack's durability.

use crate::Result;
use cairn_backend::{Backend, FileType};
use cairn_format::index::IndexPack;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Finished writes, and how many are still on their way.
#[derive(Default)]
struct Progress {
    done: Vec<Result<IndexPack>>,
    in_flight: usize,
}

#[derive(Default)]
struct Shared {
    progress: Mutex<Progress>,
    idle: Condvar,
    /// A write failed: nothing more is written (the command is failing, and a pack no index
    /// will name only wastes space).
    failed: AtomicBool,
}

/// A pack's index entry and its parts.
type AssembledPack = (IndexPack, Vec<Vec<u8>>);

/// Where packs go, and the threads that write them.
type Writers = (SyncSender<AssembledPack>, Vec<JoinHandle<()>>);

#[derive(Default)]
pub struct PackWriter {
    running: Mutex<Option<Writers>>,
    shared: Arc<Shared>,
    /// Write on the caller's thread instead: a deterministic simulation runs each process on
    /// one thread, so that the order of its storage calls is a function of its seed.
    inline: bool,
    /// Writer threads: packs written at once.
    writers: usize,
}

impl PackWriter {
    pub fn new(inline: bool, writers: usize) -> PackWriter {
        PackWriter {
            inline,
            writers: writers.max(1),
            ..PackWriter::default()
        }
    }

    /// Hands a pack's bytes to a writer thread, started on first use. Blocks while every
    /// writer is busy, which bounds the packs in memory to one per writer and the one being
    /// filled.
    pub fn send(&self, backend: &Arc<dyn Backend>, entry: IndexPack, parts: Vec<Vec<u8>>) {
        if self.inline {
            self.shared.progress.lock().unwrap().in_flight += 1;
            finish(&self.shared, write(backend.as_ref(), entry, &parts));
            return;
        }
        let tx = {
            let mut running = self.running.lock().unwrap();
            let (tx, _) = running
                .get_or_insert_with(|| start(Arc::clone(backend), &self.shared, self.writers));
            tx.clone()
        };
        self.shared.progress.lock().unwrap().in_flight += 1;
        if let Err(failed) = tx.send((entry, parts)) {
            let (entry, _) = failed.0;
            finish(&self.shared, Err(not_written(&entry, "the writer stopped")));
        }
    }

    /// The packs written since the last call, in the order they finished.
    pub fn take_done(&self) -> Vec<Result<IndexPack>> {
        std::mem::take(&mut self.shared.progress.lock().unwrap().done)
    }

    /// Waits until every pack sent so far is written (or has failed).
    pub fn wait_idle(&self) {
        let mut progress = self.shared.progress.lock().unwrap();
        while progress.in_flight > 0 {
            progress = self.shared.idle.wait(progress).unwrap();
        }
    }

    /// Lets the threads finish what they were given, then ends them.
    pub fn stop(&self) {
        if let Some((tx, threads)) = self.running.lock().unwrap().take() {
            drop(tx);
            for thread in threads {
                let _ = thread.join();
            }
        }
    }
}

fn finish(shared: &Shared, written: Result<IndexPack>) {
    let mut progress = shared.progress.lock().unwrap();
    progress.done.push(written);
    progress.in_flight -= 1;
    shared.idle.notify_all();
}

fn start(backend: Arc<dyn Backend>, shared: &Arc<Shared>, writers: usize) -> Writers {
    let (tx, rx) = sync_channel::<AssembledPack>(0);
    let rx = Arc::new(Mutex::new(rx));
    let threads = (0..writers)
        .map(|_| {
            let (shared, rx, backend) = (Arc::clone(shared), Arc::clone(&rx), Arc::clone(&backend));
            std::thread::spawn(move || loop {
                // The lock is held only while waiting for the next pack, never while writing.
                let Ok((entry, parts)) = rx.lock().unwrap().recv() else {
                    return;
                };
                let written = if shared.failed.load(Ordering::SeqCst) {
                    Err(not_written(&entry, "an earlier pack failed"))
                } else {
                    write(backend.as_ref(), entry, &parts)
                };
                if written.is_err() {
                    shared.failed.store(true, Ordering::SeqCst);
                }
                drop(parts);
                finish(&shared, written);
            })
        })
        .collect();
    (tx, threads)
}

fn write(backend: &dyn Backend, entry: IndexPack, parts: &[Vec<u8>]) -> Result<IndexPack> {
    // A panic must be reported too, or `wait_idle` would wait for ever.
    let name = entry.id.to_hex();
    match catch_unwind(AssertUnwindSafe(|| {
        let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        backend.create_parts(FileType::Pack, &name, &slices)
    })) {
        Ok(Ok(())) => Ok(entry),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(not_written(&entry, "the writer panicked")),
    }
}

fn not_written(entry: &IndexPack, why: &str) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::Io,
        format!("pack {} was not written: {why}", entry.id.short()),
    )
}
