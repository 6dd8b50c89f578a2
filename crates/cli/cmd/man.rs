//! `cairn __man DIR` (internal, for `cargo xtask man` and `cargo xtask deb`): the man pages,
//! `cairn.1` and one per subcommand (`cairn-backup.1`, `cairn-repair-index.1`, ...), rendered
//! by clap_mangen from the clap types that parse the command line, so a page never documents
//! an option cairn refuses. The binary writes them because only it can see those types.

use crate::args::{Cli, ManCli};
use anyhow::{Context, Result};
use clap::CommandFactory;

/// The first argument that selects this command instead of [`Cli`].
pub(crate) const NAME: &str = "__man";

pub(crate) fn man(a: &ManCli) -> Result<u8> {
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create man page directory {}", a.dir.display()))?;
    clap_mangen::generate_to(Cli::command(), &a.dir)
        .with_context(|| format!("cannot write man pages into {}", a.dir.display()))?;
    Ok(0)
}
