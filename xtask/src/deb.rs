//! `cargo xtask deb [--out DIR] [--binary PATH]`: a Debian package of cairn,
//! target/deb/cairn_VERSION_ARCH.deb, built with `dpkg-deb --build --root-owner-group` from a
//! staging tree: the stripped binary, its man pages (gzipped) and shell completions, a systemd
//! service and timer template for scheduled backups of a profile, and the copyright file and
//! changelog Debian policy asks for.
//!
//! Invariant: the man pages and completions in the package are written by the packaged binary
//! itself, so they always describe the binary they ship with; everything else comes from
//! Cargo.toml and the texts in this module. `--binary` packages a binary built elsewhere (the
//! integration test passes the one `cargo test` built), else the release build is made.

use crate::Result;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The service `cairn@NAME.timer` starts: one backup of the profile NAME (/etc/cairn/NAME.toml
/// when run by systemd, which sets no HOME for system services).
const SERVICE_UNIT: &str = "\
[Unit]
Description=cairn backup of profile %i
Documentation=man:cairn-backup(1)
# A remote repository needs the network; a local one loses nothing by waiting for it.
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/bin/cairn -P %i backup
# The profile's cache_dir, if it sets one, wins over this.
CacheDirectory=cairn
Environment=CAIRN_CACHE_DIR=%C/cairn
# A backup should not slow down what the machine is for.
Nice=10
IOSchedulingClass=idle
";

/// `systemctl enable --now cairn@NAME.timer` backs up profile NAME daily; `systemctl edit
/// cairn@NAME.timer` changes when.
const TIMER_UNIT: &str = "\
[Unit]
Description=Daily cairn backup of profile %i
Documentation=man:cairn-backup(1)

[Timer]
OnCalendar=daily
# A run missed while the machine was off happens when it next starts.
Persistent=true
# Hosts backing up into one repository do not all start at midnight.
RandomizedDelaySec=1h

[Install]
WantedBy=timers.target
";

/// Below the synopsis (Cargo.toml's `description`) in the control file, each line indented by
/// one space as Debian's control format wants.
const LONG_DESCRIPTION: &str =
    " cairn backs up files and directories into a repository on a local disk, an
 S3 bucket, an SFTP, WebDAV, FTP or REST server, or any rclone remote. Data
 is split into content-defined chunks, stored once however many files and
 snapshots hold it, compressed with zstd and encrypted; snapshots are
 restored, browsed, checked and pruned by retention policies.
 .
 The package includes a systemd timer template: with a profile in
 /etc/cairn/NAME.toml, `systemctl enable --now cairn@NAME.timer` backs it
 up daily.";

/// Used unless `DEBFULLNAME` and `DEBEMAIL` say otherwise (as for Debian's own tools).
const MAINTAINER: &str = "cairn maintainers <maintainers@users.noreply.h-seed-70e1c1ed.example>";

/// The MIT license's text: Debian keeps no copy in /usr/share/common-licenses, so the copyright
/// file carries it.
const MIT_TEXT: &str =
    " Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the \"Software\"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.";

const APACHE_TEXT: &str =
    " Licensed under the Apache License, Version 2.0 (the \"License\"); you may not
 use this software except in compliance with the License.
 .
 On Debian systems, the complete text of the Apache License, Version 2.0, is
 in /usr/share/common-licenses/Apache-2.0.";

/// Where each completion script goes: the directories bash-completion, zsh and fish read
/// packaged completions from.
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "usr/share/bash-completion/completions/cairn"),
    ("zsh", "usr/share/zsh/vendor-completions/_cairn"),
    ("fish", "usr/share/fish/vendor_completions.d/cairn.fish"),
];

const MAN_DIR: &str = "usr/share/man/man1";
const DOC_DIR: &str = "usr/share/doc/cairn";
const UNIT_DIR: &str = "usr/lib/systemd/system";

pub fn deb(args: &[String]) -> Result<()> {
    let mut out = crate::root().join("target/deb");
    let mut binary = None;
    for (name, value) in crate::options(args, &["out", "binary"])? {
        match name {
            "out" => out = PathBuf::from(value),
            "binary" => binary = Some(PathBuf::from(value)),
            _ => unreachable!("options() returns only the names it is given"),
        }
    }
    let binary = match binary {
        Some(b) => b,
        None => crate::build_release()?,
    };
    let package = build(&binary, &out)?;
    println!("deb: {}", package.display());
    Ok(())
}

/// What the control file says, apart from the fixed fields.
#[derive(Debug)]
struct Control {
    version: String,
    arch: String,
    maintainer: String,
    depends: String,
    installed_kib: u64,
    synopsis: String,
}

