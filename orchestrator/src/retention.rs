//! Retention: what a run folder keeps once its run is over, and how old run folders go, so that a
//! nightly job does not fill the disk (one pass over the shipped plans kept ~360 MB of synced files).
//!
//! * **Peers' files.** After a run whose containers are gone, the peers' data folders (`peers/`) are
//!   removed when the verdict is `valid` ([`keeps_peer_files`]); for `invalid` and `unknown` runs, and
//!   runs that ended in an error, they stay, because a person needs them. `--keep-files` keeps them
//!   always. Everything else stays: results, history, observations, metrics, logs, report, recipe,
//!   keys, plan.
//! * **Rotation.** A reports folder keeps its newest [`DEFAULT_KEEP_RUNS`] run folders
//!   (`--keep-runs N`, or `all`); older ones are removed, oldest first ([`doomed`]). Never removed:
//!   the run just made, a run whose orchestrator is alive (its pid is in `chaos.pid`, or its
//!   containers carry a live orchestrator's pid), and a run
//!   folder without `result.json` (killed, crashed, or still running) younger than
//!   [`UNFINISHED_GRACE`].
//!
//! Only folders that look like run folders are ever touched: named `<plan>-<UTC stamp>-<8 hex id>`
//! and holding a `recipe.json`, `history.jsonl` or `result.json`. A folder with a mount beneath it
//! (a `disk_limit` tmpfs not yet unmounted: `chaos clean` does that) is left alone. Removal never
//! follows a symlink: `std::fs::remove_dir_all` removes links, not what they point at, and a peer may
//! have planted any.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use crate::checker::Verdict;
use crate::record::recipe;
#[cfg(test)]
use crate::record::run_folder::{PID_FILE, mark_live};
use crate::record::run_folder::{orchestrator_alive, parse_run_name};

/// How many run folders a reports folder keeps by default.
pub const DEFAULT_KEEP_RUNS: usize = 50;
/// A run folder without `result.json` and without a live orchestrator is kept this long.
pub const UNFINISHED_GRACE: Duration = Duration::from_secs(24 * 3600);
/// The peers' data folders inside a run folder.
pub const PEERS_DIR: &str = "peers";
const RESULT: &str = "result.json";

/// How many run folders to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepRuns {
    All,
    Newest(usize),
}

impl Default for KeepRuns {
    fn default() -> KeepRuns {
        KeepRuns::Newest(DEFAULT_KEEP_RUNS)
    }
}

impl FromStr for KeepRuns {
    type Err = String;

    fn from_str(s: &str) -> Result<KeepRuns, String> {
        if s == "all" {
            return Ok(KeepRuns::All);
        }
        match s.parse::<usize>() {
            Ok(0) => Err("at least 1 (the run just made is always kept), or `all`".into()),
            Ok(n) => Ok(KeepRuns::Newest(n)),
            Err(_) => Err(format!("`{s}` is not a number of runs (1 or more) or `all`")),
        }
    }
}

impl fmt::Display for KeepRuns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepRuns::All => f.write_str("all"),
            KeepRuns::Newest(n) => write!(f, "{n}"),
        }
    }
}

/// What a run does with its folder and its neighbours once it is over.
#[derive(Clone, Copy, Debug, Default)]
pub struct Retention {
    /// Keep the peers' data folders even of a valid run.
    pub keep_files: bool,
    pub keep_runs: KeepRuns,
}

/// Whether a finished run keeps its peers' data folders.
pub fn keeps_peer_files(verdict: Verdict, keep_files: bool) -> bool {
    keep_files || verdict != Verdict::Valid
}

/// One run folder under a reports folder, as rotation sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFolder {
    pub name: String,
    pub path: PathBuf,
    /// The UTC stamp of its name (sorts in time order).
    pub stamp: String,
    /// It has a `result.json`: the run was judged.
    pub finished: bool,
    /// Its orchestrator is alive.
    pub live: bool,
    /// Since its newest change (the folder, `chaos.log`, `history.jsonl`).
    pub idle: Duration,
}

