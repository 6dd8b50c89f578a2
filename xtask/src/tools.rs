//! The backup tools the bench compares, how to install them, and the command line each one
//! gets for each action.
//!
//! Invariant: every tool runs with encryption on, its default zstd compression (borg, whose
//! default is lz4, is given `--compression zstd,3`), and a cache directory of its own under
//! target/bench, which the bench wipes at the start of each round.

use crate::Result;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Kind {
    Cairn,
    Restic,
    Borg,
    Rustic,
}

impl Kind {
    pub const ANCHORS: [Kind; 3] = [Kind::Restic, Kind::Borg, Kind::Rustic];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Cairn => "cairn",
            Kind::Restic => "restic",
            Kind::Borg => "borg",
            Kind::Rustic => "rustic",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        [Kind::Cairn, Kind::Restic, Kind::Borg, Kind::Rustic]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

pub struct Tool {
    pub kind: Kind,
    pub bin: PathBuf,
    /// Wiped at the start of each round.
    pub cache: PathBuf,
    env: Vec<(&'static str, String)>,
}

/// What a tool is asked to do to a repository. `n` is the number of the backup in this
/// repository, from 1: borg names its archives by it.
pub enum Action<'a> {
    Init,
    Backup {
        source: &'a Path,
        n: usize,
    },
    /// Restores the newest snapshot, number `n`, into `target`.
    Restore {
        target: &'a Path,
        n: usize,
    },
    /// Lists the snapshots.
    Snapshots,
    Check,
    CheckData,
    /// Forgets all but the 2 newest snapshots and deletes what they do not need.
    ForgetPrune,
}

const PASSWORD: &str = "cairn-bench-password";

fn s(p: &Path) -> String {
    p.to_str().expect("bench paths are UTF-8").to_string()
}

impl Tool {
    pub fn new(kind: Kind, bin: PathBuf, work: &Path) -> Tool {
        let cache = work.join(format!("cache-{}", kind.name()));
        let c = s(&cache);
        let p = PASSWORD.to_string();
        let env = match kind {
            Kind::Cairn => vec![("CAIRN_PASSWORD", p), ("CAIRN_CACHE_DIR", c)],
            Kind::Restic => vec![("RESTIC_PASSWORD", p), ("RESTIC_CACHE_DIR", c)],
            // BORG_BASE_DIR holds borg's cache, config and security directories.
            Kind::Borg => vec![
                ("BORG_PASSPHRASE", p),
                ("BORG_BASE_DIR", c),
                ("BORG_DISPLAY_PASSPHRASE", "no".into()),
                ("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes".into()),
            ],
            Kind::Rustic => vec![("RUSTIC_PASSWORD", p), ("RUSTIC_CACHE_DIR", c)],
        };
        Tool {
            kind,
            bin,
            cache,
            env,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// An exit code that means "done, with warnings" (a source file could not be read): the
    /// bench reports it and goes on.
    pub fn warning_code(&self) -> Option<i32> {
        match self.kind {
            Kind::Cairn | Kind::Restic => Some(3),
            Kind::Borg => Some(1),
            Kind::Rustic => None,
        }
    }

    /// The commands that carry out `action` on `repo`, in order.
    pub fn commands(&self, repo: &Path, action: &Action) -> Vec<Command> {
        let r = s(repo);
        let argvs: Vec<Vec<String>> = match (self.kind, action) {
            (Kind::Borg, Action::Init) => {
                vec![vec!["init".into(), "-e".into(), "repokey-blake2".into(), r]]
            }
            (Kind::Borg, Action::Backup { source, n }) => vec![vec![
                "create".into(),
                "--compression".into(),
                "zstd,3".into(),
                format!("{r}::s{n}"),
                s(source),
            ]],
            // borg extracts into its working directory, set below.
            (Kind::Borg, Action::Restore { n, .. }) => {
                vec![vec!["extract".into(), format!("{r}::s{n}")]]
            }
            (Kind::Borg, Action::Check) => vec![vec!["check".into(), r]],
            (Kind::Borg, Action::Snapshots) => vec![vec!["list".into(), r]],
            (Kind::Borg, Action::CheckData) => {
                vec![vec!["check".into(), "--verify-data".into(), r]]
            }
            // borg 1.2 frees the space of pruned archives only in `compact`.
            (Kind::Borg, Action::ForgetPrune) => vec![
                vec!["prune".into(), "--keep-last".into(), "2".into(), r.clone()],
                vec!["compact".into(), r],
            ],
            (kind, action) => {
                let mut argv = vec!["-r".to_string(), r];
                match action {
                    Action::Init => argv.push("init".into()),
                    Action::Backup { source, .. } => argv.extend(["backup".into(), s(source)]),
                    Action::Restore { target, .. } => {
                        argv.extend(["restore".into(), "latest".into()]);
                        if kind != Kind::Rustic {
                            argv.push("--target".into());
                        }
                        argv.push(s(target));
                    }
                    Action::Check => argv.push("check".into()),
                    Action::Snapshots => argv.push("snapshots".into()),
                    Action::CheckData => argv.extend(["check".into(), "--read-data".into()]),
                    Action::ForgetPrune => {
                        if kind == Kind::Cairn {
                            argv.extend(["prune".into(), "--keep-last".into(), "2".into()]);
                        } else {
                            argv.extend([
                                "forget".into(),
                                "--keep-last".into(),
                                "2".into(),
                                "--prune".into(),
                            ]);
                        }
                    }
                }
                vec![argv]
            }
        };
        argvs
            .into_iter()
            .map(|argv| {
                let mut c = Command::new(&self.bin);
                c.args(argv);
                for (k, v) in &self.env {
                    c.env(k, v);
                }
                // Settings of the user's own that would take precedence over the bench's.
                for k in self.unset() {
                    c.env_remove(k);
                }
                if let (Kind::Borg, Action::Restore { target, .. }) = (self.kind, action) {
                    c.current_dir(target);
                }
                c
            })
            .collect()
    }

    fn unset(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::Cairn => &[
                "CAIRN_REPO",
                "CAIRN_PASSWORD_FILE",
                "CAIRN_PASSWORD_COMMAND",
            ],
            Kind::Restic => &[
                "RESTIC_REPOSITORY",
                "RESTIC_REPOSITORY_FILE",
                "RESTIC_PASSWORD_FILE",
                "RESTIC_PASSWORD_COMMAND",
                "RESTIC_COMPRESSION",
                "RESTIC_PACK_SIZE",
            ],
            Kind::Borg => &["BORG_REPO", "BORG_PASSCOMMAND", "BORG_PASSPHRASE_FD"],
            Kind::Rustic => &[
                "RUSTIC_REPOSITORY",
                "RUSTIC_PASSWORD_FILE",
                "RUSTIC_PASSWORD_COMMAND",
            ],
        }
    }

    /// The tool's own account of its version, one line.
    pub fn version(&self) -> String {
        let arg = match self.kind {
            Kind::Restic => "version",
            _ => "--version",
        };
        Command::new(&self.bin)
            .arg(arg)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|| format!("{} (version unknown)", self.name()))
    }
}

/// The first `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Installs a Debian package; `apt-get update` runs once per bench.
pub fn apt_install(package: &str, updated: &mut bool) -> Result<()> {
    if !*updated {
        crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
        *updated = true;
    }
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null()),
    )
}

