//! `cargo xtask tidy`: the structural rules of the workspace, checked on its source text alone
//! (crate layering, no re-export of a lower crate, a `//!` header on every module, repo-format.md
//! naming the format version the code writes, function length). Std only and no build: files are
//! read and scanned with a small lexer, so the verdict never waits on a compile.
//!
//! Each rule is a pure function of file texts, so its tests feed it synthetic files; the
//! `repository_is_tidy` test runs them all on the workspace, which puts tidy in `cargo test`.

use crate::Result;
use std::fmt;
use std::fs;
use std::path::Path;

/// Where each crate sits. A crate may depend, in `[dependencies]` or `[build-dependencies]`, only
/// on the cairn crates listed beside it, all of them in lower layers; `[dev-dependencies]` reach
/// anywhere. A test-side crate may depend on anything, but only dev-dependencies may name it.
const LAYERS: &[(&str, Place)] = &[
    ("cairn-format", Place::Layer(1, &[])),
    ("cairn-crypto", Place::Layer(2, &["cairn-format"])),
    ("cairn-chunker", Place::Layer(2, &[])),
    ("cairn-backend", Place::Layer(2, &[])),
    // Delivers run reports (HTTP, mail, Prometheus textfile): bytes the CLI hands it, no
    // repository, no key.
    ("cairn-report", Place::Layer(2, &[])),
    (
        "cairn-repo",
        Place::Layer(
            3,
            &[
                "cairn-format",
                "cairn-crypto",
                "cairn-chunker",
                "cairn-backend",
            ],
        ),
    ),
    // The REST server: it stores opaque objects through the local backend and never sees a
    // key or a structure of the format.
    ("cairn-serve", Place::Layer(3, &["cairn-backend"])),
    // The FUSE file system of `cairn mount`: it reads trees and data blobs through the
    // repository's `BlobStore` and never sees a key, the index or a pack.
    (
        "cairn-mount",
        Place::Layer(4, &["cairn-format", "cairn-repo"]),
    ),
    (
        "cairn-engine",
        Place::Layer(4, &["cairn-format", "cairn-chunker", "cairn-repo"]),
    ),
    // The root package: the `cairn` binary (crates/cli). It sees keys and storage only through
    // the repository (`cairn serve` through cairn-serve; it delivers run reports through
    // cairn-report); cairn-crypto and cairn-backend are for its tests (dev-dependencies).
    (
        "cairn",
        Place::Layer(
            5,
            &[
                "cairn-format",
                "cairn-repo",
                "cairn-engine",
                "cairn-serve",
                "cairn-mount",
                "cairn-report",
            ],
        ),
    ),
    ("cairn-sim", Place::TestSide),
    ("cairn-testkit", Place::TestSide),
];

#[derive(Clone, Copy, Debug)]
enum Place {
    /// A layer and the cairn crates it may depend on.
    Layer(u8, &'static [&'static str]),
    /// A crate for tests: may depend on anything, only dev-dependencies may name it.
    TestSide,
}

/// Dependencies of the root package that break the layering today and are being removed (issue
/// 17). The list may only shrink: tidy fails when one of them is gone and still listed.
const ROOT_DEPS_FOR_NOW: &[&str] = &[];

/// Re-exports of another cairn crate that exist today and are being removed (issue 17), as (file,
/// crate re-exported). The list may only shrink: tidy fails when one of them is gone and still
/// listed.
const REEXPORTS_FOR_NOW: &[(&str, &str)] = &[];

/// The longest a function may be, in lines from `fn` to its closing brace, in the crates whose
/// main paths should read top to bottom.
const MAX_FN_LINES: usize = 120;

/// Where [`MAX_FN_LINES`] applies (directories, searched recursively). Test code is exempt.
const FN_LENGTH_DIRS: &[&str] = &[
    "crates/cairn-engine/src",
    "crates/cairn-repo/src",
    "crates/cli",
];

/// Functions longer than [`MAX_FN_LINES`] today, as (file, function), being split (issue 17).
/// The list may only shrink: tidy fails when one of them fits and is still listed.
const TOO_LONG_FOR_NOW: &[(&str, &str)] = &[];

/// Where the code states the format version it writes, and the document that must name it.
const FORMAT_LIB: &str = "crates/cairn-format/src/lib.rs";
const FORMAT_DOC: &str = "repo-format.md";

/// One broken rule, printed as `tidy: <file>:<line>: <what>`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tidy: {}:{}: {}", self.file, self.line, self.what)
    }
}

/// The fix for a crate missing from [`LAYERS`].
const ADD_TO_LAYERS: &str = "add it to the layer table (LAYERS in xtask/src/tidy.rs)";

/// The fix for an allowlist entry that no longer applies: lists only shrink.
fn remove_from(allowlist: &str) -> String {
    format!("remove it from {allowlist} in xtask/src/tidy.rs")
}

fn violation(file: &str, line: usize, what: impl Into<String>) -> Violation {
    Violation {
        file: file.to_string(),
        line,
        what: what.into(),
    }
}

/// A file of the workspace: its path relative to the root, with `/` separators, and its text.
struct Source {
    path: String,
    text: String,
}

/// `cargo xtask tidy`: prints one line per violation and fails if there is any.
pub fn tidy(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        return Err(crate::USAGE.into());
    }
    let violations = check(&crate::root())?;
    for v in &violations {
        eprintln!("{v}");
    }
    if violations.is_empty() {
        println!("tidy: ok");
        Ok(())
    } else {
        Err(format!("tidy found {} problem(s)", violations.len()))
    }
}

