//! Profiles: settings kept in TOML files (`cairn -P NAME`) and merged into the command line
//! before clap parses it, so that a profile key is exactly the long option of the same name,
//! checked by the same value parser as on the command line.
//!
//! Invariants: an option given on the command line wins over every profile, and a later profile
//! over an earlier one; so does it over a profile's other ways of giving the same thing
//! (`password-file` against `--password-command`) and options that go only with another value
//! of it (`full-every` against `--kind full`); every key of every section is checked (section, name, type and value)
//! before anything runs, and an error names the file, the line and the key (exit 2).

use crate::args::{Cli, ALTERNATIVES, ONLY_WITH};
use crate::invalid;
use crate::settings::{Profiles, Setting, Value};
use anyhow::Result;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

/// The command line with the profiles' settings merged in, and the profiles (empty without
/// `-P`). Arguments that do not parse are returned as they are, for clap to refuse.
pub(crate) fn merge(argv: Vec<OsString>) -> Result<(Vec<OsString>, Profiles)> {
    // Every command starts here: without a word that could name a profile (`-P`, `--profile`,
    // a cluster like `-qP`) or `config`, there is nothing to merge and no second parse to pay.
    let may_matter = argv.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a == "config"
            || a.starts_with("--profile")
            || (a.starts_with('-') && !a.starts_with("--") && a.contains('P'))
    });
    if !may_matter {
        return Ok((argv, Profiles::default()));
    }
    let root = Cli::command();
    let Ok(probe) = root.clone().ignore_errors(true).try_get_matches_from(&argv) else {
        return Ok((argv, Profiles::default()));
    };
    let sub = probe.subcommand();
    // A global option is in the root's matches and, when given after the command, also in
    // the command's: one list, the command's if it has one.
    let names: Vec<String> = [sub.map(|(_, m)| m), Some(&probe)]
        .into_iter()
        .flatten()
        .filter_map(|m| m.try_get_many::<String>("profile").ok().flatten())
        .map(|v| v.cloned().collect::<Vec<_>>())
        .find(|v| !v.is_empty())
        .unwrap_or_default();
    let outside = outside_profiles(&probe);
    if names.is_empty() {
        let profiles = Profiles {
            outside,
            ..Profiles::default()
        };
        return Ok((argv, profiles));
    }
    let mut profiles = load(&root, &names)?;
    profiles.outside = outside;
    let Some((command, sub_matches)) = sub else {
        return Ok((argv, profiles));
    };
    // An option's values when the command line gave it (not a default or the environment).
    let given = |m: &ArgMatches, id: &str| match m.try_get_raw(id) {
        Ok(Some(raw)) if m.value_source(id) == Some(ValueSource::CommandLine) => Some(
            raw.map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
        ),
        _ => None,
    };
    let on_command_line = |id: &str| given(&probe, id).or_else(|| given(sub_matches, id));
    let mut globals = Vec::new();
    let mut options = Vec::new();
    let mut positionals = Vec::new();
    // What reaches the command, and so what `config show` lists: not what the command line
    // overrode.
    let mut kept = Vec::new();
    for s in std::mem::take(&mut profiles.settings) {
        let cmd = match s.section.as_str() {
            "global" => &root,
            name if name == command => root.find_subcommand(name).expect("parsed subcommand"),
            _ => {
                kept.push(s);
                continue;
            }
        };
        let arg = find_arg(cmd, &s.key).expect("checked when loaded");
        if overridden(cmd, arg, &on_command_line) {
            continue;
        }
        let out = match (s.section.as_str(), arg.is_positional()) {
            ("global", _) => &mut globals,
            (_, true) => &mut positionals,
            _ => &mut options,
        };
        out.extend(arguments(arg, &s.value));
        kept.push(s);
    }
    profiles.settings = kept;
    let at = subcommand_index(&root, &argv).expect("a subcommand was parsed");
    let mut merged: Vec<OsString> = argv[..1].to_vec();
    merged.extend(globals.into_iter().map(OsString::from));
    merged.extend(argv[1..=at].iter().cloned());
    merged.extend(options.into_iter().map(OsString::from));
    merged.extend(argv[at + 1..].iter().cloned());
    if !positionals.is_empty() {
        if !argv[at + 1..].iter().any(|a| a == "--") {
            merged.push("--".into());
        }
        merged.extend(positionals.into_iter().map(OsString::from));
    }
    Ok((merged, profiles))
}

