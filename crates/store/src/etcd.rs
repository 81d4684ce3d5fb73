//! The shared store: the catalog's rows in an etcd cluster, under one key prefix.
//!
//! Several agents share one etcd cluster (`--store etcd://h1:2379,h2:2379[?prefix=/wayfinder]`).
//! Unlike [`crate::EmbeddedStore`], this store is async and does not assign indexes: etcd
//! does. A commit is one etcd transaction, and the write's index is the revision etcd gave it;
//! every agent learns of every write, its own included, from [`EtcdStore::watch`] and applies
//! it with [`wayfinder_catalog::Catalog::apply_rows`].
//!
//! Keys: `{prefix}/instances/{id}` and `{prefix}/checks/{id}` hold JSON rows whose index
//! fields may be zero (set by the write that stored them: see
//! [`wayfinder_catalog::Rows::mark_new`]); `{prefix}/services/{name}` exists once a service
//! was seen, and its modify index is the key's `mod_revision`.

use crate::{StoreError, Stored};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, Txn, TxnOp,
    WatchOptions, WatchStream,
};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use wayfinder_catalog::{Check, CheckId, Instance, InstanceId, Rows, ServiceName};

/// The key prefix when the URL names none.
pub const DEFAULT_PREFIX: &str = "/wayfinder";

/// How long one etcd request may take before it counts as failed. Short, so that a dead
/// member costs a retry, not a stalled writer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest answer to the start-up (and resync) read of the whole catalog: etcd's default
/// backend quota (`--quota-backend-bytes`, 2 GiB). The client's default, 4 MiB, would refuse
/// the read of a catalog of a few thousand instances (about 500 bytes each as JSON).
const MAX_LOAD_BYTES: usize = 2 * 1024 * 1024 * 1024;

/// Where the shared store is: parsed from `etcd://h1:port,h2:port[?prefix=/p]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Client URLs of the etcd members, `http://host:port`.
    pub endpoints: Vec<String>,
    /// Key prefix under which this catalog lives (no trailing slash).
    pub prefix: String,
}

impl EtcdSettings {
    /// Parses a `--store` URL; a bad one is refused before anything is contacted.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |reason: &str| StoreError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("it must start with etcd://"))?;
        let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut prefix = DEFAULT_PREFIX.to_owned();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("prefix", value)) if value.starts_with('/') && value.len() > 1 => {
                    prefix = value.trim_end_matches('/').to_owned();
                }
                Some(("prefix", _)) => return Err(bad("prefix must start with / and name a key")),
                _ => return Err(bad("the only query parameter is prefix=/path")),
            }
        }
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("http://{h}"))
            .collect();
        if endpoints.is_empty() {
            return Err(bad("it names no host:port"));
        }
        if hosts
            .split(',')
            .any(|h| !h.contains(':') || h.contains('/'))
        {
            return Err(bad("each member must be host:port"));
        }
        Ok(Self { endpoints, prefix })
    }
}

/// The outcome of [`EtcdStore::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Written at this revision (the write's catalog index).
    Written(u64),
    /// A key the batch touched changed after the base the batch was validated on; nothing was
    /// written. Catch up to this revision, validate again and retry.
    Conflict(u64),
}

