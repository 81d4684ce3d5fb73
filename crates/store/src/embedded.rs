//! The embedded store: one redb file, `catalog.redb`, in the agent's data directory.
//!
//! It owns the file and its lock, the mapping of catalog rows onto tables ([`crate::tables`]),
//! and the index seed of a brand-new store. It does not batch: the writer task decides what goes
//! into one commit, and each commit is one redb write transaction with `Durability::Immediate`,
//! i.e. one fsync before [`Store::commit`] returns.
//!
//! Why redb: pure Rust, ACID with copy-on-write pages (a crash mid-commit leaves the previous
//! commit intact), and a file lock that keeps a second agent off the same data dir.

use crate::tables::{CHECKS, FORMAT, FORMAT_KEY, INDEX_KEY, INSTANCES, META, SERVICES};
use crate::{Store, StoreError, Stored};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::{debug, info};
use wayfinder_catalog::{Check, Instance, Rows, ServiceName};

#[cfg(test)]
mod tests;

/// The name of the store file inside the data directory.
pub const FILE_NAME: &str = "catalog.redb";

/// redb's page cache, in bytes. The live catalog is held in memory by the agent; the file is
/// read in full only at start-up, so a small cache is enough (redb's default is 1 GiB).
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// The catalog's rows in a redb file, `<data dir>/catalog.redb`, locked by the running agent.
pub struct EmbeddedStore {
    db: Database,
    dir: PathBuf,
    path: PathBuf,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating if missing) the data directory `dir` and the store file in it.
    ///
    /// A brand-new store starts at the current Unix time in milliseconds, written to the file at
    /// once so that it is stable across restarts. A fresh data dir therefore never hands out an
    /// `X-Consul-Index` below one a client kept from an earlier life of the agent: Consul clients
    /// take an index that goes backwards as a reset and would otherwise miss changes.
    ///
    /// The file is integrity-checked on open (it is small, and redb may otherwise panic on a file
    /// damaged outside it), and locked until the store is dropped: a second agent on the same
    /// directory gets [`StoreError::InUse`].
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .create(&path)
            .map_err(|e| backend_error(dir, &path, "open", e))?;
        let store = Self {
            db,
            dir: dir.to_path_buf(),
            path,
        };
        let (index, fresh) = store.initialize()?;
        if fresh {
            info!(path = %store.path.display(), index, "created a new catalog store");
        } else {
            info!(path = %store.path.display(), index, "opened the catalog store");
        }
        Ok(store)
    }

    /// The store file, for logs and operator messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the tables and the meta rows of a new file, or checks those of an existing one.
    /// Returns the stored index and whether the file was new.
    fn initialize(&self) -> Result<(u64, bool), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.error("open", e))?;
        let (index, fresh) = {
            for table in [INSTANCES, CHECKS] {
                txn.open_table(table).map_err(|e| self.error("open", e))?;
            }
            txn.open_table(SERVICES)
                .map_err(|e| self.error("open", e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.error("open", e))?;
            let format = self.meta_value(&meta, FORMAT_KEY)?;
            let index = self.meta_value(&meta, INDEX_KEY)?;
            match (format, index) {
                (None, None) => {
                    let seed = clock_index();
                    meta.insert(FORMAT_KEY, FORMAT)
                        .map_err(|e| self.error("open", e))?;
                    meta.insert(INDEX_KEY, seed)
                        .map_err(|e| self.error("open", e))?;
                    (seed, true)
                }
                (Some(FORMAT), Some(index)) => (index, false),
                (Some(found), _) if found > FORMAT => {
                    return Err(StoreError::NewerFormat {
                        path: self.path.clone(),
                        found,
                        supported: FORMAT,
                    });
                }
                (format, index) => {
                    return Err(self.corrupt(format!(
                        "meta rows are inconsistent: format {format:?}, index {index:?}"
                    )));
                }
            }
        };
        if fresh {
            txn.commit().map_err(|e| self.error("open", e))?;
        } else {
            txn.abort().map_err(|e| self.error("open", e))?;
        }
        Ok((index, fresh))
    }

    fn meta_value(
        &self,
        meta: &impl ReadableTable<&'static str, u64>,
        key: &str,
    ) -> Result<Option<u64>, StoreError> {
        Ok(meta
            .get(key)
            .map_err(|e| self.error("read", e))?
            .map(|guard| guard.value()))
    }

    fn error(&self, action: &'static str, err: impl Into<redb::Error>) -> StoreError {
        backend_error(&self.dir, &self.path, action, err)
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    /// Reads and decodes every row of a JSON table, checking each row's ID against its key.
    fn load_rows<T: DeserializeOwned>(
        &self,
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        what: &str,
        id_of: impl Fn(&T) -> &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut rows = Vec::new();
        for entry in table.iter().map_err(|e| self.error("load", e))? {
            let (key, value) = entry.map_err(|e| self.error("load", e))?;
            let key = key.value();
            let row: T = serde_json::from_slice(value.value())
                .map_err(|e| self.corrupt(format!("{what} row {key:?} does not decode: {e}")))?;
            if id_of(&row) != key {
                return Err(self.corrupt(format!("{what} row {key:?} holds ID {:?}", id_of(&row))));
            }
            rows.push(row);
        }
        Ok(rows)
    }
}

