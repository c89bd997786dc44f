//! The layout of a run folder's per-peer part, the one place that knows where things go:
//!
//! ```text
//! <run>/peers/<peer>/          the peer's data folder, bind-mounted at the profile's `data_dir`
//! <run>/peers/<peer>/<sync>    its sync folder (the profile's `sync_dir`, relative to `data_dir`)
//! <run>/faults/<peer>/         the orchestrator's per-peer fault files (the libfaketime clock file),
//!                              mounted read-only at `/opt/syftchaos/clock`
//! <run>/tools/                 files copied out of the tools image (libfaketime), mounted read-only
//! ```

use std::path::{Path, PathBuf};

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

    pub fn sync(&self) -> PathBuf {
        if self.sync_rel == "." {
            self.root.clone()
        } else {
            self.root.join(&self.sync_rel)
        }
    }

    /// The libfaketime clock file.
    pub fn faketime(&self) -> PathBuf {
        self.faults.join(FAKETIME_FILE)
    }

    /// Hands a path (recursively, never through a symlink) to the daemon's uid, so an unprivileged
    /// daemon can write where the host wrote. Not root (a developer in the docker group): left as is.
    pub fn chown(&self, path: &Path) -> std::io::Result<()> {
        match self.owner {
            Some((uid, gid)) => chown_tree(path, uid, gid),
            None => Ok(()),
        }
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(()),
        other => other?,
    }
    // symlink_metadata: a link a peer planted is chowned itself, never followed.
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// The tools folder of a run.
pub fn tools_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("tools")
}
