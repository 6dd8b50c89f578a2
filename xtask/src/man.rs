//! `cargo xtask man [--out DIR]`: the man pages, `cairn.1` and one per subcommand
//! (`cairn-backup.1`, `cairn-repair-index.1`, ...), in target/man unless told.
//!
//! The pages are rendered by the binary itself (`cairn __man DIR`, crates/cli/cmd/man.rs): only
//! it can see its clap types, so xtask builds it and runs it rather than depending on them.
//! Invariant: DIR ends up holding exactly the pages of the binary just built; pages of a
//! subcommand that no longer exists are removed, other files are left alone.

use crate::Result;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn man(args: &[String]) -> Result<()> {
    let mut out = crate::root().join("target/man");
    for (name, value) in crate::options(args, &["out"])? {
        match name {
            "out" => out = PathBuf::from(value),
            _ => unreachable!("options() returns only the names it is given"),
        }
    }
    let cairn = crate::build_debug()?;
    let pages = write_pages(&cairn, &out)?;
    println!("man: {} pages in {}", pages.len(), out.display());
    Ok(())
}

/// Runs `cairn __man DIR` and returns the pages it wrote, sorted.
pub fn write_pages(cairn: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    for stale in pages_in(dir)? {
        fs::remove_file(&stale).map_err(|e| format!("cannot remove {}: {e}", stale.display()))?;
    }
    crate::run(Command::new(cairn).arg("__man").arg(dir))?;
    let pages = pages_in(dir)?;
    if !pages.iter().any(|p| p.ends_with("cairn.1")) {
        return Err(format!("{} __man wrote no cairn.1", cairn.display()));
    }
    Ok(pages)
}

/// The man pages of cairn in `dir` (none if it does not exist).
fn pages_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let mut pages = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_page(&name) {
            pages.push(entry.path());
        }
    }
    pages.sort();
    Ok(pages)
}

fn is_page(name: &str) -> bool {
    name == "cairn.1" || (name.starts_with("cairn-") && name.ends_with(".1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cairn_pages_count_as_pages() {
        assert!(is_page("cairn.1"));
        assert!(is_page("cairn-repair-index.1"));
        assert!(!is_page("cairn.1.gz"));
        assert!(!is_page("restic.1"));
        assert!(!is_page("cairn-notes.txt"));
    }
}
