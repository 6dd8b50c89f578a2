//! Pack files are written on a thread of their own, so the worker that filled a pack goes back to
//! compressing while the pack is written and made durable: an fsync (or, on a remote backend,
//! an upload) takes longer than filling the next pack.
//!
//! Invariant: a pack's write is reported back (`take_done`) only once `Backend::create` has
//! returned, so what the repository learns from it (the pack's blobs in the session, an index
//! file naming it) always follows the pack's durability.

use crate::Result;
use cairn_backend::{Backend, FileType};
use cairn_format::index::IndexPack;
use std::panic::{catch_unwind, AssertUnwindSafe};
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
}

/// A pack's index entry and its parts.
type AssembledPack = (IndexPack, Vec<Vec<u8>>);

#[derive(Default)]
pub struct PackWriter {
    running: Mutex<Option<(SyncSender<AssembledPack>, JoinHandle<()>)>>,
    shared: Arc<Shared>,
    /// Write on the caller's thread instead: a deterministic simulation runs each process on
    /// one thread, so that the order of its storage calls is a function of its seed.
    inline: bool,
}

impl PackWriter {
    pub fn new(inline: bool) -> PackWriter {
        PackWriter {
            inline,
            ..PackWriter::default()
        }
    }

    /// Hands a pack's bytes to the writer thread, started on first use. Blocks while the writer
    /// is busy with the pack before, which bounds the packs in memory.
    pub fn send(&self, backend: &Arc<dyn Backend>, entry: IndexPack, parts: Vec<Vec<u8>>) {
        if self.inline {
            self.shared.progress.lock().unwrap().in_flight += 1;
            finish(&self.shared, write(backend.as_ref(), entry, &parts));
            return;
        }
        let tx = {
            let mut running = self.running.lock().unwrap();
            let (tx, _) = running.get_or_insert_with(|| start(Arc::clone(backend), &self.shared));
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

    /// Lets the thread finish what it was given, then ends it.
    pub fn stop(&self) {
        if let Some((tx, thread)) = self.running.lock().unwrap().take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

fn finish(shared: &Shared, written: Result<IndexPack>) {
    let mut progress = shared.progress.lock().unwrap();
    progress.done.push(written);
    progress.in_flight -= 1;
    shared.idle.notify_all();
}

fn start(
    backend: Arc<dyn Backend>,
    shared: &Arc<Shared>,
) -> (SyncSender<AssembledPack>, JoinHandle<()>) {
    let (tx, rx) = sync_channel::<AssembledPack>(0);
    let shared = Arc::clone(shared);
    let thread = std::thread::spawn(move || {
        // After a failed write nothing more is written: the command is failing, and a pack no
        // index will name only wastes space.
        let mut failed = false;
        for (entry, parts) in rx {
            let written = if failed {
                Err(not_written(&entry, "an earlier pack failed"))
            } else {
                write(backend.as_ref(), entry, &parts)
            };
            failed |= written.is_err();
            drop(parts);
            finish(&shared, written);
        }
    });
    (tx, thread)
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