impl Store for EmbeddedStore {
    fn load(&self) -> Result<Stored, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error("load", e))?;
        let meta = txn.open_table(META).map_err(|e| self.error("load", e))?;
        let index = self
            .meta_value(&meta, INDEX_KEY)?
            .ok_or_else(|| self.corrupt("the meta table has no index".to_owned()))?;
        let instances = self.load_rows(
            &txn.open_table(INSTANCES)
                .map_err(|e| self.error("load", e))?,
            "instance",
            |i: &Instance| i.id.as_str(),
        )?;
        let checks = self.load_rows(
            &txn.open_table(CHECKS).map_err(|e| self.error("load", e))?,
            "check",
            |c: &Check| c.id.as_str(),
        )?;
        let services = txn
            .open_table(SERVICES)
            .map_err(|e| self.error("load", e))?;
        let mut service_indexes = Vec::new();
        for entry in services.iter().map_err(|e| self.error("load", e))? {
            let (name, modify_index) = entry.map_err(|e| self.error("load", e))?;
            let name = ServiceName::new(name.value(), "service").map_err(|e| {
                self.corrupt(format!(
                    "services row {:?} is not a service name: {e}",
                    name.value()
                ))
            })?;
            service_indexes.push((name, modify_index.value()));
        }
        debug!(
            index,
            instances = instances.len(),
            checks = checks.len(),
            services = service_indexes.len(),
            "loaded the catalog store"
        );
        Ok(Stored {
            index,
            instances,
            checks,
            service_indexes,
        })
    }

    fn commit(&self, index: u64, rows: &Rows) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.error("commit", e))?;
        // redb's default, set anyway: acknowledging a write relies on it (DESIGN.md).
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.error("commit", e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.error("commit", e))?;
            let stored = self.meta_value(&meta, INDEX_KEY)?.unwrap_or(0);
            if index < stored || (index == stored && !rows.is_empty()) {
                return Err(StoreError::IndexNotIncreasing {
                    offered: index,
                    stored,
                });
            }
            if index == stored {
                drop(meta);
                return txn.abort().map_err(|e| self.error("commit", e));
            }
            let mut instances = txn
                .open_table(INSTANCES)
                .map_err(|e| self.error("commit", e))?;
            self.write_rows(&mut instances, "instance", &rows.instances)?;
            let mut checks = txn
                .open_table(CHECKS)
                .map_err(|e| self.error("commit", e))?;
            self.write_rows(&mut checks, "check", &rows.checks)?;
            let mut services = txn
                .open_table(SERVICES)
                .map_err(|e| self.error("commit", e))?;
            for (name, modify_index) in &rows.services {
                services
                    .insert(name.as_str(), *modify_index)
                    .map_err(|e| self.error("commit", e))?;
            }
            meta.insert(INDEX_KEY, index)
                .map_err(|e| self.error("commit", e))?;
        }
        txn.commit().map_err(|e| self.error("commit", e))?;
        debug!(
            index,
            instances = rows.instances.len(),
            checks = rows.checks.len(),
            services = rows.services.len(),
            "committed a batch"
        );
        Ok(())
    }
}

impl EmbeddedStore {
    /// Encodes and writes every row of a JSON table (the counterpart of `load_rows`); a `None`
    /// row deletes its key.
    fn write_rows<K: AsRef<str>, T: Serialize>(
        &self,
        table: &mut Table<'_, &'static str, &'static [u8]>,
        what: &'static str,
        rows: &BTreeMap<K, Option<Arc<T>>>,
    ) -> Result<(), StoreError> {
        for (key, row) in rows {
            let key = key.as_ref();
            let json = row.as_deref().map(|r| encode(what, key, r)).transpose()?;
            self.put(table, key, json.as_deref())?;
        }
        Ok(())
    }

    /// Writes `value` under `key`, or deletes the row when `value` is `None`.
    fn put(
        &self,
        table: &mut Table<'_, &'static str, &'static [u8]>,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        match value {
            Some(value) => table.insert(key, value).map(drop),
            None => table.remove(key).map(drop),
        }
        .map_err(|e| self.error("commit", e))
    }
}

fn encode(what: &'static str, key: &str, row: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(row).map_err(|source| StoreError::Encode {
        what,
        key: key.to_owned(),
        source,
    })
}

/// Sorts a backend error into what the operator can act on: another agent holds the file, the
/// file is damaged, or the disk misbehaves.
fn backend_error(
    dir: &Path,
    path: &Path,
    action: &'static str,
    err: impl Into<redb::Error>,
) -> StoreError {
    match err.into() {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => StoreError::InUse {
            dir: dir.to_path_buf(),
        },
        redb::Error::Corrupted(detail) => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail,
        },
        redb::Error::UpgradeRequired(version) => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("it uses redb file format {version}, which this build cannot read"),
        },
        // redb reports a file that is not a redb database as invalid data.
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: io.to_string(),
            }
        }
        other => StoreError::Storage {
            path: path.to_path_buf(),
            action,
            source: Box::new(other),
        },
    }
}

/// The index a brand-new store starts from: the wall clock in milliseconds since the Unix epoch
/// (at least 1, for a clock set before 1970).
fn clock_index() -> u64 {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    u64::try_from(millis).unwrap_or(u64::MAX).max(1)
}