/// Whether the command line overrides a profile's `arg` of `cmd`: it gives the option itself,
/// one that conflicts with it (declared on either side), another way of giving the same thing
/// (`args::ALTERNATIVES`), or another value of the option `arg` only goes with
/// (`args::ONLY_WITH`). `given` has an option's values, by id, if the command line gave it.
fn overridden(cmd: &Command, arg: &Arg, given: &dyn Fn(&str) -> Option<Vec<String>>) -> bool {
    let named = |a: &Arg| a.get_id() == arg.get_id();
    let conflicting = cmd.get_arg_conflicts_with(arg).into_iter().chain(
        cmd.get_arguments()
            .filter(|other| cmd.get_arg_conflicts_with(other).into_iter().any(named)),
    );
    let id_of = |long: &str| find_arg(cmd, long).map(|a| a.get_id().as_str().to_string());
    let long = arg.get_long().unwrap_or_default();
    let mut alternatives = ALTERNATIVES
        .iter()
        .filter(|group| group.contains(&long))
        .flat_map(|group| group.iter().filter(|other| **other != long));
    let mut only_with = ONLY_WITH.iter().filter(|(option, ..)| *option == long);
    given(arg.get_id().as_str()).is_some()
        || conflicting
            .into_iter()
            .any(|c| given(c.get_id().as_str()).is_some())
        || alternatives.any(|other| id_of(other).and_then(|id| given(&id)).is_some())
        || only_with.any(|(_, other, value)| {
            id_of(other)
                .and_then(|id| given(&id))
                .is_some_and(|values| values.iter().all(|v| v != value))
        })
}

/// Reads and checks the profiles; a key set by several of them keeps the last one's value.
fn load(root: &Command, names: &[String]) -> Result<Profiles> {
    let mut profiles = Profiles {
        names: names.to_vec(),
        ..Profiles::default()
    };
    for name in names {
        let path = find(name)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| invalid(format!("profile {}: {e}", path.display())))?;
        for s in parse(root, &path, &text)? {
            profiles
                .settings
                .retain(|old| (&old.section, &old.key) != (&s.section, &s.key));
            profiles.settings.push(s);
        }
        profiles.files.push(path);
    }
    Ok(profiles)
}

/// The directories searched for `NAME.toml`, in order.
pub(crate) fn search_path() -> Vec<PathBuf> {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut dirs = Vec::new();
    if let Some(x) = env("XDG_CONFIG_HOME") {
        dirs.push(x.join("cairn"));
    }
    if let Some(h) = env("HOME") {
        dirs.push(h.join(".config/cairn"));
    }
    dirs.push(PathBuf::from("/etc/cairn"));
    dirs
}

fn find(name: &str) -> Result<PathBuf> {
    if name.contains('/') {
        return std::path::absolute(name).map_err(|e| invalid(format!("profile {name}: {e}")));
    }
    if name.starts_with('.') {
        return Err(invalid(format!("invalid profile name {name:?}")));
    }
    let dirs = search_path();
    dirs.iter()
        .map(|d| d.join(format!("{name}.toml")))
        .find(|p| p.exists())
        .ok_or_else(|| {
            let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            invalid(format!(
                "no profile {name:?}: {name}.toml is in none of {}",
                looked.join(", ")
            ))
        })
}

type Sections = BTreeMap<String, toml::Spanned<BTreeMap<String, toml::Spanned<toml::Value>>>>;

/// The settings of one profile file, each checked against the option it names.
fn parse(root: &Command, path: &std::path::Path, text: &str) -> Result<Vec<Setting>> {
    let file = path.display();
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let sections: Sections = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(" line {}", line(s.start)))
            .unwrap_or_default();
        let hint = if e.message().contains("expected a map") {
            ": every key belongs in a section such as [global] or [backup]".to_string()
        } else {
            format!(": {}", e.message().trim())
        };
        invalid(format!("profile {file}{at}{hint}"))
    })?;
    let mut settings = Vec::new();
    for (section, keys) in sections {
        let at = line(keys.span().start);
        let cmd = section_command(root, &section)
            .map_err(|why| invalid(format!("profile {file} line {at}: [{section}]: {why}")))?;
        for (key, value) in keys.into_inner() {
            let at = line(value.span().start);
            let fail = |why: String| {
                invalid(format!(
                    "profile {file} line {at}: key `{key}` in [{section}]: {why}"
                ))
            };
            let arg = find_arg(cmd, &key).ok_or_else(|| fail(unknown_key(root, &section, &key)))?;
            let value = value.into_inner();
            let quoted = match &value {
                toml::Value::Array(items) => items.iter().any(toml::Value::is_str),
                v => v.is_str(),
            };
            let value = convert(arg, value).map_err(fail)?;
            check(arg, &value).map_err(fail)?;
            settings.push(Setting {
                section: section.clone(),
                key,
                value,
                origin: format!("{file}:{at}"),
                quoted,
            });
        }
    }
    Ok(settings)
}