/// Runs every rule on the workspace at `root`.
fn check(root: &Path) -> Result<Vec<Violation>> {
    let mut manifests = vec![read(root, "Cargo.toml")?];
    for dir in sorted_entries(&root.join("crates"))? {
        let manifest = format!("crates/{dir}/Cargo.toml");
        if root.join(&manifest).is_file() {
            manifests.push(read(root, &manifest)?);
        }
    }
    let mut rust = Vec::new();
    for dir in ["crates", "tests", "benches", "xtask"] {
        collect_rust(root, dir, &mut rust)?;
    }

    let mut violations = check_layering(&manifests, ROOT_DEPS_FOR_NOW);
    let library_sources: Vec<&Source> =
        rust.iter().filter(|s| is_library_source(&s.path)).collect();
    violations.extend(check_reexports(&library_sources, REEXPORTS_FOR_NOW));
    violations.extend(check_headers(&rust));
    violations.extend(check_format_version(
        &read(root, FORMAT_LIB)?,
        &read(root, FORMAT_DOC)?,
    ));
    let length_sources: Vec<&Source> = rust
        .iter()
        .filter(|s| FN_LENGTH_DIRS.iter().any(|d| under(&s.path, d)))
        .collect();
    violations.extend(check_fn_length(&length_sources, TOO_LONG_FOR_NOW));
    Ok(violations)
}

fn read(root: &Path, path: &str) -> Result<Source> {
    let text =
        fs::read_to_string(root.join(path)).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(Source {
        path: path.to_string(),
        text,
    })
}

fn sorted_entries(dir: &Path) -> Result<Vec<String>> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Every `.rs` file under `dir`, except in build output, hidden directories and fixtures (which
/// are data, not modules).
fn collect_rust(root: &Path, dir: &str, out: &mut Vec<Source>) -> Result<()> {
    if !root.join(dir).is_dir() {
        return Ok(());
    }
    for name in sorted_entries(&root.join(dir))? {
        let path = format!("{dir}/{name}");
        if root.join(&path).is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "fixtures") {
                collect_rust(root, &path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(read(root, &path)?);
        }
    }
    Ok(())
}

fn under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// A library crate's sources or the CLI's: where a re-export would widen a crate's API.
fn is_library_source(path: &str) -> bool {
    if under(path, "crates/cli") {
        return true;
    }
    let mut parts = path.split('/');
    parts.next() == Some("crates") && parts.next().is_some() && parts.next() == Some("src")
}

// ---------------------------------------------------------------------------------------------
// (a) Crate layering

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DepKind {
    Normal,
    Dev,
}

struct Dependency {
    name: String,
    line: usize,
    kind: DepKind,
}

struct Manifest {
    /// The package's name and the line that gives it.
    package: Option<(String, usize)>,
    dependencies: Vec<Dependency>,
    /// The line of the `[dependencies]` header, where a stale allowlist entry is reported.
    dependencies_line: usize,
}

fn place(krate: &str) -> Option<Place> {
    LAYERS.iter().find(|(k, _)| *k == krate).map(|&(_, p)| p)
}

fn is_cairn_crate(name: &str) -> bool {
    name == "cairn" || name.starts_with("cairn-")
}

/// Checks each manifest's cairn dependencies against [`LAYERS`]; `root_allowed` lists the root
/// package's dependencies tolerated for now.
fn check_layering(manifests: &[Source], root_allowed: &[&str]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for source in manifests {
        let manifest = parse_manifest(&source.text);
        let file = source.path.as_str();
        let Some((package, package_line)) = manifest.package else {
            continue; // a virtual manifest has no package and no dependencies of its own
        };
        let Some(own_place) = place(&package) else {
            violations.push(violation(
                file,
                package_line,
                format!("crate `{package}` is not in the layer table: {ADD_TO_LAYERS}"),
            ));
            continue;
        };
        let mut tolerated = Vec::new();
        for dep in &manifest.dependencies {
            if dep.kind == DepKind::Dev || !is_cairn_crate(&dep.name) {
                continue;
            }
            let Place::Layer(level, allowed) = own_place else {
                continue; // a test-side crate may depend on anything
            };
            let what = match place(&dep.name) {
                None => format!(
                    "`{package}` depends on `{}`, which is not in the layer table: {ADD_TO_LAYERS}",
                    dep.name
                ),
                Some(Place::TestSide) => format!(
                    "`{package}` depends on the test-side crate `{}`: only [dev-dependencies] may",
                    dep.name
                ),
                Some(Place::Layer(..)) if allowed.contains(&dep.name.as_str()) => continue,
                Some(Place::Layer(..))
                    if package == "cairn" && root_allowed.contains(&dep.name.as_str()) =>
                {
                    tolerated.push(dep.name.clone());
                    continue;
                }
                Some(Place::Layer(dep_level, _)) => {
                    let may = match allowed {
                        [] => "no cairn crate".to_string(),
                        _ => allowed.join(", "),
                    };
                    format!(
                        "`{package}` (layer {level}) may not depend on `{}` (layer {dep_level}) \
                         in [dependencies]; it may depend on: {may}",
                        dep.name
                    )
                }
            };
            violations.push(violation(file, dep.line, what));
        }
        if package == "cairn" {
            for stale in root_allowed
                .iter()
                .filter(|d| !tolerated.iter().any(|t| t == *d))
            {
                violations.push(violation(
                    file,
                    manifest.dependencies_line,
                    format!(
                        "`cairn` no longer depends on `{stale}` in [dependencies]: {}",
                        remove_from("ROOT_DEPS_FOR_NOW")
                    ),
                ));
            }
        }
    }
    violations
}

/// What a manifest says about its package and dependencies: enough TOML for Cargo.toml files as
/// written here (`name = ...`, `name.workspace = true`, `[dependencies.name]`, `package = ...`
/// renames, `[target.'cfg(..)'.dependencies]`).
fn parse_manifest(text: &str) -> Manifest {
    #[derive(Clone, Copy)]
    enum Table {
        Package,
        Deps(DepKind),
        /// `[dependencies.name]`: the index of that dependency.
        OneDep(usize),
        Other,
    }
    let mut manifest = Manifest {
        package: None,
        dependencies: Vec::new(),
        dependencies_line: 1,
    };
    let mut table = Table::Other;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = strip_toml_comment(raw).trim();
        if line.starts_with("[[") {
            table = Table::Other;
        } else if let Some(header) = line.strip_prefix('[') {
            let keys = dotted_keys(header.trim_end_matches(']'));
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            // `[target.<cfg>.dependencies]` is like `[dependencies]`.
            let keys = match keys.as_slice() {
                ["target", _, rest @ ..] => rest,
                all => all,
            };
            table = match keys {
                ["package"] => Table::Package,
                [kind_key] | [kind_key, _] if dep_kind(kind_key).is_some() => {
                    let kind = dep_kind(kind_key).unwrap(); // just checked
                    if *kind_key == "dependencies" && manifest.dependencies_line == 1 {
                        manifest.dependencies_line = line_no;
                    }
                    if let [_, name] = keys {
                        manifest.dependencies.push(Dependency {
                            name: name.to_string(),
                            line: line_no,
                            kind,
                        });
                        Table::OneDep(manifest.dependencies.len() - 1)
                    } else {
                        Table::Deps(kind)
                    }
                }
                _ => Table::Other,
            };
        } else if let Some((key, value)) = line.split_once('=') {
            let key = key.trim();
            match table {
                Table::Package if key == "name" => {
                    manifest.package = Some((unquote(value), line_no));
                }
                Table::Deps(kind) => {
                    let name = key.split('.').next().unwrap_or(key);
                    let name = inline_package(value).unwrap_or_else(|| unquote(name));
                    manifest.dependencies.push(Dependency {
                        name,
                        line: line_no,
                        kind,
                    });
                }
                Table::OneDep(dep) if key == "package" => {
                    manifest.dependencies[dep].name = unquote(value);
                }
                _ => {}
            }
        }
    }
    manifest
}

