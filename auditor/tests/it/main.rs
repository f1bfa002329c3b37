//! Integration tests of `hexagone-auditor`: one test binary, one module per capability.

#[macro_use]
mod util;

mod attack;
mod cli;
mod collect;
mod crash;
mod failover;
mod independent;
mod interop;
mod judge;
mod latency;
mod report;
mod serve;
mod store;
mod tamper;
mod witness;
mod writers;