/// A connection to the etcd cluster holding the catalog. Cheap to clone (the client is).
#[derive(Clone)]
pub struct EtcdStore {
    pub(crate) client: Client,
    settings: Arc<EtcdSettings>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the cluster (lazily: an unreachable cluster fails the first request, not
    /// this call, so that one dead member does not stop an agent from starting).
    pub async fn connect(settings: EtcdSettings) -> Result<Self, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), REQUEST_TIMEOUT);
        let client = Client::connect(&settings.endpoints, Some(options))
            .await
            .map_err(|e| etcd_error(&settings, "connect", e))?;
        Ok(Self {
            client,
            settings: Arc::new(settings),
        })
    }

    /// The settings this store was opened with.
    pub fn settings(&self) -> &EtcdSettings {
        &self.settings
    }

    /// Reads every row at one revision; [`Stored::index`] is that revision, and a watch from
    /// the next one misses nothing.
    pub async fn load(&self) -> Result<Stored, StoreError> {
        let prefix = format!("{}/", self.settings.prefix);
        let response = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_LOAD_BYTES)
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.error("load", e))?;
        let revision = response.header().map_or(0, |h| h.revision());
        let mut stored = Stored {
            index: to_index(revision),
            ..Stored::default()
        };
        for kv in response.kvs() {
            let index = to_index(kv.mod_revision());
            match self.parse_key(kv.key()) {
                Some(Key::Instance(_)) => {
                    let mut instance: Instance = self.decode(kv)?;
                    stamp(&mut instance.create_index, to_index(kv.create_revision()));
                    stamp(&mut instance.modify_index, index);
                    stored.instances.push(instance);
                }
                Some(Key::Check(_)) => {
                    let mut check: Check = self.decode(kv)?;
                    stamp(&mut check.create_index, to_index(kv.create_revision()));
                    stamp(&mut check.modify_index, index);
                    stored.checks.push(check);
                }
                Some(Key::Service(name)) => stored.service_indexes.push((name, index)),
                None => {}
            }
        }
        Ok(stored)
    }

    /// Writes `rows` (marked with [`Rows::mark_new`] against `base`) in one transaction that
    /// succeeds only if none of their instance and check keys changed after revision `base`,
    /// the index of the catalog the batch was validated on.
    pub async fn commit(&self, base: u64, rows: &Rows) -> Result<Commit, StoreError> {
        let mut compares = Vec::new();
        let mut operations = Vec::new();
        let guard = i64::try_from(base.saturating_add(1)).unwrap_or(i64::MAX);
        let mut add = |key: String, value: Option<Vec<u8>>, guarded: bool| {
            if guarded {
                compares.push(Compare::mod_revision(key.clone(), CompareOp::Less, guard));
            }
            operations.push(match value {
                Some(value) => TxnOp::put(key, value, None),
                None => TxnOp::delete(key, None),
            });
        };
        for (id, row) in &rows.instances {
            let value = row
                .as_deref()
                .map(|r| encode("instance", id.as_str(), r))
                .transpose()?;
            add(self.key("instances", id.as_str()), value, true);
        }
        for (id, row) in &rows.checks {
            let value = row
                .as_deref()
                .map(|r| encode("check", id.as_str(), r))
                .transpose()?;
            add(self.key("checks", id.as_str()), value, true);
        }
        // A service key holds nothing but its modify index (its `mod_revision`): every write
        // puts the same `{}`, so two agents writing the same service cannot lose anything, and
        // guarding it would make every pair of concurrent writes to one service conflict
        // (status changes of different checks included).
        for name in rows.services.keys() {
            add(
                self.key("services", name.as_str()),
                Some(b"{}".to_vec()),
                false,
            );
        }
        let response = self
            .client
            .clone()
            .txn(Txn::new().when(compares).and_then(operations))
            .await
            .map_err(|e| self.error("commit", e))?;
        let revision = to_index(response.header().map_or(0, |h| h.revision()));
        Ok(match response.succeeded() {
            true => Commit::Written(revision),
            false => Commit::Conflict(revision),
        })
    }

    /// Starts a watch of every catalog key from revision `from` on.
    pub async fn watch(&self, from: u64) -> Result<Changes, StoreError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(i64::try_from(from).unwrap_or(i64::MAX));
        let stream = self
            .client
            .clone()
            .watch(format!("{}/", self.settings.prefix), Some(options))
            .await
            .map_err(|e| self.error("watch", e))?;
        Ok(Changes {
            stream,
            store: self.clone(),
        })
    }

    pub(crate) fn key(&self, table: &str, id: &str) -> String {
        format!("{}/{table}/{id}", self.settings.prefix)
    }

    fn parse_key(&self, key: &[u8]) -> Option<Key> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(self.settings.prefix.as_str())?;
        let (table, id) = rest.strip_prefix('/')?.split_once('/')?;
        let id = serde_json::Value::String(id.to_owned());
        match table {
            "instances" => serde_json::from_value(id).ok().map(Key::Instance),
            "checks" => serde_json::from_value(id).ok().map(Key::Check),
            "services" => serde_json::from_value(id).ok().map(Key::Service),
            _ => None,
        }
    }

    fn decode<T: DeserializeOwned>(&self, kv: &KeyValue) -> Result<T, StoreError> {
        serde_json::from_slice(kv.value()).map_err(|e| StoreError::Corrupt {
            path: String::from_utf8_lossy(kv.key()).into_owned().into(),
            detail: e.to_string(),
        })
    }

    pub(crate) fn error(&self, action: &'static str, source: etcd_client::Error) -> StoreError {
        etcd_error(&self.settings, action, source)
    }
}

