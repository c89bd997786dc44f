//! Putting received versions on disk: [`apply_batch`] writes them, each under a lock file, after
//! making sure the current file holds no edit the index has not seen yet (which would otherwise be
//! overwritten; see [`crate::edits`]), through `intent -> rename into place -> syncfs -> commit`,
//! so a SIGKILL at any point either leaves the old state or one the next start recognises.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::fs::RenameFlags;

use crate::beneath;
use crate::edits::{Observed, Reconciled, author_local, commit_local, hash_open, observe, reconcile, stamp_at};
use crate::entry::{Entry, Resolution};
use crate::index::{Index, Stamp};
use crate::mutant::Mutant;
use crate::node::Node;

/// The stamp of a file of ours outside the sync folder (staged, linked).
fn stamp_now(path: &Path) -> Option<Stamp> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| Stamp::of(&m))
}

/// `mutant-echo-loop`'s bug: every version just applied is re-announced as a new local change of
/// the same content, which every neighbour applies and re-announces in turn, for ever.
fn echo_as_local(node: &Node, idx: &mut Index, paths: &[String]) {
    let applied: Vec<Entry> = paths
        .iter()
        .filter_map(|p| idx.get(p).filter(|e| !e.deleted && e.origin.is_none()).cloned())
        .collect();
    let echoes: Vec<Entry> = applied
        .into_iter()
        .filter_map(
            |e| match author_local(node, idx, &e.path, e.vv.clone(), e.hash.clone(), e.size, false) {
                Reconciled::NewVersion(v) => Some(v),
                _ => None,
            },
        )
        .collect();
    if let Err(e) = commit_local(node, idx, echoes) {
        tracing::warn!("cannot commit echoes: {e}");
    }
}

/// Whether the file on disk (`disk`: its stamp, None when absent) is, without hashing it, the one
/// the index entry describes (`deleted`: None without an entry; `recorded`: the stamp recorded
/// with the entry): both absent, or a live entry whose recorded size, mtime and inode are exactly
/// the file's. A file modified less than [`crate::damage::SETTLE_NS`] ago is in doubt (a rewrite
/// in the same clock tick keeps the mtime, and its event may not be processed yet): it is hashed.
pub fn matches_index(deleted: Option<bool>, recorded: Option<Stamp>, disk: Option<Stamp>, real_now_ns: i128) -> bool {
    match (disk, deleted) {
        (None, None) => true,
        (None, Some(d)) => d,
        (Some(s), Some(false)) => recorded == Some(s) && real_now_ns >= s.mtime_ns + crate::damage::SETTLE_NS,
        (Some(_), _) => false,
    }
}

