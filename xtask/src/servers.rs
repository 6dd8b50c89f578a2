//! `cargo xtask servers`: installs what the remote-backend tests start on loopback
//! (cairn-testkit's `servers` module), and `cargo xtask test`: that, then `cargo test
//! --workspace`, the README's test command. Debian packages come from apt-get; Garage, which
//! Debian does not package, is built once with `cargo install` into ~/.cache/cairn-tools.
//!
//! Invariant: nothing is installed that is already there, so on a machine that has everything
//! `servers` runs no apt-get and no cargo, and needs no network.

use crate::tools::which;
use crate::{root, run, Result};
use std::path::PathBuf;
use std::process::Command;

/// The Debian packages the tests need: rclone (REST and WebDAV servers, and the tests' S3
/// client), sshd and ssh/sftp/ssh-keygen, pyftpdlib and pyOpenSSL (FTPS) and aiosmtpd (SMTP, for
/// cairn-report's mail tests) for Debian's python3, restic, and dpkg-dev (dpkg-shlibdeps, for
/// the package `cargo xtask deb` builds in tests/integration/install.rs), and strace (the system
/// calls of a restore, in tests/integration/roundtrip.rs).
const PACKAGES: &[&str] = &[
    "rclone",
    "openssh-server",
    "openssh-client",
    "python3-pyftpdlib",
    "python3-openssl",
    "python3-aiosmtpd",
    "restic",
    "dpkg-dev",
    "strace",
];

/// The Garage release the tests run; cairn-testkit's servers/garage.rs looks for it at the same
/// path.
const GARAGE_VERSION: &str = "2.5.0";

pub fn servers(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        return Err(format!("servers takes no arguments, got {arg:?}"));
    }
    install_packages()?;
    install_garage()
}

/// `servers`, then every test of the workspace; `args` go to `cargo test`.
pub fn test(args: &[String]) -> Result<()> {
    servers(&[])?;
    run(Command::new(env!("CARGO"))
        .args(["test", "--workspace"])
        .args(args)
        .current_dir(root()))
}

fn install_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask servers: installing the Debian packages {}",
        missing.join(" ")
    );
    let apt = |args: &[&str]| -> Command {
        let mut cmd = if is_root() {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    if !is_root() && which("sudo").is_none() {
        return Err(format!(
            "the Debian packages {} are missing and there is no sudo: run `apt-get install {}` as root",
            missing.join(" "),
            missing.join(" ")
        ));
    }
    run(&mut apt(&["update", "-qq"]))?;
    let mut install = apt(&["install", "-y", "-qq"]);
    install.args(&missing);
    run(&mut install)
}

/// Whether dpkg has `package` installed.
fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Builds Garage into `~/.cache/cairn-tools/garage-VERSION` unless `$CAIRN_GARAGE` names a
/// binary or the cached one is already this version.
fn install_garage() -> Result<()> {
    if let Some(path) = std::env::var_os("CAIRN_GARAGE") {
        let path = PathBuf::from(path);
        return match version(&path) {
            Some(_) => Ok(()),
            None => Err(format!(
                "CAIRN_GARAGE names {}, which does not run",
                path.display()
            )),
        };
    }
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let prefix = PathBuf::from(home).join(format!(".cache/cairn-tools/garage-{GARAGE_VERSION}"));
    let bin = prefix.join("bin/garage");
    if version(&bin).is_some_and(|v| v.contains(GARAGE_VERSION)) {
        return Ok(());
    }
    eprintln!(
        "xtask servers: building Garage {GARAGE_VERSION} into {} with `cargo install`; this takes \
         a long time once (tens of minutes on 2 cores)",
        prefix.display()
    );
    run(Command::new(env!("CARGO"))
        .args(["install", "--locked", "garage", "--version", GARAGE_VERSION])
        .args(["--no-default-features", "--features", "bundled-libs,lmdb"])
        .arg("--root")
        .arg(&prefix)
        .arg("--target-dir")
        .arg(std::env::temp_dir().join("garage-build")))?;
    match version(&bin) {
        Some(v) if v.contains(GARAGE_VERSION) => Ok(()),
        Some(v) => Err(format!("{} says it is {v}", bin.display())),
        None => Err(format!("cargo install left no working {}", bin.display())),
    }
}

/// The first line of `bin --version`, if it runs.
fn version(bin: &std::path::Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    })
}
