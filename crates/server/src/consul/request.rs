//! Request bodies as Consul clients send them, and their translation into catalog commands.
//!
//! The same types decode `PUT /v1/agent/service/register` bodies and the service blocks of
//! config files (HCL or JSON, snake_case keys), because Consul treats them as one schema.
//! Fields for features we do not have (mesh, Enterprise) are accepted and ignored where
//! ignoring them is harmless, and refused with a clear reason where a client would be misled.

use super::duration;
use super::relaxed::{DecodeError, decode};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::BTreeMap;
use std::time::Duration;
use wayfinder_catalog::{
    CheckDefinition, CheckId, CheckKind, CheckPolicy, Instance, InstanceId, Registration,
    ServiceName, Source, Status, TaggedAddress, ValidationError, Weights,
};

/// Why a request body was refused: it did not decode, or it decoded but breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, wrong types or unknown keys.
    #[error("request decode failed: {0}")]
    Decode(#[from] DecodeError),
    /// Well-formed but invalid.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
}

impl RequestError {
    /// The field the error is about, in request spelling (empty for the whole body).
    pub fn field(&self) -> &str {
        match self {
            RequestError::Decode(e) => &e.field,
            RequestError::Invalid(e) => &e.field,
        }
    }
}

/// `Weights` in a registration.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightsBody {
    #[serde(rename = "Passing")]
    passing: Option<i64>,
    #[serde(rename = "Warning")]
    warning: Option<i64>,
}

/// One `TaggedAddresses` entry.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaggedAddressBody {
    #[serde(rename = "Address", default)]
    address: String,
    #[serde(rename = "Port", default)]
    port: u16,
}

/// A check as sent in a registration, to `/v1/agent/check/register`, or in a config file.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    #[serde(rename = "CheckID", alias = "ID")]
    check_id: Option<String>,
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Notes", default)]
    notes: String,
    #[serde(rename = "ServiceID")]
    service_id: Option<String>,
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "ScriptArgs", alias = "Args")]
    script_args: Option<Vec<String>>,
    #[serde(rename = "HTTP")]
    http: Option<String>,
    #[serde(rename = "Header")]
    header: Option<BTreeMap<String, Vec<String>>>,
    #[serde(rename = "Method")]
    method: Option<String>,
    #[serde(rename = "Body")]
    body: Option<String>,
    #[serde(rename = "DisableRedirects", default)]
    _disable_redirects: bool,
    #[serde(rename = "TLSServerName")]
    tls_server_name: Option<String>,
    #[serde(rename = "TLSSkipVerify", default)]
    tls_skip_verify: bool,
    #[serde(rename = "TCP")]
    tcp: Option<String>,
    #[serde(rename = "GRPC")]
    grpc: Option<String>,
    #[serde(rename = "GRPCUseTLS", default)]
    grpc_use_tls: bool,
    #[serde(
        rename = "Interval",
        default,
        deserialize_with = "duration::deserialize_option"
    )]
    #[schema(value_type = Option<String>)]
    interval: Option<Duration>,
    #[serde(
        rename = "Timeout",
        default,
        deserialize_with = "duration::deserialize_option"
    )]
    #[schema(value_type = Option<String>)]
    timeout: Option<Duration>,
    #[serde(
        rename = "TTL",
        default,
        deserialize_with = "duration::deserialize_option"
    )]
    #[schema(value_type = Option<String>)]
    ttl: Option<Duration>,
    #[serde(
        rename = "DeregisterCriticalServiceAfter",
        default,
        deserialize_with = "duration::deserialize_option"
    )]
    #[schema(value_type = Option<String>)]
    deregister_critical_service_after: Option<Duration>,
    #[serde(rename = "SuccessBeforePassing", default)]
    success_before_passing: u32,
    #[serde(rename = "FailuresBeforeWarning", default)]
    failures_before_warning: u32,
    #[serde(rename = "FailuresBeforeCritical", default)]
    failures_before_critical: u32,
    #[serde(rename = "OutputMaxSize", default)]
    #[schema(value_type = Value)]
    _output_max_size: IgnoredAny,
    #[serde(rename = "UDP")]
    udp: Option<String>,
    #[serde(rename = "H2PING")]
    h2ping: Option<String>,
    #[serde(rename = "H2PingUseTLS", default)]
    #[schema(value_type = Value)]
    _h2ping_use_tls: IgnoredAny,
    #[serde(rename = "DockerContainerID")]
    docker_container_id: Option<String>,
    #[serde(rename = "Shell")]
    _shell: Option<String>,
    #[serde(rename = "AliasNode")]
    alias_node: Option<String>,
    #[serde(rename = "AliasService")]
    alias_service: Option<String>,
    #[serde(rename = "OSService")]
    os_service: Option<String>,
}