/// Packages `binary` into `out`/cairn_VERSION_ARCH.deb and returns that path.
fn build(binary: &Path, out: &Path) -> Result<PathBuf> {
    let manifest = fs::read_to_string(crate::root().join("Cargo.toml"))
        .map_err(|e| format!("cannot read Cargo.toml: {e}"))?;
    let field = |key| {
        package_field(&manifest, key).ok_or_else(|| format!("Cargo.toml has no package {key}"))
    };
    let (version, license, synopsis) =
        (field("version")?, field("license")?, field("description")?);
    let arch = text(crate::output(
        Command::new("dpkg").arg("--print-architecture"),
    )?)?;
    let name = format!("cairn_{version}_{}", arch.trim());
    // Laid out as debhelper does (debian/cairn is the package's root), which is where
    // dpkg-shlibdeps expects the binaries it reads.
    let work = out.join(format!(".{name}"));
    remove_dir(&work)?;
    let stage = work.join("debian/cairn");
    let cairn = stage_binary(binary, &stage)?;
    stage_pages(&cairn, &stage)?;
    stage_completions(&cairn, &stage)?;
    write(&stage.join(UNIT_DIR).join("cairn@.service"), SERVICE_UNIT)?;
    write(&stage.join(UNIT_DIR).join("cairn@.timer"), TIMER_UNIT)?;
    let maintainer = maintainer();
    write(
        &stage.join(DOC_DIR).join("copyright"),
        &copyright(&license)?,
    )?;
    let changelog_path = stage.join(DOC_DIR).join("changelog.Debian");
    write(&changelog_path, &changelog(&version, &maintainer, &date()?))?;
    gzip(&changelog_path)?;
    let files = files_under(&stage)?;
    let control = Control {
        version,
        arch: arch.trim().to_string(),
        maintainer,
        depends: shlib_depends(&work)?,
        installed_kib: installed_kib(&stage, &files)?,
        synopsis,
    };
    write(&stage.join("DEBIAN/control"), &control_text(&control))?;
    let sums = crate::output(Command::new("md5sum").args(&files).current_dir(&stage))?;
    write(&stage.join("DEBIAN/md5sums"), &text(sums)?)?;
    set_modes(&stage)?;
    let package = out.join(format!("{name}.deb"));
    crate::run(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&stage)
            .arg(&package),
    )?;
    remove_dir(&work)?;
    Ok(package)
}

/// Copies the binary to usr/bin/cairn, stripped of debugging information as Debian policy
/// wants (and a debug build shrinks tenfold), and returns the copy's path.
fn stage_binary(binary: &Path, stage: &Path) -> Result<PathBuf> {
    let cairn = stage.join("usr/bin/cairn");
    make_dir(cairn.parent().unwrap())?; // a path of three components has a parent
    crate::run(
        Command::new("strip")
            .args(["--remove-section=.comment", "--remove-section=.note", "-o"])
            .arg(&cairn)
            .arg(binary),
    )?;
    Ok(cairn)
}

/// The man pages the binary writes, each gzipped.
fn stage_pages(cairn: &Path, stage: &Path) -> Result<()> {
    for page in crate::man::write_pages(cairn, &stage.join(MAN_DIR))? {
        gzip(&page)?;
    }
    Ok(())
}

fn stage_completions(cairn: &Path, stage: &Path) -> Result<()> {
    for (shell, path) in COMPLETIONS {
        let script = crate::output(Command::new(cairn).args(["completion", shell]))?;
        write(&stage.join(path), &text(script)?)?;
    }
    Ok(())
}

/// The control file (deb-control(5)).
fn control_text(c: &Control) -> String {
    format!(
        "Package: cairn\n\
         Version: {}\n\
         Architecture: {}\n\
         Maintainer: {}\n\
         Installed-Size: {}\n\
         Depends: {}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: {}\n\
         {LONG_DESCRIPTION}\n",
        c.version,
        c.arch,
        c.maintainer,
        c.installed_kib,
        c.depends,
        c.synopsis.trim_end_matches('.'),
    )
}

/// The copyright file in the machine-readable format (DEP-5), for an SPDX expression of
/// licenses joined by `OR`, as Cargo.toml's `license` is.
fn copyright(spdx: &str) -> Result<String> {
    let licenses: Vec<&str> = spdx.split(" OR ").map(str::trim).collect();
    let mut doc = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: cairn\n\
         \n\
         Files: *\n\
         Copyright: The cairn authors\n\
         License: {}\n",
        licenses.join(" or ")
    );
    for license in licenses {
        let body = match license {
            "MIT" => MIT_TEXT,
            "Apache-2.0" => APACHE_TEXT,
            other => return Err(format!("license {other} has no text in xtask/src/deb.rs")),
        };
        let _ = write!(doc, "\nLicense: {license}\n{body}\n");
    }
    Ok(doc)
}

