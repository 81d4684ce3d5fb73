//! Durable storage for Wayfinder's catalog, behind one small trait.
//!
//! This crate owns *where the catalog's rows live between runs of the agent*: it writes the
//! rows a batch of commands changed, together with the new index, in one durable transaction,
//! and reads them all back at start-up. It deliberately knows nothing about what the rows mean
//! (that is [`wayfinder_catalog::Catalog`]'s job) and nothing about async: [`Store::commit`] is
//! a plain blocking call that the agent's writer task runs on `spawn_blocking`, once per batch
//! of commands (group commit), so that one fsync covers many writes.
//!
//! The write path (DESIGN.md) is: commands are applied to the catalog, the touched keys become
//! [`wayfinder_catalog::Rows`], [`Store::commit`] makes them durable, and only then is the new
//! snapshot published and the writes acknowledged.
//!
//! The trait names no backend type, so that the embedded file store ([`EmbeddedStore`], the
//! default: nothing to install) and a shared etcd cluster can stand behind the same agent.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

mod embedded;
mod error;
mod etcd;
mod members;
mod tables;

pub use embedded::{EmbeddedStore, FILE_NAME};
pub use error::StoreError;
pub use etcd::{Change, Changes, Commit, DEFAULT_PREFIX, EtcdSettings, EtcdStore};
pub use members::{LeaseId, LeaseState, MemberChange, MemberChanges, MemberRecord};

use wayfinder_catalog::{Catalog, Check, Instance, Rows, ServiceName};

/// A durable home for the catalog's rows.
///
/// Implementations are shared between the agent's writer task (which commits) and start-up
/// (which loads), hence `Send + Sync`; the methods block, and callers on an async runtime run
/// them on a blocking thread.
pub trait Store: Send + Sync + 'static {
    /// Reads every stored row and the last committed index, to rebuild the catalog at start-up
    /// with [`Stored::into_catalog`].
    fn load(&self) -> Result<Stored, StoreError>;

    /// Writes `rows` (a `None` value deletes that key) and `index`, the catalog index after the
    /// batch that produced them, as one transaction, and returns only once it is durable.
    ///
    /// `index` must be above the last committed one, so that an index never goes backwards
    /// across a restart; a commit of no rows at the stored index is accepted and writes nothing.
    /// On `Err`, nothing of the batch was written.
    fn commit(&self, index: u64, rows: &Rows) -> Result<(), StoreError>;
}

/// Everything a store holds: what [`Catalog::restore`] needs to rebuild the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// The index of the last committed batch (on a brand-new store, the seed described at
    /// [`EmbeddedStore::open`]). The restored catalog hands out indexes above it.
    pub index: u64,
    /// Every instance, in ID order.
    pub instances: Vec<Instance>,
    /// Every check (instance-level and node-level), in ID order.
    pub checks: Vec<Check>,
    /// The modify index of every service ever seen, including services whose last instance
    /// left, so blocking queries on them never see their index go backwards after a restart.
    pub service_indexes: Vec<(ServiceName, u64)>,
}

impl Stored {
    /// Rebuilds the catalog these rows describe.
    pub fn into_catalog(self) -> Catalog {
        Catalog::restore(
            self.index,
            self.instances,
            self.checks,
            self.service_indexes,
        )
    }
}
