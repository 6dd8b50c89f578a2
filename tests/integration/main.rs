//! End-to-end tests of the `cairn` binary: one test binary, one module per area.

mod util;

mod copy;
mod dedup;
mod diskfull;
mod errors;
mod everyday;
mod faults;
mod filters;
mod fixture;
mod fleet;
mod hostile;
mod incremental;
mod install;
mod keys;
mod mount;
mod output;
mod privacy;
mod prune;
mod recovery;
mod remote;
mod roundtrip;
mod serve;
mod stats;
mod stopped;