/// The anchor tool's binary, installed when missing: restic and borg from Debian, rustic from
/// crates.io with `cargo install`.
pub fn find_or_install(kind: Kind, apt_updated: &mut bool) -> Result<PathBuf> {
    let (bin, package) = match kind {
        Kind::Restic => ("restic", "restic"),
        Kind::Borg => ("borg", "borgbackup"),
        Kind::Rustic => ("rustic", "rustic-rs"),
        Kind::Cairn => unreachable!("cairn is built, not installed"),
    };
    let cargo_bin = crate::corpus::cargo_home().join("bin").join(bin);
    if let Some(p) = which(bin) {
        return Ok(p);
    }
    if kind == Kind::Rustic && cargo_bin.is_file() {
        return Ok(cargo_bin);
    }
    if kind == Kind::Rustic {
        eprintln!(
            "bench: rustic is missing; running `cargo install rustic-rs --locked`, which compiles \
             for a long time (tens of minutes on 2 cores); `--skip rustic` leaves rustic out"
        );
        crate::run(Command::new(env!("CARGO")).args(["install", "rustic-rs", "--locked"]))
            .map_err(|e| format!("{e}; `--skip rustic` leaves rustic out"))?;
        return if cargo_bin.is_file() {
            Ok(cargo_bin)
        } else {
            Err(format!(
                "cargo install did not leave {}",
                cargo_bin.display()
            ))
        };
    }
    eprintln!("bench: {bin} is missing; installing the Debian package {package}");
    apt_install(package, apt_updated)
        .map_err(|e| format!("{e}; `--skip {}` leaves {bin} out", kind.name()))?;
    which(bin).ok_or_else(|| format!("{package} installed no {bin} on PATH"))
}
