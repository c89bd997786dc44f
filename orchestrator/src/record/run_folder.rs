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

/// The orchestrator's pid, written into the run folder when it is made: rotation and the runs index
/// tell a run in progress from an interrupted one by it.
pub const PID_FILE: &str = "chaos.pid";

/// Writes this process's pid and start time into a new run folder, so rotation and the index can
/// tell a run in progress from an interrupted one.
pub fn mark_live(run_dir: &Path) -> std::io::Result<()> {
    let pid = std::process::id();
    let start = start_time(pid).map_or(String::new(), |t| format!(" {t}"));
    std::fs::write(run_dir.join(PID_FILE), format!("{pid}{start}\n"))
}

/// A process's start time (clock ticks after boot, `/proc/<pid>/stat` field 22): with the pid, it
/// names one process, not whichever reused its pid later.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; field 22 is the 20th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True when the run folder's orchestrator (its `chaos.pid`: pid, and start time when recorded) is a
/// live process.
pub fn orchestrator_alive(run_dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(run_dir.join(PID_FILE)) else {
        return false;
    };
    let mut fields = text.split_whitespace();
    let Some(pid) = fields.next().and_then(|p| p.parse::<u32>().ok()).filter(|p| *p > 0) else {
        return false;
    };
    match fields.next().and_then(|t| t.parse::<u64>().ok()) {
        Some(start) => start_time(pid) == Some(start),
        None => Path::new(&format!("/proc/{pid}")).exists(),
    }
}

/// `<plan>-<UTC stamp>-<id>` split into its parts, when the name has that shape (the plan name
/// may hold `-` itself; the stamp is `YYYYMMDDTHHMMSSZ`, the id 8 hex digits).
pub fn parse_run_name(name: &str) -> Option<(&str, &str, &str)> {
    let mut parts = name.rsplitn(3, '-');
    let (id, stamp, plan) = (parts.next()?, parts.next()?, parts.next()?);
    let stamp_ok = stamp.len() == 16
        && stamp.as_bytes()[8] == b'T'
        && stamp.ends_with('Z')
        && stamp
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 8 || i == 15 || b.is_ascii_digit());
    let id_ok = id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (!plan.is_empty() && stamp_ok && id_ok).then_some((plan, stamp, id))
}

/// The tools folder of a run.
pub fn tools_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("tools")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_parse_with_dashes_in_the_plan() {
        assert_eq!(
            parse_run_name("partition-halves-20261124T050102Z-1a2b3c4d"),
            Some(("partition-halves", "20261124T050102Z", "1a2b3c4d"))
        );
        for bad in [
            "latest",
            "x-20261124T050102Z-xyz",
            "x-2026-1a2b3c4d",
            "-20261124T050102Z-1a2b3c4d",
        ] {
            assert_eq!(parse_run_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_run_folder_names_a_live_orchestrator() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!orchestrator_alive(dir.path()), "no pid file");
        mark_live(dir.path()).unwrap();
        assert!(orchestrator_alive(dir.path()), "this test's own pid");
        std::fs::write(dir.path().join(PID_FILE), "4194304999\n").unwrap();
        assert!(!orchestrator_alive(dir.path()), "no such process");
        let me = std::process::id();
        std::fs::write(dir.path().join(PID_FILE), format!("{me} 1\n")).unwrap();
        assert!(!orchestrator_alive(dir.path()), "the pid of another, earlier process");
        std::fs::write(dir.path().join(PID_FILE), format!("{me}\n")).unwrap();
        assert!(orchestrator_alive(dir.path()), "a pid alone: any live process");
    }
}