fn section_command<'a>(root: &'a Command, section: &str) -> Result<&'a Command, String> {
    if section == "global" {
        return Ok(root);
    }
    match root.find_subcommand(section) {
        Some(c) if !c.has_subcommands() => Ok(c),
        Some(c) => {
            let subcommands: Vec<&str> = c
                .get_subcommands()
                .map(Command::get_name)
                .filter(|n| *n != "help")
                .collect();
            Err(format!(
                "`{section}` has no options of its own, and its subcommands ({}) take theirs on \
                 the command line only",
                subcommands.join(", ")
            ))
        }
        None => Err("unknown section: use [global] or a command's name, like [backup]".into()),
    }
}

fn unknown_key(root: &Command, section: &str, key: &str) -> String {
    if section != "global" && find_arg(root, key).is_some() {
        return format!("`{key}` is a global option: put it under [global]");
    }
    "unknown key: keys are the long names of the command's options, like keep-daily".into()
}

/// The option `key` names: its long name, or a positional argument's name (`sources`).
fn find_arg<'a>(cmd: &'a Command, key: &str) -> Option<&'a Arg> {
    if ["help", "version", "profile"].contains(&key) {
        return None;
    }
    cmd.get_arguments().find(|a| {
        a.get_long() == Some(key)
            || (a.is_positional() && a.get_id().as_str().replace('_', "-") == key)
    })
}

fn takes_many(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
        || (arg.is_positional() && arg.get_num_args().is_some_and(|n| n.max_values() > 1))
}

/// The TOML value as the option's arguments, if its type fits the option.
fn convert(arg: &Arg, value: toml::Value) -> Result<Value, String> {
    let scalar = |v: toml::Value| match v {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        other => Err(format!(
            "expected a string or a number, found {}",
            other.type_str()
        )),
    };
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, toml::Value::Boolean(b)) => Ok(Value::Flag(b)),
        (ArgAction::SetTrue, other) => Err(format!(
            "expected true or false, found {}",
            other.type_str()
        )),
        (ArgAction::Count, toml::Value::Boolean(b)) => Ok(Value::Flag(b)),
        (ArgAction::Count, toml::Value::Integer(n)) => u8::try_from(n)
            .map(Value::Times)
            .map_err(|_| format!("expected true, false or a count from 0 to 255, found {n}")),
        (ArgAction::Count, other) => Err(format!(
            "expected true, false or a count like 2, found {}",
            other.type_str()
        )),
        (_, toml::Value::Array(items)) if takes_many(arg) => Ok(Value::Many(
            items.into_iter().map(scalar).collect::<Result<_, _>>()?,
        )),
        (_, toml::Value::Array(_)) => Err("takes one value, not a list".into()),
        (_, v) if takes_many(arg) => Ok(Value::Many(vec![scalar(v)?])),
        (_, v) => Ok(Value::One(scalar(v)?)),
    }
}

/// The command-line arguments that give `arg` this value.
fn arguments(arg: &Arg, value: &Value) -> Vec<String> {
    let long = format!("--{}", arg.get_long().unwrap_or_default());
    match value {
        Value::Flag(true) => vec![long],
        Value::Flag(false) => Vec::new(),
        Value::Times(n) => vec![long; usize::from(*n)],
        _ if arg.is_positional() => value.strings(),
        _ => value
            .strings()
            .into_iter()
            .flat_map(|v| [long.clone(), v])
            .collect(),
    }
}

/// Runs the option's own value parser on the value, alone: the same check, and the same
/// message, as on the command line.
fn check(arg: &Arg, value: &Value) -> Result<(), String> {
    use clap::builder::Resettable::Reset;
    let alone = arg
        .clone()
        .required(false)
        .requires(Reset)
        .conflicts_with(Reset)
        .required_unless_present(Reset)
        .group(Reset)
        .env(Reset)
        .global(false);
    let args = arguments(arg, value);
    let mut argv = vec!["cairn".to_string()];
    if arg.is_positional() {
        argv.push("--".into());
    }
    argv.extend(args);
    Command::new("cairn")
        .arg(alone)
        .try_get_matches_from(argv)
        .map(drop)
        .map_err(|e| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_string()
        })
}

