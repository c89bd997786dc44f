//! [`Identity`]: this node's ed25519 key pair, and [`PeerId`], a peer's public key.
//!
//! Key file format (shared with the orchestrator, see `docs/PEER-CONTRACT.md`): the 32-byte secret
//! seed as 64 lowercase hex characters and a newline. Public keys are 64 lowercase hex characters.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write key file {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("key file {path}: expected 64 hex characters (a 32-byte ed25519 seed)")]
    Format { path: String },
    #[error("public key `{0}`: expected 64 hex characters of a valid ed25519 key")]
    PublicKey(String),
}

/// A peer's public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub VerifyingKey);

impl PeerId {
    pub fn parse(hex_str: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError::PublicKey(hex_str.to_string());
        let bytes: [u8; 32] = hex::decode(hex_str.trim())
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        VerifyingKey::from_bytes(&bytes).map(PeerId).map_err(|_| bad())
    }

    /// The key from its 32 raw bytes (as they stand in a certificate, see [`crate::tls`]).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        VerifyingKey::from_bytes(bytes.try_into().ok()?).ok().map(PeerId)
    }

    /// 64 lowercase hex characters.
    pub fn hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// The first 16 hex characters: the id used in version vectors and as `author` (64 bits is
    /// plenty for a cluster and keeps every index entry small).
    pub fn short(&self) -> String {
        self.hex()[..16].to_string()
    }

    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(sig) else {
            return false;
        };
        self.0.verify(msg, &sig).is_ok()
    }
}

/// This node's key pair.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| IdentityError::Format {
                path: path.display().to_string(),
            })?;
        Ok(Self::from_seed(seed))
    }

    /// Writes the seed in the contract's format (mode 0600).
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| IdentityError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        std::io::Write::write_all(&mut f, format!("{}\n", hex::encode(self.key.to_bytes())).as_bytes()).map_err(err)
    }

    pub fn id(&self) -> PeerId {
        PeerId(self.key.verifying_key())
    }

    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.key.sign(msg).to_bytes().to_vec()
    }

    /// The secret key as a PKCS#8 v1 document (RFC 8410: a fixed 16-byte header, then the seed):
    /// the form TLS libraries take a key in, for the transport certificate ([`crate::tls`]).
    pub fn pkcs8_der(&self) -> Vec<u8> {
        const HEADER: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
        ];
        let mut der = HEADER.to_vec();
        der.extend_from_slice(&self.key.to_bytes());
        der
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_signature() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let id = Identity::generate();
        id.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.len(), 65);
        let again = Identity::load(&p).unwrap();
        assert_eq!(again.id(), id.id());
        let sig = again.sign(b"hello");
        assert!(id.id().verify(b"hello", &sig));
        assert!(!id.id().verify(b"hellO", &sig));
        assert_eq!(PeerId::parse(&id.id().hex()).unwrap(), id.id());
    }
}
