//! The `cairn` command: argument parsing, password sources, progress, and output. Everything
//! else happens in the library crates; each command here is open -> plan/execute -> report.

mod args;
mod cmd;
mod open;
mod output;
mod password;
mod profile;
mod report;
mod settings;
mod time;
mod values;

use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

/// Exit codes (also in `cairn --help`).
pub mod exit {
    pub const ERROR: u8 = 1;
    /// An invalid argument or option value.
    pub const USAGE: u8 = 2;
    /// Backup finished, but some source files could not be read and are missing.
    pub const INCOMPLETE: u8 = 3;
    pub const NO_REPOSITORY: u8 = 10;
    pub const LOCKED: u8 = 11;
    pub const WRONG_PASSWORD: u8 = 12;
}

/// An invalid argument, option value or combination of them: exit 2.
pub fn invalid(message: impl Into<String>) -> anyhow::Error {
    cairn_repo::Error::new(cairn_repo::ErrorKind::InvalidInput, message).into()
}

/// A command that ran to its end but must fail (its findings are in the message): exit 1.
pub fn failed(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::msg(message.into())
}

/// Maps an error to its exit code: the one place that decides exit codes.
pub(crate) fn exit_code(e: &anyhow::Error) -> u8 {
    use cairn_repo::ErrorKind as K;
    match e.downcast_ref::<cairn_repo::Error>().map(|e| e.kind) {
        Some(K::InvalidInput) => exit::USAGE,
        Some(K::NoRepository) => exit::NO_REPOSITORY,
        Some(K::WrongPassword) => exit::WRONG_PASSWORD,
        Some(K::Locked) => exit::LOCKED,
        _ => exit::ERROR,
    }
}

/// Clap's error, as one line `cairn: ...` like every other error, exit 2. Help and version
/// requests keep clap's own output.
/// `context` follows the message (which profiles were merged in).
fn usage_error(e: clap::Error, context: &str) -> ExitCode {
    use clap::error::ErrorKind as K;
    if matches!(
        e.kind(),
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.to_string();
    let mut lines = text.lines();
    let mut msg = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string();
    // The names of missing arguments follow on indented lines.
    for more in lines.take_while(|l| l.starts_with("  ") && !l.trim_start().starts_with("tip:")) {
        msg.push(' ');
        msg.push_str(more.trim());
    }
    eprintln!("cairn: {msg} (see --help{context})");
    ExitCode::from(exit::USAGE)
}

/// Prints an error as one line `cairn: ...` and gives its exit code.
fn fail(e: &anyhow::Error) -> ExitCode {
    // One line: the chain joined, lowercase, naming the thing at fault.
    let msg = e
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    eprintln!("cairn: {msg}");
    ExitCode::from(exit_code(e))
}

/// `cairn __man DIR`, parsed on its own (see [`args::ManCli`]).
fn man(argv: &[std::ffi::OsString]) -> ExitCode {
    use clap::Parser;
    match args::ManCli::try_parse_from(argv) {
        Ok(a) => match cmd::man::man(&a) {
            Ok(code) => ExitCode::from(code),
            Err(e) => fail(&e),
        },
        Err(e) => usage_error(e, ""),
    }
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == cmd::man::NAME) {
        return man(&argv[1..]);
    }
    let (argv, profiles) = match profile::merge(argv) {
        Ok(merged) => merged,
        Err(e) => return fail(&e),
    };
    let matches = match args::Cli::command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) if !profiles.names.is_empty() => {
            let names = profiles.names.join(", ");
            return usage_error(e, &format!(", with the settings of profile {names}"));
        }
        Err(e) => return usage_error(e, ""),
    };
    let mut cli = match args::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, ""),
    };
    cli.set_aside_environment(&matches);
    cli.profiles = profiles;
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e),
    }
}
