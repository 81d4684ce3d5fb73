//! The `worker-service` fleet the Endpoint Provider benchmarks measure (issue 3): a few instances,
//! each with a TTL check, registered passing, so `GET /v1/endpoints/worker-service` lists all
//! of them until a benchmark fails a check or deregisters one.

use crate::client::Connection;
use anyhow::Context;

/// The service name, as the issue and the design notes spell it.
pub const SERVICE: &str = "worker-service";
/// Instances registered unless told otherwise (the issue's "10 instances").
pub const DEFAULT_INSTANCES: u32 = 10;
/// The checks' TTL: far longer than any bounded run, so no check expires during one; a
/// benchmark that wants a check critical fails it explicitly.
const CHECK_TTL: &str = "30m";

/// Instance ID of the `n`-th instance: `worker-<n>`.
pub fn instance_id(n: u32) -> String {
    format!("worker-{n}")
}

/// ID of the `n`-th instance's TTL check: `worker-<n>-ttl`.
pub fn check_id(n: u32) -> String {
    format!("{}-ttl", instance_id(n))
}

/// The registration body of the `n`-th instance, passing from the start. Ports and tags are
/// what a small fleet looks like; the rendered endpoint list is about 130 bytes per instance.
pub fn registration(n: u32) -> String {
    format!(
        r#"{{"Name":"{SERVICE}","ID":"{id}","Address":"10.0.{rack}.{host}","Port":{port},"Tags":["v1","zone-{zone}"],"Meta":{{"version":"1.4.2"}},"Check":{{"CheckID":"{check}","TTL":"{CHECK_TTL}","Status":"passing"}}}}"#,
        id = instance_id(n),
        check = check_id(n),
        rack = n / 200,
        host = n % 200 + 10,
        port = 8080 + n % 10,
        zone = n % 3,
    )
}

/// Registers instances `0..count`, passing.
pub async fn register(connection: &mut Connection, count: u32) -> anyhow::Result<()> {
    for n in 0..count {
        connection
            .put("/v1/agent/service/register", registration(n))
            .await?
            .expect_ok(&format!("registering {}", instance_id(n)))?;
    }
    Ok(())
}

/// The instance IDs a `/v1/endpoints` body lists.
pub fn listed_ids(body: &[u8]) -> anyhow::Result<Vec<String>> {
    let endpoints: serde_json::Value =
        serde_json::from_slice(body).context("the endpoint list is not JSON")?;
    let endpoints = endpoints
        .as_array()
        .context("the endpoint list is not a JSON array")?;
    endpoints
        .iter()
        .map(|endpoint| {
            endpoint["id"]
                .as_str()
                .map(str::to_owned)
                .context("an endpoint has no \"id\"")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_json_with_a_passing_ttl_check() {
        let body: serde_json::Value =
            serde_json::from_str(&registration(3)).expect("registration is JSON");
        assert_eq!(body["ID"], "worker-3");
        assert_eq!(body["Check"]["CheckID"], "worker-3-ttl");
        assert_eq!(body["Check"]["Status"], "passing");
        assert_eq!(
            listed_ids(br#"[{"host":"a","port":1,"id":"worker-0"}]"#).ok(),
            Some(vec!["worker-0".to_owned()])
        );
    }
}
