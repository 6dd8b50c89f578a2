//! Installing cairn: the shell completion scripts (`cairn completion SHELL`), the man pages
//! (`cairn __man DIR`, behind `cargo xtask man`), and the Debian package `cargo xtask deb`
//! builds from the binary under test, installed into a directory and run.

use crate::util::{setup, Dir, Run};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Subcommands a completion script must offer.
const SUBCOMMANDS: &[&str] = &[
    "init",
    "backup",
    "snapshots",
    "restore",
    "forget",
    "prune",
    "check",
    "completion",
];

/// `name` on PATH, if it is there (tests use what the machine has and install nothing).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_bash_completion_parses_and_offers_every_subcommand() {
    let d = setup();
    let script = d.ok(["completion", "bash"]).stdout();
    let file = d.join("cairn.bash");
    fs::write(&file, &script).unwrap();
    run_ok(Command::new("bash").arg("-n").arg(&file));
    for sub in SUBCOMMANDS {
        assert!(script.contains(sub), "the bash completion lacks {sub}");
    }
    assert!(script.contains("--exclude"), "no options of backup");
    // The man page writer is internal: no shell should offer it.
    assert!(!script.contains("__man"));
}

#[test]
fn zsh_fish_elvish_and_powershell_completions_are_made() {
    let d = setup();
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = d.ok(["completion", shell]).stdout();
        assert!(script.contains("backup"), "{shell}: {script}");
        assert!(!script.contains("__man"), "{shell}");
    }
    assert!(d
        .ok(["completion", "zsh"])
        .stdout()
        .starts_with("#compdef cairn"));
    // Parsed by the shells themselves where they are installed.
    for (shell, file) in [("zsh", "_cairn"), ("fish", "cairn.fish")] {
        if let Some(exe) = which(shell) {
            let path = d.join(file);
            fs::write(&path, d.ok(["completion", shell]).stdout()).unwrap();
            run_ok(Command::new(exe).arg("-n").arg(&path));
        }
    }
}

#[test]
fn an_unknown_shell_is_an_invalid_argument() {
    let d = setup();
    let run = d.run(["completion", "tcsh"]).code(2);
    assert!(run.stdout.is_empty(), "{run:?}");
    let line = run.error_line();
    assert!(line.contains("tcsh") && line.contains("bash"), "{line}");
    d.run(["completion"]).code(2);
}

/// The page as a reader sees it: `man -l` where man is installed, else groff; None if neither
/// is (then only the roff source is checked).
fn render(page: &Path) -> Option<String> {
    let mut cmd = if which("man").is_some() {
        let mut man = Command::new("man");
        man.arg("-l").arg(page).env("MANPAGER", "cat");
        man
    } else if which("groff").is_some() {
        let mut groff = Command::new("groff");
        groff.args(["-man", "-Tutf8"]).arg(page);
        groff
    } else {
        eprintln!("neither man nor groff is installed: man pages are not rendered");
        return None;
    };
    // Wide lines, so that no option name is hyphenated at a line break.
    cmd.env("MANWIDTH", "200").env("COLUMNS", "200");
    Some(run_ok(&mut cmd))
}

#[test]
fn man_pages_are_written_for_every_subcommand_and_render() {
    let d = setup();
    let dir = d.join("man");
    d.ok([OsStr::new("__man"), dir.as_os_str()]);
    let mut pages: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for page in [
        "cairn.1",
        "cairn-backup.1",
        "cairn-restore.1",
        "cairn-completion.1",
        "cairn-repair-index.1",
        "cairn-schedule-install.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "no {page} in {pages:?}");
    }
    assert!(
        pages
            .iter()
            .all(|p| !p.contains("__man") && !p.contains("help")),
        "{pages:?}"
    );
    let source = fs::read_to_string(dir.join("cairn-backup.1")).unwrap();
    assert!(source.contains(".TH cairn-backup 1"), "{source}");
    if let Some(text) = render(&dir.join("cairn-backup.1")) {
        assert!(text.contains("--exclude"), "{text}");
        assert!(text.contains("cairn-backup - Back up files"), "{text}");
        // Global options are documented on each subcommand's page.
        assert!(text.contains("--repo"), "{text}");
    }
    let root = render(&dir.join("cairn.1")).unwrap_or_default();
    // The main page lists the subcommands' pages and the exit codes.
    assert!(
        root.is_empty() || (root.contains("cairn-backup(1)") && root.contains("12 wrong password")),
        "{root}"
    );
    // A missing directory argument is a usage error; an impossible directory an error.
    let line = d.run(["__man"]).code(2).error_line();
    assert!(line.contains("DIR"), "{line}");
    d.run(["__man", "/proc/no-such-dir/man"]).code(1);
}