/// Makes sure the index knows the current content of `rel` before sync touches it: an edit the
/// scanner has not processed yet is committed as a local version first (and then resolved
/// against the received one like any concurrent version), instead of being overwritten and lost.
/// Returns the stamp of the file as checked (None: absent), which the apply re-checks right
/// before it renames over or removes the file.
fn ensure_indexed(node: &Node, idx: &mut Index, rel: &str) -> anyhow::Result<Option<Stamp>> {
    let root = &node.settings.sync_dir;
    let now = stamp_at(root, rel);
    let cur = idx.get(rel).map(|e| e.deleted);
    if matches_index(cur, idx.stamp(rel), now, crate::damage::real_now_ns()) {
        return Ok(now);
    }
    for _ in 0..3 {
        let seen = observe(root, rel);
        let checked = match &seen {
            Observed::File { stamp, .. } => Some(*stamp),
            Observed::Missing => None,
            Observed::Other => stamp_at(root, rel),
        };
        match reconcile(node, idx, rel, &seen, false) {
            Reconciled::Unchanged => return Ok(checked),
            Reconciled::NewVersion(e) => {
                tracing::info!(path = %rel, "local edit not yet indexed; committed before applying a received version");
                commit_local(node, idx, vec![e])?;
                // `commit_local` stats the file after its commit; only the stamp that was hashed
                // may vouch for the content.
                idx.set_stamp(rel, checked);
                return Ok(checked);
            }
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

/// One file operation of a batch, for the received version of `owner`, done only if the target
/// still is in the state it was checked in (`expect`: its stamp, None when absent).
struct Step {
    owner: String,
    expect: Option<Stamp>,
    op: Op,
}

enum Op {
    /// Rename a staged file into place.
    Place {
        from: PathBuf,
        to: String,
    },
    /// Keep the local (losing) file at its conflict-copy path too: a hard link, so the path never
    /// goes missing (the winner then replaces it with one rename). Before, the loser was renamed
    /// away first: readers saw the path vanish for an instant, and a winner that then failed to
    /// land left the path empty while the index still named the loser.
    LinkLocal {
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
    let mut d = rel;
    while let Some((up, _)) = d.rsplit_once('/') {
        if beneath::parent(root, up, false).and_then(|p| p.remove_dir()).is_err() {
            break;
        }
        d = up;
    }
}

/// Links the file at `from` to `to` (both relative), replacing whatever is at `to`: a link under a
/// temp name, then a rename over `to`. Returns false (and links nothing) when the file linked is not
/// the one checked (`expect`): a save landed at `from` after the check.
fn link_local(node: &Node, from: &str, to: &str, expect: Option<Stamp>) -> std::io::Result<bool> {
    let tmp = node
        .tmp_dir
        .join(format!(".syncpeer-link-{:016x}.tmp", rand::random::<u64>()));
    beneath::parent(&node.settings.sync_dir, from, false)?.link_to(&tmp)?;
    // The link is the inode itself: its stamp says which file was linked.
    if stamp_now(&tmp) != expect {
        let _ = std::fs::remove_file(&tmp);
        return Ok(false);
    }
    let r = place(node, &tmp, to);
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map(|()| true)
}

/// Puts the staged file `from` at `to` only if `to` is still exactly the file checked (`expect`;
/// `None`: no file). Linux has no compare-and-rename, so: an atomic exchange, then a look at what
/// came out; if it is not the checked file (an editor's save landed after the check), exchange
/// back and return false. Where is nothing to expect, `RENAME_NOREPLACE` fails if a file appeared.
/// Filesystems without `renameat2` flags fall back to a plain rename (the old microsecond window).
fn place_over(node: &Node, from: &Path, to: &str, expect: Option<Stamp>) -> std::io::Result<bool> {
    // The target's folder, opened without following a symlink: what is renamed below lands in it
    // even if a folder on the way is swapped for a symlink meanwhile.
    let target = beneath::parent(&node.settings.sync_dir, to, true)?;
    let flags = if expect.is_some() {
        RenameFlags::EXCHANGE
    } else {
        RenameFlags::NOREPLACE
    };
    match target.rename_from(from, flags) {
        Ok(()) => {}
        Err(e) if expect.is_none() && e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        // The checked file vanished meanwhile (a local delete): nothing to exchange with.
        Err(e) if expect.is_some() && e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
            target.rename_from(from, RenameFlags::empty())?;
            return Ok(true);
        }
        Err(e) => return Err(e),
    }
    if expect.is_none() {
        return Ok(true);
    }
    // `from` now names what was at `to`.
    if stamp_now(from) == expect {
        let _ = std::fs::remove_file(from);
        return Ok(true);
    }
    // A save landed after the check: give it its place back (our content returns to `from`, which
    // the caller removes with the other staged files).
    target.rename_from(from, RenameFlags::EXCHANGE)?;
    Ok(false)
}

fn place(node: &Node, from: &Path, to: &str) -> std::io::Result<()> {
    beneath::parent(&node.settings.sync_dir, to, true)?.rename_from(from, RenameFlags::empty())
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
        let checked = match ensure_indexed(node, &mut idx, &path) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%path, "cannot examine local file: {e:#}");
                continue;
            }
        };
        let in_the_way = match beneath::symlink_metadata(&node.settings.sync_dir, &path) {
            Ok(m) => !m.is_file(),
            Err(e) => beneath::is_symlink_in_the_way(&e),
        };
        if in_the_way {
            tracing::warn!(%path, "a directory, symlink or special file is in the way; not applied");
            done.push(path);
            continue;
        }
        let res = node.resolve(idx.get(&path), &s.entry);
        let copy_wanted = |idx: &Index, copy: &Entry| {
            matches!(node.resolve(idx.get(&copy.path), copy), Resolution::TakeRemote { .. })
                && commits.iter().all(|c| c.path != copy.path)
        };
        match res {
            Resolution::Ignore | Resolution::Same => {
                if let Some(t) = &s.temp {
                    let _ = std::fs::remove_file(t);
                }
            }
            Resolution::TakeRemote { copy } => {
                if s.temp.is_none() && !s.entry.deleted {
                    continue; // not staged: keep pending
                }
                // The path is expected as checked (the conflict copy is a second link to it).
                let expect = checked;
                if let Some(copy) = copy
                    && copy_wanted(&idx, &copy)
                {
                    ops.push(Step {
                        owner: path.clone(),
                        expect,
                        op: Op::LinkLocal {
                            from: path.clone(),
                            to: copy.path.clone(),
                        },
                    });
                    commits.push(copy);
                    conflicts += 1;
                }
                let op = match &s.temp {
                    _ if s.entry.deleted => Op::Remove { path: path.clone() },
                    Some(t) => Op::Place {
                        from: t.clone(),
                        to: path.clone(),
                    },
                    None => unreachable!("checked above"),
                };
                ops.push(Step {
                    owner: path.clone(),
                    expect,
                    op,
                });
                commits.push(s.entry);
                applied += 1;
                latencies.push(s.received);
            }
            Resolution::KeepLocal { copy } => {
                if let Some(t) = &s.temp {
                    if copy_wanted(&idx, &copy) {
                        ops.push(Step {
                            owner: path.clone(),
                            expect: stamp_at(&node.settings.sync_dir, &copy.path),
                            op: Op::Place {
                                from: t.clone(),
                                to: copy.path.clone(),
                            },
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
    if node.legacy() {
        crate::legacy::hold_echo(&node.settings.state_dir, commits.iter().map(|c| c.path.as_str()));
    }
    test_pause();
    let mut failed = Vec::new();
    // The stamp of each file put in place, taken before its rename (a rename keeps inode, mtime
    // and size): a stat after the rename could be of a file the user saved over it meanwhile,
    // which would then pass for the applied content.
    let mut placed: std::collections::HashMap<String, Option<Stamp>> = std::collections::HashMap::new();
    for Step { owner, expect, op } in &ops {
        let target = match op {
            Op::Place { to, .. } | Op::LinkLocal { to, .. } => to,
            Op::Remove { path } => path,
        };
        if failed.contains(owner) {
            failed.push(target.clone());
            continue;
        }
        // The file must still be exactly as checked, or it holds a local edit made since: that
        // edit is never overwritten. The path stays pending; the retry commits the edit first
        // and resolves the received version against it. (What remains is the instant between this
        // stat and the rename: an edit landing there is replaced; see docs/PEER.md.)
        // (A link checks the file it links: the local loser, as checked at `owner`.)
        let checked = match op {
            Op::LinkLocal { from, .. } => from,
            _ => target,
        };
        let now = stamp_at(&node.settings.sync_dir, checked);
        if now != *expect {
            tracing::info!(path = %checked, "changed locally since checked; not overwritten, retried");
            failed.push(target.clone());
            failed.push(owner.clone());
            continue;
        }
        // Ok(false): the file was not the one checked after all (see `place_over`).
        let r = match op {
            Op::Place { from, to } => {
                placed.insert(to.clone(), stamp_now(from));
                place_over(node, from, to, *expect)
            }
            Op::LinkLocal { from, to } => {
                placed.insert(to.clone(), *expect);
                link_local(node, from, to, *expect)
            }
            Op::Remove { path } => {
                match beneath::parent(&node.settings.sync_dir, path, false).and_then(|p| p.remove_file()) {
                    Ok(()) => {
                        placed.insert(path.clone(), None);
                        remove_empty_parents(&node.settings.sync_dir, path);
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
                    Err(e) => Err(e),
                }
            }
        };
        match r {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(path = %checked, "changed locally at the last instant; not overwritten, retried");
                failed.push(target.clone());
                failed.push(owner.clone());
            }
            Err(e) => {
                tracing::warn!(path = %target, "cannot write: {e}");
                failed.push(target.clone());
                failed.push(owner.clone());
            }
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
    for p in &paths {
        idx.set_stamp(p, placed.get(p).copied().flatten());
    }
    if node.mutant(Mutant::EchoLoop) {
        echo_as_local(node, &mut idx, &paths);
    }
    node.index_changed(&idx);
    drop(idx);
    drop(batch_lock);
    node.metrics.versions_applied.inc_by(applied);
    crate::leak::versions(node.settings.flavor, applied);
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
    let root = &node.settings.sync_dir;
    for e in intents {
        let in_place = if e.deleted {
            beneath::symlink_metadata(root, &e.path).is_err()
        } else {
            matches!(beneath::open_file(root, &e.path).and_then(hash_open), Ok((h, _)) if h == e.hash)
        };
        if in_place && matches!(node.resolve(idx.get(&e.path), &e), Resolution::TakeRemote { .. }) {
            tracing::info!(path = %e.path, "recovered an interrupted apply");
            commit.push(e);
        }
    }
    if !commit.is_empty() {
        idx.commit(commit)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = crate::damage::SETTLE_NS;

    fn st(mtime_ns: i128, size: u64, ino: u64) -> Stamp {
        Stamp { mtime_ns, size, ino }
    }

    #[test]
    fn a_file_matches_its_entry_only_when_its_stamp_is_exactly_the_recorded_one_and_settled() {
        let rec = st(1_000, 10, 7);
        let late = 1_000 + S;
        assert!(matches_index(Some(false), Some(rec), Some(rec), late));
        // An editor's safe-save: new inode (same size, even the same mtime tick).
        assert!(!matches_index(Some(false), Some(rec), Some(st(1_000, 10, 8)), late));
        // Rewritten in place: another size or mtime.
        assert!(!matches_index(Some(false), Some(rec), Some(st(1_000, 11, 7)), late));
        assert!(!matches_index(Some(false), Some(rec), Some(st(2_000, 10, 7)), late));
        // Nothing recorded (restart, or the stamp was not trustworthy): hash it.
        assert!(!matches_index(Some(false), None, Some(rec), late));
        // In doubt: modified within the settle time, a same-tick rewrite could hide: hash it.
        assert!(!matches_index(Some(false), Some(rec), Some(rec), late - 1));
    }

    #[test]
    fn presence_must_match_the_entry() {
        let s = st(1, 1, 1);
        let late = 1 + S;
        assert!(matches_index(None, None, None, late));
        assert!(matches_index(Some(true), None, None, late));
        // A file where the index has nothing or a tombstone: a local create, not yet indexed.
        assert!(!matches_index(None, None, Some(s), late));
        assert!(!matches_index(Some(true), Some(s), Some(s), late));
        // A live entry whose file is gone: a local delete, not yet indexed.
        assert!(!matches_index(Some(false), Some(s), None, late));
    }
}
