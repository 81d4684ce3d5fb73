//! The catalog state machine: validated commands in, events and changed keys out.
//!
//! Every map is a persistent (structurally shared) map, so cloning a catalog to publish it as a
//! snapshot costs O(1) and a reader holding an old snapshot never sees a half-applied write.

use crate::check::{Check, CheckDefinition, truncate_output};
use crate::command::{Command, Registration};
use crate::event::{Event, EventKind};
use crate::instance::Instance;
use crate::names::{CheckId, InstanceId, ServiceName};
use crate::status::Status;
use crate::validate::{ValidationError, count, limits};
use imbl::{OrdMap, OrdSet};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Why a command was refused. A refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// A field breaks a rule.
    #[error("invalid {0}")]
    Invalid(#[from] ValidationError),
    /// No instance has this ID.
    #[error("unknown service ID {0:?}; pass the service ID, not the service name")]
    UnknownInstance(InstanceId),
    /// No check has this ID.
    #[error("unknown check ID {0:?}; pass the check ID, not the check name")]
    UnknownCheck(CheckId),
    /// The index offered is not above the catalog's: the caller's store went backwards.
    #[error("index {offered} is not above the catalog index {current}; indexes only grow")]
    IndexNotIncreasing {
        /// The index the caller offered.
        offered: u64,
        /// The catalog's current index.
        current: u64,
    },
}

/// A key whose stored row changed: the store writes the current value, or deletes the row when
/// the catalog no longer holds the key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Touched {
    /// An instance row.
    Instance(InstanceId),
    /// A check row.
    Check(CheckId),
    /// A service's modify index (kept after its last instance leaves, so that blocking
    /// queries never see an index go backwards across a restart).
    Service(ServiceName),
}

/// The result of applying a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// What consumers should hear about.
    pub events: Vec<Event>,
    /// Which rows the store must write. Empty means the command changed nothing.
    pub touched: Vec<Touched>,
}

impl Outcome {
    /// Whether the command changed nothing (and so needs no write and no new index).
    pub fn is_empty(&self) -> bool {
        self.touched.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServiceEntry {
    pub(crate) modify_index: u64,
    pub(crate) instances: OrdSet<InstanceId>,
}

/// The registry: instances, checks and indexes at one point in time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub(crate) index: u64,
    pub(crate) instances: OrdMap<InstanceId, Arc<Instance>>,
    pub(crate) checks: OrdMap<CheckId, Arc<Check>>,
    pub(crate) instance_checks: OrdMap<InstanceId, OrdSet<CheckId>>,
    pub(crate) node_checks: OrdSet<CheckId>,
    pub(crate) services: OrdMap<ServiceName, ServiceEntry>,
}

impl Catalog {
    /// An empty catalog whose next write must carry an index above `index`.
    pub fn new(index: u64) -> Self {
        Self {
            index,
            ..Self::default()
        }
    }

    /// Rebuilds a catalog from stored rows. Rows that contradict each other (a check whose
    /// instance is missing) are dropped with the check, as a deregistration would have done.
    pub fn restore(
        index: u64,
        instances: impl IntoIterator<Item = Instance>,
        checks: impl IntoIterator<Item = Check>,
        service_indexes: impl IntoIterator<Item = (ServiceName, u64)>,
    ) -> Self {
        let mut catalog = Catalog::new(index);
        for (name, modify_index) in service_indexes {
            catalog.services.entry(name).or_default().modify_index = modify_index;
        }
        for instance in instances {
            let entry = catalog
                .services
                .entry(instance.service.clone())
                .or_default();
            entry.instances.insert(instance.id.clone());
            entry.modify_index = entry.modify_index.max(instance.modify_index);
            catalog
                .instance_checks
                .entry(instance.id.clone())
                .or_default();
            catalog.index = catalog.index.max(instance.modify_index);
            catalog
                .instances
                .insert(instance.id.clone(), Arc::new(instance));
        }
        for check in checks {
            catalog.index = catalog.index.max(check.modify_index);
            match &check.service_id {
                Some(owner) => {
                    let Some(instance) = catalog.instances.get(owner) else {
                        continue;
                    };
                    let service = instance.service.clone();
                    if let Some(entry) = catalog.services.get_mut(&service) {
                        entry.modify_index = entry.modify_index.max(check.modify_index);
                    }
                    catalog
                        .instance_checks
                        .entry(owner.clone())
                        .or_default()
                        .insert(check.id.clone());
                }
                None => {
                    catalog.node_checks.insert(check.id.clone());
                }
            }
            catalog.checks.insert(check.id.clone(), Arc::new(check));
        }
        catalog
    }

