//! The one error type of the store. Each message says what went wrong and what the operator
//! can do about it, because it usually ends up as the last line an agent prints before exiting.
//!
//! Backend errors are carried as boxed sources, not as backend types, so the public API does
//! not change when a backend (or its version) does.

use std::error::Error;
use std::path::PathBuf;

/// Why the store could not open, read or write.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (normally another agent) holds the store file open.
    #[error(
        "data dir {} is in use by another wayfinder agent; stop it or pass another --data-dir",
        dir.display()
    )]
    InUse {
        /// The data directory.
        dir: PathBuf,
    },

    /// The data directory does not exist and could not be created.
    #[error(
        "cannot create data dir {}: {source}; create it with write access for the agent, \
         or pass another --data-dir",
        dir.display()
    )]
    CreateDir {
        /// The data directory.
        dir: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// The store file is not a store Wayfinder can read: damaged, truncated, or not ours.
    #[error(
        "store file {} is corrupt ({detail}); stop the agent and move the file aside (the \
         agent then starts with an empty catalog, and services must register again) or \
         restore it from a backup",
        path.display()
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// The store file was written by a newer Wayfinder, in a layout this build cannot read.
    #[error(
        "store file {} has format {found}, but this wayfinder reads format {supported} at most; \
         run the newer wayfinder that wrote it, or move the file aside",
        path.display()
    )]
    NewerFormat {
        /// The store file.
        path: PathBuf,
        /// The format version found in the file.
        found: u64,
        /// The newest format version this build reads.
        supported: u64,
    },

    /// Reading or writing failed (disk full, I/O error, permissions).
    #[error(
        "store file {}: {action} failed: {source}; check that the disk has space and that the \
         file is readable and writable by the agent",
        path.display()
    )]
    Storage {
        /// The store file.
        path: PathBuf,
        /// What the store was doing (`open`, `load`, `commit`).
        action: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },

    /// A commit offered an index that is not above the stored one. The caller's index went
    /// backwards: a bug, and writing would let clients see the index shrink after a restart.
    #[error(
        "index {offered} is not above the stored index {stored}: indexes only grow; this is a \
         bug in the writer, please report it"
    )]
    IndexNotIncreasing {
        /// The index the commit offered.
        offered: u64,
        /// The index already stored.
        stored: u64,
    },

    /// A row could not be encoded. Catalog rows always encode, so this is a bug.
    #[error(
        "cannot encode {what} {key:?} for the store: {source}; this is a bug, please report it"
    )]
    Encode {
        /// The kind of row (`instance`, `check`).
        what: &'static str,
        /// The row's key.
        key: String,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },

    /// A `--store` URL that cannot be used.
    #[error(
        "bad --store URL {url:?}: {reason}; use etcd://host:port[,host:port...][?prefix=/wayfinder]"
    )]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// etcd did not answer or refused a request.
    #[error(
        "etcd at {endpoints}: {action} failed: {source}; check that a majority of the etcd \
         members is up and reachable from this agent"
    )]
    Etcd {
        /// The members the agent talks to.
        endpoints: String,
        /// What the store was doing (`connect`, `load`, `commit`, `watch`).
        action: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
}
