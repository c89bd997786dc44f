//! Everything the orchestrator knows about the peer daemon under test (`syncpeer`): its ports, the
//! layout of its data folder, the config file it reads, and its key format. The rest of the
//! orchestrator sees a peer only as an image, a sync folder, a status URL and a metrics URL
//! (`docs/PEER-CONTRACT.md`); testing another daemon means writing another profile.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

pub const SYNC_PORT: u16 = 7000;
pub const HTTP_PORT: u16 = 9100;
/// The uid the daemon runs as inside the image; files the workload creates are chowned to it.
pub const PEER_UID: u32 = 1000;
/// Where the peer's data folder is mounted in the container.
pub const DATA_MOUNT: &str = "/data";

/// One peer's folder on the host: `<run>/peers/<name>/`, mounted at `/data`.
#[derive(Clone, Debug)]
pub struct PeerDir {
    pub root: PathBuf,
}

impl PeerDir {
    pub fn new(run_dir: &Path, name: &str) -> PeerDir {
        PeerDir {
            root: run_dir.join("peers").join(name),
        }
    }
    pub fn sync(&self) -> PathBuf {
        self.root.join("sync")
    }
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn faketime(&self) -> PathBuf {
        self.root.join("faketime")
    }
    /// `syncpeer`'s Byzantine control file (its default `byzantine_file`, `<state_dir>/byzantine`):
    /// behaviour names make the peer lie, no file means honest.
    pub fn byzantine(&self) -> PathBuf {
        self.state().join("byzantine")
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.yaml")
    }
    pub fn key(&self) -> PathBuf {
        self.root.join("identity.key")
    }
}

/// An ed25519 identity in the contract's hex format.
#[derive(Clone, Debug)]
pub struct Identity {
    pub secret_hex: String,
    pub public_hex: String,
}

impl Identity {
    /// Keys are drawn from a per-run seed: reproducible runs, distinct keys per run.
    pub fn derive(run_seed: u64, peer: usize) -> Identity {
        let mut rng = ChaCha20Rng::seed_from_u64(run_seed ^ (peer as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let key = SigningKey::from_bytes(&secret);
        Identity {
            secret_hex: hex::encode(secret),
            public_hex: hex::encode(key.verifying_key().to_bytes()),
        }
    }
}

#[derive(Serialize)]
struct Neighbour<'a> {
    name: &'a str,
    addr: String,
    public_key: &'a str,
}

#[derive(Serialize)]
struct Trusted<'a> {
    name: &'a str,
    public_key: &'a str,
}

#[derive(Serialize)]
struct Config<'a> {
    name: &'a str,
    listen: String,
    http: String,
    sync_dir: String,
    state_dir: String,
    key_file: String,
    anti_entropy_interval_ms: u64,
    flavor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    quarantine_ms: Option<u64>,
    peers: Vec<Neighbour<'a>>,
    trusted: Vec<Trusted<'a>>,
}

/// Writes `config.yaml`, `identity.key`, the faketime file and the empty folders for peer `me`.
#[allow(clippy::too_many_arguments)]
pub fn write_peer_dir(
    dir: &PeerDir,
    me: usize,
    names: &[String],
    addrs: &[Ipv4Addr],
    ids: &[Identity],
    neighbours: &[usize],
    anti_entropy_ms: u64,
    flavor: &str,
    quarantine_ms: Option<u64>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.sync())?;
    std::fs::create_dir_all(dir.state())?;
    let config = Config {
        name: &names[me],
        listen: format!("0.0.0.0:{SYNC_PORT}"),
        http: format!("0.0.0.0:{HTTP_PORT}"),
        sync_dir: format!("{DATA_MOUNT}/sync"),
        state_dir: format!("{DATA_MOUNT}/state"),
        key_file: format!("{DATA_MOUNT}/identity.key"),
        anti_entropy_interval_ms: anti_entropy_ms,
        flavor,
        quarantine_ms,
        peers: neighbours
            .iter()
            .map(|&n| Neighbour {
                name: &names[n],
                addr: format!("{}:{SYNC_PORT}", addrs[n]),
                public_key: &ids[n].public_hex,
            })
            .collect(),
        trusted: (0..names.len())
            .map(|n| Trusted {
                name: &names[n],
                public_key: &ids[n].public_hex,
            })
            .collect(),
    };
    let yaml = serde_saphyr::to_string(&config).map_err(std::io::Error::other)?;
    std::fs::write(dir.config(), yaml)?;
    std::fs::write(dir.key(), format!("{}\n", ids[me].secret_hex))?;
    std::fs::write(dir.faketime(), "+0\n")?;
    chown_tree(&dir.root)
}

/// Hands a folder to the peer's uid so the unprivileged daemon can write where the host wrote.
pub fn chown_tree(path: &Path) -> std::io::Result<()> {
    let chown = |p: &Path| match std::os::unix::fs::lchown(p, Some(PEER_UID), Some(PEER_UID)) {
        // Not root (a developer in the docker group): the entrypoint chowns /data as root instead.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    };
    chown(path)?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path())?;
        }
    }
    Ok(())
}

/// A lock for `path` as a crashed apply leaves it: `syncpeer`'s format (`<state>/locks/`, named by the
/// path's BLAKE3), held by a pid that cannot exist. Returns (file name, contents).
pub fn stale_lock(path: &str) -> (String, String) {
    let name = format!("{}.lock", &blake3::hash(path.as_bytes()).to_hex()[..24]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    (
        name,
        format!("pid=4194303\nincarnation=1\nstart_ms={now_ms}\npath={path}\n"),
    )
}

/// The part of `GET /v1/status` the orchestrator reads.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Status {
    pub name: String,
    #[serde(default)]
    pub wall_clock_ms: i64,
    #[serde(default)]
    pub index_digest: String,
}

pub fn status_url(ip: Ipv4Addr) -> String {
    format!("http://{ip}:{HTTP_PORT}/v1/status")
}

pub fn metrics_url(ip: Ipv4Addr) -> String {
    format!("http://{ip}:{HTTP_PORT}/metrics")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_reproducible_and_distinct() {
        let a = Identity::derive(7, 0);
        assert_eq!(a.public_hex, Identity::derive(7, 0).public_hex);
        assert_ne!(a.public_hex, Identity::derive(7, 1).public_hex);
        assert_eq!((a.secret_hex.len(), a.public_hex.len()), (64, 64));
    }

    #[test]
    fn the_config_lists_neighbours_and_trusts_everyone() {
        let dir = tempfile::tempdir().unwrap();
        let pd = PeerDir::new(dir.path(), "p1");
        let names: Vec<String> = vec!["p1".into(), "p2".into(), "p3".into()];
        let addrs: Vec<Ipv4Addr> = (2..5).map(|i| Ipv4Addr::new(10, 9, 0, i)).collect();
        let ids: Vec<Identity> = (0..3).map(|i| Identity::derive(1, i)).collect();
        write_peer_dir(&pd, 0, &names, &addrs, &ids, &[1], 500, "default", None).unwrap();
        let text = std::fs::read_to_string(pd.config()).unwrap();
        assert!(!text.contains("quarantine_ms"), "the peer's own default: {text}");
        assert!(text.contains("addr: 10.9.0.3:7000"), "{text}");
        assert!(!text.contains("10.9.0.4:7000"), "p3 is not a neighbour: {text}");
        assert_eq!(text.matches("public_key").count(), 4, "1 neighbour + 3 trusted: {text}");
        assert!(pd.sync().is_dir() && pd.state().is_dir());
        assert_eq!(std::fs::read_to_string(pd.faketime()).unwrap(), "+0\n");
    }
}
