//! Integration tests of the locality engine on the vendored ip-location-db databases and the
//! shipped policies: one test binary, one module per capability.

mod latency;
mod maxmind;
mod policies;
mod real_data;
mod reload;
mod util;
