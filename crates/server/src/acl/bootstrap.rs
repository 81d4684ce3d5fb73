//! The bootstrap management token: `PUT /v1/acl/bootstrap` hands one out, once, to whoever
//! asks first, as Consul's does. Only its SHA-256 digest is kept, in a file in the data
//! directory (mode 0600), so a restart keeps it valid and a second bootstrap is refused.

use super::{Digest, digest_of};
use ring::rand::{SecureRandom, SystemRandom};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// Name of the file holding the bootstrap token's digest, in the data directory.
pub const BOOTSTRAP_FILE: &str = "acl-bootstrap.sha256";

/// Why a bootstrap was refused.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A token was handed out already (or one is configured).
    #[error(
        "ACL bootstrap no longer allowed: a management token exists; use it, or remove \
         {BOOTSTRAP_FILE} from the data directory and restart to bootstrap again"
    )]
    Done,
    /// This agent has nowhere durable to keep it.
    #[error(
        "ACL bootstrap is not available on this agent (no data directory); set \
         acl.tokens.initial_management in --config-file instead"
    )]
    Unavailable,
    /// The digest file could not be read or written.
    #[error("ACL bootstrap file {path}: {source}; check the data directory's permissions")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The system's random source failed.
    #[error("no randomness available for a token; try again")]
    Random,
}

/// Keeper of the bootstrap token's digest.
#[derive(Debug)]
pub struct Bootstrap {
    path: Option<PathBuf>,
    digest: Mutex<Option<Digest>>,
}

impl Bootstrap {
    /// No bootstrap on this agent (a provider, a mirror, or ACLs off).
    pub fn none() -> Self {
        Self {
            path: None,
            digest: Mutex::new(None),
        }
    }

    /// A bootstrap kept in `dir`, reading a token handed out before a restart.
    pub fn in_dir(dir: &Path) -> Result<Self, BootstrapError> {
        let path = dir.join(BOOTSTRAP_FILE);
        let digest = match std::fs::read_to_string(&path) {
            Ok(text) => Some(parse_hex(text.trim()).ok_or_else(|| BootstrapError::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a SHA-256 digest in hex",
                ),
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(BootstrapError::Io { path, source }),
        };
        Ok(Self {
            path: Some(path),
            digest: Mutex::new(digest),
        })
    }

    /// Whether `presented` is the bootstrap token's digest (constant time).
    pub(crate) fn matches(&self, presented: &Digest) -> bool {
        let guard = self.digest.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .is_some_and(|digest| bool::from(digest.ct_eq(presented)))
    }

    /// Makes the bootstrap token, keeps its digest, and returns the secret: the only time it
    /// exists outside the client that asked.
    pub fn create(&self) -> Result<String, BootstrapError> {
        let path = self.path.as_ref().ok_or(BootstrapError::Unavailable)?;
        let mut guard = self.digest.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_some() {
            return Err(BootstrapError::Done);
        }
        let secret = random_uuid()?;
        let digest = digest_of(&secret);
        let io = |source| BootstrapError::Io {
            path: path.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => BootstrapError::Done,
            _ => io(e),
        })?;
        file.write_all(to_hex(&digest).as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        *guard = Some(digest);
        Ok(secret)
    }
}

/// A random version-4 UUID, the shape Consul's secrets have.
fn random_uuid() -> Result<String, BootstrapError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| BootstrapError::Random)?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = to_hex(&bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<Digest> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_one_token_and_remembers_it_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bootstrap = Bootstrap::in_dir(dir.path()).expect("empty dir");
        let secret = bootstrap.create().expect("first");
        assert_eq!(secret.len(), 36);
        assert!(bootstrap.matches(&digest_of(&secret)));
        assert!(matches!(bootstrap.create(), Err(BootstrapError::Done)));
        let stored = std::fs::read_to_string(dir.path().join(BOOTSTRAP_FILE)).expect("file");
        assert!(!stored.contains(&secret), "only the digest is stored");
        let restarted = Bootstrap::in_dir(dir.path()).expect("reads it back");
        assert!(restarted.matches(&digest_of(&secret)));
        assert!(!restarted.matches(&digest_of("something else entirely")));
        assert!(matches!(restarted.create(), Err(BootstrapError::Done)));
    }

    #[test]
    fn without_a_directory_bootstrap_is_unavailable() {
        assert!(matches!(
            Bootstrap::none().create(),
            Err(BootstrapError::Unavailable)
        ));
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_silent_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(BOOTSTRAP_FILE), "zz").expect("write");
        assert!(Bootstrap::in_dir(dir.path()).is_err());
    }
}