/// One entry: this package is built from the source tree, whose history is in git.
fn changelog(version: &str, maintainer: &str, date: &str) -> String {
    format!(
        "cairn ({version}) unstable; urgency=medium\n\
         \n  * Package built from the cairn source tree by `cargo xtask deb`; the\n    \
         changes are in the project's git history.\n\
         \n -- {maintainer}  {date}\n"
    )
}

/// `DEBFULLNAME <DEBEMAIL>` when both are set, else [`MAINTAINER`].
fn maintainer() -> String {
    let var = |k| {
        std::env::var(k)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    match (var("DEBFULLNAME"), var("DEBEMAIL")) {
        (Some(name), Some(email)) => format!("{} <{}>", name.trim(), email.trim()),
        _ => MAINTAINER.to_string(),
    }
}

/// The changelog's date (RFC 2822): `SOURCE_DATE_EPOCH` when set, for reproducible builds.
fn date() -> Result<String> {
    let mut cmd = Command::new("date");
    cmd.args(["-R", "-u"]);
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        cmd.arg(format!("--date=@{epoch}"));
    }
    Ok(text(crate::output(&mut cmd)?)?.trim().to_string())
}

/// The shared libraries the binary needs, as dpkg-shlibdeps computes them from their symbol
/// versions (a glibc build needs the glibc it was linked against, or a newer one).
fn shlib_depends(work: &Path) -> Result<String> {
    // dpkg-shlibdeps reads the source package's control file (this stub is all it needs), and
    // finds the package's root by its DEBIAN directory.
    make_dir(&work.join("debian/cairn/DEBIAN"))?;
    write(
        &work.join("debian/control"),
        "Source: cairn\n\nPackage: cairn\nArchitecture: any\n",
    )?;
    let found = crate::output(
        Command::new("dpkg-shlibdeps")
            .args(["-O", "-edebian/cairn/usr/bin/cairn"])
            .current_dir(work),
    )
    .map_err(|e| format!("{e} (dpkg-shlibdeps is in the dpkg-dev package)"))?;
    let found = text(found)?;
    found
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(|d| d.trim().to_string())
        .filter(|d| d.contains("libc6"))
        .ok_or_else(|| format!("dpkg-shlibdeps found no dependency on libc6: {found:?}"))
}

/// A field of Cargo.toml's `[package]` table, given as a plain string.
fn package_field(manifest: &str, key: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if let Some((k, v)) = line.split_once('=') {
            if in_package && k.trim() == key {
                let v = v.trim();
                return v.strip_prefix('"')?.strip_suffix('"').map(String::from);
            }
        }
    }
    None
}

