//! The published catalog: immutable snapshots swapped in with one pointer store.
//!
//! Readers call [`Snapshots::load`] and get an `Arc<Catalog>` they can hold as long as they
//! like; the writer replaces it whole. No reader waits on IO or on the writer (DESIGN.md
//! invariant), and the index watch lets blocking readers sleep until the catalog moves.

use crate::blocking::ServiceSignals;
use arc_swap::ArcSwap;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::watch;
use wayfinder_catalog::{Catalog, Touched};

/// The current catalog, and a signal that fires when it is replaced.
pub struct Snapshots {
    current: ArcSwap<Catalog>,
    index: watch::Sender<u64>,
    services: ServiceSignals,
}

impl Snapshots {
    /// Starts from `catalog` (restored from the store).
    pub fn new(catalog: Catalog) -> Self {
        let (index, _) = watch::channel(catalog.index());
        Self {
            current: ArcSwap::from_pointee(catalog),
            index,
            services: ServiceSignals::default(),
        }
    }

    /// The catalog as of the last durable write.
    pub fn load(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// Replaces the catalog, then wakes the blocking readers of the catalog index and of each
    /// touched service, in that order (see [`crate::blocking`]). Only the writer calls this,
    /// after the store commit.
    pub(crate) fn publish(&self, catalog: Arc<Catalog>, touched: &BTreeSet<Touched>) {
        let index = catalog.index();
        self.current.store(Arc::clone(&catalog));
        self.index.send_replace(index);
        for key in touched {
            if let Touched::Service(name) = key {
                self.services
                    .notify(name.as_str(), catalog.service_index(name.as_str()));
            }
        }
    }

    /// Per-service wake-up signals for blocking readers.
    pub fn services(&self) -> &ServiceSignals {
        &self.services
    }

    /// A receiver that wakes whenever a new catalog is published.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.index.subscribe()
    }
}