/// Where the subcommand's name is in `argv`: after the global options, which are all known.
fn subcommand_index(root: &Command, argv: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        let takes_value = |arg: &Arg| arg.get_action().takes_values();
        if let Some(long) = a.strip_prefix("--") {
            let inline = long.contains('=');
            let arg = root.get_arguments().find(|x| x.get_long() == Some(long));
            i += if !inline && arg.is_some_and(takes_value) {
                2
            } else {
                1
            };
        } else if let Some(shorts) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            // `-r REPO` takes the next word; `-rREPO` and `-qv` do not.
            let last = shorts.chars().last();
            let arg = root.get_arguments().find(|x| x.get_short() == last);
            let alone = shorts.chars().count() == 1;
            i += if alone && arg.is_some_and(takes_value) {
                2
            } else {
                1
            };
        } else {
            return Some(i);
        }
    }
    None
}

/// A value as `config show` prints it: passwords, header values and URL credentials masked.
pub(crate) fn masked(key: &str, value: &str) -> String {
    if key.contains("password") && !key.ends_with("-file") {
        return "***".into();
    }
    if key == "report-header" {
        let name = value.split_once(':').map_or("", |(n, _)| n);
        return format!("{name}: ***");
    }
    mask_url(value)
}

/// `scheme://user:secret@host…` → `scheme://user:***@host…`.
pub(crate) fn mask_url(value: &str) -> String {
    let Some(start) = value.find("://").map(|i| i + 3) else {
        return value.into();
    };
    let rest = &value[start..];
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') { ":***" } else { "" };
            format!("{}{user}{masked}{}", &value[..start], &rest[at..])
        }
        None => value.into(),
    }
}