fn dep_kind(table: &str) -> Option<DepKind> {
    match table {
        "dependencies" | "build-dependencies" => Some(DepKind::Normal),
        "dev-dependencies" => Some(DepKind::Dev),
        _ => None,
    }
}

/// The part of a TOML line before a comment (a `#` outside a string).
fn strip_toml_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// `a.'b.c'."d"` → `a`, `b.c`, `d`.
fn dotted_keys(header: &str) -> Vec<String> {
    let mut keys = vec![String::new()];
    let mut quote = None;
    for c in header.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '.') => keys.push(String::new()),
            (None, c) if c.is_whitespace() => {}
            (_, c) => keys.last_mut().unwrap().push(c), // `keys` starts non-empty
        }
    }
    keys
}

fn unquote(value: &str) -> String {
    value
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_string()
}

/// The `package = "..."` of an inline table, the crate a renamed dependency really is.
fn inline_package(value: &str) -> Option<String> {
    let inner = value
        .trim()
        .strip_prefix('{')?
        .trim_end()
        .strip_suffix('}')?;
    inner.split(',').find_map(|field| {
        let (key, value) = field.split_once('=')?;
        (key.trim() == "package").then(|| unquote(value))
    })
}

// ---------------------------------------------------------------------------------------------
// (b) No `pub use` of another cairn crate

/// Finds `pub use cairn_xxx…` (and `pub use {cairn_xxx::…}`) in `sources`; `allowed` lists the
/// (file, crate) pairs tolerated for now.
fn check_reexports(sources: &[&Source], allowed: &[(&str, &str)]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut seen = Vec::new();
    for source in sources {
        for (krate, line) in reexports(&lex(&source.text)) {
            if allowed.contains(&(source.path.as_str(), krate.as_str())) {
                seen.push((source.path.clone(), krate));
                continue;
            }
            violations.push(violation(
                &source.path,
                line,
                format!(
                    "`pub use {krate}…` re-exports another cairn crate: let callers depend on \
                     `{krate}` themselves, or keep the item private (`pub(crate) use`)"
                ),
            ));
        }
    }
    for &(file, krate) in allowed {
        if !seen.iter().any(|(f, k)| f == file && k == krate) {
            violations.push(violation(
                file,
                1,
                format!(
                    "no `pub use {krate}` here any more: {}",
                    remove_from("REEXPORTS_FOR_NOW")
                ),
            ));
        }
    }
    violations
}

