//! Builders shared by the catalog's integration tests, so each test reads as its scenario.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;
use wayfinder_catalog::{
    Catalog, Check, CheckDefinition, CheckId, CheckKind, CheckPolicy, Command, Instance,
    InstanceId, Outcome, Registration, ServiceName, Status,
};

/// A service name the test knows to be valid.
pub fn service(name: &str) -> ServiceName {
    ServiceName::new(name, "Name").expect("test service names are valid")
}

/// An instance ID the test knows to be valid.
pub fn instance_id(id: &str) -> InstanceId {
    InstanceId::new(id, "ID").expect("test instance IDs are valid")
}

/// A check ID the test knows to be valid.
pub fn check_id(id: &str) -> CheckId {
    CheckId::new(id, "CheckID").expect("test check IDs are valid")
}

/// A plain instance of `service` on 10.0.0.1:8080.
pub fn instance(id: &str, service_name: &str) -> Instance {
    Instance {
        address: "10.0.0.1".to_owned(),
        port: 8080,
        ..Instance::new(instance_id(id), service(service_name))
    }
}

/// The policy a check of `kind` needs to pass validation: TTL checks have no interval.
pub fn policy_for(kind: &CheckKind) -> CheckPolicy {
    let interval = if matches!(kind, CheckKind::Ttl { .. }) {
        Duration::ZERO
    } else {
        Duration::from_secs(10)
    };
    CheckPolicy::new(interval, Duration::from_secs(1))
}

/// A TTL check definition with an optional explicit ID, not yet attached to anything.
pub fn ttl_check(id: Option<&str>) -> CheckDefinition {
    let kind = CheckKind::Ttl {
        ttl: Duration::from_secs(30),
    };
    CheckDefinition {
        id: id.map(check_id),
        name: String::new(),
        notes: String::new(),
        service_id: None,
        initial_status: None,
        policy: policy_for(&kind),
        kind,
    }
}

/// A `Register` command for `instance` with `checks`.
pub fn register(instance: Instance, checks: Vec<CheckDefinition>) -> Command {
    Command::Register(Box::new(Registration {
        instance,
        checks,
        replace_existing_checks: false,
    }))
}

/// A `Register` command with `?replace-existing-checks`.
pub fn register_replacing(instance: Instance, checks: Vec<CheckDefinition>) -> Command {
    Command::Register(Box::new(Registration {
        instance,
        checks,
        replace_existing_checks: true,
    }))
}

/// A `SetCheckStatus` command.
pub fn set_status(id: &str, status: Status) -> Command {
    Command::SetCheckStatus {
        id: check_id(id),
        status,
        output: format!("now {status}"),
    }
}

/// Applies `command` at the next index, expecting it to be accepted.
pub fn apply(catalog: &mut Catalog, command: &Command) -> Outcome {
    let index = catalog.index() + 1;
    catalog
        .apply(index, command)
        .expect("the test command is valid")
}

/// The check with `id`, expecting it to exist.
pub fn check<'a>(catalog: &'a Catalog, id: &str) -> &'a Check {
    catalog.check(id).expect("the check exists")
}

/// The stored rows of a catalog, rebuilt into a new one as a restart would.
pub fn restored(catalog: &Catalog) -> Catalog {
    Catalog::restore(
        catalog.index(),
        catalog.all_instances().map(|v| Instance::clone(v.instance)),
        catalog.checks().map(|c| Check::clone(c)),
        catalog
            .service_indexes()
            .map(|(name, index)| (name.clone(), index)),
    )
}
