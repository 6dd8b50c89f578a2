//! What the profiles given with `-P` set: read by `profile`, carried in `Cli`, shown by
//! `config show`, and named in run reports. Data only, so that the clap types can hold it
//! without knowing how profiles are read.

use std::path::PathBuf;

/// One profile key, as the arguments it stands for.
#[derive(Clone)]
pub(crate) struct Setting {
    /// `global` or a command's name.
    pub(crate) section: String,
    pub(crate) key: String,
    pub(crate) value: Value,
    /// `FILE:LINE`.
    pub(crate) origin: String,
    /// Whether the file gave a string (so `config show` quotes it), not a number or a bool.
    pub(crate) quoted: bool,
}

#[derive(Clone)]
pub(crate) enum Value {
    Flag(bool),
    /// A flag given this many times (`verbose = 2` is `-vv`).
    Times(u8),
    One(String),
    Many(Vec<String>),
}

impl Value {
    pub(crate) fn strings(&self) -> Vec<String> {
        match self {
            Value::Flag(b) => vec![b.to_string()],
            Value::Times(n) => vec![n.to_string()],
            Value::One(v) => vec![v.clone()],
            Value::Many(v) => v.clone(),
        }
    }
}

/// The merged settings of the profiles named with `-P`, in file order.
#[derive(Default)]
pub(crate) struct Profiles {
    pub(crate) names: Vec<String>,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) settings: Vec<Setting>,
    /// Global options given on the command line or in the environment, as (key, value,
    /// origin), for `config show`.
    pub(crate) outside: Vec<(String, String, String)>,
}

impl Profiles {
    /// The profiles' names without directory or `.toml`, as reports and metrics label runs.
    pub(crate) fn label(&self) -> String {
        self.files
            .iter()
            .map(|f| {
                f.file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}
