//! The layout of a run folder's per-peer part, the one place that knows where things go:
//!
//! ```text
//! <run>/peers/<peer>/          the peer's data folder, bind-mounted at the profile's `data_dir`
//! <run>/peers/<peer>/<sync>    its sync folder (the profile's `sync_dir`, relative to `data_dir`)
//! <run>/faults/<peer>/         the orchestrator's per-peer fault files (the libfaketime clock file),
//!                              mounted read-only at `/opt/syftchaos/clock`
//! <run>/tools/                 files copied out of the tools image (libfaketime), mounted read-only
//! ```
//!
//! A peer can write anything into its data folder, symlinks included, so the orchestrator works in it
//! (and in the fault folder, for uniformity) only through [`Beneath`] handles, which never follow a
//! symlink and never leave the folder.

use std::path::{Path, PathBuf};

use super::beneath::Beneath;

/// Where the tools folder is mounted in every peer.
pub const TOOLS_MOUNT: &str = "/opt/syftchaos/tools";
/// Where a peer's fault folder is mounted.
pub const FAULTS_MOUNT: &str = "/opt/syftchaos/clock";
/// libfaketime's file name, in the tools folder.
pub const LIBFAKETIME: &str = "libfaketime.so.1";
/// The clock file's name, in the fault folder.
pub const FAKETIME_FILE: &str = "faketime";

/// libfaketime's relative format: signed seconds and a speed factor. The factor is always written:
/// once a rate was set, a file without one keeps the old rate (seen with libfaketime 0.9.10).
pub fn faketime_spec(offset_ms: i64, rate: Option<f64>) -> String {
    let secs = offset_ms as f64 / 1000.0;
    format!("{secs:+} x{}\n", rate.unwrap_or(1.0))
}

/// One peer's folders on the host.
#[derive(Clone, Debug)]
pub struct PeerDir {
    /// The data folder (mounted at the profile's `data_dir`).
    pub root: PathBuf,
    /// The sync folder relative to `root` (`.` when they are the same).
    pub sync_rel: String,
    /// The orchestrator's fault files for this peer.
    pub faults: PathBuf,
    /// The uid and gid of the daemon: files written for it are handed to them.
    pub owner: Option<(u32, u32)>,
}

impl PeerDir {
    pub fn new(run_dir: &Path, name: &str) -> PeerDir {
        PeerDir {
            root: run_dir.join("peers").join(name),
            sync_rel: "sync".into(),
            faults: run_dir.join("faults").join(name),
            owner: None,
        }
    }

    /// The data folder, as a handle that never leaves it; what it creates goes to the daemon's uid.
    pub fn data(&self) -> std::io::Result<Beneath> {
        Ok(Beneath::open(&self.root)?.owned_by(self.owner))
    }

    /// The sync folder, resolved beneath the data folder: a peer may have swapped it for a symlink,
    /// and then this is an error, not the folder the link points at.
    pub fn sync(&self) -> std::io::Result<Beneath> {
        self.data()?.dir(&self.sync_rel)
    }

    /// The fault folder (the libfaketime clock file). It is mounted read-only in the peer, but it is
    /// handled like the data folder all the same.
    pub fn fault_files(&self) -> std::io::Result<Beneath> {
        Beneath::open(&self.faults)
    }
}

/// The tools folder of a run.
pub fn tools_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("tools")
}
