//! Putting versions on disk, and noticing local edits.
//!
//! * [`reconcile`] turns what is on disk into a new local version when (and only when) its content
//!   hash differs from the index: this, not a timer, is what makes echo loops impossible, since a
//!   file written by sync hashes to the entry that was just committed.
//! * [`apply_batch`] writes received versions: each under a lock file, after making sure the
//!   current file holds no edit the index has not seen yet (which would otherwise be overwritten),
//!   through `intent -> rename into place -> syncfs -> commit`, so a SIGKILL at any point either
//!   leaves the old state or one the next start recognises.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::entry::{Entry, Resolution, resolve};
use crate::index::{Index, Stamp};
use crate::node::Node;

/// What a path looked like when it was examined.
#[derive(Debug, Clone)]
pub enum Observed {
    File {
        stamp: Stamp,
        hash: String,
        size: u64,
    },
    Missing,
    /// A directory, symlink or special file: not synced.
    Other,
}

/// BLAKE3 and size of a file's content.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
    Ok((h.finalize().to_hex().to_string(), n))
}

/// Examines a path (stat, then hash; stat again so a file changing under us is not mistaken).
pub fn observe(full: &Path) -> Observed {
    let Ok(meta) = std::fs::symlink_metadata(full) else {
        return Observed::Missing;
    };
    if !meta.is_file() {
        return Observed::Other;
    }
    let stamp = Stamp::of(&meta);
    match hash_file(full) {
        Ok((hash, size)) => Observed::File { stamp, hash, size },
        Err(_) => Observed::Missing,
    }
}

fn stamp_now(full: &Path) -> Option<Stamp> {
    std::fs::symlink_metadata(full)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| Stamp::of(&m))
}

pub enum Reconciled {
    /// Index already says this.
    Unchanged,
    /// A new local version to commit.
    NewVersion(Entry),
    /// The file changed since it was observed: look again.
    Changed,
}

/// Under the index lock: compares an observation with the index and authors a version if the
/// content differs. Does not commit.
pub fn reconcile(node: &Node, idx: &mut Index, rel: &str, seen: &Observed, count_echo: bool) -> Reconciled {
    if crate::legacy::active() {
        return crate::legacy::reconcile(node, idx, rel, seen, count_echo);
    }
    let full = node.full_path(rel);
    let now = stamp_now(&full);
    let cur = idx.get(rel).cloned();
    let live = cur.as_ref().filter(|e| !e.deleted);
    match seen {
        Observed::Other => Reconciled::Unchanged,
        Observed::File { stamp, hash, size } => {
            if now != Some(*stamp) {
                return Reconciled::Changed;
            }
            if live.is_some_and(|e| &e.hash == hash) {
                idx.set_stamp(rel, Some(*stamp));
                if count_echo {
                    node.metrics.echoes_suppressed.inc();
                }
                return Reconciled::Unchanged;
            }
            // Received content whose commit has not happened yet (it failed, e.g. disk full, and
            // is retried): not an edit.
            if idx.inflight(rel) == Some(hash.as_str()) {
                return Reconciled::Unchanged;
            }
            // Changed content with the verified mtime: disk damage, repaired, never a version.
            if let Some(e) = live
                && crate::scrub::check(node, rel, stamp, e, hash)
            {
                return Reconciled::Unchanged;
            }
            let mut vv = cur.map(|e| e.vv).unwrap_or_default();
            vv.set(&node.short, idx.next_counter());
            let hlc = idx.tick();
            Reconciled::NewVersion(Entry::author(
                &node.me,
                rel.to_string(),
                vv,
                hash.clone(),
                *size,
                false,
                hlc,
            ))
        }
        Observed::Missing => {
            if now.is_some() {
                return Reconciled::Changed;
            }
            idx.set_stamp(rel, None);
            let Some(live) = live else {
                return Reconciled::Unchanged;
            };
            if idx.inflight(rel) == Some("") {
                return Reconciled::Unchanged;
            }
            // Checked after the file was found missing: if the whole folder went away meanwhile,
            // this is not a delete (see `scanner::full_scan`).
            if !node.settings.sync_dir.is_dir() {
                return Reconciled::Unchanged;
            }
            let mut vv = live.vv.clone();
            vv.set(&node.short, idx.next_counter());
            let hlc = idx.tick();
            Reconciled::NewVersion(Entry::author(
                &node.me,
                rel.to_string(),
                vv,
                String::new(),
                0,
                true,
                hlc,
            ))
        }
    }
}

/// Commits local versions and records their stamps.
pub fn commit_local(node: &Node, idx: &mut Index, entries: Vec<Entry>) -> anyhow::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let n = entries.len() as u64;
    let paths: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
    if n <= 8 {
        tracing::debug!(?paths, deleted = ?entries.iter().map(|e| e.deleted).collect::<Vec<_>>(), "new local versions");
    }
    idx.commit(entries)?;
    for p in paths {
        let s = stamp_now(&node.full_path(&p));
        idx.set_stamp(&p, s);
    }
    node.metrics.local_changes.inc_by(n);
    node.index_changed(idx);
    Ok(())
}

