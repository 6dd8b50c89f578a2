//! End-to-end tests of the `cairn` binary: one test binary, one module per area.

mod util;

mod incremental;
mod roundtrip;
mod dedup;
mod errors;
mod privacy;
mod filters;
