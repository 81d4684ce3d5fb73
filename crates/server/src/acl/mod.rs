//! Access control: who may read and change which services, and the agent itself.
//!
//! A registry decides where traffic goes, so whoever can write to it can redirect every
//! client. With `acl { enabled = true }` every API request is resolved to an [`Identity`]
//! from its token (`X-Consul-Token`, `Authorization: Bearer`, or `?token=`) and handlers ask
//! that identity before reading or writing. Secrets are kept only as SHA-256 digests and
//! compared in constant time; no log line or error carries one. DNS and the gateway are not
//! checked: they carry no token, and what they expose is decided by where they listen.

pub mod bootstrap;
pub mod config;
pub mod policy;

pub use bootstrap::{Bootstrap, BootstrapError};
pub use config::{AclConfig, AclConfigError, TokenConfig};
pub use policy::{Access, ResourceRules, Rules};

use ring::digest::{SHA256, digest};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// A secret's SHA-256 digest: the only form in which secrets are kept.
pub(crate) type Digest = [u8; 32];

/// The digest of `secret`.
pub(crate) fn digest_of(secret: &str) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, secret.as_bytes()).as_ref());
    out
}

/// What a token grants.
#[derive(Debug, Clone)]
enum Grant {
    /// Everything (the management token).
    Management,
    /// What its rules say; the default policy for everything they do not name.
    Rules(Arc<Rules>),
}

/// One known token: its name and its secret's digest.
#[derive(Debug, Clone)]
struct Token {
    name: Arc<str>,
    digest: Digest,
    grant: Grant,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// The request carried a token no one configured (Consul's words).
    #[error("ACL not found: the token is not known to this agent; check X-Consul-Token")]
    NotFound,
}

/// Who a request is, once its token is resolved; asked by handlers before they act.
#[derive(Debug, Clone)]
pub enum Identity {
    /// ACLs are off: everything is allowed.
    Unrestricted,
    /// A management token.
    Management {
        /// Its name.
        name: Arc<str>,
    },
    /// A token with rules, or the anonymous rules for a request without a token.
    Rules {
        /// Its name (`anonymous` for no token).
        name: Arc<str>,
        /// What it may do.
        rules: Arc<Rules>,
        /// What it may do where no rule speaks.
        default: Access,
    },
}

impl Identity {
    /// The token's name, for error messages and logs (never its secret).
    pub fn name(&self) -> &str {
        match self {
            Identity::Unrestricted => "(acl disabled)",
            Identity::Management { name } | Identity::Rules { name, .. } => name,
        }
    }

    /// What this identity may do to the service called `service`.
    pub fn service(&self, service: &str) -> Access {
        match self {
            Identity::Unrestricted | Identity::Management { .. } => Access::Write,
            Identity::Rules { rules, default, .. } => {
                rules.services.access(service).unwrap_or(*default)
            }
        }
    }

    /// What this identity may do to the agent named `node` (its view, metrics, node checks).
    pub fn agent(&self, node: &str) -> Access {
        match self {
            Identity::Unrestricted | Identity::Management { .. } => Access::Write,
            Identity::Rules { rules, default, .. } => rules.agents.access(node).unwrap_or(*default),
        }
    }

    /// Whether this identity may read every service (so lists need no filtering).
    pub fn reads_everything(&self) -> bool {
        match self {
            Identity::Unrestricted | Identity::Management { .. } => true,
            Identity::Rules { rules, default, .. } => {
                *default >= Access::Read && rules.services.all_at_least(Access::Read)
            }
        }
    }
}

/// The agent's access control: the configured tokens, the anonymous rules, the default policy
/// and the bootstrap token.
#[derive(Debug)]
pub struct Acl {
    enabled: bool,
    default: Access,
    tokens: Vec<Token>,
    anonymous: Arc<Rules>,
    bootstrap: Bootstrap,
}

impl Acl {
    /// Access control from its settings; `bootstrap` keeps the token `PUT /v1/acl/bootstrap`
    /// hands out once.
    pub fn new(config: &AclConfig, bootstrap: Bootstrap) -> Self {
        let management = config.initial_management.iter().map(|secret| Token {
            name: Arc::from("initial-management"),
            digest: digest_of(secret),
            grant: Grant::Management,
        });
        let with_rules = config.tokens.iter().map(|token| Token {
            name: Arc::from(token.name.as_str()),
            digest: digest_of(&token.secret),
            grant: Grant::Rules(Arc::new(token.rules.clone())),
        });
        Self {
            enabled: config.enabled,
            default: config.default_policy,
            tokens: management.chain(with_rules).collect(),
            anonymous: Arc::new(config.anonymous.clone()),
            bootstrap,
        }
    }

