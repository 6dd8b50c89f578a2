//! `init`: create a repository.

use crate::args::{Cli, InitArgs};
use crate::open::{hostname, location, max_kdf_mib, password_source, reach, username};
use crate::{invalid, time};
use anyhow::Result;
use cairn_format::key::KdfParams;
use cairn_repo::InitOptions;
use serde_json::json;

/// The key derivation of a new key file: the defaults, with `--kdf-memory/--kdf-iterations`.
/// Refused (exit 2) when invalid, or when this client would skip such a key when opening.
pub(crate) fn new_kdf(
    cli: &Cli,
    memory: Option<u32>,
    iterations: Option<u32>,
) -> Result<KdfParams> {
    let defaults = InitOptions::default();
    let kdf = KdfParams {
        memory_kib: memory.unwrap_or(defaults.kdf.memory_kib),
        iterations: iterations.unwrap_or(defaults.kdf.iterations),
        parallelism: defaults.kdf.parallelism,
    };
    kdf.validate()
        .map_err(|e| invalid(format!("--kdf-memory/--kdf-iterations: {e}")))?;
    // A key this client would skip when opening makes a key that does not open.
    if kdf.cost_mib() > max_kdf_mib(cli) {
        return Err(invalid(format!(
                "--kdf-memory/--kdf-iterations: the key would cost {} MiB·passes, over the limit of {} (raise it with --max-kdf-mib or CAIRN_MAX_KDF_MIB)",
                kdf.cost_mib(),
                max_kdf_mib(cli)
            ),
        ));
    }
    Ok(kdf)
}

pub(crate) fn init(cli: &Cli, a: &InitArgs) -> Result<u8> {
    let kdf = new_kdf(cli, a.kdf_memory, a.kdf_iterations)?;
    let location = location(cli)?;
    // Before the password is asked for: a second init is a mistake to name at once.
    if location.has_repository(reach(cli))? {
        anyhow::bail!("a repository already exists at {location}");
    }
    let opts = InitOptions {
        kdf,
        chunk_min: a.chunk_size << 9,
        chunk_avg: a.chunk_size << 10,
        chunk_max: a.chunk_size << 13,
        // At most 1024 MiB (clap checks), so the product fits a u32.
        pack_size: a.pack_size << 20,
        zstd_level: a.compression,
        host: hostname().into_bytes(),
        user: username().into_bytes(),
        now_ns: time::now_ns(),
    };
    let pw = password_source(cli).get(true)?;
    let backend = location.create(reach(cli))?;
    let config = cairn_repo::init(backend.as_ref(), &pw, &opts)?;
    if a.json {
        let doc = json!({
            "location": location.to_string(),
            "repository_id": config.repo_id.to_hex(),
            "chunk_min": config.chunk_min,
            "chunk_avg": config.chunk_avg,
            "chunk_max": config.chunk_max,
            "pack_size": config.pack_size,
            "compression": config.zstd_level,
            "kdf": {
                "memory_kib": kdf.memory_kib,
                "iterations": kdf.iterations,
                "parallelism": kdf.parallelism,
            },
        });
        println!("{doc}");
    } else if !cli.quiet {
        println!("created repository at {location}");
        println!("keep the password safe: without it the data cannot be recovered");
    }
    Ok(0)
}
