//! The `acl { }` block of the agent's settings file (`--config-file`, HCL or JSON), in
//! Consul's words: `enabled`, `default_policy`, `tokens { initial_management }`, plus the
//! tokens this agent knows, each with `service`/`service_prefix`/`agent`/`agent_prefix` rules.
//!
//! ```hcl
//! acl {
//!   enabled        = true
//!   default_policy = "deny"
//!   tokens { initial_management = "f3b2c1d0-8e7a-4c55-9d1e-2a6b3c4d5e6f" }
//!   token "deployer" {
//!     secret = "0c9d8e7f-6a5b-4c3d-2e1f-a0b1c2d3e4f5"
//!     service_prefix "web-" { policy = "write" }
//!     service_prefix ""     { policy = "read" }
//!   }
//!   anonymous {
//!     service_prefix "" { policy = "read" }
//!   }
//! }
//! ```
//!
//! The file is read into a JSON value first (HCL through hcl-rs) and walked by hand, so every
//! mistake is reported with the key it is at and what to write instead.

use super::policy::{Access, ResourceRules, Rules};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Shortest secret accepted: a guessable token is no token.
pub const MIN_SECRET_LEN: usize = 16;

/// Why the settings file was refused. The agent does not start with a file it cannot read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct AclConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, where, and what to write instead.
    pub reason: String,
}

/// One token as configured; the secret stays in this value only until the resolver hashes it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// The token's name (its accessor): what logs and errors show instead of the secret.
    pub name: String,
    /// The secret clients send.
    pub secret: String,
    /// What it may do.
    pub rules: Rules,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("rules", &self.rules)
            .finish()
    }
}

/// The ACL settings.
#[derive(Clone, PartialEq, Eq)]
pub struct AclConfig {
    /// Whether requests are checked at all. Off, every request may do everything (Consul's
    /// default).
    pub enabled: bool,
    /// What a request no rule covers may do: `allow` is write, `deny` is nothing.
    pub default_policy: Access,
    /// The management token from the file, if any (it can do everything).
    pub initial_management: Option<String>,
    /// Tokens with rules.
    pub tokens: Vec<TokenConfig>,
    /// Rules for requests that carry no token.
    pub anonymous: Rules,
}

impl std::fmt::Debug for AclConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclConfig")
            .field("enabled", &self.enabled)
            .field("default_policy", &self.default_policy)
            .field(
                "initial_management",
                &self.initial_management.as_ref().map(|_| "<redacted>"),
            )
            .field("tokens", &self.tokens)
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl Default for AclConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            default_policy: Access::Write,
            initial_management: None,
            tokens: Vec::new(),
            anonymous: Rules::default(),
        }
    }
}

impl AclConfig {
    /// Reads the `acl` block of a settings file (`*.hcl` or `*.json`). A file without one
    /// leaves ACLs off.
    pub fn from_file(path: &Path) -> Result<Self, AclConfigError> {
        let fail = |reason: String| AclConfigError {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(format!(
                "cannot read it: {e}; check the path and permissions"
            ))
        })?;
        let is_json = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Self::from_text(&text, is_json).map_err(fail)
    }

    /// The settings in a file's text, JSON or HCL; [`AclConfig::from_file`] reads the file and
    /// calls it, and the fuzzer (`fuzz/fuzz_targets/config_files.rs`) calls it without a file.
    pub fn from_text(text: &str, is_json: bool) -> Result<Self, String> {
        let value: Value = if is_json {
            serde_json::from_str(text)
                .map_err(|e| format!("not valid JSON: {e}; fix the syntax"))?
        } else {
            if let Some(line) = crate::config::nesting::too_deep(text) {
                return Err(format!(
                    "not valid HCL: line {line}: {}",
                    crate::config::nesting::too_deep_reason()
                ));
            }
            ::hcl::from_str(text).map_err(|e| {
                format!(
                    "not valid HCL: {e}; fix the syntax (a file ending in .json is read as JSON)"
                )
            })?
        };
        Self::from_value(&value)
    }

    /// The settings in an already parsed file.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let top = object(value, "the file")?;
        if let Some(key) = top.keys().find(|k| k.as_str() != "acl") {
            return Err(format!(
                "unknown setting `{key}`; this file holds the `acl` block (service definitions \
                 go in --config-dir)"
            ));
        }
        let Some(acl) = top.get("acl") else {
            return Ok(Self::default());
        };
        let acl = single_block(acl, "acl")?;
        let mut config = Self::default();
        for (key, value) in acl {
            match key.as_str() {
                "enabled" => {
                    config.enabled = value
                        .as_bool()
                        .ok_or_else(|| "acl.enabled must be true or false".to_owned())?;
                }
                "default_policy" => {
                    config.default_policy = match value.as_str() {
                        Some("allow") => Access::Write,
                        Some("deny") => Access::Deny,
                        _ => {
                            return Err(format!(
                                "acl.default_policy is {value}; write \"allow\" or \"deny\""
                            ));
                        }
                    };
                }
                "tokens" => {
                    for (name, value) in single_block(value, "acl.tokens")? {
                        match name.as_str() {
                            "initial_management" => {
                                config.initial_management =
                                    Some(secret(value, "acl.tokens.initial_management")?);
                            }
                            other => {
                                return Err(format!(
                                    "unknown setting acl.tokens.{other}; the one known is \
                                     initial_management"
                                ));
                            }
                        }
                    }
                }
                "token" => {
                    for (name, body) in labelled(value, "acl.token")? {
                        config.tokens.push(token(&name, body)?);
                    }
                }
                "anonymous" => {
                    config.anonymous =
                        rules(single_block(value, "acl.anonymous")?, "acl.anonymous")?;
                }
                other => {
                    return Err(format!(
                        "unknown setting acl.{other}; known: enabled, default_policy, tokens, \
                         token, anonymous"
                    ));
                }
            }
        }
        config.check_unique_secrets()?;
        Ok(config)
    }

    /// Two tokens with one secret would make a request's rights depend on file order.
    fn check_unique_secrets(&self) -> Result<(), String> {
        let mut seen: Vec<(&str, &str)> = Vec::new();
        let management = self
            .initial_management
            .as_deref()
            .map(|s| ("tokens.initial_management", s));
        for (name, secret) in management.into_iter().chain(
            self.tokens
                .iter()
                .map(|t| (t.name.as_str(), t.secret.as_str())),
        ) {
            if let Some((other, _)) = seen.iter().find(|(_, s)| *s == secret) {
                return Err(format!(
                    "tokens {other} and {name} have the same secret; give each its own"
                ));
            }
            seen.push((name, secret));
        }
        Ok(())
    }
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{at} must be a block ({{ ... }}), not {value}"))
}