    /// Access control that allows everything (ACLs off).
    pub fn disabled() -> Self {
        Self::new(&AclConfig::default(), Bootstrap::none())
    }

    /// Whether requests are checked.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether a management token is configured in the file (then bootstrap is refused).
    pub fn has_configured_management(&self) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(t.grant, Grant::Management))
    }

    /// The bootstrap token's keeper.
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    /// The identity a request's token (or its absence) stands for. Every known digest is
    /// compared, in constant time, whatever matches: the time taken says nothing about which
    /// token, or how much of one, was right.
    pub fn resolve(&self, secret: Option<&str>) -> Result<Identity, AclError> {
        if !self.enabled {
            return Ok(Identity::Unrestricted);
        }
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            return Ok(Identity::Rules {
                name: Arc::from("anonymous"),
                rules: Arc::clone(&self.anonymous),
                default: self.default,
            });
        };
        let presented = digest_of(secret);
        let mut found: Option<&Token> = None;
        for token in &self.tokens {
            if bool::from(token.digest.ct_eq(&presented)) {
                found = Some(token);
            }
        }
        if let Some(token) = found {
            return Ok(match &token.grant {
                Grant::Management => Identity::Management {
                    name: Arc::clone(&token.name),
                },
                Grant::Rules(rules) => Identity::Rules {
                    name: Arc::clone(&token.name),
                    rules: Arc::clone(rules),
                    default: self.default,
                },
            });
        }
        if self.bootstrap.matches(&presented) {
            return Ok(Identity::Management {
                name: Arc::from("bootstrap"),
            });
        }
        Err(AclError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANAGEMENT: &str = "11111111-2222-3333-4444-555555555555";
    const DEPLOYER: &str = "66666666-7777-8888-9999-000000000000";

    fn acl(default: Access) -> Acl {
        let deployer = TokenConfig {
            name: "deployer".to_owned(),
            secret: DEPLOYER.to_owned(),
            rules: Rules {
                services: ResourceRules::new([], [("web-".to_owned(), Access::Write)]),
                agents: ResourceRules::default(),
            },
        };
        let config = AclConfig {
            enabled: true,
            default_policy: default,
            initial_management: Some(MANAGEMENT.to_owned()),
            tokens: vec![deployer],
            anonymous: Rules {
                services: ResourceRules::new([], [("public-".to_owned(), Access::Read)]),
                agents: ResourceRules::default(),
            },
        };
        Acl::new(&config, Bootstrap::none())
    }

    #[test]
    fn tokens_resolve_to_their_rules_and_the_default_fills_the_gaps() {
        let acl = acl(Access::Deny);
        let management = acl.resolve(Some(MANAGEMENT)).expect("known");
        assert_eq!(management.service("anything"), Access::Write);
        assert!(management.reads_everything());
        let deployer = acl.resolve(Some(DEPLOYER)).expect("known");
        assert_eq!(deployer.name(), "deployer");
        assert_eq!(deployer.service("web-api"), Access::Write);
        assert_eq!(deployer.service("db"), Access::Deny);
        assert_eq!(deployer.agent("node"), Access::Deny);
        let anonymous = acl.resolve(None).expect("anonymous");
        assert_eq!(anonymous.service("public-api"), Access::Read);
        assert_eq!(anonymous.service("web-api"), Access::Deny);
        assert_eq!(
            acl.resolve(Some("")).expect("empty is none").name(),
            "anonymous"
        );
        let allow = self::acl(Access::Write);
        assert_eq!(
            allow.resolve(None).expect("anon").service("db"),
            Access::Write
        );
    }

    #[test]
    fn an_unknown_token_is_refused_even_when_anonymous_could_read() {
        let acl = acl(Access::Write);
        assert_eq!(
            acl.resolve(Some("not-a-token-at-all"))
                .expect_err("unknown"),
            AclError::NotFound
        );
        // A prefix of a real secret is as wrong as any other string.
        assert!(acl.resolve(Some(&MANAGEMENT[..20])).is_err());
    }

    #[test]
    fn disabled_allows_everything_without_looking_at_tokens() {
        let acl = Acl::disabled();
        let identity = acl.resolve(Some("whatever")).expect("off");
        assert_eq!(identity.service("x"), Access::Write);
        assert_eq!(identity.agent("x"), Access::Write);
    }
}
