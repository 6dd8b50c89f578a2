//! Peak memory and time as the index grows (issue 6, "flat as the repository grows"): builds a
//! repository whose index holds `--blobs N` blobs (10 million by default) reached by one
//! snapshot, then times the release `cairn` binary under GNU time on it: a backup that adds
//! `--add-mib M` MiB (1 GiB by default), `check`, and `prune`.
//!
//! Run with `cargo bench --bench synthetic_index -- [--blobs N] [--add-mib M]`; it prints a
//! Markdown table for BENCHMARKS.md. Blobs are 16 random bytes each, so the repository is
//! about 60 bytes of pack and 45 bytes of index per blob: the index, not the data, is what this
//! measures.

use cairn_backend::LocalBackend;
use cairn_format::key::KdfParams;
use cairn_format::snapshot::{Kind, Snapshot, Summary};
use cairn_format::tree::{FileTime, Node, NodeKind, Tree};
use cairn_format::{BlobType, DataId};
use cairn_repo::{InitOptions, OpenOptions, Repository};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const PASSWORD: &str = "synthetic";
/// Chunks per file and files per directory of the synthetic tree.
const CHUNKS_PER_FILE: usize = 1000;
const FILES_PER_DIR: usize = 100;

fn main() {
    let mut blobs: usize = 10_000_000;
    let mut add_mib: u64 = 1024;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--blobs" => blobs = it.next().and_then(|v| v.parse().ok()).expect("--blobs N"),
            "--add-mib" => add_mib = it.next().and_then(|v| v.parse().ok()).expect("--add-mib M"),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = root.join("target/bench/synthetic");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let repo_dir = work.join("repo");
    let cache = work.join("cache");

    let started = Instant::now();
    build(&repo_dir, &cache, blobs);
    eprintln!(
        "synthetic: {blobs} blobs stored in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "cairn"])
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --release failed");
    let cairn = root.join("target/release/cairn");
    let source = work.join("add");
    write_source(&source, add_mib << 20);

    let rows = [
        (
            "backup adding new data",
            vec!["backup".to_string(), path(&source)],
        ),
        ("check (structure)", vec!["check".into()]),
        ("prune (nothing to delete)", vec!["prune".into()]),
    ];
    println!("\n| step ({blobs} blobs in the index) | wall | CPU | peak RSS |");
    println!("|---|---|---|---|");
    for (name, args) in rows {
        let (wall, cpu, rss) = timed(&cairn, &repo_dir, &cache, &args);
        println!("| {name} | {wall:.2} s | {cpu:.1} s | {} MiB |", rss / 1024);
    }
    let index_bytes: u64 = std::fs::read_dir(repo_dir.join("index"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    println!(
        "\nIndex files: {:.1} MB; source added: {add_mib} MiB.",
        index_bytes as f64 / 1e6
    );
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A repository with `n` data blobs, all reached by one snapshot.
fn build(repo_dir: &Path, cache: &Path, n: usize) {
    let backend = LocalBackend::create_layout(repo_dir).unwrap();
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        },
        ..InitOptions::default()
    };
    cairn_repo::init(&backend, PASSWORD.as_bytes(), &opts).unwrap();
    let repo = Repository::open(
        Box::new(LocalBackend::open(repo_dir)),
        PASSWORD.as_bytes(),
        &OpenOptions {
            cache_dir: Some(cache.to_path_buf()),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let files: Vec<Node> = (0..n.div_ceil(CHUNKS_PER_FILE))
        .into_par_iter()
        .map(|f| {
            let chunks = CHUNKS_PER_FILE.min(n - f * CHUNKS_PER_FILE);
            let content: Vec<DataId> = (0..chunks)
                .map(|c| {
                    let plain = seeded((f * CHUNKS_PER_FILE + c) as u64);
                    let id = repo.blob_id(&plain);
                    repo.save_blob(BlobType::Data, id, &plain).unwrap();
                    DataId(id)
                })
                .collect();
            Node {
                name: format!("f{f:07}").into_bytes(),
                kind: NodeKind::File,
                mode: 0o644,
                mtime: FileTime::from_ns(1_700_000_000_000_000_000),
                size: 16 * chunks as u64,
                content,
                ..Node::default()
            }
        })
        .collect();
    let mut dirs = Vec::new();
    for (d, group) in files.chunks(FILES_PER_DIR).enumerate() {
        let (tree, _) = repo
            .save_tree(&Tree {
                nodes: group.to_vec(),
            })
            .unwrap();
        dirs.push(Node {
            name: format!("d{d:05}").into_bytes(),
            kind: NodeKind::Dir,
            mode: 0o755,
            subtree: Some(tree),
            ..Node::default()
        });
    }
    let (root, _) = repo.save_tree(&Tree { nodes: dirs }).unwrap();
    repo.save_snapshot(&Snapshot {
        time: 1_700_000_000_000_000_000,
        host: b"synthetic".to_vec(),
        user: Vec::new(),
        paths: vec![b"/".to_vec()],
        tags: Vec::new(),
        kind: Kind::Full,
        parent: None,
        tree: root,
        summary: Summary::default(),
        program: b"synthetic_index bench".to_vec(),
    })
    .unwrap();
}

/// 16 bytes that differ for every `i` (splitmix64 twice).
fn seeded(i: u64) -> Vec<u8> {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix(i);
    [a.to_le_bytes(), mix(a).to_le_bytes()].concat()
}

/// `bytes` of incompressible data in 64 MiB files, unlike anything in the repository.
fn write_source(dir: &Path, bytes: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let file_size: u64 = 64 << 20;
    let mut state = 0x5eed_u64;
    for f in 0..bytes.div_ceil(file_size) {
        let len = file_size.min(bytes - f * file_size) as usize;
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            buf.extend_from_slice(&state.to_le_bytes());
        }
        buf.truncate(len);
        std::fs::write(dir.join(format!("big{f:03}")), buf).unwrap();
    }
}

/// Runs `cairn ARGS` on the repository under GNU time: wall s, CPU s, peak RSS KiB.
fn timed(cairn: &Path, repo: &Path, cache: &Path, args: &[String]) -> (f64, f64, u64) {
    let out: PathBuf = repo.with_file_name("time.txt");
    let status = Command::new("/usr/bin/time")
        .arg("-o")
        .arg(&out)
        .args(["-f", "%e %U %S %M"])
        .arg(cairn)
        .arg("-r")
        .arg(repo)
        .args(args)
        .arg("-q")
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_CACHE_DIR", cache)
        .status()
        .expect("/usr/bin/time (Debian package time) is needed");
    assert!(status.success(), "cairn {args:?} failed");
    let text = std::fs::read_to_string(&out).unwrap();
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    (f[0], f[1] + f[2], f[3] as u64)
}