/// A block written once (`acl { }`); hcl-rs makes a repeated block a list, which is refused.
fn single_block<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    match value {
        Value::Array(_) => Err(format!(
            "{at} is written more than once; keep one {at} block"
        )),
        other => object(other, at),
    }
}

/// Labelled blocks (`token "name" { }`), as hcl-rs gives them: one object keyed by label, or a
/// list of such objects when the block is repeated.
fn labelled<'a>(value: &'a Value, at: &str) -> Result<Vec<(String, &'a Value)>, String> {
    let objects: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out: Vec<(String, &Value)> = Vec::new();
    for item in objects {
        for (label, body) in object(item, at)? {
            if out.iter().any(|(seen, _)| seen == label) {
                return Err(format!("{at} \"{label}\" is written twice; keep one"));
            }
            out.push((label.clone(), body));
        }
    }
    Ok(out)
}

fn secret(value: &Value, at: &str) -> Result<String, String> {
    let secret = value
        .as_str()
        .ok_or_else(|| format!("{at} must be a string"))?;
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "{at} is shorter than {MIN_SECRET_LEN} characters; use a random one (`uuidgen`)"
        ));
    }
    Ok(secret.to_owned())
}

fn token(name: &str, body: &Value) -> Result<TokenConfig, String> {
    let at = format!("acl.token \"{name}\"");
    let body = single_block(body, &at)?;
    let secret = secret(
        body.get("secret")
            .ok_or_else(|| format!("{at} has no secret; add secret = \"<uuid>\""))?,
        &format!("{at}.secret"),
    )?;
    let mut rule_keys = body.clone();
    rule_keys.remove("secret");
    Ok(TokenConfig {
        name: name.to_owned(),
        secret,
        rules: rules(&rule_keys, &at)?,
    })
}

/// Rules of one kind as read: name (or prefix) and access.
type RuleList = Vec<(String, Access)>;