/// Every file below `stage` outside DEBIAN/, relative to it, sorted.
fn files_under(stage: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let entries =
            fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let rel = rel.join(entry.file_name());
            if entry.path().is_dir() {
                walk(&entry.path(), &rel, out)?;
            } else {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(stage, Path::new(""), &mut files)?;
    files.retain(|f| !f.starts_with("DEBIAN"));
    files.sort();
    Ok(files)
}

/// What dpkg reports as the installed size: KiB, each file rounded up.
fn installed_kib(stage: &Path, files: &[PathBuf]) -> Result<u64> {
    let mut kib = 0;
    for file in files {
        let len = fs::metadata(stage.join(file))
            .map_err(|e| format!("cannot stat {}: {e}", file.display()))?
            .len();
        kib += len.div_ceil(1024);
    }
    Ok(kib)
}

/// 0755 for directories and usr/bin/cairn, 0644 for every other file, whatever the umask.
fn set_modes(stage: &Path) -> Result<()> {
    fn walk(path: &Path, executable: &Path) -> Result<()> {
        let mode = if path.is_dir() || path == executable {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
        if path.is_dir() {
            let entries =
                fs::read_dir(path).map_err(|e| format!("cannot list {}: {e}", path.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("cannot list {}: {e}", path.display()))?;
                walk(&entry.path(), executable)?;
            }
        }
        Ok(())
    }
    walk(stage, &stage.join("usr/bin/cairn"))
}

/// `gzip -9n`: no name or time stamp inside, so the same input gives the same bytes.
fn gzip(path: &Path) -> Result<()> {
    crate::run(Command::new("gzip").args(["-9nf"]).arg(path))
}

fn write(path: &Path, contents: &str) -> Result<()> {
    make_dir(path.parent().unwrap())?; // every path written here is inside the staging tree
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn make_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot remove {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn text(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| format!("output is not UTF-8: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> Control {
        Control {
            version: "0.1.0".into(),
            arch: "amd64".into(),
            maintainer: "A Maintainer <a@example.org>".into(),
            depends: "libc6 (>= 2.34), libgcc-s1 (>= 4.2)".into(),
            installed_kib: 12345,
            synopsis: "Content-addressed, deduplicating, encrypted backups".into(),
        }
    }

    #[test]
    fn the_control_file_has_every_field_dpkg_needs() {
        let text = control_text(&control());
        let fields: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(' '))
            .map(|l| l.split_once(": ").unwrap().0)
            .collect();
        assert_eq!(
            fields,
            [
                "Package",
                "Version",
                "Architecture",
                "Maintainer",
                "Installed-Size",
                "Depends",
                "Section",
                "Priority",
                "Description"
            ]
        );
        assert!(text.starts_with("Package: cairn\nVersion: 0.1.0\nArchitecture: amd64\n"));
        assert!(text.contains("\nDepends: libc6 (>= 2.34), libgcc-s1 (>= 4.2)\n"));
        assert!(text.contains("\nInstalled-Size: 12345\n"));
        assert!(text.contains("\nSection: admin\nPriority: optional\n"));
        assert!(text.contains(
            "\nDescription: Content-addressed, deduplicating, encrypted backups\n cairn backs up"
        ));
        // A control file ends with one newline: a blank line would start a second paragraph.
        assert!(text.ends_with("daily.\n") && !text.ends_with("\n\n"));
        // Long description lines are indented, and no line of it is empty.
        let long: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("Descr"))
            .collect();
        assert!(long[1..].iter().all(|l| l.starts_with(' ') && l.len() > 1));
        assert!(long.iter().all(|l| l.len() <= 80), "{long:?}");
    }

    #[test]
    fn the_copyright_file_is_dep5_with_each_license_text() {
        let text = copyright("MIT OR Apache-2.0").unwrap();
        assert!(text.starts_with(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        ));
        assert!(
            text.contains("\nFiles: *\nCopyright: The cairn authors\nLicense: MIT or Apache-2.0\n")
        );
        assert!(text.contains("\nLicense: MIT\n Permission is hereby granted"));
        assert!(text.contains("\nLicense: Apache-2.0\n Licensed under"));
        assert!(text.contains("/usr/share/common-licenses/Apache-2.0"));
        // Paragraphs are separated by exactly one blank line, and no line ends in spaces.
        assert!(!text.contains("\n\n\n"));
        assert!(text.lines().all(|l| l == l.trim_end()));
        assert_eq!(
            copyright("GPL-3.0").unwrap_err(),
            "license GPL-3.0 has no text in xtask/src/deb.rs"
        );
    }

    #[test]
    fn package_fields_come_from_the_package_table_only() {
        let manifest = "[package]\nname = \"cairn\"\nversion = \"1.2.3\"\n\
                        [dependencies]\nversion = \"9\"\nlicense = \"x\"\n";
        assert_eq!(package_field(manifest, "version").as_deref(), Some("1.2.3"));
        assert_eq!(package_field(manifest, "license"), None);
        let real = fs::read_to_string(crate::root().join("Cargo.toml")).unwrap();
        assert_eq!(
            package_field(&real, "license").as_deref(),
            Some("MIT OR Apache-2.0")
        );
        assert!(copyright(&package_field(&real, "license").unwrap()).is_ok());
    }

    #[test]
    fn the_changelog_names_version_and_maintainer() {
        let text = changelog(
            "0.1.0",
            "M <m@example.org>",
            "Thu, 03 Dec 2026 16:00:00 +0000",
        );
        assert!(text.starts_with("cairn (0.1.0) unstable; urgency=medium\n\n  * "));
        assert!(text.ends_with("\n -- M <m@example.org>  Thu, 03 Dec 2026 16:00:00 +0000\n"));
    }

    #[test]
    fn the_units_run_a_profile_backup_daily() {
        assert!(SERVICE_UNIT.contains("\nExecStart=/usr/bin/cairn -P %i backup\n"));
        for line in [
            "Type=oneshot",
            "Nice=10",
            "IOSchedulingClass=idle",
            "Wants=network-online.target",
            "After=network-online.target",
        ] {
            assert!(SERVICE_UNIT.lines().any(|l| l == line), "{line}");
        }
        assert!(!SERVICE_UNIT.contains("[Install]"), "the timer starts it");
        for line in [
            "OnCalendar=daily",
            "Persistent=true",
            "RandomizedDelaySec=1h",
            "WantedBy=timers.target",
        ] {
            assert!(TIMER_UNIT.lines().any(|l| l == line), "{line}");
        }
    }
}