/// Makes sure the index knows the current content of `rel` before sync touches it (an edit the
/// scanner has not processed yet would otherwise be overwritten and lost).
fn ensure_indexed(node: &Node, idx: &mut Index, rel: &str) -> anyhow::Result<()> {
    let full = node.full_path(rel);
    let now = stamp_now(&full);
    let cur = idx.get(rel);
    let known = match (now, cur) {
        (None, None) => true,
        (None, Some(e)) => e.deleted,
        (Some(s), Some(e)) => !e.deleted && idx.stamp(rel) == Some(s),
        (Some(_), None) => false,
    };
    if known {
        return Ok(());
    }
    for _ in 0..3 {
        let seen = observe(&full);
        match reconcile(node, idx, rel, &seen, false) {
            Reconciled::Unchanged => return Ok(()),
            Reconciled::NewVersion(e) => return commit_local(node, idx, vec![e]),
            Reconciled::Changed => continue,
        }
    }
    anyhow::bail!("{rel} keeps changing")
}

/// A received version with its content staged (None for a tombstone).
pub struct Staged {
    pub entry: Entry,
    pub temp: Option<PathBuf>,
    pub received: Instant,
}

enum Op {
    /// Rename a staged file into place.
    Place {
        from: PathBuf,
        to: String,
    },
    /// Move the local (losing) file to its conflict-copy path.
    MoveLocal {
        from: String,
        to: String,
    },
    Remove {
        path: String,
    },
}

/// Batches larger than this are flushed with one `syncfs` instead of an fsync per file. `syncfs`
/// flushes every dirty page of the filesystem, including other programs' (slow on a shared disk),
/// so small batches, the latency-critical case, flush only their own files.
const FSYNC_EACH_MAX: usize = 32;

/// Makes files (or directories) durable: one by one when few, else the whole filesystem.
fn flush(paths: &[PathBuf], fs_of: &Path) {
    if paths.len() > FSYNC_EACH_MAX {
        syncfs(fs_of);
        return;
    }
    for p in paths {
        if let Ok(f) = std::fs::File::open(p) {
            let _ = f.sync_all();
        }
    }
}

fn syncfs(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs on a valid open descriptor.
        unsafe {
            libc::syncfs(f.as_raw_fd());
        }
    }
}

fn remove_empty_parents(root: &Path, rel: &str) {
    let mut p = Path::new(rel).parent();
    while let Some(d) = p {
        if d.as_os_str().is_empty() || std::fs::remove_dir(root.join(d)).is_err() {
            break;
        }
        p = d.parent();
    }
}

fn place(node: &Node, from: &Path, to: &str) -> std::io::Result<()> {
    let full = node.full_path(to);
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(from, &full)
}

/// Test-only fault hook: `SYNCPEER_TEST_APPLY_PAUSE_MS` sleeps between the checks of a batch and
/// its renames, standing for a slow intent fsync on a loaded disk (the window in which a local edit
/// can land on a path that was just checked). Not a setting; unset in production.
fn test_pause() {
    static PAUSE: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        std::env::var("SYNCPEER_TEST_APPLY_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis)
    });
    if let Some(d) = pause {
        std::thread::sleep(*d);
    }
}