/// Files the package must hold (as `dpkg-deb --contents` prints them).
const PACKAGED: &[&str] = &[
    "./usr/bin/cairn",
    "./usr/share/man/man1/cairn.1.gz",
    "./usr/share/man/man1/cairn-backup.1.gz",
    "./usr/share/man/man1/cairn-repair-index.1.gz",
    "./usr/share/bash-completion/completions/cairn",
    "./usr/share/zsh/vendor-completions/_cairn",
    "./usr/share/fish/vendor_completions.d/cairn.fish",
    "./usr/lib/systemd/system/cairn@.service",
    "./usr/lib/systemd/system/cairn@.timer",
    "./usr/share/doc/cairn/copyright",
    "./usr/share/doc/cairn/changelog.Debian.gz",
];

/// `cargo xtask deb --binary <the cairn under test> --out OUT`, returning the package.
///
/// This runs cargo inside `cargo test`, which is cheap here: xtask has no dependencies (it
/// builds in seconds if `cargo test --workspace` has not built it already), the build lock is
/// free while tests run, and packaging the binary the tests built avoids a release build. The
/// xz compression a real package gets would take half a minute on this binary: dpkg-deb is
/// told to use fast gzip instead, which changes nothing in the package's contents.
fn build_package(out: &Path) -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["run", "--quiet", "-p", "xtask", "--", "deb", "--binary"])
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .arg("--out")
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DPKG_DEB_COMPRESSOR_TYPE", "gzip")
        .env("DPKG_DEB_COMPRESSOR_LEVEL", "1");
    run_ok(&mut cargo);
    let arch = run_ok(Command::new("dpkg").arg("--print-architecture"));
    let deb = out.join(format!(
        "cairn_{}_{}.deb",
        env!("CARGO_PKG_VERSION"),
        arch.trim()
    ));
    assert!(deb.is_file(), "no {}", deb.display());
    let left: Vec<_> = fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        left,
        std::slice::from_ref(&deb),
        "staging files left behind"
    );
    deb
}

/// The packaged `cairn` with the test directory's repository, password and cache.
fn packaged(d: &Dir, exe: &Path) -> Command {
    let base = d.command();
    let mut cmd = Command::new(exe);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.current_dir(d.path());
    cmd
}

