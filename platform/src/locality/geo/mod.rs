//! Geolocation databases: MaxMind DB files (GeoIP2/GeoLite2 and flat `country_code` layouts) and
//! ip-location-db range CSV files, made into compact range tables (the bundled data's when the
//! program is built, read in place from its image; a file's when it is read) and reloaded when
//! replaced on disk.
//!
//! Files are read synchronously: the database files, and the install folders searched for the
//! bundled data ([`bundled_geo_dir`]). One concern per file: `record.rs` (what a database says
//! about an address, or why it says nothing), `table.rs` (the compact table format, its builder,
//! the CSV reader and the MaxMind DB flattening; also compiled into the build script),
//! `range.rs` (a table read as records), `maxmind.rs` (MaxMind DB files recognised and their
//! metadata), `identity.rs` (one file read in
//! its role, and its identity), `file.rs` (reading a file whole and stably, noticing it was
//! replaced), `database.rs` (one role's files looked up in order), `reload.rs` (a database
//! swapped when its files are replaced), `set.rs` (the three databases the engine consults and
//! their snapshots), `bundled.rs` (the vendored data built into the programs, or installed next
//! to them).

mod bundled;
mod database;
mod file;
mod identity;
mod maxmind;
mod range;
mod record;
mod reload;
mod set;
mod table;

use std::path::PathBuf;

pub use bundled::{
    BUILT_IN_GEO_DIR, SOURCE_GEO_DIR, bundled_geo_dir, bundled_versions, long_version,
};
pub use database::Database;
pub use identity::DatabaseIdentity;
pub use record::{CountryField, Gap, Record};
pub use reload::ReloadingDatabase;
pub use set::{GeoDatabases, GeoPaths, GeoSnapshot};

/// A database that cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read.
    #[error("cannot read geolocation database {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is a MaxMind DB the reader rejects.
    #[error("geolocation database {path} is not a valid MaxMind DB")]
    Mmdb {
        /// The file.
        path: PathBuf,
        /// Why.
        source: maxminddb::MaxMindDbError,
    },
    /// A line of a range CSV file is not `start,end,country_code` or `start,end,asn,organisation`.
    #[error("geolocation database {path}{}: {message}", if *line == 0 { String::new() } else { format!(":{line}") })]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line, 0 when the mistake is not on one line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file kept changing while it was being read.
    #[error("geolocation database {path} changed while being read, {attempts} times in a row")]
    Unstable {
        /// The file.
        path: PathBuf,
        /// How many reads were tried.
        attempts: u32,
    },
    /// The file holds another kind of data than its role needs (an AS file as location data, a
    /// location file as registration data).
    #[error("geolocation database {path} cannot serve as {role} data: {why}")]
    WrongRole {
        /// The file.
        path: PathBuf,
        /// The role it was given.
        role: &'static str,
        /// What it holds instead.
        why: String,
    },
    /// No file was given.
    #[error("no file given for the {role} database")]
    NoFile {
        /// Which database.
        role: &'static str,
    },
}
