//! `init`: create a repository.

use crate::args::{Cli, InitArgs};
use crate::open::{hostname, max_kdf_mib, password_source, repo_path, username};
use crate::{exit, time, Exit};
use anyhow::Result;
use cairn_repo::{InitOptions, KdfParams, LocalBackend};

pub(crate) fn init(cli: &Cli, a: &InitArgs) -> Result<u8> {
    let defaults = InitOptions::default();
    let kdf = KdfParams {
        memory_kib: a.kdf_memory.unwrap_or(defaults.kdf.memory_kib),
        iterations: a.kdf_iterations.unwrap_or(defaults.kdf.iterations),
        parallelism: defaults.kdf.parallelism,
    };
    kdf.validate()
        .map_err(|e| Exit(exit::USAGE, format!("--kdf-memory/--kdf-iterations: {e}")))?;
    // A key this client would skip when opening makes a repository it cannot open.
    if kdf.cost_mib() > max_kdf_mib(cli) {
        return Err(Exit(
            exit::USAGE,
            format!(
                "--kdf-memory/--kdf-iterations: the key would cost {} MiB·passes, over the limit of {} (raise it with --max-kdf-mib or CAIRN_MAX_KDF_MIB)",
                kdf.cost_mib(),
                max_kdf_mib(cli)
            ),
        )
        .into());
    }
    let path = repo_path(cli)?;
    if path.join("config").exists() {
        anyhow::bail!("a repository already exists at {}", path.display());
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
    let backend = LocalBackend::create_layout(path).map_err(cairn_repo::Error::from)?;
    cairn_repo::init(&backend, &pw, &opts)?;
    if !cli.quiet {
        println!("created repository at {}", path.display());
        println!("keep the password safe: without it the data cannot be recovered");
    }
    Ok(0)
}
