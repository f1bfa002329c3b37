//! A database that notices when its files are replaced on disk and swaps in the new contents,
//! keeping the previous ones in service when the new files cannot be read.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use super::GeoError;
use super::database::Database;
use super::file::{Stamp, stamp};
use super::record::CountryField;

/// A [`Database`] that notices when its files are replaced on disk and swaps in the new contents.
///
/// Readers take a cheap [`Arc`] snapshot; a reload builds the new database fully in memory first,
/// so a truncated or half-copied file is refused and the previous contents keep serving.
#[derive(Debug)]
pub struct ReloadingDatabase {
    role: &'static str,
    field: CountryField,
    paths: Vec<PathBuf>,
    current: RwLock<(Vec<Stamp>, Arc<Database>)>,
}

impl ReloadingDatabase {
    /// Loads the files now.
    pub fn open(
        role: &'static str,
        field: CountryField,
        paths: Vec<PathBuf>,
    ) -> Result<Self, GeoError> {
        let (stamps, db) = Database::load(role, field, &paths)?;
        Ok(ReloadingDatabase {
            role,
            field,
            paths,
            current: RwLock::new((stamps, Arc::new(db))),
        })
    }

    /// The current contents.
    pub fn snapshot(&self) -> Arc<Database> {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        guard.1.clone()
    }

    /// Reloads when any file changed (length, modification time or inode); `Ok(true)` when the
    /// new contents are now served. On error the previous contents stay in service.
    pub fn refresh(&self) -> Result<bool, GeoError> {
        let now: Vec<Stamp> = self
            .paths
            .iter()
            .map(|p| stamp(p))
            .collect::<Result<_, _>>()?;
        {
            let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
            if guard.0 == now {
                return Ok(false);
            }
        }
        let (stamps, db) = Database::load(self.role, self.field, &self.paths)?;
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        *guard = (stamps, Arc::new(db));
        Ok(true)
    }
}
