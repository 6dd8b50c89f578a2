//! `config show`: the settings the profiles given with -P (and the command line and the
//! environment, for global options) make, each with where it comes from, secrets masked.

use crate::args::{Cli, ALTERNATIVES};
use crate::profile::{masked, search_path};
use crate::settings::Value;
use anyhow::Result;

pub(crate) fn show(cli: &Cli) -> Result<u8> {
    let p = &cli.profiles;
    if p.names.is_empty() {
        let dirs: Vec<String> = search_path()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        println!(
            "# no profile given (-P NAME reads NAME.toml from {})",
            dirs.join(", ")
        );
    }
    for (name, file) in p.names.iter().zip(&p.files) {
        println!("# profile {name}: {}", file.display());
    }
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    for s in &p.settings {
        rows.push((
            s.section.clone(),
            s.key.clone(),
            render(&s.key, &s.value, s.quoted),
            s.origin.clone(),
        ));
    }
    // As when a command runs: the command line wins over profiles (which `merge` already
    // left out), and profiles over the environment, also where a profile gives the same thing
    // another way.
    for (key, value, origin) in &p.outside {
        let same = |k: &str| {
            k == key
                || ALTERNATIVES
                    .iter()
                    .any(|group| group.contains(&k) && group.contains(&key.as_str()))
        };
        let in_profile =
            |(section, k, ..): &(String, String, String, String)| section == "global" && same(k);
        if origin != "command line" && rows.iter().any(in_profile) {
            continue;
        }
        rows.retain(|r| !in_profile(r));
        let shown = format!("{:?}", masked(key, value));
        rows.push(("global".into(), key.clone(), shown, origin.clone()));
    }
    let mut sections: Vec<&str> = vec!["global"];
    for (section, ..) in &rows {
        if !sections.contains(&section.as_str()) {
            sections.push(section);
        }
    }
    for section in sections {
        let mine: Vec<_> = rows.iter().filter(|r| r.0 == section).collect();
        if mine.is_empty() {
            continue;
        }
        println!("[{section}]");
        let width = mine
            .iter()
            .map(|r| r.1.len() + r.2.len())
            .max()
            .unwrap_or(0);
        for (_, key, value, origin) in mine {
            let pad = width - key.len() - value.len();
            println!("{key} = {value}{:pad$}  # {origin}", "");
        }
    }
    Ok(0)
}

/// A profile value as TOML, masked where it is a secret.
fn render(key: &str, value: &Value, quoted: bool) -> String {
    let one = |v: &str| {
        let shown = masked(key, v);
        if quoted || shown != v {
            format!("{shown:?}")
        } else {
            shown
        }
    };
    match value {
        Value::Flag(b) => b.to_string(),
        Value::Times(n) => n.to_string(),
        Value::One(v) => one(v),
        Value::Many(vs) => format!(
            "[{}]",
            vs.iter().map(|v| one(v)).collect::<Vec<_>>().join(", ")
        ),
    }
}
