//! Integration tests of `hexagone-auditor`: one test binary, one module per capability.

mod cli;
mod crash;
mod interop;
mod store;
mod tamper;
mod util;
