//! The registration body: what `PUT /v1/agent/service/register` is sent for an instance, in
//! Consul's shape, with durations written as Go parses them.
//!
//! Pure: no IO. Sending it, and when, is the business of `keepalive` and
//! [`Registration::register`].

use super::ids::check_id;
use super::{CheckSpec, CheckStatus, Registration};
use serde_json::{Map, Value, json};
use std::time::Duration;

impl Registration {
    /// The body of `PUT /v1/agent/service/register` for instance `id`. A TTL check starts in
    /// `status` (what the process last reported), so a re-registration does not flap the
    /// instance to critical; an HTTP check starts critical, as in Consul, until the agent's
    /// first probe passes.
    pub(super) fn body(&self, id: &str, status: CheckStatus) -> Value {
        let mut body = Map::new();
        body.insert("ID".into(), json!(id));
        body.insert("Name".into(), json!(self.name));
        body.insert("Address".into(), json!(self.address));
        body.insert("Port".into(), json!(self.port));
        body.insert("Tags".into(), json!(self.tags));
        body.insert("Meta".into(), json!(self.meta));
        if let Some((passing, warning)) = self.weights {
            body.insert(
                "Weights".into(),
                json!({"Passing": passing, "Warning": warning}),
            );
        }
        if let Some(check) = &self.check {
            let mut fields = Map::new();
            // Consul's default ID for a service's only check, sent explicitly so heartbeats do
            // not depend on the agent's defaulting.
            fields.insert("CheckID".into(), json!(check_id(id)));
            match check {
                CheckSpec::Http { url, interval } => {
                    fields.insert("HTTP".into(), json!(url));
                    fields.insert("Interval".into(), json!(go_duration(*interval)));
                }
                CheckSpec::Ttl { ttl } => {
                    fields.insert("TTL".into(), json!(go_duration(*ttl)));
                    fields.insert("Status".into(), json!(status.as_str()));
                }
            }
            if let Some(after) = self.deregister_critical_after {
                fields.insert(
                    "DeregisterCriticalServiceAfter".into(),
                    json!(go_duration(after)),
                );
            }
            body.insert("Check".into(), Value::Object(fields));
        }
        Value::Object(body)
    }
}

/// A duration as a Go duration string, exactly: whole seconds as `10s`, else the largest unit
/// that divides it (`1500ms`, `250us`, `7ns`); zero as `0s`. Consul and Wayfinder parse every
/// form, and no precision is lost to a decimal point.
fn go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)] {
        if nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{nanos}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_exact_go_durations() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(90)), "90s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(go_duration(Duration::from_micros(250)), "250us");
        assert_eq!(
            go_duration(Duration::from_nanos(1_000_000_007)),
            "1000000007ns"
        );
    }

    #[test]
    fn a_ttl_registration_renders_in_consuls_shape() {
        let registration = Registration::new("worker")
            .port(8080)
            .tag("v2")
            .tag("urlprefix-/work")
            .meta("version", "1.2.3")
            .weights(10, 1)
            .ttl_check(Duration::from_secs(3))
            .deregister_critical_after(Duration::from_secs(60));
        assert_eq!(
            registration.body("worker-1", CheckStatus::Warning),
            json!({
                "ID": "worker-1",
                "Name": "worker",
                "Address": "127.0.0.1",
                "Port": 8080,
                "Tags": ["v2", "urlprefix-/work"],
                "Meta": {"version": "1.2.3"},
                "Weights": {"Passing": 10, "Warning": 1},
                "Check": {
                    "CheckID": "service:worker-1",
                    "TTL": "3s",
                    "Status": "warning",
                    "DeregisterCriticalServiceAfter": "60s"
                }
            })
        );
    }

    #[test]
    fn an_http_registration_leaves_the_status_to_the_agent() {
        let registration = Registration::new("web")
            .address("10.0.0.5")
            .http_check("http://10.0.0.5:80/health", Duration::from_millis(500));
        assert_eq!(
            registration.body("web-a", CheckStatus::Passing),
            json!({
                "ID": "web-a",
                "Name": "web",
                "Address": "10.0.0.5",
                "Port": 0,
                "Tags": [],
                "Meta": {},
                "Check": {
                    "CheckID": "service:web-a",
                    "HTTP": "http://10.0.0.5:80/health",
                    "Interval": "500ms"
                }
            })
        );
    }

    #[test]
    fn a_registration_without_a_check_sends_none() {
        let plain = Registration::new("w").resync_interval(Duration::ZERO);
        assert_eq!(plain.body("w-1", CheckStatus::Passing).get("Check"), None);
    }
}