/// The cairn crates a token stream re-exports with `pub use`, with the line of each: the first
/// segment of the path after `use` (past a leading `::`), or of each path in a leading group
/// (`pub use {cairn_format::Id, std::fmt};`).
fn reexports(tokens: &[Token]) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (i, pair) in tokens.windows(2).enumerate() {
        if !(pair[0].is_ident("pub") && pair[1].is_ident("use")) {
            continue;
        }
        let mut depth = 0;
        let mut path_start = true;
        let mut leading_group = false;
        for token in &tokens[i + 2..] {
            match token.kind {
                Kind::Punct(';') => break,
                Kind::Punct(':') => {} // `::` leaves the position as it was
                Kind::Punct('{') => {
                    if depth == 0 && path_start {
                        leading_group = true;
                    } else {
                        path_start = false;
                    }
                    depth += 1;
                }
                Kind::Punct('}') => {
                    depth -= 1;
                    path_start = false;
                }
                Kind::Punct(',') => path_start = depth == 1 && leading_group,
                Kind::Ident if path_start && token.text.starts_with("cairn_") => {
                    found.push((token.text.clone(), token.line));
                    path_start = false;
                }
                _ => path_start = false,
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// (c) A `//!` header on every module

fn check_headers(sources: &[Source]) -> Vec<Violation> {
    sources
        .iter()
        .filter(|s| !has_header(&s.text))
        .map(|s| {
            violation(
                &s.path,
                1,
                "no `//!` header: start the file with `//!` lines saying what the module owns \
                 and the invariant it keeps",
            )
        })
        .collect()
}

/// Whether the text starts, after nothing but blank lines, with a `//!` line.
fn has_header(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("//!"))
}

// ---------------------------------------------------------------------------------------------
// (d) repo-format.md names the format version the code writes

/// Checks that `doc` (repo-format.md) states the version `lib` (cairn-format's lib.rs) defines as
/// `FORMAT_VERSION`: in its introduction, in the `version` row of the Config layout, and as the
/// last row of the version history.
fn check_format_version(lib: &Source, doc: &Source) -> Vec<Violation> {
    let Some((version, const_line)) = format_version(&lib.text) else {
        return vec![violation(
            &lib.path,
            1,
            "no `pub const FORMAT_VERSION: u32 = N;` found (tidy checks repo-format.md against it)",
        )];
    };
    let source = format!("FORMAT_VERSION = {version}, {}:{const_line}", lib.path);
    let mut violations = Vec::new();
    let sections = markdown_sections(&doc.text);

    let intro = &sections[0];
    if !intro.lines.iter().any(|(_, l)| names_version(l, version)) {
        violations.push(violation(
            &doc.path,
            1,
            format!("the introduction does not say \"format version {version}\" ({source})"),
        ));
    }

    match sections.iter().find(|s| s.title_ends_with("config")) {
        None => violations.push(violation(
            &doc.path,
            1,
            "no \"Config\" section, where the config file's version field is laid out",
        )),
        Some(config) => {
            let states = config.lines.iter().any(|(_, l)| {
                let cells = table_cells(l);
                cells.contains(&"version")
                    && cells.iter().any(|c| c.ends_with(&format!("= {version}")))
            });
            if !states {
                violations.push(violation(
                    &doc.path,
                    config.line,
                    format!(
                        "the Config section has no `| version | `u32` = {version} |` row ({source})"
                    ),
                ));
            }
        }
    }

    match sections
        .iter()
        .find(|s| s.title_ends_with("version history"))
    {
        None => violations.push(violation(&doc.path, 1, "no \"Version history\" section")),
        Some(history) => {
            let last_row = history
                .lines
                .iter()
                .rfind(|(_, l)| l.trim_start().starts_with('|'));
            let last_version = last_row.and_then(|(_, l)| table_cells(l).first().copied());
            if last_version != Some(version.to_string().as_str()) {
                violations.push(violation(
                    &doc.path,
                    last_row.map_or(history.line, |&(n, _)| n),
                    format!("the version history's last row is not version {version} ({source})"),
                ));
            }
        }
    }
    violations
}

/// `pub const FORMAT_VERSION: u32 = N;` → (N, its line).
fn format_version(lib: &str) -> Option<(u64, usize)> {
    lib.lines().enumerate().find_map(|(idx, line)| {
        let rest = line.trim().strip_prefix("pub const FORMAT_VERSION")?;
        let value = rest.split_once('=')?.1.trim();
        let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
        Some((digits.parse().ok()?, idx + 1))
    })
}

/// Whether a line says "format version N" (and not, say, N0).
fn names_version(line: &str, version: u64) -> bool {
    let needle = format!("format version {version}");
    line.match_indices(&needle)
        .any(|(at, _)| !line[at + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

struct Section<'a> {
    title: &'a str,
    /// The heading's line (1 for the text before the first heading).
    line: usize,
    lines: Vec<(usize, &'a str)>,
}

impl Section<'_> {
    fn title_ends_with(&self, suffix: &str) -> bool {
        self.title.trim().to_lowercase().ends_with(suffix)
    }
}

/// The text split at `## ` headings; the first section is the introduction.
fn markdown_sections(text: &str) -> Vec<Section<'_>> {
    let mut sections = vec![Section {
        title: "",
        line: 1,
        lines: Vec::new(),
    }];
    for (idx, line) in text.lines().enumerate() {
        if let Some(title) = line.strip_prefix("## ") {
            sections.push(Section {
                title,
                line: idx + 1,
                lines: Vec::new(),
            });
        } else {
            sections.last_mut().unwrap().lines.push((idx + 1, line)); // never empty
        }
    }
    sections
}

/// `| 8 | 4 | version | `u32` = 1 |` → `8`, `4`, `version`, `` `u32` = 1 ``.
fn table_cells(line: &str) -> Vec<&str> {
    let Some(inner) = line.trim().strip_prefix('|') else {
        return Vec::new();
    };
    inner
        .trim_end_matches('|')
        .split('|')
        .map(|c| c.trim().trim_matches('`').trim())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// (e) Function length

/// Finds functions longer than [`MAX_FN_LINES`] outside test code; `allowed` lists the (file,
/// function) pairs tolerated for now, each of which must still be too long.
fn check_fn_length(sources: &[&Source], allowed: &[(&str, &str)]) -> Vec<Violation> {
    let scans: Vec<(&str, Scan)> = sources
        .iter()
        .map(|s| (s.path.as_str(), scan(&lex(&s.text))))
        .collect();
    // Files that are `#[cfg(test)] mod name;` of another file are test code too.
    let test_dirs: Vec<String> = scans
        .iter()
        .flat_map(|(path, scan)| {
            scan.test_modules
                .iter()
                .map(move |name| format!("{}/{name}", module_dir(path)))
        })
        .collect();
    let is_test_file = |path: &str| {
        test_dirs
            .iter()
            .any(|dir| path == format!("{dir}.rs") || under(path, dir))
    };

    let mut violations = Vec::new();
    for (path, scan) in &scans {
        if scan.test_file || is_test_file(path) {
            continue;
        }
        for function in &scan.functions {
            let len = function.lines();
            let listed = allowed.contains(&(*path, function.name.as_str()));
            if len > MAX_FN_LINES && !listed {
                violations.push(violation(
                    path,
                    function.start,
                    format!(
                        "function `{}` is {len} lines long (at most {MAX_FN_LINES}): \
                         split it into steps",
                        function.name
                    ),
                ));
            }
        }
    }
    for &(path, name) in allowed {
        let found: Vec<&Function> = scans
            .iter()
            .filter(|(p, _)| *p == path)
            .flat_map(|(_, s)| s.functions.iter().filter(|f| f.name == name))
            .collect();
        if found.iter().any(|f| f.lines() > MAX_FN_LINES) {
            continue;
        }
        let (line, what) = match found.first() {
            Some(f) => (
                f.start,
                format!(
                    "function `{name}` is {} lines now, within {MAX_FN_LINES}",
                    f.lines()
                ),
            ),
            None => (1, format!("no function `{name}` here any more")),
        };
        violations.push(violation(
            path,
            line,
            format!("{what}: {}", remove_from("TOO_LONG_FOR_NOW")),
        ));
    }
    violations
}

/// The directory holding a file's child modules: `a/lib.rs` → `a`, `a/b.rs` → `a/b`.
fn module_dir(path: &str) -> String {
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    match file {
        "lib.rs" | "main.rs" | "mod.rs" => dir.to_string(),
        _ => format!("{dir}/{}", file.trim_end_matches(".rs")),
    }
}

struct Function {
    name: String,
    /// The line of `fn` and of the closing brace.
    start: usize,
    end: usize,
}

impl Function {
    fn lines(&self) -> usize {
        self.end - self.start + 1
    }
}

/// What [`scan`] finds in a file outside its test code.
#[derive(Default)]
struct Scan {
    functions: Vec<Function>,
    /// Modules declared `#[cfg(test)] mod name;`, whose files are test code.
    test_modules: Vec<String>,
    /// The file is test code as a whole (`#![cfg(test)]`).
    test_file: bool,
}

/// Finds the functions with a body, skipping items marked `#[test]` or `#[cfg(test)]`.
fn scan(tokens: &[Token]) -> Scan {
    let mut result = Scan::default();
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        if token.kind == Kind::Punct('#') {
            let inner = tokens
                .get(i + 1)
                .is_some_and(|t| t.kind == Kind::Punct('!'));
            let open = if inner { i + 2 } else { i + 1 };
            if tokens.get(open).is_some_and(|t| t.kind == Kind::Punct('[')) {
                let close = matching(tokens, open).unwrap_or(tokens.len() - 1);
                let is_test = is_test_attribute(&tokens[open + 1..close]);
                i = close + 1;
                if is_test && inner {
                    result.test_file = true;
                } else if is_test {
                    i = skip_item(tokens, i, &mut result.test_modules);
                }
                continue;
            }
        }
        if token.is_ident("fn") {
            if let Some(name) = tokens.get(i + 1).filter(|t| t.kind == Kind::Ident) {
                if let Some(end) = body_end(tokens, i + 2) {
                    result.functions.push(Function {
                        name: name.text.clone(),
                        start: token.line,
                        end: tokens[end].line,
                    });
                }
            }
        }
        i += 1;
    }
    result
}

/// `test`, or a `cfg(...)` naming `test` and not `not`.
fn is_test_attribute(inside: &[Token]) -> bool {
    match inside {
        [only] => only.is_ident("test"),
        [first, rest @ ..] if first.is_ident("cfg") => {
            rest.iter().any(|t| t.is_ident("test")) && !rest.iter().any(|t| t.is_ident("not"))
        }
        _ => false,
    }
}

/// Skips the item starting at `i` (after its attribute): further attributes, then up to a `;` or
/// `,` or through a braced body. Records `mod name;` in `test_modules`. Returns the index after.
fn skip_item(tokens: &[Token], mut i: usize, test_modules: &mut Vec<String>) -> usize {
    let mut depth = 0usize;
    while i < tokens.len() {
        match tokens[i].kind {
            Kind::Punct('(' | '[') => depth += 1,
            Kind::Punct(')' | ']') => depth = depth.saturating_sub(1),
            Kind::Punct(';' | ',') if depth == 0 => {
                if let [.., module, name] = &tokens[..i] {
                    if module.is_ident("mod") && name.kind == Kind::Ident {
                        test_modules.push(name.text.clone());
                    }
                }
                return i + 1;
            }
            Kind::Punct('{') if depth == 0 => {
                return matching(tokens, i).map_or(tokens.len(), |end| end + 1);
            }
            // The end of the enclosing block: the item had no body of its own.
            Kind::Punct('}') if depth == 0 => return i,
            _ => {}
        }
        i += 1;
    }
    i
}

/// From just after `fn name`, the index of the body's closing brace, or `None` for a
/// declaration without a body (`fn f();`).
fn body_end(tokens: &[Token], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(from) {
        match token.kind {
            Kind::Punct('(' | '[') => depth += 1,
            Kind::Punct(')' | ']') => depth = depth.saturating_sub(1),
            Kind::Punct(';') if depth == 0 => return None,
            Kind::Punct('{') if depth == 0 => return matching(tokens, i),
            _ => {}
        }
    }
    None
}

/// The index of the bracket closing the one at `open`.
fn matching(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// A lexer just good enough for brackets: comments, strings and char literals are dropped, so
// the braces and keywords that remain are the code's.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ident,
    Punct(char),
    Literal,
}

#[derive(Debug)]
struct Token {
    kind: Kind,
    text: String,
    line: usize,
}

impl Token {
    fn is_ident(&self, text: &str) -> bool {
        self.kind == Kind::Ident && self.text == text
    }
}

fn lex(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Advances over chars[from..to], counting the newlines passed.
    let advance = |from: usize, to: usize, line: &mut usize| {
        *line += chars[from..to.min(chars.len())]
            .iter()
            .filter(|&&c| c == '\n')
            .count();
        to.min(chars.len())
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start_line = line;
        if c.is_whitespace() {
            i = advance(i, i + 1, &mut line);
        } else if c == '/' && next == Some('/') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |p| i + p);
            i = advance(i, end, &mut line);
        } else if c == '/' && next == Some('*') {
            i = advance(i, block_comment_end(&chars, i), &mut line);
        } else if c == '"' {
            i = advance(i, string_end(&chars, i + 1), &mut line);
            tokens.push(literal(start_line));
        } else if c == '\'' {
            if let Some(end) = char_literal_end(&chars, i) {
                i = advance(i, end, &mut line);
                tokens.push(literal(start_line));
            } else {
                // A lifetime or label: `'a` is neither a bracket nor a keyword.
                let end = ident_end(&chars, i + 1);
                i = advance(i, end, &mut line);
                tokens.push(literal(start_line));
            }
        } else if c.is_alphabetic() || c == '_' {
            let end = ident_end(&chars, i);
            let word: String = chars[i..end].iter().collect();
            if let Some(after) = raw_string_end(&chars, &word, end) {
                i = advance(i, after, &mut line);
                tokens.push(literal(start_line));
            } else {
                i = end;
                tokens.push(Token {
                    kind: Kind::Ident,
                    text: word,
                    line,
                });
            }
        } else if c.is_ascii_digit() {
            let mut end = i + 1;
            while end < chars.len()
                && (chars[end].is_alphanumeric()
                    || chars[end] == '_'
                    || (chars[end] == '.' && chars.get(end + 1).is_some_and(char::is_ascii_digit)))
            {
                end += 1;
            }
            i = end;
            tokens.push(literal(line));
        } else {
            i += 1;
            tokens.push(Token {
                kind: Kind::Punct(c),
                text: String::new(),
                line,
            });
        }
    }
    tokens
}

fn literal(line: usize) -> Token {
    Token {
        kind: Kind::Literal,
        text: String::new(),
        line,
    }
}

fn ident_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    i
}