/// Every global option set on the command line or in the environment, as (key, value, origin),
/// for `config show`.
fn outside_profiles(matches: &ArgMatches) -> Vec<(String, String, String)> {
    let root = Cli::command();
    let mut out = Vec::new();
    for arg in root.get_arguments() {
        let id = arg.get_id().as_str();
        let (Some(long), Ok(Some(raw))) = (arg.get_long(), matches.try_get_raw(id)) else {
            continue;
        };
        let origin = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "command line".to_string(),
            Some(ValueSource::EnvVariable) => format!(
                "environment {}",
                arg.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            _ => continue,
        };
        if long == "profile" {
            continue;
        }
        let values: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
        let value = if matches!(arg.get_action(), ArgAction::SetTrue) {
            "true".into()
        } else if matches!(arg.get_action(), ArgAction::Count) {
            matches.get_count(id).to_string()
        } else {
            values.join(" ")
        };
        out.push((long.to_string(), value, origin));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_subcommand_is_found_after_global_options() {
        let root = Cli::command();
        let at = |w: &[&str]| subcommand_index(&root, &argv(w));
        assert_eq!(at(&["cairn", "backup", "/x"]), Some(1));
        assert_eq!(at(&["cairn", "-r", "/repo", "-q", "backup"]), Some(4));
        assert_eq!(at(&["cairn", "-r/repo", "--repo=/r", "check"]), Some(3));
        assert_eq!(at(&["cairn", "--cache-dir", "backup", "prune"]), Some(3));
        assert_eq!(at(&["cairn", "-P", "n", "--no-cache", "check"]), Some(4));
    }

    /// The arguments `merge` gives clap for `words` with the profile `text`.
    fn merged(text: &str, words: &[&str]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        let mut all = vec!["cairn", "-P", path.to_str().unwrap()];
        all.extend(words);
        let (argv, _) = merge(argv(&all)).unwrap();
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_command_line_overrides_a_profiles_other_way_and_conflicting_options() {
        let copy = "[copy]\nto-password-file = \"/pw\"\n";
        let args = merged(copy, &["copy", "--to", "/t", "--to-password-command", "x"]);
        assert!(!args.contains(&"--to-password-file".into()), "{args:?}");
        let args = merged(copy, &["copy", "--to", "/t"]);
        assert!(args.contains(&"--to-password-file".into()), "{args:?}");
        // `verbose` declares the conflict with `quiet`: it holds either way round.
        let args = merged("[global]\nquiet = true\n", &["-v", "snapshots"]);
        assert!(!args.contains(&"--quiet".into()), "{args:?}");
        let args = merged("[global]\nverbose = 1\n", &["-q", "snapshots"]);
        assert!(!args.contains(&"--verbose".into()), "{args:?}");
        let auto = "[backup]\nkind = \"auto\"\nfull-every = \"7d\"\n";
        let args = merged(auto, &["backup", "--kind=auto"]);
        assert!(args.contains(&"--full-every".into()), "{args:?}");
        let args = merged(auto, &["backup", "--kind", "full"]);
        assert!(!args.contains(&"--full-every".into()), "{args:?}");
    }

    /// Every option the tables name exists, so a renamed one cannot silently leave its rule.
    #[test]
    fn the_tables_of_alternatives_name_real_options() {
        let root = Cli::command();
        let exists = |long: &str| {
            find_arg(&root, long).is_some()
                || root.get_subcommands().any(|c| find_arg(c, long).is_some())
        };
        for long in ALTERNATIVES.iter().flat_map(|g| g.iter()) {
            assert!(exists(long), "{long}");
        }
        for (option, other, _) in ONLY_WITH {
            assert!(exists(option) && exists(other), "{option} {other}");
        }
        // And every option of every section can be asked about (clap panics on a conflict
        // with an option its command does not know).
        let nothing_given = |_: &str| None;
        for cmd in std::iter::once(&root).chain(root.get_subcommands()) {
            for arg in cmd.get_arguments() {
                assert!(!overridden(cmd, arg, &nothing_given));
            }
        }
    }

    #[test]
    fn urls_and_secrets_are_masked() {
        assert_eq!(mask_url("ftp://u:secret@h:21/p@x"), "ftp://u:***@h:21/p@x");
        assert_eq!(mask_url("rest:https://h/p"), "rest:https://h/p");
        assert_eq!(
            masked("report-header", "Authorization: Bearer t"),
            "Authorization: ***"
        );
        assert_eq!(masked("password-command", "echo pw"), "***");
        assert_eq!(masked("password-file", "/etc/pw"), "/etc/pw");
    }

    #[test]
    fn profile_values_are_checked_where_they_are_written() {
        let root = Cli::command();
        let p = std::path::Path::new("/p.toml");
        let err = |text: &str| {
            parse(&root, p, text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let ok = parse(
            &root,
            p,
            "[global]\nrepo = \"/r\"\n[backup]\nsources = [\"/etc\"]\nexclude = [\"*.tmp\"]\none-file-system = true\n[forget]\nkeep-daily = 7\n[check]\nread-data-subset = \"1/7\"\n",
        )
        .unwrap();
        assert_eq!(ok.len(), 6);
        assert_eq!(ok[0].origin, "/p.toml:5");
        let e = err("[global]\nrepo = \"/r\"\n\n[forget]\nkeep-dialy = 7\n");
        assert!(e.contains("line 5") && e.contains("keep-dialy"), "{e}");
        let e = err("[forget]\nkeep-daily = \"seven\"\n");
        assert!(e.contains("line 2") && e.contains("keep-daily"), "{e}");
        let e = err("[backup]\none-file-system = \"yes\"\n");
        assert!(e.contains("expected true or false"), "{e}");
        let e = err("[backup]\nrepo = \"/r\"\n");
        assert!(e.contains("[global]"), "{e}");
        let e = err("[bakup]\nhost = \"h\"\n");
        assert!(e.contains("unknown section") && e.contains("line 1"), "{e}");
        let e = err("repo = \"/r\"\n");
        assert!(e.contains("section"), "{e}");
        let e = err("[check]\nread-data-subset = [\"1/7\"]\n");
        assert!(e.contains("not a list"), "{e}");
        // `verbose` counts: a bool or how many times.
        let ok = parse(&root, p, "[global]\nverbose = 2\n").unwrap();
        assert_eq!(
            arguments(find_arg(&root, "verbose").unwrap(), &ok[0].value),
            ["--verbose", "--verbose"]
        );
        assert!(parse(&root, p, "[global]\nverbose = true\n").is_ok());
        let e = err("[global]\nverbose = \"yes\"\n");
        assert!(e.contains("expected true, false or a count"), "{e}");
        let e = err("[global]\nverbose = 300\n");
        assert!(e.contains("0 to 255"), "{e}");
    }
}