/// Every run folder under `reports` (not the `latest` link, not other folders), oldest first. A run
/// is live when its `chaos.pid` names a live process or its id is in `live_ids` (runs whose containers
/// carry a live orchestrator's pid).
pub fn run_folders(reports: &Path, live_ids: &BTreeSet<String>) -> std::io::Result<Vec<RunFolder>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(reports)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        // `file_type` does not follow symlinks: a link (`latest`) is never a run folder.
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Some((_, stamp, id)) = parse_run_name(&name) else {
            continue;
        };
        let marked = [recipe::RECIPE, "history.jsonl", RESULT]
            .iter()
            .any(|f| path.join(f).is_file());
        if !marked {
            continue;
        }
        let now = SystemTime::now();
        let idle = [
            path.clone(),
            path.join(crate::console::LOG_FILE),
            path.join("history.jsonl"),
        ]
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).and_then(|m| m.modified()).ok())
        .filter_map(|t| now.duration_since(t).ok())
        .min()
        .unwrap_or_default();
        out.push(RunFolder {
            stamp: stamp.to_string(),
            finished: path.join(RESULT).is_file(),
            live: live_ids.contains(id) || orchestrator_alive(&path),
            idle,
            name,
            path,
        });
    }
    out.sort_by(|a, b| (&a.stamp, &a.name).cmp(&(&b.stamp, &b.name)));
    Ok(out)
}

/// Why a run folder beyond the count stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spared {
    /// The run that is rotating.
    Current,
    /// Its orchestrator is alive.
    Live,
    /// No `result.json` yet, and changed less than a day ago.
    Recent,
}

impl Spared {
    pub fn describe(self) -> &'static str {
        match self {
            Spared::Current => "the run just made",
            Spared::Live => "its orchestrator is running",
            Spared::Recent => "no result.json (killed, crashed or still starting) and changed in the last day",
        }
    }
}

/// Which of `folders` (oldest first) rotation removes, oldest first, and which beyond the count it
/// spares and why. Pure: the caller removes.
pub fn doomed<'a>(
    folders: &'a [RunFolder],
    keep: KeepRuns,
    current: Option<&str>,
) -> (Vec<&'a RunFolder>, Vec<(&'a RunFolder, Spared)>) {
    let KeepRuns::Newest(n) = keep else {
        return (Vec::new(), Vec::new());
    };
    let older = &folders[..folders.len().saturating_sub(n)];
    let (mut gone, mut spared) = (Vec::new(), Vec::new());
    for f in older {
        let why = if Some(f.name.as_str()) == current {
            Some(Spared::Current)
        } else if f.live {
            Some(Spared::Live)
        } else if !f.finished && f.idle < UNFINISHED_GRACE {
            Some(Spared::Recent)
        } else {
            None
        };
        match why {
            Some(w) => spared.push((f, w)),
            None => gone.push(f),
        }
    }
    (gone, spared)
}

/// Mount points at or beneath `dir` (a `disk_limit` tmpfs still mounted).
fn mounts_beneath(dir: &Path) -> Vec<String> {
    let Ok(dir) = dir.canonicalize() else { return Vec::new() };
    let dir = dir.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &dir || p.starts_with(&format!("{dir}/")))
        .collect()
}

/// Removes `dir` and everything in it, without following symlinks and without crossing into a
/// mount. Returns the bytes freed.
pub fn remove_tree(dir: &Path) -> std::io::Result<u64> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() || !meta.is_dir() {
        std::fs::remove_file(dir)?;
        return Ok(0);
    }
    let mounted = mounts_beneath(dir);
    if !mounted.is_empty() {
        return Err(std::io::Error::other(format!(
            "{} is still mounted (`chaos clean` unmounts what dead runs left)",
            mounted.join(", ")
        )));
    }
    let bytes = size_of(dir);
    std::fs::remove_dir_all(dir)?;
    Ok(bytes)
}

/// The bytes of the regular files beneath `dir`, not following symlinks.
fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// After a run whose containers are gone: removes its peers' data folders unless it keeps them.
/// Returns the bytes freed, or `None` when they were kept.
pub fn after_run(run_dir: &Path, verdict: Verdict, keep_files: bool) -> std::io::Result<Option<u64>> {
    if keeps_peer_files(verdict, keep_files) {
        return Ok(None);
    }
    remove_tree(&run_dir.join(PEERS_DIR)).map(Some)
}

