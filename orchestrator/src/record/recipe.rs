//! A run's recipe: what `chaos replay RUN_DIR` needs to run it again, written into the run folder
//! before any container exists.
//!
//! * `recipe.json`: the plan (copied beside it as `plan.yaml`), seed, flavor, image and the image's
//!   id at the time, the peer profile's folder and the topologies folder the plan was resolved with;
//! * `keys.json` (mode 0600): every peer's secrets — its ed25519 identity seed and its shared
//!   secret. They are drawn from the operating system's random source for each new run, so no one
//!   who reads the plan, its seed or a container's hostname (which carries the run id) can derive
//!   them; a replay reuses them, so the rerun's peers have the same identities.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ed25519_dalek::SigningKey;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};

pub const RECIPE: &str = "recipe.json";
pub const KEYS: &str = "keys.json";
/// The plan as it was run, copied into the run folder.
pub const PLAN_COPY: &str = "plan.yaml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Where the plan was read from (its copy in the run folder is what a replay runs).
    pub plan_source: PathBuf,
    pub seed: u64,
    pub flavor: String,
    pub image: String,
    /// The image's id when the run started, so a replay can tell a rebuilt image.
    pub image_id: Option<String>,
    /// The peer profile's folder.
    pub profile: PathBuf,
    /// How clock faults reached the daemon (`libfaketime`, `vdso`): the profile's `clock`, or
    /// `--clock`'s; a replay uses it too. Absent when the daemon takes no clock faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
    /// The folder named topologies were read from.
    pub topologies: PathBuf,
    /// The run folder this run replays, if it is a replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<PathBuf>,
    /// For a soak: how it was run (a replay runs it the same way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakRecipe>,
}

/// How `chaos soak` ran its plan: the duration it ran for (the plan's, or `--duration`'s), and the one
/// window it played alone (`--window`), if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakRecipe {
    pub duration: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    #[serde(default)]
    pub stop_on_failure: bool,
}

impl Recipe {
    pub fn save(&self, run_dir: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(run_dir.join(RECIPE), text + "\n").context("writing the run's recipe")
    }

    pub fn load(run_dir: &Path) -> anyhow::Result<Recipe> {
        let path = run_dir.join(RECIPE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: not a run folder this version can replay", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: unreadable recipe", path.display()))
    }
}

/// One peer's secrets, in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerKeys {
    pub peer: String,
    /// The 32-byte ed25519 seed of the peer's identity (for daemons whose identity the host makes).
    pub identity: String,
    /// 32 bytes a profile may hand the daemon as `secret` (e.g. an API key).
    pub secret: String,
}

impl PeerKeys {
    /// (secret seed, public key) of the peer's ed25519 identity, both in lowercase hex.
    pub fn ed25519(&self) -> (String, String) {
        let mut seed = [0u8; 32];
        // Keys are made by `random` or checked by `load`: always 64 hex characters.
        hex::decode_to_slice(&self.identity, &mut seed).expect("identity is 32 bytes of hex");
        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        (self.identity.clone(), hex::encode(public))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunKeys {
    pub peers: Vec<PeerKeys>,
}

impl RunKeys {
    /// Fresh secrets for every peer, from the operating system's random source.
    pub fn random(names: &[String]) -> RunKeys {
        let bytes = || {
            let mut b = [0u8; 32];
            rand::rngs::OsRng
                .try_fill_bytes(&mut b)
                .expect("the operating system's random source");
            hex::encode(b)
        };
        RunKeys {
            peers: names
                .iter()
                .map(|n| PeerKeys {
                    peer: n.clone(),
                    identity: bytes(),
                    secret: bytes(),
                })
                .collect(),
        }
    }

    /// Writes `keys.json`, readable by the owner only.
    pub fn save(&self, run_dir: &Path) -> anyhow::Result<()> {
        let path = run_dir.join(KEYS);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all((serde_json::to_string_pretty(self)? + "\n").as_bytes())?;
        Ok(())
    }

    /// Reads `keys.json` and checks it names exactly `names`, in order, with 32-byte secrets.
    pub fn load(run_dir: &Path, names: &[String]) -> anyhow::Result<RunKeys> {
        let path = run_dir.join(KEYS);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let keys: RunKeys = serde_json::from_str(&text).with_context(|| format!("{}: unreadable", path.display()))?;
        let named: Vec<&String> = keys.peers.iter().map(|k| &k.peer).collect();
        anyhow::ensure!(
            named.iter().copied().eq(names.iter()),
            "{}: keys for peers {named:?}, but the plan has {names:?}",
            path.display()
        );
        for k in &keys.peers {
            for (what, v) in [("identity", &k.identity), ("secret", &k.secret)] {
                anyhow::ensure!(
                    v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{}: peer {}'s {what} is not 64 hex characters",
                    path.display(),
                    k.peer
                );
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("p{i}")).collect()
    }

    #[test]
    fn keys_are_random_per_run_and_distinct_per_peer() {
        let (a, b) = (RunKeys::random(&names(3)), RunKeys::random(&names(3)));
        assert_ne!(a, b, "two runs of one plan and seed must not share keys");
        assert_ne!(a.peers[0].identity, a.peers[1].identity);
        assert_ne!(a.peers[0].identity, a.peers[0].secret);
        let (secret, public) = a.peers[0].ed25519();
        assert_eq!((secret.len(), public.len()), (64, 64));
        assert_eq!(
            a.peers[0].ed25519(),
            (secret, public),
            "the public key follows from the seed"
        );
    }

    #[test]
    fn keys_round_trip_owner_only_and_are_checked_on_load() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let keys = RunKeys::random(&names(2));
        keys.save(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEYS)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(RunKeys::load(dir.path(), &names(2)).unwrap(), keys);
        let err = RunKeys::load(dir.path(), &names(3)).unwrap_err().to_string();
        assert!(err.contains("but the plan has"), "{err}");
        assert!(keys.save(dir.path()).is_err(), "never overwrites a run's keys");
        let mut bad = keys.clone();
        bad.peers[1].identity = "zz".into();
        std::fs::write(dir.path().join(KEYS), serde_json::to_string(&bad).unwrap()).unwrap();
        let err = RunKeys::load(dir.path(), &names(2)).unwrap_err().to_string();
        assert!(err.contains("p2's identity is not 64 hex"), "{err}");
    }

    #[test]
    fn recipes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recipe {
            plan_source: "chaos-plans/smoke.yaml".into(),
            seed: 42,
            flavor: "default".into(),
            image: "syftchaos/peer:latest".into(),
            image_id: Some("sha256:abc".into()),
            profile: "/p/syncpeer".into(),
            clock: Some("vdso".into()),
            topologies: "/t".into(),
            replay_of: None,
            soak: Some(SoakRecipe {
                duration: "5m".into(),
                window: Some(2),
                stop_on_failure: false,
            }),
        };
        r.save(dir.path()).unwrap();
        assert_eq!(Recipe::load(dir.path()).unwrap(), r);
        assert!(Recipe::load(&dir.path().join("nope")).is_err());
    }
}
