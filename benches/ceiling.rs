//! The hardware ceiling (issue 6): the single-core throughput of each primitive on cairn's data
//! path, measured on real bytes, and the rates those imply for backup, restore and
//! `check --read-data` on this machine's cores. `cargo xtask bench` runs it on corpus C1 and
//! writes the numbers to BENCHMARKS.md beside cairn's measured times.
//!
//! Run with `cargo bench --bench ceiling -- --data DIR [--mib 256] [--json]`. It reads the regular
//! files under DIR (a sorted walk) into memory until it holds N MiB, cuts them file by file with
//! cairn's default chunker, and times each primitive on the calling thread as cairn applies it,
//! the best of 3 passes over all the data in the thread's CPU time (so a busy machine preempting
//! it does not count against it); one Argon2id derivation (opening a key file with the default
//! parameters) is timed by the clock instead. With `--json` it prints one JSON object on stdout;
//! everything else goes to stderr.
//!
//! What each command does per byte (read from cairn-engine and cairn-repo):
//! - backup: chunk, keyed BLAKE3 of each chunk, zstd, seal the payload, SHA-256 of each pack
//!   (`FullPack::assemble`, which names the pack by it).
//! - restore: open, decompress and BLAKE3-verify each blob (`decode_blob`); packs are read by
//!   range, so their SHA-256 is not checked.
//! - check --read-data: SHA-256 of each whole pack (`Repository::read_pack`), then open,
//!   decompress and BLAKE3-verify every blob in it.
//!
//! A pipeline's cost is the sum of its primitives' costs per byte of plaintext, each 1 / rate;
//! seal, open and SHA-256 work on the stored bytes, `ratio` of the plaintext, so their costs are
//! multiplied by it. The implied rates assume every core is busy with nothing but these
//! primitives: no I/O, no system calls, no copies, no waiting. That is a ceiling, not a forecast.

#[path = "common.rs"]
mod common;

use cairn_crypto::{
    create_key_file, encode_blob, file_id, open, open_key_file, seal, MasterKeys, BLOB_OVERHEAD,
};
use cairn_format::{BlobId, BlobType};
use cairn_repo::InitOptions;
use common::Sample;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

const PASSES: usize = 3;
const PASSWORD: &[u8] = b"ceiling";

struct Args {
    data: PathBuf,
    mib: usize,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut data = None;
    let mut mib = 256;
    let mut json = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--data" => data = Some(PathBuf::from(it.next().ok_or("--data needs a directory")?)),
            "--mib" => {
                mib = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--mib needs a number above 0")?
            }
            "--json" => json = true,
            // cargo bench passes --bench.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        data: data.ok_or("--data DIR is required")?,
        mib,
        json,
    })
}

/// Single-core rates in bytes per second, each of the bytes that primitive processes.
struct Rates {
    /// Plaintext, file by file.
    chunking: f64,
    /// Plaintext, chunk by chunk.
    blake3: f64,
    /// Plaintext in.
    compress: f64,
    /// Plaintext out: compressed blobs decompressed with one reused context, raw ones copied,
    /// as `decode_blob` does.
    decompress: f64,
    /// Stored payloads sealed.
    seal: f64,
    /// Stored payloads opened.
    open: f64,
    /// Stored bytes, pack by pack.
    sha256: f64,
    /// Stored bytes (payload and `BLOB_OVERHEAD`) over plaintext bytes, as `encode_blob` stores.
    ratio: f64,
    /// One Argon2id derivation with the default parameters, wall seconds (opening a key file).
    kdf_seconds: f64,
}

impl Rates {
    /// For each command: the prefix of its JSON keys, its name, and its seconds of CPU per
    /// byte of plaintext.
    fn pipelines(&self) -> [(&'static str, &'static str, f64); 3] {
        let r = self.ratio;
        [
            (
                "backup",
                "backup",
                1.0 / self.chunking
                    + 1.0 / self.blake3
                    + 1.0 / self.compress
                    + r / self.seal
                    + r / self.sha256,
            ),
            (
                "restore",
                "restore",
                r / self.open + 1.0 / self.decompress + 1.0 / self.blake3,
            ),
            (
                "check_read_data",
                "check --read-data",
                r / self.sha256 + r / self.open + 1.0 / self.decompress + 1.0 / self.blake3,
            ),
        ]
    }
}

/// CPU time of the calling thread. A cost per byte is CPU time, and time the thread spends
/// preempted (2 cores, and a compiler may be running) is not the primitive's.
fn thread_cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// The fastest of `PASSES` runs of `pass`, in seconds of this thread's CPU time.
fn best(mut pass: impl FnMut()) -> f64 {
    (0..PASSES)
        .map(|_| {
            let started = thread_cpu();
            pass();
            thread_cpu() - started
        })
        .fold(f64::INFINITY, f64::min)
}

