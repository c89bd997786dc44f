//! Local change detection: filesystem events (notify, inotify on Linux) feed a batching loop, and a
//! periodic full rescan backs them up (events can be dropped: queue overflow, watch limits, paths
//! created before their folder was watched). Names starting with `.syncpeer` are never synced.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::watch;

use crate::edits::{Reconciled, commit_local, observe, reconcile};
use crate::entry::valid_path;
use crate::index::Stamp;
use crate::node::Node;
use crate::scan_queue::{ScanRx, Urgency};

/// Relative `/` path of a file under the sync folder, if it is one we sync.
pub fn relative(root: &Path, full: &Path) -> Option<String> {
    let rel = full.strip_prefix(root).ok()?;
    let s = rel.to_str()?.to_string();
    valid_path(&s).then_some(s)
}

/// Quiet period before a file still open for writing is examined anyway (mmap writers, logs).
pub const SETTLE: Duration = Duration::from_millis(1000);

fn urgency(kind: &EventKind) -> Option<Urgency> {
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Urgency::Now),
        EventKind::Access(_) => None,
        EventKind::Create(CreateKind::Folder) => Some(Urgency::Now),
        EventKind::Create(_) => Some(Urgency::Settle),
        EventKind::Modify(ModifyKind::Name(_)) => Some(Urgency::Now),
        EventKind::Modify(ModifyKind::Metadata(_)) => None,
        EventKind::Modify(_) => Some(Urgency::Settle),
        EventKind::Remove(_) => Some(Urgency::Now),
        EventKind::Any | EventKind::Other => Some(Urgency::Now),
    }
}

/// Starts the notify watcher; events go to `node.scan_tx` as paths in the sync folder's spelling
/// (absolute, or relative to the working directory: [`crate::daemon::work_from_data_root`]).
pub fn watch(node: &Arc<Node>) -> notify::Result<notify::RecommendedWatcher> {
    let tx = node.scan_tx.clone();
    let root = node.settings.sync_dir.clone();
    // notify makes a relative folder absolute (from the working directory) in the paths it
    // reports; they are handed on in the folder's own spelling, which `relative` strips.
    let reported_root = std::env::current_dir().map_err(notify::Error::io)?.join(&root);
    // Symlinked folders are not watched (notify follows them by default): nothing under a
    // symlink is synced (see `crate::beneath`).
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut w = notify::RecommendedWatcher::new(
        move |res: notify::Result<notify::Event>| match res {
            Ok(ev) => {
                if ev.need_rescan() {
                    // The kernel queue overflowed: events were lost, walk everything.
                    let _ = tx.send((root.clone(), Urgency::Now));
                    return;
                }
                let Some(u) = urgency(&ev.kind) else { return };
                for p in ev.paths {
                    let p = match p.strip_prefix(&reported_root) {
                        Ok(rel) if root.is_relative() => root.join(rel),
                        _ => p,
                    };
                    let _ = tx.send((p, u));
                }
            }
            Err(e) => tracing::warn!("filesystem watch error: {e}"),
        },
        config,
    )?;
    w.watch(&node.settings.sync_dir, RecursiveMode::Recursive)?;
    Ok(w)
}

/// Every file under `dir` (relative paths), skipping `.syncpeer*` and symlinks.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Stamp)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for ent in rd.flatten() {
        if ent.file_name().to_string_lossy().starts_with(".syncpeer") {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(ent.path()) else {
            continue;
        };
        if meta.is_dir() {
            walk(root, &ent.path(), out);
        } else if meta.is_file()
            && let Some(rel) = relative(root, &ent.path())
        {
            out.push((rel, Stamp::of(&meta)));
        }
    }
}

/// Examines the given paths (files or folders, present or gone) and commits new local versions
/// in one batch. Returns paths to look at again (they changed while being hashed).
pub fn process(node: &Node, fulls: BTreeSet<PathBuf>, count_echo: bool) -> Vec<PathBuf> {
    let root = &node.settings.sync_dir;
    if !root.is_dir() {
        // The folder itself went away (see `full_scan`): its files' removal events are not deletes.
        return Vec::new();
    }
    let mut rels = BTreeSet::new();
    for full in fulls {
        let Some(rel) = relative(root, &full) else {
            continue;
        };
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => {
                let mut found = Vec::new();
                walk(root, &full, &mut found);
                rels.extend(found.into_iter().map(|(r, _)| r));
                // Files the index has under this folder but that are gone.
                rels.extend(indexed_under(node, &rel));
            }
            Ok(_) => {
                rels.insert(rel);
            }
            Err(_) => {
                rels.extend(indexed_under(node, &rel));
                rels.insert(rel);
            }
        }
    }
    examine(node, rels.into_iter().map(|r| (r, None)).collect(), count_echo)
}

/// The live index paths under folder `rel` (an event on a folder may stand for all of them).
fn indexed_under(node: &Node, rel: &str) -> Vec<String> {
    let prefix = format!("{rel}/");
    node.index()
        .iter()
        .filter(|e| !e.deleted && e.path.starts_with(&prefix))
        .map(|e| e.path.clone())
        .collect()
}

/// Whether some process has `path` open for writing, i.e. a write is in progress: a read lease
/// cannot be taken then (`EAGAIN`). Hashing such a file would author a version of a half-written
/// state (an editor's truncate before its write). Any other failure (not the file's owner, a
/// filesystem without leases) says nothing. The lease is dropped at once; a lease break in that
/// instant would send SIGIO, which `main` ignores.
pub fn being_written(root: &Path, rel: &str) -> bool {
    use std::os::fd::AsRawFd;
    // Only a regular file, opened without following a symlink (a plain open of a FIFO waited for
    // a writer, forever).
    let Ok(f) = crate::beneath::open_file(root, rel) else {
        return false;
    };
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let r = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) };
    if r == 0 {
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
        return false;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
}