/// Applies staged versions; returns the paths that are finished (applied, or not needed), the
/// rest stay pending (a live lock holder, a disk error).
pub fn apply_batch(node: &Node, staged: Vec<Staged>) -> Vec<String> {
    let mut done = Vec::new();
    if staged.is_empty() {
        return done;
    }
    if !node.settings.sync_dir.is_dir() {
        // Recreating the vanished folder for one file would make every other file look deleted
        // to the next scan; wait (pending) until the folder is back.
        tracing::warn!("sync folder missing; not applying");
        return done;
    }
    let temps: Vec<PathBuf> = staged.iter().filter_map(|s| s.temp.clone()).collect();
    flush(&temps, &node.tmp_dir);
    let paths: Vec<&str> = staged.iter().map(|s| s.entry.path.as_str()).collect();
    // The lock file records who is applying what; it guards against nothing but another process
    // on the same state folder. A locks folder we cannot write (a permission or disk fault) must
    // not stop sync, so the batch goes on without it.
    let batch_lock = match node.locks.hold_batch(&paths) {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::warn!("cannot write the apply lock ({e}); applying without it");
            None
        }
    };
    let mut idx = node.index();
    let mut ops = Vec::new();
    let mut commits: Vec<Entry> = Vec::new();
    let mut latencies = Vec::new();
    let mut conflicts = 0u64;
    let mut applied = 0u64;
    let mut stale = 0usize;
    for s in staged {
        let path = s.entry.path.clone();
        let (blocked, removed) = node.locks.blocked(&path);
        stale += removed;
        if blocked {
            tracing::debug!(%path, "locked by a live holder; retrying later");
            continue;
        }
        if let Err(e) = ensure_indexed(node, &mut idx, &path) {
            tracing::warn!(%path, "cannot examine local file: {e:#}");
            continue;
        }
        if matches!(std::fs::symlink_metadata(node.full_path(&path)), Ok(m) if !m.is_file()) {
            tracing::warn!(%path, "a directory or special file is in the way; not applied");
            done.push(path);
            continue;
        }
        let res = resolve(idx.get(&path), &s.entry);
        let copy_wanted = |idx: &Index, copy: &Entry| {
            matches!(resolve(idx.get(&copy.path), copy), Resolution::TakeRemote { .. })
                && commits.iter().all(|c| c.path != copy.path)
        };
        match res {
            Resolution::Ignore | Resolution::Same => {
                if let Some(t) = &s.temp {
                    let _ = std::fs::remove_file(t);
                }
            }
            Resolution::TakeRemote { copy } => {
                if let Some(copy) = copy
                    && copy_wanted(&idx, &copy)
                {
                    ops.push(Op::MoveLocal {
                        from: path.clone(),
                        to: copy.path.clone(),
                    });
                    commits.push(copy);
                    conflicts += 1;
                }
                match (&s.temp, s.entry.deleted) {
                    (_, true) => ops.push(Op::Remove { path: path.clone() }),
                    (Some(t), false) => ops.push(Op::Place {
                        from: t.clone(),
                        to: path.clone(),
                    }),
                    (None, false) => continue, // not staged: keep pending
                }
                commits.push(s.entry);
                applied += 1;
                latencies.push(s.received);
            }
            Resolution::KeepLocal { copy } => {
                if let Some(t) = &s.temp {
                    if copy_wanted(&idx, &copy) {
                        ops.push(Op::Place {
                            from: t.clone(),
                            to: copy.path.clone(),
                        });
                        commits.push(copy);
                        conflicts += 1;
                        applied += 1;
                        latencies.push(s.received);
                    } else {
                        let _ = std::fs::remove_file(t);
                    }
                } else {
                    continue;
                }
            }
        }
        done.push(path);
    }
    if stale > 0 {
        node.metrics.stale_locks_removed.inc_by(stale as u64);
    }
    if commits.is_empty() {
        return done;
    }
    if let Err(e) = idx.record_intents(&commits) {
        tracing::error!("cannot record intents: {e}");
        return Vec::new();
    }
    if crate::legacy::active() {
        crate::legacy::hold_echo(node, commits.iter().map(|c| c.path.as_str()));
    }
    test_pause();
    let mut failed = Vec::new();
    for op in &ops {
        let r = match op {
            Op::Place { from, to } => place(node, from, to).map_err(|e| (to.clone(), e)),
            Op::MoveLocal { from, to } => place(node, &node.full_path(from), to).map_err(|e| (to.clone(), e)),
            Op::Remove { path } => match std::fs::remove_file(node.full_path(path)) {
                Ok(()) => {
                    remove_empty_parents(&node.settings.sync_dir, path);
                    Ok(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err((path.clone(), e)),
            },
        };
        if let Err((p, e)) = r {
            tracing::warn!(path = %p, "cannot write: {e}");
            failed.push(p);
        }
    }
    // A failed write must not be committed, or the index would claim content that is not there.
    commits.retain(|c| !failed.contains(&c.path));
    done.retain(|p| !failed.contains(p));
    // The renames must be durable before the commit record is.
    let dirs: std::collections::BTreeSet<PathBuf> = commits
        .iter()
        .filter_map(|c| node.full_path(&c.path).parent().map(Path::to_path_buf))
        .filter(|d| d.exists())
        .collect();
    flush(&dirs.into_iter().collect::<Vec<_>>(), &node.settings.sync_dir);
    let paths: Vec<String> = commits.iter().map(|c| c.path.clone()).collect();
    if let Err(e) = idx.commit(commits) {
        tracing::error!("cannot commit applied versions: {e}");
        return Vec::new();
    }
    for p in paths {
        let s = stamp_now(&node.full_path(&p));
        idx.set_stamp(&p, s);
    }
    node.index_changed(&idx);
    drop(idx);
    drop(batch_lock);
    node.metrics.versions_applied.inc_by(applied);
    node.metrics.conflicts.inc_by(conflicts);
    if applied >= 64 {
        crate::node::release_memory();
    }
    for t in latencies {
        node.metrics.apply_latency.observe(t.elapsed().as_secs_f64());
    }
    done
}

/// At start: commits intents whose file is already in place (the process died between rename and
/// commit); drops the others (their versions come back through anti-entropy).
pub fn recover_intents(node: &Node, intents: Vec<Entry>) -> anyhow::Result<()> {
    let mut idx = node.index();
    let mut commit = Vec::new();
    for e in intents {
        let full = node.full_path(&e.path);
        let in_place = if e.deleted {
            std::fs::symlink_metadata(&full).is_err()
        } else {
            matches!(hash_file(&full), Ok((h, _)) if h == e.hash)
        };
        if in_place && matches!(resolve(idx.get(&e.path), &e), Resolution::TakeRemote { .. }) {
            tracing::info!(path = %e.path, "recovered an interrupted apply");
            commit.push(e);
        }
    }
    if !commit.is_empty() {
        idx.commit(commit)?;
    }
    Ok(())
}