fn set(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.is_empty())
}

impl CheckBody {
    /// Whether this is a script (exec) check, which needs `--enable-script-checks` (API) or
    /// `--enable-local-script-checks` (config files).
    pub fn is_script(&self) -> bool {
        self.script_args
            .as_ref()
            .is_some_and(|args| !args.is_empty())
    }

    /// Translates into a catalog check definition, validating kind-independent rules. `field`
    /// prefixes error paths (`Check`, `Checks[1]`).
    pub fn into_definition(self, field: &str) -> Result<CheckDefinition, ValidationError> {
        let in_field = |e: ValidationError| e.within(field);
        let unsupported = [
            ("UDP", set(&self.udp)),
            ("H2PING", set(&self.h2ping)),
            ("DockerContainerID", set(&self.docker_container_id)),
            (
                "AliasService",
                set(&self.alias_service) || set(&self.alias_node),
            ),
            ("OSService", set(&self.os_service)),
        ];
        if let Some((kind, _)) = unsupported.iter().find(|(_, used)| *used) {
            return Err(in_field(ValidationError::new(
                *kind,
                "this check kind is not supported; use HTTP, TCP, GRPC, TTL or Args",
            )));
        }
        let mut kinds = Vec::new();
        if let Some(ttl) = self.ttl.filter(|t| !t.is_zero()) {
            kinds.push(CheckKind::Ttl { ttl });
        }
        if self.is_script() {
            kinds.push(CheckKind::Exec {
                args: self.script_args.clone().unwrap_or_default(),
            });
        }
        if let Some(url) = self.http.clone().filter(|u| !u.is_empty()) {
            kinds.push(CheckKind::Http {
                url,
                method: self
                    .method
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "GET".into()),
                headers: self.header.clone().unwrap_or_default(),
                body: self.body.clone().unwrap_or_default(),
                tls_skip_verify: self.tls_skip_verify,
                tls_server_name: self.tls_server_name.clone().unwrap_or_default(),
            });
        }
        if let Some(address) = self.tcp.clone().filter(|a| !a.is_empty()) {
            kinds.push(CheckKind::Tcp { address });
        }
        if let Some(target) = self.grpc.clone().filter(|t| !t.is_empty()) {
            kinds.push(CheckKind::Grpc {
                target,
                use_tls: self.grpc_use_tls,
            });
        }
        let kind = match kinds.len() {
            1 => kinds.remove(0),
            0 => {
                return Err(in_field(ValidationError::new(
                    "",
                    "the check has no kind: set one of HTTP, TCP, GRPC, TTL or Args",
                )));
            }
            _ => {
                return Err(in_field(ValidationError::new(
                    "",
                    "the check has several kinds: set exactly one of HTTP, TCP, GRPC, TTL or Args",
                )));
            }
        };
        let initial_status = match self.status.as_deref() {
            None | Some("") => None,
            Some(text) => Some(text.parse::<Status>().map_err(|_| {
                in_field(ValidationError::new(
                    "Status",
                    format!("{text:?} is not a status; use passing, warning or critical"),
                ))
            })?),
        };
        let id = match self.check_id.as_deref() {
            None | Some("") => None,
            Some(id) => Some(CheckId::new(id, "CheckID").map_err(in_field)?),
        };
        let service_id = match self.service_id.as_deref() {
            None | Some("") => None,
            Some(id) => Some(InstanceId::new(id, "ServiceID").map_err(in_field)?),
        };
        let policy = CheckPolicy {
            interval: self.interval.unwrap_or_default(),
            timeout: self
                .timeout
                .filter(|t| !t.is_zero())
                .unwrap_or_else(|| kind.default_timeout()),
            success_before_passing: self.success_before_passing,
            failures_before_warning: self.failures_before_warning,
            failures_before_critical: self.failures_before_critical,
            deregister_critical_after: self.deregister_critical_service_after,
        };
        let definition = CheckDefinition {
            id,
            name: self.name,
            notes: self.notes,
            service_id,
            initial_status,
            kind,
            policy,
        };
        definition.validate().map_err(|e| e.within(field))?;
        Ok(definition)
    }
}