/// Hashes outside the index lock, reconciles under it, commits once.
fn examine(node: &Node, items: Vec<(String, Option<Stamp>)>, count_echo: bool) -> Vec<PathBuf> {
    let mut seen = Vec::with_capacity(items.len());
    for (rel, known) in items {
        // Skip hashing when the file looks exactly as when last hashed.
        if let Some(st) = known {
            let idx = node.index();
            if idx.stamp(&rel) == Some(st) && idx.get(&rel).is_some_and(|e| !e.deleted) {
                continue;
            }
        }
        if being_written(&node.settings.sync_dir, &rel) {
            // Its close-after-write event (or the settle timer) brings it back.
            let _ = node.scan_tx.send((node.full_path(&rel), Urgency::Settle));
            continue;
        }
        let obs = observe(&node.settings.sync_dir, &rel);
        seen.push((rel, obs));
    }
    let mut again = Vec::new();
    let mut new = Vec::new();
    let mut idx = node.index();
    for (rel, obs) in &seen {
        match reconcile(node, &mut idx, rel, obs, count_echo) {
            Reconciled::Unchanged => {}
            Reconciled::NewVersion(e) => new.push(e),
            Reconciled::Changed => again.push(node.full_path(rel)),
        }
    }
    if !new.is_empty() {
        tracing::debug!(n = new.len(), "local changes");
    }
    let big = new.len() >= 64;
    if let Err(e) = commit_local(node, &mut idx, new) {
        tracing::error!("cannot commit local changes: {e:#}");
    }
    drop(idx);
    if big {
        crate::node::release_memory();
    }
    again
}

/// Walks the whole sync folder; hashes what changed since last seen, tombstones what vanished.
pub fn full_scan(node: &Node) -> Vec<PathBuf> {
    let root = node.settings.sync_dir.clone();
    // A missing sync folder (unmounted, removed by a fault) is not "every file was deleted":
    // scanning it would author a tombstone per file and spread the loss to every peer.
    if !root.is_dir() {
        tracing::error!(sync = %root.display(), "sync folder missing; not scanning (no deletes are authored)");
        return Vec::new();
    }
    let mut found = Vec::new();
    walk(&root, &root, &mut found);
    let present: BTreeSet<&str> = found.iter().map(|(r, _)| r.as_str()).collect();
    let gone: Vec<(String, Option<Stamp>)> = node
        .index()
        .iter()
        .filter(|e| !e.deleted && !present.contains(e.path.as_str()))
        .map(|e| (e.path.clone(), None))
        .collect();
    drop(present);
    // Moved, not copied: a rescan of a big folder must not hold every path twice.
    let mut items: Vec<(String, Option<Stamp>)> = Vec::with_capacity(found.len() + gone.len());
    items.extend(found.into_iter().map(|(r, s)| (r, Some(s))));
    items.extend(gone);
    examine(node, items, false)
}

/// The scanning task: batches events for a few milliseconds, lets files being written settle,
/// and rescans periodically.
pub async fn run(node: Arc<Node>, mut rx: ScanRx, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(node.settings.rescan);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut settling: HashMap<PathBuf, Instant> = HashMap::new();
    loop {
        let mut batch = BTreeSet::new();
        let wake = settling
            .values()
            .min()
            .map(|t| *t + SETTLE)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let take =
            |(p, u): (PathBuf, Urgency), batch: &mut BTreeSet<PathBuf>, settling: &mut HashMap<PathBuf, Instant>| {
                if u == Urgency::Now {
                    settling.remove(&p);
                    batch.insert(p);
                } else {
                    settling.insert(p, Instant::now());
                }
            };
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                let n = node.clone();
                let again = tokio::task::spawn_blocking(move || full_scan(&n)).await.unwrap_or_default();
                for p in again { let _ = node.scan_tx.send((p, Urgency::Now)); }
                continue;
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
            ev = rx.recv() => match ev { Some(ev) => take(ev, &mut batch, &mut settling), None => return },
        }
        // Coalesce a burst: an editor's write-rename-chmod is one change.
        if !batch.is_empty() {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(2);
            while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                take(ev, &mut batch, &mut settling);
                if batch.len() >= 4096 {
                    break;
                }
            }
        }
        let now = Instant::now();
        settling.retain(|p, t| {
            if now.duration_since(*t) >= SETTLE {
                batch.insert(p.clone());
                false
            } else {
                true
            }
        });
        if batch.is_empty() {
            continue;
        }
        let n = node.clone();
        let again = tokio::task::spawn_blocking(move || process(&n, batch, true))
            .await
            .unwrap_or_default();
        if !again.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            for p in again {
                let _ = node.scan_tx.send((p, Urgency::Now));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_open_for_writing_is_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        assert!(!being_written(dir.path(), "f"));
        let w = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        assert!(being_written(dir.path(), "f"));
        drop(w);
        assert!(!being_written(dir.path(), "f"));
        assert!(!being_written(dir.path(), "missing"));
    }

    #[test]
    fn a_fifo_in_the_sync_folder_is_never_opened() {
        // A plain open of a FIFO waits for a writer: the write probe blocked the scanner forever.
        let dir = tempfile::tempdir().unwrap();
        let mode = rustix::fs::Mode::from_raw_mode(0o600);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("p"),
            rustix::fs::FileType::Fifo,
            mode,
            0,
        )
        .unwrap();
        assert!(!being_written(dir.path(), "p"));
        assert!(matches!(
            crate::edits::observe(dir.path(), "p"),
            crate::edits::Observed::Other
        ));
    }
}