/// What rotation did.
#[derive(Debug, Default)]
pub struct Rotated {
    pub removed: Vec<String>,
    pub bytes: u64,
    /// Folders beyond the count that stay, and why.
    pub spared: Vec<(String, Spared)>,
    /// Folders that could not be removed, and why.
    pub failed: Vec<(String, String)>,
}

/// Removes the run folders beyond `keep` under `reports`, oldest first, never `current` (a folder
/// name), a live run (see [`run_folders`]) or an unfinished one younger than a day.
pub fn rotate(
    reports: &Path,
    keep: KeepRuns,
    current: Option<&str>,
    live_ids: &BTreeSet<String>,
) -> std::io::Result<Rotated> {
    let folders = run_folders(reports, live_ids)?;
    let (gone, spared) = doomed(&folders, keep, current);
    let mut r = Rotated {
        spared: spared.into_iter().map(|(f, w)| (f.name.clone(), w)).collect(),
        ..Rotated::default()
    };
    for f in gone {
        match remove_tree(&f.path) {
            Ok(b) => {
                r.removed.push(f.name.clone());
                r.bytes += b;
            }
            Err(e) => r.failed.push((f.name.clone(), e.to_string())),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(reports: &Path, name: &str, result: bool) -> PathBuf {
        let d = reports.join(name);
        std::fs::create_dir_all(d.join("peers/p1/sync")).unwrap();
        std::fs::write(d.join("peers/p1/sync/a.txt"), "0123456789").unwrap();
        std::fs::write(d.join(recipe::RECIPE), "{}").unwrap();
        std::fs::write(d.join("history.jsonl"), "").unwrap();
        if result {
            std::fs::write(d.join(RESULT), "{}").unwrap();
        }
        d
    }

    fn name(plan: &str, hour: u32, id: u32) -> String {
        format!("{plan}-20261206T{hour:02}0000Z-{id:08x}")
    }

    #[test]
    fn keep_runs_parses_a_count_or_all() {
        assert_eq!("all".parse(), Ok(KeepRuns::All));
        assert_eq!("3".parse(), Ok(KeepRuns::Newest(3)));
        assert!("0".parse::<KeepRuns>().is_err());
        assert!("-1".parse::<KeepRuns>().is_err());
        assert_eq!(KeepRuns::default(), KeepRuns::Newest(DEFAULT_KEEP_RUNS));
    }

    #[test]
    fn only_valid_runs_lose_their_peers_files() {
        assert!(!keeps_peer_files(Verdict::Valid, false));
        assert!(keeps_peer_files(Verdict::Valid, true));
        assert!(keeps_peer_files(Verdict::Invalid, false));
        assert!(keeps_peer_files(Verdict::Unknown, false));
    }

    #[test]
    fn after_a_valid_run_only_the_peers_data_folders_go() {
        let reports = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "keep me").unwrap();
        let d = folder(reports.path(), &name("smoke", 1, 1), true);
        let keep = [
            "result.json",
            "junit.xml",
            "index.html",
            "history.jsonl",
            "observations.jsonl",
            "metrics.jsonl",
            "logs/p1.log",
            "chaos.log",
            "recipe.json",
            "keys.json",
            "plan.yaml",
        ];
        for f in keep {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), "x").unwrap();
        }
        // A link a peer planted, to a file and to a folder outside: removed as links only.
        std::os::unix::fs::symlink(outside.path().join("secret"), d.join("peers/p1/sync/link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.join("peers/p1/out")).unwrap();

        assert_eq!(after_run(&d, Verdict::Invalid, false).unwrap(), None);
        assert!(d.join("peers/p1/sync/a.txt").exists(), "an invalid run keeps them");
        assert_eq!(after_run(&d, Verdict::Valid, true).unwrap(), None);
        assert!(d.join("peers/p1/sync/a.txt").exists(), "--keep-files keeps them");

        assert_eq!(after_run(&d, Verdict::Valid, false).unwrap(), Some(10));
        assert!(!d.join(PEERS_DIR).exists());
        for f in keep {
            assert!(d.join(f).exists(), "{f} must stay");
        }
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret")).unwrap(),
            "keep me"
        );
        assert_eq!(after_run(&d, Verdict::Valid, false).unwrap(), Some(0), "twice is fine");
    }

    #[test]
    fn rotation_removes_the_oldest_beyond_the_count_and_spares_current_live_and_recent_runs() {
        let reports = tempfile::tempdir().unwrap();
        let r = reports.path();
        let oldest = folder(r, &name("smoke", 1, 1), true);
        let live = folder(r, &name("soak", 2, 2), false);
        mark_live(&live).unwrap(); // this test's own pid: alive
        let killed = folder(r, &name("kill-restart", 3, 3), false);
        let finished_live = folder(r, &name("smoke", 4, 4), true);
        std::fs::write(finished_live.join(PID_FILE), "4194304999\n").unwrap(); // no such pid
        let newer: Vec<PathBuf> = (5..8).map(|h| folder(r, &name("smoke", h, h), true)).collect();
        // Not run folders: never touched, never counted.
        std::fs::create_dir_all(r.join("notes")).unwrap();
        std::fs::create_dir_all(r.join(name("empty", 0, 9))).unwrap();
        std::os::unix::fs::symlink(newer[2].file_name().unwrap(), r.join("latest")).unwrap();

        let folders = run_folders(r, &BTreeSet::new()).unwrap();
        assert_eq!(folders.len(), 7);
        assert!(folders[1].live && !folders[0].live && !folders[3].live);
        let by_containers = run_folders(r, &BTreeSet::from(["00000003".to_string()])).unwrap();
        assert!(
            by_containers[2].live,
            "a run whose containers have a live orchestrator is live"
        );

        let current = newer[2].file_name().unwrap().to_string_lossy().into_owned();
        let rot = rotate(r, KeepRuns::Newest(2), Some(&current), &BTreeSet::new()).unwrap();
        assert_eq!(
            rot.removed,
            [name("smoke", 1, 1), name("smoke", 4, 4), name("smoke", 5, 5)],
            "oldest first, the live and the recently killed run spared"
        );
        assert_eq!(
            rot.bytes,
            3 * 14 + 11,
            "what the removed folders held (one with its chaos.pid)"
        );
        assert_eq!(
            rot.spared,
            [
                (name("soak", 2, 2), Spared::Live),
                (name("kill-restart", 3, 3), Spared::Recent)
            ]
        );
        assert!(!oldest.exists() && live.exists() && killed.exists());
        assert!(newer[1].exists() && newer[2].exists());
        assert!(r.join("notes").exists() && r.join(name("empty", 0, 9)).exists());
        assert!(r.join("latest").is_symlink());

        // The current run is never removed, even when it is not among the newest.
        let (gone, spared) = doomed(&folders, KeepRuns::Newest(1), Some(&name("smoke", 1, 1)));
        assert!(gone.iter().all(|f| f.name != name("smoke", 1, 1)));
        assert!(spared.contains(&(&folders[0], Spared::Current)));
        assert!(doomed(&folders, KeepRuns::All, None).0.is_empty());
    }

    #[test]
    fn an_unfinished_run_idle_for_a_day_goes_and_a_live_one_never() {
        let f = |finished, live, hours: u64| RunFolder {
            name: format!("r{hours}"),
            path: PathBuf::from("/nonexistent"),
            stamp: format!("20261206T{hours:02}0000Z"),
            finished,
            live,
            idle: Duration::from_secs(hours * 3600),
        };
        let folders = [
            f(false, false, 25),
            f(false, true, 48),
            f(false, false, 1),
            f(true, false, 0),
        ];
        let (gone, spared) = doomed(&folders, KeepRuns::Newest(1), None);
        assert_eq!(gone.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["r25"]);
        assert_eq!(
            spared.iter().map(|(f, w)| (f.name.as_str(), *w)).collect::<Vec<_>>(),
            [("r48", Spared::Live), ("r1", Spared::Recent)]
        );
    }
}
