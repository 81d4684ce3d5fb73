//! Read-side queries over a catalog snapshot. Nothing here allocates per instance beyond the
//! view it returns, and nothing blocks: a snapshot is immutable.

use crate::catalog::{Catalog, ServiceEntry};
use crate::check::Check;
use crate::instance::Instance;
use crate::names::ServiceName;
use crate::status::Status;
use std::collections::BTreeSet;
use std::sync::Arc;

/// One instance with its checks and aggregate health.
#[derive(Debug, Clone)]
pub struct InstanceView<'a> {
    /// The instance.
    pub instance: &'a Arc<Instance>,
    /// Its own checks, then the node-level checks that also count against it.
    pub checks: Vec<&'a Arc<Check>>,
    /// The worst status among `checks` (passing when there are none).
    pub health: Status,
}

/// A service as `/v1/catalog/services` lists it.
#[derive(Debug, Clone)]
pub struct ServiceSummary<'a> {
    /// The name.
    pub name: &'a ServiceName,
    /// Union of its instances' tags, de-duplicated, in sorted order.
    pub tags: BTreeSet<&'a str>,
    /// Index of the last change to any of its instances or their checks.
    pub modify_index: u64,
}

impl Catalog {
    /// Aggregate health of one instance: worst of its checks and the node's checks.
    pub fn health(&self, id: &str) -> Status {
        let own = self.instance_checks.get(id).into_iter().flatten();
        Status::worst(
            own.chain(self.node_checks.iter())
                .filter_map(|check| self.checks.get(check))
                .map(|check| check.status),
        )
    }

    /// The instance with this ID, with its checks.
    pub fn instance(&self, id: &str) -> Option<InstanceView<'_>> {
        self.instances.get(id).map(|instance| self.view(instance))
    }

    fn view<'a>(&'a self, instance: &'a Arc<Instance>) -> InstanceView<'a> {
        let checks: Vec<&Arc<Check>> = self
            .instance_checks
            .get(&instance.id)
            .into_iter()
            .flatten()
            .chain(self.node_checks.iter())
            .filter_map(|check| self.checks.get(check))
            .collect();
        let health = Status::worst(checks.iter().map(|c| c.status));
        InstanceView {
            instance,
            checks,
            health,
        }
    }

    /// Every instance of `service`, in ID order. Unknown services yield nothing.
    pub fn instances_of<'a>(
        &'a self,
        service: &str,
    ) -> impl Iterator<Item = InstanceView<'a>> + 'a {
        self.services
            .get(service)
            .into_iter()
            .flat_map(|entry| entry.instances.iter())
            .filter_map(|id| self.instances.get(id))
            .map(|instance| self.view(instance))
    }

    /// Every instance on the agent, in ID order.
    pub fn all_instances(&self) -> impl Iterator<Item = InstanceView<'_>> + '_ {
        self.instances.values().map(|instance| self.view(instance))
    }

    /// Services with at least one instance, in name order.
    pub fn services(&self) -> impl Iterator<Item = ServiceSummary<'_>> + '_ {
        self.services
            .iter()
            .filter(|(_, entry)| !entry.instances.is_empty())
            .map(|(name, entry)| {
                let tags = entry
                    .instances
                    .iter()
                    .filter_map(|id| self.instances.get(id))
                    .flat_map(|instance| instance.tags.iter().map(String::as_str))
                    .collect();
                ServiceSummary {
                    name,
                    tags,
                    modify_index: entry.modify_index,
                }
            })
    }

    /// The name as registered, and the [`Catalog::service_index`], of the service with
    /// instances that `name` names, compared ignoring ASCII case (DNS names are
    /// case-insensitive, service names are stored as registered). An exact match costs one
    /// lookup; otherwise every name is compared, but only the name: no summary is built, so a
    /// query for a service that does not exist costs one string comparison per service, not a
    /// walk over every instance.
    pub fn live_service_ignoring_case(&self, name: &str) -> Option<(&ServiceName, u64)> {
        self.services
            .get_key_value(name)
            .and_then(live_entry)
            .or_else(|| {
                self.services
                    .iter()
                    .filter(|(stored, _)| stored.as_str().eq_ignore_ascii_case(name))
                    .find_map(live_entry)
            })
    }

    /// Whether `service` has at least one instance.
    pub fn has_service(&self, service: &str) -> bool {
        self.services
            .get(service)
            .is_some_and(|entry| !entry.instances.is_empty())
    }

    /// [`Catalog::service_index`] of a service that has instances, `None` for one that has
    /// none: [`Catalog::has_service`] and the index in one lookup, for the hottest read path
    /// (a large catalog makes each lookup a dozen string comparisons).
    pub fn live_service_index(&self, service: &str) -> Option<u64> {
        self.services
            .get(service)
            .filter(|entry| !entry.instances.is_empty())
            .map(|entry| entry.modify_index.max(1))
    }

    /// Index of the last change to `service`, including its deregistrations. A service never
    /// seen answers 1 (Consul never sends an index below 1), so its first registration wakes
    /// anyone waiting for it.
    pub fn service_index(&self, service: &str) -> u64 {
        self.services
            .get(service)
            .map_or(1, |entry| entry.modify_index.max(1))
    }

    /// The check with this ID.
    pub fn check(&self, id: &str) -> Option<&Arc<Check>> {
        self.checks.get(id)
    }

    /// The instance `check` belongs to; `None` for a node-level check.
    pub fn owner(&self, check: &Check) -> Option<&Instance> {
        check
            .service_id
            .as_ref()
            .and_then(|id| self.instances.get(id))
            .map(Arc::as_ref)
    }

    /// Every check on the agent, in ID order.
    pub fn checks(&self) -> impl Iterator<Item = &Arc<Check>> + '_ {
        self.checks.values()
    }

    /// Every check attached to an instance of `service`, in instance then check ID order.
    pub fn checks_of_service<'a>(
        &'a self,
        service: &str,
    ) -> impl Iterator<Item = &'a Arc<Check>> + 'a {
        self.services
            .get(service)
            .into_iter()
            .flat_map(|entry| entry.instances.iter())
            .flat_map(|id| self.instance_checks.get(id).into_iter().flatten())
            .filter_map(|id| self.checks.get(id))
    }

    /// Number of registered instances.
    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }

    /// Number of services with at least one instance (those [`Catalog::services`] lists),
    /// without building their summaries.
    pub fn service_count(&self) -> usize {
        self.services
            .values()
            .filter(|entry| !entry.instances.is_empty())
            .count()
    }
}

/// A service's name and index (as [`Catalog::service_index`] gives it) while it has instances.
fn live_entry<'a>(
    (stored, entry): (&'a ServiceName, &'a ServiceEntry),
) -> Option<(&'a ServiceName, u64)> {
    (!entry.instances.is_empty()).then_some((stored, entry.modify_index.max(1)))
}