fn rules(body: &Map<String, Value>, at: &str) -> Result<Rules, String> {
    let mut by_kind: [(RuleList, RuleList); 2] = Default::default();
    for (key, value) in body {
        let (kind, prefix) = match key.as_str() {
            "service" => (0, false),
            "service_prefix" => (0, true),
            "agent" => (1, false),
            "agent_prefix" => (1, true),
            other => {
                return Err(format!(
                    "unknown rule {at}.{other}; rules are service, service_prefix, agent and \
                     agent_prefix, each as `{other} \"name\" {{ policy = \"read\" }}`"
                ));
            }
        };
        for (name, rule) in labelled(value, &format!("{at}.{key}"))? {
            let rule_at = format!("{at}.{key} \"{name}\"");
            let rule = single_block(rule, &rule_at)?;
            let policy = rule
                .get("policy")
                .and_then(Value::as_str)
                .and_then(Access::parse)
                .ok_or_else(|| {
                    format!("{rule_at} needs policy = \"read\", \"write\" or \"deny\"")
                })?;
            if let Some(extra) = rule.keys().find(|k| k.as_str() != "policy") {
                return Err(format!(
                    "{rule_at} has unknown setting `{extra}`; only policy"
                ));
            }
            let (exact, prefixes) = &mut by_kind[kind];
            match prefix {
                true => prefixes.push((name, policy)),
                false => exact.push((name, policy)),
            }
        }
    }
    let [
        (service_exact, service_prefixes),
        (agent_exact, agent_prefixes),
    ] = by_kind;
    Ok(Rules {
        services: ResourceRules::new(service_exact, service_prefixes),
        agents: ResourceRules::new(agent_exact, agent_prefixes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_hcl(text: &str) -> Result<AclConfig, String> {
        AclConfig::from_text(text, false)
    }

    const SECRET_A: &str = "aaaaaaaa-1111-2222-3333-444444444444";
    const SECRET_B: &str = "bbbbbbbb-1111-2222-3333-444444444444";

    #[test]
    fn reads_a_full_block_in_hcl() {
        let config = parse_hcl(&format!(
            r#"
            acl {{
              enabled = true
              default_policy = "deny"
              tokens {{ initial_management = "{SECRET_A}" }}
              token "deployer" {{
                secret = "{SECRET_B}"
                service_prefix "web-" {{ policy = "write" }}
                service_prefix "" {{ policy = "read" }}
                service "web-admin" {{ policy = "deny" }}
                agent_prefix "" {{ policy = "read" }}
              }}
              token "reader" {{
                secret = "cccccccc-1111-2222-3333-444444444444"
                service_prefix "" {{ policy = "read" }}
              }}
              anonymous {{
                service_prefix "public-" {{ policy = "read" }}
              }}
            }}"#
        ))
        .expect("valid");
        assert!(config.enabled);
        assert_eq!(config.default_policy, Access::Deny);
        assert_eq!(config.initial_management.as_deref(), Some(SECRET_A));
        assert_eq!(config.tokens.len(), 2);
        let deployer = &config.tokens[0];
        assert_eq!(deployer.name, "deployer");
        assert_eq!(
            deployer.rules.services.access("web-api"),
            Some(Access::Write)
        );
        assert_eq!(
            deployer.rules.services.access("web-admin"),
            Some(Access::Deny)
        );
        assert_eq!(deployer.rules.services.access("db"), Some(Access::Read));
        assert_eq!(deployer.rules.agents.access("node-1"), Some(Access::Read));
        assert_eq!(
            config.anonymous.services.access("public-api"),
            Some(Access::Read)
        );
        assert_eq!(config.anonymous.services.access("web"), None);
        assert!(!format!("{config:?}").contains(SECRET_A));
        assert!(!format!("{config:?}").contains(SECRET_B));
    }

    #[test]
    fn reads_the_same_block_in_json() {
        let value: Value = serde_json::from_str(&format!(
            r#"{{"acl": {{"enabled": true, "default_policy": "deny",
                "token": {{"deployer": {{"secret": "{SECRET_B}",
                  "service_prefix": {{"web-": {{"policy": "write"}}}}}}}}}}}}"#
        ))
        .expect("json");
        let config = AclConfig::from_value(&value).expect("valid");
        assert_eq!(
            config.tokens[0].rules.services.access("web-1"),
            Some(Access::Write)
        );
    }

    #[test]
    fn mistakes_say_where_and_what_to_write() {
        let cases = [
            (
                "acl { enabled = \"yes\" }",
                "acl.enabled must be true or false",
            ),
            (
                "acl { default_policy = \"maybe\" }",
                "write \"allow\" or \"deny\"",
            ),
            ("acl { colour = 1 }", "unknown setting acl.colour"),
            (
                "service { name = \"web\" }",
                "service definitions go in --config-dir",
            ),
            (
                "acl {\n tokens { initial_management = \"short\" }\n }",
                "shorter than 16",
            ),
            (
                "acl {\n token \"t\" {\n secret = \"aaaaaaaa-1111-2222-3333-444444444444\"\n service \"x\" { policy = \"all\" }\n }\n }",
                "needs policy = \"read\", \"write\" or \"deny\"",
            ),
            (
                "acl {\n token \"t\" {\n secret = \"aaaaaaaa-1111-2222-3333-444444444444\"\n key_prefix \"\" { policy = \"read\" }\n }\n }",
                "unknown rule acl.token \"t\".key_prefix",
            ),
            ("acl {\n token \"t\" {\n }\n }", "has no secret"),
        ];
        for (text, expected) in cases {
            let error = parse_hcl(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn one_secret_for_two_tokens_is_refused() {
        let error = parse_hcl(&format!(
            "acl {{\n tokens {{ initial_management = \"{SECRET_A}\" }}\n token \"t\" {{ secret = \"{SECRET_A}\" }}\n }}"
        ))
        .expect_err("duplicate");
        assert!(error.contains("same secret"), "{error}");
    }

    #[test]
    fn no_acl_block_leaves_acls_off() {
        let config = AclConfig::from_value(&serde_json::json!({})).expect("valid");
        assert!(!config.enabled);
    }
}