/// A service registration body (`PUT /v1/agent/service/register`, or a config file's
/// `service` block).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceBody {
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "Tags")]
    tags: Option<Vec<String>>,
    #[serde(rename = "Address")]
    address: Option<String>,
    #[serde(rename = "Port", default)]
    port: u16,
    #[serde(rename = "Meta")]
    meta: Option<BTreeMap<String, String>>,
    #[serde(rename = "Weights")]
    weights: Option<WeightsBody>,
    #[serde(rename = "TaggedAddresses")]
    tagged_addresses: Option<BTreeMap<String, TaggedAddressBody>>,
    #[serde(rename = "EnableTagOverride", default)]
    enable_tag_override: bool,
    #[serde(rename = "Check")]
    check: Option<CheckBody>,
    #[serde(rename = "Checks")]
    checks: Option<Vec<CheckBody>>,
    #[serde(rename = "Kind")]
    kind: Option<String>,
    #[serde(rename = "Proxy", default)]
    #[schema(value_type = Value)]
    _proxy: IgnoredAny,
    #[serde(rename = "Connect", default)]
    #[schema(value_type = Value)]
    _connect: IgnoredAny,
    #[serde(rename = "Token", default)]
    #[schema(value_type = Value)]
    _token: IgnoredAny,
    #[serde(rename = "Namespace", default)]
    #[schema(value_type = Value)]
    _namespace: IgnoredAny,
    #[serde(rename = "Partition", default)]
    #[schema(value_type = Value)]
    _partition: IgnoredAny,
    #[serde(rename = "SocketPath")]
    socket_path: Option<String>,
}

impl ServiceBody {
    /// Decodes a body that has already been parsed as JSON.
    pub fn decode(value: serde_json::Value) -> Result<Self, RequestError> {
        Ok(decode(value)?)
    }

    /// Whether any of its checks is a script check.
    pub fn has_script_checks(&self) -> bool {
        self.script_check_field().is_some()
    }

    /// The field path of the first script check (`Check.Args`, `Checks[2].Args`), if any, so a
    /// refusal can point at it.
    pub fn script_check_field(&self) -> Option<String> {
        if self.check.as_ref().is_some_and(CheckBody::is_script) {
            return Some("Check.Args".to_owned());
        }
        let position = self
            .checks
            .iter()
            .flatten()
            .position(CheckBody::is_script)?;
        Some(format!("Checks[{position}].Args"))
    }

    /// Translates into a registration command. `replace_existing_checks` is Consul's query
    /// flag; `source` records whether this came from the API or a config file.
    pub fn into_registration(
        self,
        source: Source,
        replace_existing_checks: bool,
    ) -> Result<Registration, ValidationError> {
        let name = self.name.unwrap_or_default();
        if name.is_empty() {
            return Err(ValidationError::new("Name", "missing service name"));
        }
        let service = ServiceName::new(&name, "Name")?;
        let id = match self.id.as_deref() {
            None | Some("") => InstanceId::new(&name, "ID")?,
            Some(id) => InstanceId::new(id, "ID")?,
        };
        if self
            .kind
            .as_deref()
            .is_some_and(|k| !k.is_empty() && k != "typical")
        {
            return Err(ValidationError::new(
                "Kind",
                "service mesh kinds (connect-proxy, gateways) are not supported; leave Kind empty",
            ));
        }
        if set(&self.socket_path) {
            return Err(ValidationError::new(
                "SocketPath",
                "Unix socket services are not supported; register an address and port",
            ));
        }
        let weights = match self.weights {
            None => Weights::default(),
            Some(body) => {
                let passing = body.passing.unwrap_or(1);
                let warning = body.warning.unwrap_or(1);
                let passing = u32::try_from(passing)
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or_else(|| {
                        ValidationError::new(
                            "Weights.Passing",
                            format!("{passing} must be at least 1"),
                        )
                    })?;
                let warning = u32::try_from(warning).map_err(|_| {
                    ValidationError::new("Weights.Warning", format!("{warning} must be 0 or more"))
                })?;
                Weights { passing, warning }
            }
        };
        let single = self.check.is_some() && self.checks.as_ref().is_none_or(Vec::is_empty);
        let mut checks = Vec::new();
        for (i, body) in self
            .check
            .into_iter()
            .chain(self.checks.into_iter().flatten())
            .enumerate()
        {
            let field = if single {
                "Check".to_owned()
            } else {
                format!("Checks[{i}]")
            };
            checks.push(body.into_definition(&field)?);
        }
        let instance = Instance {
            address: self.address.unwrap_or_default(),
            port: self.port,
            tags: self.tags.unwrap_or_default(),
            meta: self.meta.unwrap_or_default().into(),
            weights,
            tagged_addresses: self
                .tagged_addresses
                .unwrap_or_default()
                .into_iter()
                .map(|(name, t)| {
                    (
                        name,
                        TaggedAddress {
                            address: t.address,
                            port: t.port,
                        },
                    )
                })
                .collect(),
            enable_tag_override: self.enable_tag_override,
            source,
            ..Instance::new(id, service)
        };
        instance.validate()?;
        Ok(Registration {
            instance,
            checks,
            replace_existing_checks,
        })
    }
}

