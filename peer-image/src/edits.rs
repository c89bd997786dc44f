//! Noticing local edits: what a path in the sync folder holds ([`observe`]), compared with its
//! index entry, becomes a new local version when (and only when) its content hash differs
//! ([`reconcile`]); this, not a timer, is what makes echo loops impossible, since a file written by
//! sync hashes to the entry that was just committed. Used by the scanner, and by the apply to make
//! sure no unindexed edit is overwritten.

use std::io::Read;
use std::path::Path;

use crate::beneath;
use crate::entry::Entry;
use crate::index::{Index, Stamp};
use crate::legacy;
use crate::mutant::Mutant;
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
    hash_open(std::fs::File::open(path)?)
}

/// BLAKE3 and size of what is left to read in an open file.
pub fn hash_open(mut f: std::fs::File) -> std::io::Result<(String, u64)> {
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

/// Examines `rel` in the sync folder `root` (open, stat and hash that one file; `reconcile` stats
/// again so a file changing under us is not mistaken). Never through a symlink: a symlinked
/// folder hides what is under it (Missing), a symlink in place of the file is Other.
pub fn observe(root: &Path, rel: &str) -> Observed {
    let Ok(parent) = beneath::parent(root, rel, false) else {
        return Observed::Missing;
    };
    let f = match parent.open_regular() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Observed::Other,
        Err(_) => return Observed::Missing,
    };
    let Ok(meta) = f.metadata() else {
        return Observed::Missing;
    };
    let stamp = Stamp::of(&meta);
    match hash_open(f) {
        Ok((hash, size)) => Observed::File { stamp, hash, size },
        Err(_) => Observed::Missing,
    }
}

/// The stamp of `rel` in the sync folder (None: absent, not a file, or under a symlink).
pub fn stamp_at(root: &Path, rel: &str) -> Option<Stamp> {
    beneath::symlink_metadata(root, rel)
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
    if node.legacy() {
        return reconcile_legacy(node, idx, rel, seen, count_echo);
    }
    let now = stamp_at(&node.settings.sync_dir, rel);
    let cur = idx.get(rel).cloned();
    let live = cur.as_ref().filter(|e| !e.deleted);
    match seen {
        Observed::Other => Reconciled::Unchanged,
        Observed::File { stamp, hash, size } => {
            if now != Some(*stamp) {
                return Reconciled::Changed;
            }
            if let Some(e) = live.filter(|e| &e.hash == hash)
                && node.mutant(Mutant::MetadataLoop)
                && idx
                    .stamp(rel)
                    .is_some_and(|recorded| recorded.mtime_ns != stamp.mtime_ns)
            {
                // The bug: a touch (mtime moved, content not) is authored as a version.
                return author_local(node, idx, rel, e.vv.clone(), hash.clone(), *size, false);
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
                && node.damage.check(&node.metrics, rel, stamp, e, hash)
            {
                return Reconciled::Unchanged;
            }
            let base = cur.map(|e| e.vv).unwrap_or_default();
            author_local(node, idx, rel, base, hash.clone(), *size, false)
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
            author_local(node, idx, rel, live.vv.clone(), String::new(), 0, true)
        }
    }
}

/// [`reconcile`] by the legacy flavor's rules (see [`crate::legacy`]): metadata-based change
/// detection, echo locks, wall-clock timestamps. Does not commit.
fn reconcile_legacy(node: &Node, idx: &mut Index, rel: &str, seen: &Observed, count_echo: bool) -> Reconciled {
    let full = node.full_path(rel);
    let now = std::fs::symlink_metadata(&full)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| Stamp::of(&m));
    let cur = idx.get(rel).cloned();
    let live = cur.as_ref().filter(|e| !e.deleted);
    let author = |idx: &mut Index, hash: String, size: u64, deleted: bool| {
        let mut vv = cur.as_ref().map(|e| e.vv.clone()).unwrap_or_default();
        vv.set(&node.short, idx.next_counter());
        Reconciled::NewVersion(Entry::author(
            &node.me,
            rel.to_string(),
            vv,
            hash,
            size,
            deleted,
            legacy::timestamp(),
        ))
    };
    match seen {
        Observed::Other => Reconciled::Unchanged,
        Observed::File { stamp, hash, size } => {
            if now != Some(*stamp) {
                return Reconciled::Changed;
            }
            let held = legacy::echo_held(&node.settings.state_dir, rel);
            let indexed = live.map(|e| e.hash.as_str());
            if !legacy::is_change(held, idx.stamp(rel), stamp, indexed, hash) {
                idx.set_stamp(rel, Some(*stamp));
                if held && count_echo {
                    node.metrics.echoes_suppressed.inc();
                }
                return Reconciled::Unchanged;
            }
            author(idx, hash.clone(), *size, false)
        }
        Observed::Missing => {
            if now.is_some() {
                return Reconciled::Changed;
            }
            idx.set_stamp(rel, None);
            if live.is_none() {
                return Reconciled::Unchanged;
            }
            author(idx, String::new(), 0, true)
        }
    }
}

/// A new local version of `rel` on top of `base`: this node's counter bumped, a fresh HLC stamp.
pub(crate) fn author_local(
    node: &Node,
    idx: &mut Index,
    rel: &str,
    mut base: crate::version_vector::VersionVector,
    hash: String,
    size: u64,
    deleted: bool,
) -> Reconciled {
    base.set(&node.short, idx.next_counter());
    let hlc = idx.tick();
    Reconciled::NewVersion(Entry::author(&node.me, rel.to_string(), base, hash, size, deleted, hlc))
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
    // Stamps taken now, right after `reconcile` compared the stat with the hashed one, not after
    // the commit's fsync, during which a save over the file would pass for this content (a stamp
    // whose size is not the entry's certainly is not of it: none is recorded, the file is hashed).
    let stamps: Vec<Option<Stamp>> = entries
        .iter()
        .map(|e| stamp_at(&node.settings.sync_dir, &e.path).filter(|s| !e.deleted && s.size == e.size))
        .collect();
    idx.commit(entries)?;
    for (p, s) in paths.iter().zip(stamps) {
        idx.set_stamp(p, s);
    }
    node.metrics.local_changes.inc_by(n);
    crate::leak::versions(node.settings.flavor, n);
    node.index_changed(idx);
    Ok(())
}