fn measure(sample: &Sample, chunks: &[&[u8]], keys: &MasterKeys) -> Rates {
    let opts = InitOptions::default();
    let plain = sample.bytes.len() as f64;
    let chunker = common::default_chunker(keys);

    eprintln!("ceiling: chunking");
    let chunking = plain
        / best(|| {
            for file in &sample.files {
                black_box(
                    chunker
                        .chunks(black_box(&sample.bytes[file.clone()]))
                        .count(),
                );
            }
        });

    eprintln!("ceiling: keyed BLAKE3");
    let blake3 = plain
        / best(|| {
            for chunk in chunks {
                black_box(keys.blob_id(black_box(chunk)));
            }
        });

    eprintln!("ceiling: zstd level {} compress", opts.zstd_level);
    let mut compressor = zstd::bulk::Compressor::new(opts.zstd_level).unwrap();
    let compress = plain
        / best(|| {
            for chunk in chunks {
                black_box(compressor.compress(black_box(chunk)).unwrap());
            }
        });

    // What cairn stores for each chunk: `encode_blob` keeps the compressed form only where it
    // pays, so its length says which form each blob takes.
    let mut stored_bytes = 0usize;
    let payloads: Vec<(Vec<u8>, bool)> = chunks
        .iter()
        .map(|chunk| {
            let blob = BlobId {
                kind: BlobType::Data,
                id: keys.blob_id(chunk),
            };
            let stored = encode_blob(keys, &blob, chunk, opts.zstd_level).len();
            stored_bytes += stored;
            if stored < chunk.len() + BLOB_OVERHEAD {
                let z = compressor.compress(chunk).unwrap();
                assert_eq!(
                    z.len() + BLOB_OVERHEAD,
                    stored,
                    "the bench's zstd settings differ from encode_blob's"
                );
                (z, true)
            } else {
                (chunk.to_vec(), false)
            }
        })
        .collect();
    let payload_bytes: usize = payloads.iter().map(|p| p.0.len()).sum();

    eprintln!("ceiling: zstd decompress");
    // One context for all blobs, as `decode_blob` keeps one per thread.
    let mut decompressor = zstd::bulk::Decompressor::new().unwrap();
    let decompress = plain
        / best(|| {
            for (chunk, (payload, compressed)) in chunks.iter().zip(&payloads) {
                if *compressed {
                    black_box(decompressor.decompress(payload, chunk.len()).unwrap());
                } else {
                    black_box(payload.to_vec());
                }
            }
        });

    eprintln!("ceiling: XChaCha20-Poly1305");
    // The associated data of a blob: its type and id, 33 bytes.
    let ad = [1u8; 33];
    let seal_rate = payload_bytes as f64
        / best(|| {
            for (payload, _) in &payloads {
                black_box(seal(&keys.data, &ad, black_box(payload)));
            }
        });
    let sealed: Vec<Vec<u8>> = payloads
        .iter()
        .map(|(p, _)| seal(&keys.data, &ad, p))
        .collect();
    let open_rate = payload_bytes as f64
        / best(|| {
            for s in &sealed {
                black_box(open(&keys.data, &ad, black_box(s), "blob").unwrap());
            }
        });

    eprintln!("ceiling: SHA-256");
    let mut packs: Vec<Vec<u8>> = vec![Vec::new()];
    for s in &sealed {
        let last = packs.last_mut().unwrap();
        last.extend_from_slice(s);
        if last.len() >= opts.pack_size as usize {
            packs.push(Vec::new());
        }
    }
    let pack_bytes: usize = packs.iter().map(Vec::len).sum();
    let sha256 = pack_bytes as f64
        / best(|| {
            for pack in &packs {
                black_box(file_id(black_box(pack)));
            }
        });

    eprintln!("ceiling: Argon2id");
    let key_file = create_key_file(keys, PASSWORD, opts.kdf, 0, b"", b"").unwrap();
    // Wall time, unlike the rest: a derivation with several lanes may compute them on several
    // threads, and what a command waits for is the elapsed time.
    let kdf_seconds = (0..PASSES)
        .map(|_| {
            let started = Instant::now();
            black_box(open_key_file(&key_file, PASSWORD).unwrap());
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);

    Rates {
        chunking,
        blake3,
        compress,
        decompress,
        seal: seal_rate,
        open: open_rate,
        sha256,
        ratio: stored_bytes as f64 / plain,
        kdf_seconds,
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "ceiling: {e}\nusage: cargo bench --bench ceiling -- --data DIR [--mib N] [--json]"
            );
            std::process::exit(2);
        }
    };
    let mut corpus_bytes = 0u64;
    let mut corpus_files = 0u64;
    common::for_each_file(&args.data, &mut |_, len| {
        corpus_bytes += len;
        corpus_files += 1;
        true
    });
    let sample = Sample::read(&args.data, args.mib << 20, usize::MAX);
    if sample.bytes.is_empty() {
        eprintln!(
            "ceiling: no regular files to read under {}",
            args.data.display()
        );
        std::process::exit(1);
    }
    let keys = MasterKeys::random();
    let chunks = sample.chunks(&common::default_chunker(&keys));
    eprintln!(
        "ceiling: {:.1} MiB of {} in memory: {} files, {} chunks",
        sample.bytes.len() as f64 / (1 << 20) as f64,
        args.data.display(),
        sample.files.len(),
        chunks.len()
    );
    let rates = measure(&sample, &chunks, &keys);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kdf = InitOptions::default().kdf;

    // Rate on every core, and time for the whole directory with and without the one key
    // derivation each command makes when it opens the repository.
    let implied: Vec<(&str, &str, f64, f64, f64)> = rates
        .pipelines()
        .into_iter()
        .map(|(key, name, cost)| {
            let seconds = corpus_bytes as f64 * cost / cores as f64;
            (key, name, cost, cores as f64 / cost, seconds)
        })
        .collect();

    if args.json {
        let mut out = serde_json::json!({
            "data_dir": args.data.display().to_string(),
            "sample_bytes": sample.bytes.len(),
            "sample_files": sample.files.len(),
            "sample_chunks": chunks.len(),
            "corpus_bytes": corpus_bytes,
            "corpus_files": corpus_files,
            "cores": cores,
            "passes": PASSES,
            "zstd_level": InitOptions::default().zstd_level,
            "kdf_memory_kib": kdf.memory_kib,
            "kdf_iterations": kdf.iterations,
            "kdf_parallelism": kdf.parallelism,
            "chunking_mbps": rates.chunking / 1e6,
            "blake3_mbps": rates.blake3 / 1e6,
            "zstd_compress_mbps": rates.compress / 1e6,
            "stored_ratio": rates.ratio,
            "zstd_decompress_mbps": rates.decompress / 1e6,
            "seal_mbps": rates.seal / 1e6,
            "open_mbps": rates.open / 1e6,
            "sha256_mbps": rates.sha256 / 1e6,
            "argon2id_seconds": rates.kdf_seconds,
        });
        let map = out.as_object_mut().unwrap();
        for (key, _, cost, rate, seconds) in &implied {
            map.insert(format!("{key}_ns_per_byte"), (cost * 1e9).into());
            map.insert(format!("{key}_mbps"), (rate / 1e6).into());
            map.insert(format!("{key}_seconds"), (*seconds).into());
            map.insert(
                format!("{key}_seconds_with_kdf"),
                (seconds + rates.kdf_seconds).into(),
            );
        }
        println!("{out}");
        return;
    }

    let row = |what: &str, value: String| println!("{what:<58} {value:>12}");
    println!(
        "One thread, best of {PASSES} passes (thread CPU time) over {:.1} MiB of {} ({} files, {} chunks).",
        sample.bytes.len() as f64 / (1 << 20) as f64,
        args.data.display(),
        sample.files.len(),
        chunks.len()
    );
    println!("MB/s are decimal, of plaintext except where the stored bytes are named.\n");
    let mbps = |r: f64| format!("{:.0} MB/s", r / 1e6);
    row(
        "FastCDC chunking, file by file, default sizes",
        mbps(rates.chunking),
    );
    row("keyed BLAKE3 blob id, per chunk", mbps(rates.blake3));
    row(
        &format!(
            "zstd level {} compress, per chunk",
            InitOptions::default().zstd_level
        ),
        mbps(rates.compress),
    );
    row(
        "  stored / plaintext bytes, as encode_blob stores them",
        format!("{:.3}", rates.ratio),
    );
    row("zstd decompress (raw blobs copied)", mbps(rates.decompress));
    row(
        "XChaCha20-Poly1305 seal, of the stored payloads",
        mbps(rates.seal),
    );
    row(
        "XChaCha20-Poly1305 open, of the stored payloads",
        mbps(rates.open),
    );
    row("SHA-256 of the stored bytes, per pack", mbps(rates.sha256));
    row(
        &format!(
            "Argon2id, {} MiB, {} passes, {} lanes: one derivation, wall",
            kdf.memory_kib / 1024,
            kdf.iterations,
            kdf.parallelism
        ),
        format!("{:.3} s", rates.kdf_seconds),
    );
    println!(
        "\nPer plaintext byte, with r the stored/plaintext ratio and each primitive costing \
         1 / its rate:\n  backup = chunking + BLAKE3 + compress + r x (seal + SHA-256)\n  \
         restore = r x open + decompress + BLAKE3\n  check --read-data = r x (SHA-256 + open) \
         + decompress + BLAKE3\nOn {cores} cores the rate is {cores} / cost; the time for the \
         {:.1} MB under {} is bytes x cost / {cores}, plus one key derivation.\n",
        corpus_bytes as f64 / 1e6,
        args.data.display()
    );
    println!(
        "{:<20} {:>12} {:>16} {:>12} {:>14}",
        "pipeline",
        "cost",
        format!("on {cores} cores"),
        "time",
        "with the KDF"
    );
    for (_, name, cost, rate, seconds) in &implied {
        println!(
            "{name:<20} {:>12} {:>16} {:>12} {:>14}",
            format!("{:.2} ns/B", cost * 1e9),
            mbps(*rate),
            format!("{seconds:.2} s"),
            format!("{:.2} s", seconds + rates.kdf_seconds)
        );
    }
}
