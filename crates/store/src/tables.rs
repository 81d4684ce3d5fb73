//! The embedded store's file layout: table definitions, meta keys and the format version.
//!
//! Values of instance and check rows are JSON: the types already derive serde, JSON survives
//! adding optional fields, and a row can be read with nothing but `jq` when something goes wrong.
//! Keys are the catalog's own IDs, so a row is written or deleted without reading anything.

use redb::TableDefinition;

/// Instance ID → JSON of [`wayfinder_catalog::Instance`].
pub(crate) const INSTANCES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("instances");

/// Check ID → JSON of [`wayfinder_catalog::Check`].
pub(crate) const CHECKS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("checks");

/// Service name → the service's modify index (kept after its last instance leaves).
pub(crate) const SERVICES: TableDefinition<'_, &str, u64> = TableDefinition::new("services");

/// Bookkeeping: [`INDEX_KEY`] and [`FORMAT_KEY`].
pub(crate) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// Meta key of the index of the last committed batch.
pub(crate) const INDEX_KEY: &str = "index";

/// Meta key of the layout version of the file.
pub(crate) const FORMAT_KEY: &str = "format";

/// The layout this build writes and reads. Bump it, with a migration, when a table or a row
/// encoding changes in a way an older build would misread.
pub(crate) const FORMAT: u64 = 1;