/// `PUT /v1/agent/check/register`: a check on its own. `Name` is required and the ID defaults
/// to it, as in Consul.
pub fn check_registration(
    value: serde_json::Value,
) -> Result<(CheckDefinition, bool), RequestError> {
    let body: CheckBody = decode(value)?;
    if body.name.is_empty() {
        return Err(ValidationError::new("Name", "missing check name").into());
    }
    let is_script = body.is_script();
    let default_id = body.name.clone();
    let mut definition = body.into_definition("")?;
    if definition.id.is_none() {
        definition.id = Some(CheckId::new(&default_id, "Name")?);
    }
    Ok((definition, is_script))
}

/// `PUT /v1/agent/check/update/{id}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckUpdateBody {
    /// New status.
    #[serde(rename = "Status", default)]
    pub status: String,
    /// Output to record.
    #[serde(rename = "Output", default)]
    pub output: String,
}

impl CheckUpdateBody {
    /// Decodes and validates the status.
    pub fn decode(value: serde_json::Value) -> Result<(Status, String), RequestError> {
        let body: CheckUpdateBody = decode(value)?;
        let status = body.status.parse::<Status>().map_err(|_| {
            ValidationError::new(
                "Status",
                format!(
                    "invalid check status {:?}; use passing, warning or critical",
                    body.status
                ),
            )
        })?;
        Ok((status, body.output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn register(value: serde_json::Value) -> Result<Registration, RequestError> {
        Ok(ServiceBody::decode(value)?.into_registration(Source::Api, false)?)
    }

    #[test]
    fn python_consul_body_decodes() {
        let r = register(json!({
            "name": "web", "id": "web-1", "address": "10.0.0.5", "port": 8080, "tags": ["v2"],
            "check": {"http": "http://10.0.0.5:8080/h", "interval": "10s", "timeout": "2s",
                      "DeregisterCriticalServiceAfter": "1m"}
        }))
        .expect("valid");
        assert_eq!(r.instance.id.as_str(), "web-1");
        assert_eq!(r.checks.len(), 1);
        assert_eq!(r.checks[0].policy.interval, Duration::from_secs(10));
        assert_eq!(
            r.checks[0].policy.deregister_critical_after,
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn errors_name_the_field() {
        let field = |v| register(v).expect_err("invalid").field().to_owned();
        assert_eq!(field(json!({"Port": 8080})), "Name");
        assert_eq!(field(json!({"Name": "web", "Port": 70000})), "Port");
        assert_eq!(field(json!({"Name": "web_1"})), "Name");
        assert_eq!(
            field(json!({"Name": "web", "Check": {"TTL": "1s", "Interval": "1s"}})),
            "Check.Interval"
        );
        assert_eq!(
            field(json!({"Name": "web", "Check": {"HTTP": "x", "Interval": "1s"}})),
            "Check.HTTP"
        );
        assert_eq!(
            field(json!({"Name": "web", "Check": {"Interval": "1s"}})),
            "Check"
        );
        assert_eq!(field(json!({"Name": "web", "Bogus": 1})), "Bogus");
        assert_eq!(
            field(
                json!({"Name": "web", "Checks": [{"TTL": "1s"}, {"TCP": "x:1", "Interval": "ten"}]})
            ),
            "Checks[1].Interval"
        );
    }

    #[test]
    fn check_update_validates_status() {
        assert!(CheckUpdateBody::decode(json!({"Status": "passing", "Output": "ok"})).is_ok());
        assert!(CheckUpdateBody::decode(json!({"Status": "fine"})).is_err());
    }
}
