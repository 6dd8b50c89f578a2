//! `mount`: the snapshots as a read-only FUSE file system at a directory, until Ctrl-C,
//! SIGTERM or an unmount from outside. Open (read-only), pick the snapshots the filters let
//! through, mount, report where, wait; the file system itself is cairn-mount's.

use crate::args::{Cli, MountArgs};
use crate::cmd::chosen;
use crate::invalid;
use crate::open::{open, snapshots_of};
use anyhow::Result;
use std::io::Write;

pub(crate) fn mount(cli: &Cli, a: &MountArgs) -> Result<u8> {
    // Refused before a password is asked for.
    if !a.dir.is_dir() {
        return Err(invalid(format!(
            "mount point {} is not a directory",
            a.dir.display()
        )));
    }
    let repo = open(cli, false)?;
    let list = chosen(&snapshots_of(&repo)?.list, &[], &a.filter)?;
    let opts = cairn_mount::Options {
        cache_bytes: a.cache_size << 20,
    };
    let mounted = cairn_mount::mount(Box::new(repo), &list, &a.dir, &opts)?;
    if !cli.quiet {
        // Stdout, so that a script can wait for this line before it looks inside.
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "mounted {} snapshot(s) at {}; Ctrl-C or `fusermount -u {}` unmounts",
            list.len(),
            mounted.dir().display(),
            mounted.dir().display()
        )
        .and_then(|()| out.flush());
    }
    let ended = mounted.wait();
    if !cli.quiet {
        let why = match ended {
            cairn_mount::Ended::Signal(_) => "on a signal",
            cairn_mount::Ended::Unmounted => "from outside",
        };
        let _ = writeln!(std::io::stdout(), "unmounted {why}");
    }
    Ok(0)
}