/// A catalog key, parsed.
enum Key {
    Instance(InstanceId),
    Check(CheckId),
    Service(ServiceName),
}

/// The ordered stream of catalog changes from one revision on.
pub struct Changes {
    stream: WatchStream,
    store: EtcdStore,
}

/// What the change stream said next.
#[derive(Debug)]
pub enum Change {
    /// The rows written at one revision, in revision order.
    Rows(u64, Rows),
    /// etcd compacted its history past the revision the watch asked for: the agent must read
    /// everything again (at a revision at least this one).
    Compacted(u64),
}

impl Changes {
    /// The next changes, grouped by revision; `None` when the stream ended (the connection
    /// to its member died: start a new watch from the last applied revision plus one).
    pub async fn next(&mut self) -> Result<Option<Vec<Change>>, StoreError> {
        loop {
            let Some(response) = self
                .stream
                .message()
                .await
                .map_err(|e| self.store.error("watch", e))?
            else {
                return Ok(None);
            };
            if response.compact_revision() > 0 {
                return Ok(Some(vec![Change::Compacted(to_index(
                    response.compact_revision(),
                ))]));
            }
            if response.canceled() {
                return Ok(None);
            }
            if response.events().is_empty() {
                continue;
            }
            let mut changes: Vec<Change> = Vec::new();
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let revision = to_index(kv.mod_revision());
                let rows = match changes.last_mut() {
                    Some(Change::Rows(at, rows)) if *at == revision => rows,
                    _ => {
                        changes.push(Change::Rows(revision, Rows::default()));
                        match changes.last_mut() {
                            Some(Change::Rows(_, rows)) => rows,
                            _ => continue,
                        }
                    }
                };
                let put = event.event_type() == EventType::Put;
                match self.store.parse_key(kv.key()) {
                    Some(Key::Instance(id)) => {
                        let row = put
                            .then(|| self.store.decode::<Instance>(kv).map(Arc::new))
                            .transpose()?;
                        rows.instances.insert(id, row);
                    }
                    Some(Key::Check(id)) => {
                        let row = put
                            .then(|| self.store.decode::<Check>(kv).map(Arc::new))
                            .transpose()?;
                        rows.checks.insert(id, row);
                    }
                    Some(Key::Service(name)) if put => {
                        rows.services.insert(name, revision);
                    }
                    Some(Key::Service(_)) | None => {}
                }
            }
            return Ok(Some(changes));
        }
    }
}

/// Replaces an index field left for the store to fill (zero) with the revision that wrote it.
fn stamp(field: &mut u64, revision: u64) {
    if *field == 0 {
        *field = revision;
    }
}

fn to_index(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

fn encode<T: serde::Serialize>(
    what: &'static str,
    key: &str,
    row: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(row).map_err(|source| StoreError::Encode {
        what,
        key: key.to_owned(),
        source,
    })
}

fn etcd_error(
    settings: &EtcdSettings,
    action: &'static str,
    source: etcd_client::Error,
) -> StoreError {
    StoreError::Etcd {
        endpoints: settings.endpoints.join(","),
        action,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_members_and_prefix() {
        let settings =
            EtcdSettings::parse("etcd://10.0.0.1:2379,10.0.0.2:2379?prefix=/sd/").expect("valid");
        assert_eq!(
            settings.endpoints,
            vec!["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(settings.prefix, "/sd");
        let default = EtcdSettings::parse("etcd://h:1").expect("valid");
        assert_eq!(default.prefix, DEFAULT_PREFIX);
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "http://h:1",
            "etcd://",
            "etcd://host",
            "etcd://h:1?prefix=x",
            "etcd://h:1?foo=bar",
            "etcd://h:1/x",
        ] {
            assert!(
                matches!(EtcdSettings::parse(url), Err(StoreError::BadUrl { .. })),
                "{url} was accepted"
            );
        }
    }
}