#[test]
fn the_debian_package_holds_everything_and_its_cairn_backs_up() {
    if which("dpkg-deb").is_none() {
        eprintln!("dpkg-deb is not installed (not a Debian system): the package is not tested");
        return;
    }
    let d = setup();
    let deb = build_package(&d.join("deb"));

    let contents = run_ok(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let listed: Vec<&str> = contents
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    for path in PACKAGED {
        assert!(
            listed.contains(path),
            "{path} is not in the package:\n{contents}"
        );
    }
    assert!(contents.contains("-rwxr-xr-x root/root"), "{contents}");
    let fields = run_ok(
        Command::new("dpkg-deb")
            .arg("--field")
            .arg(&deb)
            .args(["Package", "Version", "Section", "Depends"]),
    );
    assert!(
        fields.contains(&format!("Version: {}\n", env!("CARGO_PKG_VERSION"))),
        "{fields}"
    );
    assert!(fields.contains("Package: cairn\n"), "{fields}");
    assert!(fields.contains("Section: admin\n"), "{fields}");
    assert!(fields.contains("Depends: libc6 (>= "), "{fields}");

    let root = d.join("installed");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    check_packaged_files(&root);
    verify_units(&d, &root);

    let exe = root.join("usr/bin/cairn");
    let version = run_ok(packaged(&d, &exe).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("cairn {}", env!("CARGO_PKG_VERSION"))
    );
    let source = d.join("src");
    fs::create_dir_all(source.join("sub")).unwrap();
    fs::write(source.join("a.txt"), "packaged cairn\n").unwrap();
    fs::write(
        source.join("sub/b.bin"),
        crate::util::random_bytes(7, 300_000),
    )
    .unwrap();
    run_ok(packaged(&d, &exe).args(["init", "--kdf-memory", "64", "--kdf-iterations", "1"]));
    run_ok(packaged(&d, &exe).arg("backup").arg(&source));
    let list = Run::of({
        let mut c = packaged(&d, &exe);
        c.args(["snapshots", "--json"]);
        c
    })
    .success()
    .json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    // The repository the packaged binary wrote is sound and restores to the source.
    d.check();
    let target = d.join("restored");
    d.restore("latest", &target);
    let restored = crate::util::restored(&target, &source);
    assert_eq!(
        fs::read(restored.join("sub/b.bin")).unwrap(),
        crate::util::random_bytes(7, 300_000)
    );
}

/// The files' contents: completion scripts that parse, pages that are gzipped roff, DEP-5
/// copyright.
fn check_packaged_files(root: &Path) {
    let bash = root.join("usr/share/bash-completion/completions/cairn");
    run_ok(Command::new("bash").arg("-n").arg(&bash));
    assert!(fs::read_to_string(&bash).unwrap().contains("backup"));
    let page = root.join("usr/share/man/man1/cairn-backup.1.gz");
    let roff = run_ok(Command::new("gzip").arg("-dc").arg(&page));
    assert!(roff.contains(".TH cairn-backup 1"), "{roff}");
    let copyright = fs::read_to_string(root.join("usr/share/doc/cairn/copyright")).unwrap();
    assert!(copyright.starts_with(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    ));
    assert!(
        copyright.contains("\nLicense: MIT or Apache-2.0\n"),
        "{copyright}"
    );
    let changelog = run_ok(
        Command::new("gzip")
            .arg("-dc")
            .arg(root.join("usr/share/doc/cairn/changelog.Debian.gz")),
    );
    assert!(
        changelog.starts_with(&format!("cairn ({}) ", env!("CARGO_PKG_VERSION"))),
        "{changelog}"
    );
}

/// `systemd-analyze verify` on the unit templates instantiated as cairn@nightly, as
/// `systemctl enable --now cairn@nightly.timer` would use them. The copies run the packaged
/// binary (verify insists that ExecStart's program exists) and their man page links resolve
/// into the package.
fn verify_units(d: &Dir, root: &Path) {
    let units = root.join("usr/lib/systemd/system");
    let service = fs::read_to_string(units.join("cairn@.service")).unwrap();
    let timer = fs::read_to_string(units.join("cairn@.timer")).unwrap();
    assert!(
        service.contains("\nExecStart=/usr/bin/cairn -P %i backup\n"),
        "{service}"
    );
    assert!(timer.contains("\nOnCalendar=daily\n"), "{timer}");
    let Some(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed: the units are not verified");
        return;
    };
    let dir = d.join("units");
    fs::create_dir_all(&dir).unwrap();
    let exe = root.join("usr/bin/cairn");
    let service = service.replace("/usr/bin/cairn", exe.to_str().unwrap());
    fs::write(dir.join("cairn@nightly.service"), service).unwrap();
    fs::write(dir.join("cairn@nightly.timer"), timer).unwrap();
    run_ok(
        Command::new(analyze)
            .arg("verify")
            .arg(dir.join("cairn@nightly.timer"))
            .arg(dir.join("cairn@nightly.service"))
            .env("MANPATH", root.join("usr/share/man")),
    );
}
