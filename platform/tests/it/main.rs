//! Integration tests of the locality engine on the vendored databases.