/// From just inside a `"`, the index after the closing `"`.
fn string_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// At `'`: the index after a char literal (`'x'`, `'\n'`, `'\u{..}'`), or `None` for a lifetime.
fn char_literal_end(chars: &[char], i: usize) -> Option<usize> {
    match chars.get(i + 1)? {
        '\\' => {
            // Past the escape's first char, so that `'\''` ends at its last quote.
            let from = (i + 3).min(chars.len());
            let close = chars[from..].iter().position(|&c| c == '\'')?;
            Some(from + close + 1)
        }
        _ if chars.get(i + 2) == Some(&'\'') => Some(i + 3),
        _ => None,
    }
}

/// After `r`, `br` or `cr` ending at `i`: if a raw string follows (`r"…"`, `r#"…"#`), the index
/// after it.
fn raw_string_end(chars: &[char], word: &str, i: usize) -> Option<usize> {
    if !matches!(word, "r" | "br" | "cr") {
        return None;
    }
    let hashes = chars[i..].iter().take_while(|&&c| c == '#').count();
    if chars.get(i + hashes) != Some(&'"') {
        return None; // `r#ident`, a raw identifier
    }
    let mut j = i + hashes + 1;
    while j < chars.len() {
        if chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

/// At `/*`: the index after the matching `*/` (block comments nest).
fn block_comment_end(chars: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i + 1 < chars.len() {
        match (chars[i], chars[i + 1]) {
            ('/', '*') => {
                depth += 1;
                i += 2;
            }
            ('*', '/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    chars.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, text: &str) -> Source {
        Source {
            path: path.to_string(),
            text: text.to_string(),
        }
    }

    /// A file of these lines, so that a test's line numbers can be read off its input.
    fn lines(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    fn printed(violations: &[Violation]) -> Vec<String> {
        violations.iter().map(ToString::to_string).collect()
    }

    fn layering(path: &str, text: &str, root_allowed: &[&str]) -> Vec<String> {
        printed(&check_layering(&[source(path, text)], root_allowed))
    }

    #[test]
    fn repository_is_tidy() {
        let violations = check(&crate::root()).unwrap();
        assert!(
            violations.is_empty(),
            "cargo xtask tidy:\n{}",
            printed(&violations).join("\n")
        );
    }

    #[test]
    fn the_layer_table_points_down() {
        for &(krate, place) in LAYERS {
            let Place::Layer(level, allowed) = place else {
                continue;
            };
            for dep in allowed {
                match super::place(dep) {
                    Some(Place::Layer(dep_level, _)) => {
                        assert!(dep_level < level, "{krate} -> {dep} points up")
                    }
                    other => panic!("{krate} -> {dep}: {other:?}"),
                }
            }
        }
    }

    fn engine_manifest(extra_dependency: &str) -> String {
        lines(&[
            "[package]",
            "name = \"cairn-engine\"",
            "",
            "[dependencies]",
            "cairn-format = { path = \"../cairn-format\" } # layer 1",
            "cairn-repo.workspace = true",
            extra_dependency,
            "",
            "[dev-dependencies]",
            "cairn-backend = { path = \"../cairn-backend\" }",
            "cairn-sim = { path = \"../cairn-sim\" }",
        ])
    }

    #[test]
    fn allowed_dependencies_and_any_dev_dependency_pass() {
        let text = engine_manifest("globset = \"0.4\"");
        assert_eq!(layering("Cargo.toml", &text, &[]), Vec::<String>::new());
    }

    #[test]
    fn a_dependency_on_a_crate_not_listed_for_its_layer_is_rejected() {
        let text = engine_manifest("cairn-backend = { path = \"../cairn-backend\" }");
        assert_eq!(
            layering("e/Cargo.toml", &text, &[]),
            [
                "tidy: e/Cargo.toml:7: `cairn-engine` (layer 4) may not depend on `cairn-backend` \
                 (layer 2) in [dependencies]; it may depend on: cairn-format, cairn-chunker, \
                 cairn-repo"
            ]
        );

        let table_form = lines(&[
            "[package]",
            "name = \"cairn-format\"",
            "[dependencies.crypto]",
            "package = \"cairn-crypto\"",
            "path = \"../cairn-crypto\"",
        ]);
        assert_eq!(
            layering("f/Cargo.toml", &table_form, &[]),
            [
                "tidy: f/Cargo.toml:3: `cairn-format` (layer 1) may not depend on `cairn-crypto` \
                 (layer 2) in [dependencies]; it may depend on: no cairn crate"
            ]
        );

        let renamed = lines(&[
            "[package]",
            "name = \"cairn-chunker\"",
            "[target.'cfg(unix)'.build-dependencies]",
            "fmt = { package = \"cairn-format\", path = \"x\" }",
        ]);
        let found = check_layering(&[source("c/Cargo.toml", &renamed)], &[]);
        assert_eq!(found.iter().map(|v| v.line).collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn crates_outside_the_table_and_test_side_crates_are_rejected() {
        let unknown = lines(&["[package]", "name = \"cairn-new\""]);
        assert_eq!(
            layering("n/Cargo.toml", &unknown, &[]),
            [
                "tidy: n/Cargo.toml:2: crate `cairn-new` is not in the layer table: add it to \
                 the layer table (LAYERS in xtask/src/tidy.rs)"
            ]
        );

        let text = engine_manifest("cairn-testkit = { path = \"x\" }\ncairn-cache = \"1\"");
        assert_eq!(
            layering("e/Cargo.toml", &text, &[]),
            [
                "tidy: e/Cargo.toml:7: `cairn-engine` depends on the test-side crate \
                 `cairn-testkit`: only [dev-dependencies] may",
                "tidy: e/Cargo.toml:8: `cairn-engine` depends on `cairn-cache`, which is not in \
                 the layer table: add it to the layer table (LAYERS in xtask/src/tidy.rs)",
            ]
        );

        // A test-side crate may depend on anything.
        let sim = lines(&[
            "[package]",
            "name = \"cairn-sim\"",
            "[dependencies]",
            "cairn-engine = \"1\"",
            "cairn-backend = \"1\"",
        ]);
        assert_eq!(layering("s/Cargo.toml", &sim, &[]), Vec::<String>::new());
    }

    #[test]
    fn the_root_dependency_allowlist_only_shrinks() {
        let root = lines(&[
            "[package]",
            "name = \"cairn\"",
            "",
            "[dependencies]",
            "cairn-engine = \"1\"",
            "cairn-crypto = \"1\"",
            "",
            "[dev-dependencies]",
            "cairn-backend = \"1\"",
        ]);
        assert_eq!(
            layering("Cargo.toml", &root, &[]),
            [
                "tidy: Cargo.toml:6: `cairn` (layer 5) may not depend on `cairn-crypto` (layer \
                 2) in [dependencies]; it may depend on: cairn-format, cairn-repo, cairn-engine, \
                 cairn-serve, cairn-mount, cairn-report"
            ]
        );
        assert_eq!(
            layering("Cargo.toml", &root, &["cairn-crypto"]),
            Vec::<String>::new()
        );
        assert_eq!(
            layering("Cargo.toml", &root, &["cairn-crypto", "cairn-backend"]),
            [
                "tidy: Cargo.toml:4: `cairn` no longer depends on `cairn-backend` in \
                 [dependencies]: remove it from ROOT_DEPS_FOR_NOW in xtask/src/tidy.rs"
            ]
        );
    }

    #[test]
    fn a_reexport_of_another_cairn_crate_is_rejected() {
        let text = lines(&[
            "//! A module.",
            "// pub use cairn_format::Id; in a comment",
            "const S: &str = \"pub use cairn_x;\";",
            "pub(crate) use cairn_format::Id;",
            "pub use crate::cairn_like;",
            "pub use cairn_format::Id;",
            "pub use {",
            "    std::{fmt, cairn_like},",
            "    ::cairn_crypto as crypto,",
            "};",
        ]);
        let file = source("crates/a/src/lib.rs", &text);
        let found = check_reexports(&[&file], &[]);
        assert_eq!(
            found.iter().map(|v| v.line).collect::<Vec<_>>(),
            [6, 9],
            "{found:?}"
        );
        assert_eq!(
            found[0].to_string(),
            "tidy: crates/a/src/lib.rs:6: `pub use cairn_format…` re-exports another cairn \
             crate: let callers depend on `cairn_format` themselves, or keep the item private \
             (`pub(crate) use`)"
        );
    }

    #[test]
    fn the_reexport_allowlist_only_shrinks() {
        let file = source("a.rs", "pub use cairn_format::{Id, PackId};\n");
        assert!(check_reexports(&[&file], &[("a.rs", "cairn_format")]).is_empty());
        assert_eq!(
            printed(&check_reexports(
                &[&file],
                &[("a.rs", "cairn_format"), ("a.rs", "cairn_repo")]
            )),
            [
                "tidy: a.rs:1: no `pub use cairn_repo` here any more: remove it from \
                 REEXPORTS_FOR_NOW in xtask/src/tidy.rs"
            ]
        );
    }

    #[test]
    fn the_reexport_rule_covers_library_sources_and_the_cli() {
        assert!(is_library_source("crates/cairn-repo/src/gc/mod.rs"));
        assert!(is_library_source("crates/cli/cmd/check.rs"));
        assert!(!is_library_source("crates/cairn-repo/tests/repository.rs"));
        assert!(!is_library_source("tests/integration/main.rs"));
    }

    #[test]
    fn a_file_without_a_header_is_rejected() {
        let files = [
            source("a.rs", "\n\n//! Owns a.\nfn a() {}\n"),
            source("b.rs", "// Owns b.\n//! Owns b.\n"),
            source("c.rs", "#![allow(dead_code)]\n//! Owns c.\n"),
            source("d.rs", ""),
        ];
        let found = check_headers(&files);
        assert_eq!(
            found.iter().map(|v| v.file.as_str()).collect::<Vec<_>>(),
            ["b.rs", "c.rs", "d.rs"]
        );
        assert_eq!(
            found[0].to_string(),
            "tidy: b.rs:1: no `//!` header: start the file with `//!` lines saying what the \
             module owns and the invariant it keeps"
        );
    }

    fn format_doc(intro_version: &str) -> String {
        lines(&[
            "# format",
            "",
            &format!("What cairn writes: format version {intro_version}, by cairn 0.1.0."),
            "",
            "## 8. Config",
            "",
            "| Offset | Size | Field | Value |",
            "|---|---|---|---|",
            "| 8 | 4 | version | `u32` = 1 |",
            "",
            "## 19. Version history",
            "",
            "| Version | Date | Changes |",
            "|---|---|---|",
            "| 1 | 2026-11 | The initial format. |",
        ])
    }

    fn format_lib(version: u32) -> String {
        lines(&[
            "//! Format.",
            "",
            "/// The version.",
            &format!("pub const FORMAT_VERSION: u32 = {version};"),
        ])
    }

    #[test]
    fn the_document_must_name_the_format_version() {
        let doc = source("doc.md", &format_doc("1"));
        let lib = source("lib.rs", &format_lib(1));
        assert!(check_format_version(&lib, &doc).is_empty());

        let bumped = source("lib.rs", &format_lib(2));
        assert_eq!(
            printed(&check_format_version(&bumped, &doc)),
            [
                "tidy: doc.md:1: the introduction does not say \"format version 2\" \
                 (FORMAT_VERSION = 2, lib.rs:4)",
                "tidy: doc.md:5: the Config section has no `| version | `u32` = 2 |` row \
                 (FORMAT_VERSION = 2, lib.rs:4)",
                "tidy: doc.md:15: the version history's last row is not version 2 \
                 (FORMAT_VERSION = 2, lib.rs:4)",
            ]
        );

        let ten = source("doc.md", &format_doc("10"));
        assert_eq!(check_format_version(&lib, &ten).len(), 1);
        let no_constant = source("lib.rs", "//! Format.\n");
        assert_eq!(check_format_version(&no_constant, &doc).len(), 1);
    }

    /// A function of `body_lines` lines between its braces, each with braces in a string and a
    /// comment that the scanner must not count.
    fn function(name: &str, body_lines: usize) -> String {
        let mut text = format!("fn {name}() {{\n");
        for i in 0..body_lines {
            text.push_str(&format!("    let x{i} = \"}}\"; // }}\n"));
        }
        text.push_str("}\n");
        text
    }

    /// (name, first line, length) of each function found.
    fn lengths(text: &str) -> Vec<(String, usize, usize)> {
        scan(&lex(text))
            .functions
            .iter()
            .map(|f| (f.name.clone(), f.start, f.lines()))
            .collect()
    }

    #[test]
    fn the_scanner_measures_functions_through_literals_and_comments() {
        let text = lines(&[
            "//! A module.",
            "impl A {",
            "    fn a<'a>(&self) -> [u8; 2] {",
            "        let c = '{'; let d = '\\''; let s: &'static str = r#\"}\"#;",
            "        /* } /* { */ } */",
            "        fn inner() {}",
            "        [0; 2]",
            "    }",
            "    fn declared(&self);",
            "}",
            "fn pointer(f: fn(u8) -> u8) -> u8 { f(b'}') }",
        ]);
        let expected = [("a", 3, 6), ("inner", 6, 1), ("pointer", 11, 1)];
        let expected: Vec<_> = expected
            .iter()
            .map(|&(name, start, len)| (name.to_string(), start, len))
            .collect();
        assert_eq!(lengths(&text), expected);

        let tests = lines(&[
            "//! A module.",
            "#[cfg(test)]",
            "mod tests {",
            "    fn helper() {}",
            "}",
            "#[test]",
            "fn t() {}",
            "#[cfg(not(test))]",
            "fn real() {}",
        ]);
        assert_eq!(lengths(&tests), [("real".to_string(), 9, 1)]);
    }

    #[test]
    fn a_long_function_is_found() {
        // 120 lines, then 130 from line 122.
        let text = format!("//! x\n{}{}", function("short", 118), function("long", 128));
        let file = source("crates/cli/cmd/x.rs", &text);
        assert_eq!(
            printed(&check_fn_length(&[&file], &[])),
            [
                "tidy: crates/cli/cmd/x.rs:122: function `long` is 130 lines long (at most \
                 120): split it into steps"
            ]
        );
        assert!(check_fn_length(&[&file], &[("crates/cli/cmd/x.rs", "long")]).is_empty());
    }

    #[test]
    fn test_code_may_be_long() {
        let long = function("long", 200);
        let lib =
            format!("//! x\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod inline {{\n{long}}}\n");
        let lib = source("crates/cairn-repo/src/lib.rs", &lib);
        let tests = source("crates/cairn-repo/src/tests.rs", &long);
        let nested = source("crates/cairn-repo/src/tests/more.rs", &long);
        let found = check_fn_length(&[&lib, &tests, &nested], &[]);
        assert_eq!(printed(&found), Vec::<String>::new());
    }

    #[test]
    fn the_length_allowlist_only_shrinks() {
        let file = source("x.rs", &function("fits", 100));
        assert_eq!(
            printed(&check_fn_length(
                &[&file],
                &[("x.rs", "fits"), ("x.rs", "gone")]
            )),
            [
                "tidy: x.rs:1: function `fits` is 102 lines now, within 120: remove it from \
                 TOO_LONG_FOR_NOW in xtask/src/tidy.rs",
                "tidy: x.rs:1: no function `gone` here any more: remove it from \
                 TOO_LONG_FOR_NOW in xtask/src/tidy.rs",
            ]
        );
    }
}
