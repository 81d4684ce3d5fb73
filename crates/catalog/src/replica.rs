//! Applying rows that another writer produced: how an agent follows a shared store.
//!
//! With a shared store (etcd), a write is validated by one agent's [`Catalog::apply`] on its
//! local view, the rows it changed are committed to the store, and the store assigns the
//! write its index (the etcd revision). Every agent, the writer included, then learns of the
//! write from the store's ordered change stream as rows, and must turn those rows into the
//! same catalog and the same [`Event`]s that [`Catalog::apply`] would have produced.
//!
//! The writer does not know the index its rows will get, so it marks every index field that
//! its batch set with [`Rows::mark_new`] (zero: no real index is zero), and
//! [`Catalog::apply_rows`] stamps the store's index into them.

use crate::catalog::{Catalog, CatalogError, Outcome, Rows, Touched};
use crate::event::{Event, EventKind};
use crate::names::InstanceId;
use crate::status::Status;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The index value that means "set by the write that carries these rows".
const NEW: u64 = 0;

fn stamp(field: &mut u64, index: u64) {
    if *field == NEW {
        *field = index;
    }
}

impl Rows {
    /// Marks every index field above `base` (the index of the catalog the batch was applied
    /// on) as set by this write, so that [`Catalog::apply_rows`] replaces it with the index
    /// the store assigns. Fields at or below `base` are older writes' and are kept.
    pub fn mark_new(mut self, base: u64) -> Rows {
        let mark = |field: &mut u64| {
            if *field > base {
                *field = NEW;
            }
        };
        for instance in self.instances.values_mut().flatten() {
            let instance = Arc::make_mut(instance);
            mark(&mut instance.create_index);
            mark(&mut instance.modify_index);
        }
        for check in self.checks.values_mut().flatten() {
            let check = Arc::make_mut(check);
            mark(&mut check.create_index);
            mark(&mut check.modify_index);
        }
        for index in self.services.values_mut() {
            mark(index);
        }
        self
    }
}

impl Catalog {
    /// Applies stored `rows` as the write numbered `index`, which must exceed
    /// [`Catalog::index`], and returns the events and touched keys [`Catalog::apply`] gave when
    /// the write was validated. A `None` row deletes its key; index fields marked by
    /// [`Rows::mark_new`] become `index`; every service row's modify index becomes `index`.
    ///
    /// Rows are trusted (they were validated by the writer), except that a check whose
    /// instance is missing is dropped, as [`Catalog::restore`] does.
    pub fn apply_rows(&mut self, index: u64, rows: &Rows) -> Result<Outcome, CatalogError> {
        if index <= self.index {
            return Err(CatalogError::IndexNotIncreasing {
                offered: index,
                current: self.index,
            });
        }
        let mut outcome = Outcome::default();
        if rows.is_empty() {
            return Ok(outcome);
        }
        let health_before = self.health_of_rows(rows);
        for (id, row) in &rows.instances {
            outcome.touched.push(Touched::Instance(id.clone()));
            self.apply_instance_row(index, id, row.as_deref(), &mut outcome.events);
        }
        for (id, row) in &rows.checks {
            outcome.touched.push(Touched::Check(id.clone()));
            if let Some(previous) = self.checks.remove(id) {
                match &previous.service_id {
                    Some(owner) => {
                        if let Some(set) = self.instance_checks.get_mut(owner) {
                            set.remove(id);
                        }
                    }
                    None => {
                        self.node_checks.remove(id);
                    }
                }
            }
            let Some(check) = row else { continue };
            let mut check = crate::check::Check::clone(check);
            stamp(&mut check.create_index, index);
            stamp(&mut check.modify_index, index);
            match &check.service_id {
                Some(owner) => {
                    let Some(set) = self.instance_checks.get_mut(owner) else {
                        continue;
                    };
                    set.insert(id.clone());
                }
                None => {
                    self.node_checks.insert(id.clone());
                }
            }
            self.checks.insert(id.clone(), Arc::new(check));
        }
        for name in rows.services.keys() {
            outcome.touched.push(Touched::Service(name.clone()));
            self.services.entry(name.clone()).or_default().modify_index = index;
        }
        self.index = index;
        for (id, before) in health_before {
            let Some(instance) = self.instances.get(&id) else {
                continue;
            };
            let after = self.health(id.as_str());
            if after != before {
                outcome.events.push(Event {
                    index,
                    service: instance.service.clone(),
                    instance: id,
                    kind: EventKind::HealthChanged {
                        from: before,
                        to: after,
                    },
                });
            }
        }
        Ok(outcome)
    }

    /// Health, before the rows apply, of every existing instance they may affect: their own
    /// instances, the owners (old and new) of their checks, and all instances when a
    /// node-level check is among them.
    fn health_of_rows(&self, rows: &Rows) -> Vec<(InstanceId, Status)> {
        let mut affected: BTreeSet<InstanceId> = rows.instances.keys().cloned().collect();
        let mut node_level = false;
        for (id, row) in &rows.checks {
            let before = self.checks.get(id).map(|c| c.service_id.clone());
            let after = row.as_ref().map(|c| c.service_id.clone());
            for owner in [before, after].into_iter().flatten() {
                match owner {
                    Some(instance) => {
                        affected.insert(instance);
                    }
                    None => node_level = true,
                }
            }
        }
        if node_level {
            affected.extend(self.instances.keys().cloned());
        }
        affected
            .into_iter()
            .filter(|id| self.instances.contains_key(id))
            .map(|id| {
                let health = self.health(id.as_str());
                (id, health)
            })
            .collect()
    }

    /// Puts or deletes one instance row, keeping the service and check indexes in step, and
    /// records the registration events [`Catalog::apply`] gives for the same change.
    fn apply_instance_row(
        &mut self,
        index: u64,
        id: &InstanceId,
        row: Option<&crate::instance::Instance>,
        events: &mut Vec<Event>,
    ) {
        let previous = self.instances.get(id).cloned();
        let Some(row) = row else {
            if let Some(previous) = previous {
                self.instances.remove(id);
                self.instance_checks.remove(id);
                if let Some(entry) = self.services.get_mut(&previous.service) {
                    entry.instances.remove(id);
                }
                events.push(Event {
                    index,
                    service: previous.service.clone(),
                    instance: id.clone(),
                    kind: EventKind::Deregistered,
                });
            }
            return;
        };
        let mut instance = crate::instance::Instance::clone(row);
        stamp(&mut instance.create_index, index);
        stamp(&mut instance.modify_index, index);
        if let Some(previous) = &previous
            && previous.service != instance.service
        {
            if let Some(entry) = self.services.get_mut(&previous.service) {
                entry.instances.remove(id);
            }
            events.push(Event {
                index,
                service: previous.service.clone(),
                instance: id.clone(),
                kind: EventKind::Deregistered,
            });
        }
        if previous
            .as_ref()
            .is_none_or(|p| !p.same_definition(&instance))
        {
            events.push(Event {
                index,
                service: instance.service.clone(),
                instance: id.clone(),
                kind: EventKind::Registered,
            });
        }
        self.services
            .entry(instance.service.clone())
            .or_default()
            .instances
            .insert(id.clone());
        self.instance_checks.entry(id.clone()).or_default();
        self.instances.insert(id.clone(), Arc::new(instance));
    }
}