    /// The index of the last applied write. It only grows.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Applies `command` as the write numbered `index`, which must exceed [`Catalog::index`].
    ///
    /// Validation happens before any mutation, so an `Err` leaves the catalog untouched. A
    /// command that changes nothing returns an empty [`Outcome`] and leaves the index where it
    /// was: the caller then writes nothing.
    pub fn apply(&mut self, index: u64, command: &Command) -> Result<Outcome, CatalogError> {
        if index <= self.index {
            return Err(CatalogError::IndexNotIncreasing {
                offered: index,
                current: self.index,
            });
        }
        let health_before = self.health_of_affected(command);
        let mut outcome = match command {
            Command::Register(registration) => self.register(index, registration)?,
            Command::Deregister(id) => self.deregister(index, id)?,
            Command::RegisterCheck(definition) => self.register_check(index, definition)?,
            Command::DeregisterCheck(id) => self.deregister_check(index, id)?,
            Command::SetCheckStatus { id, status, output } => {
                self.set_check_status(index, id, *status, output)?
            }
        };
        if outcome.is_empty() {
            return Ok(outcome);
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

    /// Health of every instance the command may affect, before it runs. Node-level checks
    /// count against every instance, so they affect all of them.
    fn health_of_affected(&self, command: &Command) -> Vec<(InstanceId, Status)> {
        let owner = |check: &CheckId| self.checks.get(check).map(|c| c.service_id.clone());
        let affected: Vec<InstanceId> = match command {
            Command::Register(r) => vec![r.instance.id.clone()],
            Command::Deregister(_) => Vec::new(),
            Command::RegisterCheck(def) => match (&def.service_id, def.id.as_ref().and_then(owner))
            {
                (None, _) | (_, Some(None)) => self.instances.keys().cloned().collect(),
                (Some(id), _) => vec![id.clone()],
            },
            Command::DeregisterCheck(id) | Command::SetCheckStatus { id, .. } => match owner(id) {
                Some(Some(instance)) => vec![instance],
                Some(None) => self.instances.keys().cloned().collect(),
                None => Vec::new(),
            },
        };
        affected
            .into_iter()
            .filter(|id| self.instances.contains_key(id))
            .map(|id| {
                let health = self.health(id.as_str());
                (id, health)
            })
            .collect()
    }

    fn register(
        &mut self,
        index: u64,
        registration: &Registration,
    ) -> Result<Outcome, CatalogError> {
        let mut instance = registration.instance.clone();
        instance.validate()?;
        count(
            "Checks",
            registration.checks.len(),
            "checks",
            limits::CHECKS_PER_INSTANCE_MAX,
        )?;
        let checks = self.resolve_service_checks(&instance, &registration.checks)?;

        let mut outcome = Outcome::default();
        let previous = self.instances.get(&instance.id).cloned();
        let instance_changed = previous
            .as_ref()
            .is_none_or(|p| !p.same_definition(&instance));
        if let Some(previous) = &previous {
            instance.create_index = previous.create_index;
            instance.modify_index = previous.modify_index;
            if previous.service != instance.service {
                // The ID moved to another service: the old service loses an instance.
                let old = previous.service.clone();
                if let Some(entry) = self.services.get_mut(&old) {
                    entry.instances.remove(&instance.id);
                    entry.modify_index = index;
                }
                outcome.touched.push(Touched::Service(old.clone()));
                outcome.events.push(Event {
                    index,
                    service: old,
                    instance: instance.id.clone(),
                    kind: EventKind::Deregistered,
                });
            }
        } else {
            instance.create_index = index;
        }

        let existing: BTreeSet<CheckId> = self
            .instance_checks
            .get(&instance.id)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        let mut check_changed = false;
        let wanted: BTreeSet<CheckId> = checks.iter().filter_map(|c| c.id.clone()).collect();
        if registration.replace_existing_checks {
            for stale in existing.difference(&wanted) {
                self.checks.remove(stale);
                outcome.touched.push(Touched::Check(stale.clone()));
                check_changed = true;
            }
        }
        let mut kept: OrdSet<CheckId> = if registration.replace_existing_checks {
            existing.intersection(&wanted).cloned().collect()
        } else {
            existing.iter().cloned().collect()
        };
        for check in checks {
            kept.extend(check.id.clone());
            if self.upsert_check(index, check, &mut outcome) {
                check_changed = true;
            }
        }
        self.instance_checks.insert(instance.id.clone(), kept);

        if !instance_changed && !check_changed {
            return Ok(outcome);
        }
        if instance_changed {
            instance.modify_index = index;
            outcome.events.push(Event {
                index,
                service: instance.service.clone(),
                instance: instance.id.clone(),
                kind: EventKind::Registered,
            });
        }
        let entry = self.services.entry(instance.service.clone()).or_default();
        entry.instances.insert(instance.id.clone());
        entry.modify_index = index;
        outcome
            .touched
            .push(Touched::Service(instance.service.clone()));
        outcome.touched.push(Touched::Instance(instance.id.clone()));
        self.instances
            .insert(instance.id.clone(), Arc::new(instance));
        Ok(outcome)
    }

    /// Fills in check defaults (Consul's `service:<id>[:n]` IDs and `Service '<name>' check`
    /// names) and refuses duplicates and checks that belong to someone else.
    fn resolve_service_checks(
        &self,
        instance: &Instance,
        definitions: &[CheckDefinition],
    ) -> Result<Vec<CheckDefinition>, CatalogError> {
        let mut resolved = Vec::with_capacity(definitions.len());
        let mut seen = BTreeSet::new();
        for (i, definition) in definitions.iter().enumerate() {
            let field = if definitions.len() == 1 {
                "Check".to_owned()
            } else {
                format!("Checks[{i}]")
            };
            definition.validate().map_err(|e| e.within(&field))?;
            let mut definition = definition.clone();
            let id = match definition.id.take() {
                Some(id) => id,
                None if definitions.len() == 1 => {
                    CheckId::new(&format!("service:{}", instance.id), &field)?
                }
                None => CheckId::new(&format!("service:{}:{}", instance.id, i + 1), &field)?,
            };
            if !seen.insert(id.clone()) {
                return Err(ValidationError::new(
                    format!("{field}.CheckID"),
                    format!("check ID {id:?} appears twice in one registration"),
                )
                .into());
            }
            if let Some(existing) = self.checks.get(&id)
                && existing.service_id.as_ref() != Some(&instance.id)
            {
                return Err(ValidationError::new(
                    format!("{field}.CheckID"),
                    format!(
                        "check ID {id:?} already belongs to another service instance or the node"
                    ),
                )
                .into());
            }
            if definition.name.is_empty() {
                definition.name = format!("Service '{}' check", instance.service);
            }
            definition.id = Some(id);
            definition.service_id = Some(instance.id.clone());
            resolved.push(definition);
        }
        Ok(resolved)
    }

    /// Inserts or replaces a check whose ID is resolved. An unchanged definition keeps its
    /// status; a changed one keeps its status too unless an initial status is given, because
    /// the scheduler re-evaluates it at its next run anyway. Returns whether anything changed.
    fn upsert_check(
        &mut self,
        index: u64,
        definition: CheckDefinition,
        outcome: &mut Outcome,
    ) -> bool {
        let Some(id) = definition.id.clone() else {
            return false;
        };
        let previous = self.checks.get(&id).cloned();
        if let Some(previous) = &previous {
            let mut same = previous.definition();
            same.initial_status = definition.initial_status;
            if same == definition {
                return false;
            }
        }
        let status = match (&previous, definition.initial_status) {
            (_, Some(status)) => status,
            (Some(previous), None) => previous.status,
            (None, None) => Status::Critical,
        };
        let check = Check {
            id: id.clone(),
            name: definition.name,
            notes: definition.notes,
            service_id: definition.service_id,
            status,
            output: previous
                .as_ref()
                .map(|p| p.output.clone())
                .unwrap_or_default(),
            kind: definition.kind,
            policy: definition.policy,
            create_index: previous.as_ref().map_or(index, |p| p.create_index),
            modify_index: index,
        };
        self.checks.insert(id.clone(), Arc::new(check));
        outcome.touched.push(Touched::Check(id));
        true
    }

    fn deregister(&mut self, index: u64, id: &InstanceId) -> Result<Outcome, CatalogError> {
        let instance = self
            .instances
            .remove(id)
            .ok_or_else(|| CatalogError::UnknownInstance(id.clone()))?;
        let mut outcome = Outcome::default();
        for check in self.instance_checks.remove(id).unwrap_or_default() {
            self.checks.remove(&check);
            outcome.touched.push(Touched::Check(check));
        }
        if let Some(entry) = self.services.get_mut(&instance.service) {
            entry.instances.remove(id);
            entry.modify_index = index;
        }
        outcome.touched.push(Touched::Instance(id.clone()));
        outcome
            .touched
            .push(Touched::Service(instance.service.clone()));
        outcome.events.push(Event {
            index,
            service: instance.service.clone(),
            instance: id.clone(),
            kind: EventKind::Deregistered,
        });
        Ok(outcome)
    }

    fn register_check(
        &mut self,
        index: u64,
        definition: &CheckDefinition,
    ) -> Result<Outcome, CatalogError> {
        definition.validate()?;
        let id = definition.id.clone().ok_or_else(|| {
            ValidationError::new(
                "CheckID",
                "a check registered on its own needs an ID (or a Name)",
            )
        })?;
        if let Some(owner) = &definition.service_id
            && !self.instances.contains_key(owner)
        {
            return Err(CatalogError::UnknownInstance(owner.clone()));
        }
        let previous_owner = self.checks.get(&id).map(|c| c.service_id.clone());
        if previous_owner
            .as_ref()
            .is_some_and(|owner| owner != &definition.service_id)
        {
            return Err(ValidationError::new(
                "CheckID",
                format!("check ID {id:?} already belongs to another service instance or the node"),
            )
            .into());
        }
        let mut outcome = Outcome::default();
        if !self.upsert_check(index, definition.clone(), &mut outcome) {
            return Ok(outcome);
        }
        match &definition.service_id {
            Some(owner) => {
                self.instance_checks
                    .entry(owner.clone())
                    .or_default()
                    .insert(id);
                self.touch_service_of(index, owner, &mut outcome);
            }
            None => {
                self.node_checks.insert(id);
                self.touch_all_services(index, &mut outcome);
            }
        }
        Ok(outcome)
    }

    fn deregister_check(&mut self, index: u64, id: &CheckId) -> Result<Outcome, CatalogError> {
        let check = self
            .checks
            .remove(id)
            .ok_or_else(|| CatalogError::UnknownCheck(id.clone()))?;
        let mut outcome = Outcome {
            events: Vec::new(),
            touched: vec![Touched::Check(id.clone())],
        };
        match &check.service_id {
            Some(owner) => {
                if let Some(set) = self.instance_checks.get_mut(owner) {
                    set.remove(id);
                }
                self.touch_service_of(index, owner, &mut outcome);
            }
            None => {
                self.node_checks.remove(id);
                self.touch_all_services(index, &mut outcome);
            }
        }
        Ok(outcome)
    }

    fn set_check_status(
        &mut self,
        index: u64,
        id: &CheckId,
        status: Status,
        output: &str,
    ) -> Result<Outcome, CatalogError> {
        let check = self
            .checks
            .get(id)
            .ok_or_else(|| CatalogError::UnknownCheck(id.clone()))?;
        if check.status == status {
            return Ok(Outcome::default());
        }
        let mut updated = Check::clone(check);
        updated.status = status;
        updated.output = output.to_owned();
        truncate_output(&mut updated.output);
        updated.modify_index = index;
        let owner = updated.service_id.clone();
        self.checks.insert(id.clone(), Arc::new(updated));
        let mut outcome = Outcome {
            events: Vec::new(),
            touched: vec![Touched::Check(id.clone())],
        };
        match owner {
            Some(owner) => self.touch_service_of(index, &owner, &mut outcome),
            None => self.touch_all_services(index, &mut outcome),
        }
        Ok(outcome)
    }

    fn touch_service_of(&mut self, index: u64, instance: &InstanceId, outcome: &mut Outcome) {
        let Some(service) = self.instances.get(instance).map(|i| i.service.clone()) else {
            return;
        };
        if let Some(entry) = self.services.get_mut(&service) {
            entry.modify_index = index;
        }
        outcome.touched.push(Touched::Service(service));
    }

    fn touch_all_services(&mut self, index: u64, outcome: &mut Outcome) {
        let live: Vec<ServiceName> = self
            .services
            .iter()
            .filter(|(_, entry)| !entry.instances.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for name in live {
            if let Some(entry) = self.services.get_mut(&name) {
                entry.modify_index = index;
            }
            outcome.touched.push(Touched::Service(name));
        }
    }

    /// The stored modify index of every service ever seen, including emptied ones.
    pub fn service_indexes(&self) -> impl Iterator<Item = (&ServiceName, u64)> + '_ {
        self.services
            .iter()
            .map(|(name, entry)| (name, entry.modify_index))
    }

    /// Group a set of touched keys into current rows, for the store. `None` means "delete".
    pub fn rows_for<'a>(&self, touched: impl IntoIterator<Item = &'a Touched>) -> Rows {
        let mut rows = Rows::default();
        for key in touched {
            match key {
                Touched::Instance(id) => {
                    rows.instances
                        .insert(id.clone(), self.instances.get(id).cloned());
                }
                Touched::Check(id) => {
                    rows.checks.insert(id.clone(), self.checks.get(id).cloned());
                }
                Touched::Service(name) => {
                    let index = self.services.get(name).map_or(0, |e| e.modify_index);
                    rows.services.insert(name.clone(), index);
                }
            }
        }
        rows
    }
}

/// The current rows for a set of touched keys: what a store writes after a batch.
/// A `None` value means the key is gone and its row must be deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rows {
    /// Instance rows by ID.
    pub instances: BTreeMap<InstanceId, Option<Arc<Instance>>>,
    /// Check rows by ID.
    pub checks: BTreeMap<CheckId, Option<Arc<Check>>>,
    /// Service modify indexes by name.
    pub services: BTreeMap<ServiceName, u64>,
}

impl Rows {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty() && self.checks.is_empty() && self.services.is_empty()
    }
}
