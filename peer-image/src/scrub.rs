//! The scrub task: finds disk damage and repairs it from a good copy, instead of authoring (and
//! so spreading) it as a new version. What counts as damage, and what the scrub knows about each
//! file, is [`crate::damage`]'s.
//!
//! The task verifies files without a fresh verification every second (recently written or
//! applied ones), and re-hashes every file every `scrub_interval_ms` (a flipped bit keeps mtime,
//! size and inode, so the rescan, which skips files whose stat is unchanged, cannot see it).
//! Damage found by either (or by the scanner, through [`crate::damage::Damage::check`]) is queued;
//! the task fetches the indexed content by hash from a neighbour (verified by hash), and puts it
//! back with temp + rename. Verifications are saved to `<state>/scrub.json` at most every 5 s, and
//! at shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::beneath;
use crate::damage::{Verified, hash8, real_now_ns, settled};
use crate::edits::hash_open;
use crate::entry::Entry;
use crate::fetch::{Got, fetch_batch, fetch_large};
use crate::index::Stamp;
use crate::node::Node;
use crate::protocol::BATCH_FILE_MAX;
use crate::scan_queue::Urgency;

/// How often files without a fresh verification are verified.
const SETTLE_PERIOD: Duration = Duration::from_secs(1);

/// How often changed verifications are saved to `<state>/scrub.json`.
const SAVE_PERIOD: Duration = Duration::from_secs(5);

/// Verifies live files against the index: every one when `full`, else only those without a
/// verification of their current stamp. Outside the index lock while hashing.
fn verify(node: &Node, full: bool) {
    let candidates = node.damage.to_verify(&node.index(), full);
    if full {
        node.damage.forget_dead(&node.index());
    }
    for (rel, _) in candidates {
        if node.damage.is_damaged(&rel) {
            continue;
        }
        let full_path = node.full_path(&rel);
        let root = &node.settings.sync_dir;
        let read_at = real_now_ns();
        // Opened once, never through a symlink; the stat and the hash are of that file.
        let Ok(file) = beneath::open_file(root, &rel) else {
            continue;
        };
        let Ok(m1) = file.metadata() else {
            continue;
        };
        let stamp = Stamp::of(&m1);
        if !full && !settled(&stamp, read_at) {
            // Too recent to verify (or dated in the future): look again next time, unhashed.
            continue;
        }
        let Ok((hash, _)) = hash_open(file) else {
            continue;
        };
        let same = beneath::symlink_metadata(root, &rel).is_ok_and(|m2| Stamp::of(&m2) == stamp);
        if !same {
            continue; // being written: the scanner will see it
        }
        let mut idx = node.index();
        let Some(entry) = idx.get(&rel).filter(|e| !e.deleted).cloned() else {
            continue;
        };
        if entry.hash == hash {
            if settled(&stamp, read_at) {
                node.damage.record(
                    &rel,
                    Verified {
                        stamp,
                        hash8: hash8(&hash),
                    },
                );
                idx.set_stamp(&rel, Some(stamp));
            }
        } else if !node.damage.check(&node.metrics, &rel, &stamp, &entry, &hash) {
            // An edit that no event reported: the scanner authors it.
            drop(idx);
            let _ = node.scan_tx.send((full_path, Urgency::Now));
        }
    }
}

/// Fetches the content of `e` from the neighbours, in order, verified by hash.
async fn stage(node: &Arc<Node>, e: &Entry) -> Option<PathBuf> {
    for i in 0..node.peers.len() {
        if node.is_quarantined(&node.peers[i].short) {
            continue;
        }
        let got = if e.size <= BATCH_FILE_MAX {
            match fetch_batch(node, i, std::slice::from_ref(e)).await {
                Ok(mut v) => v.pop().unwrap_or(Got::Missing),
                Err(_) => Got::Missing,
            }
        } else {
            fetch_large(node, i, e).await
        };
        if let Got::Staged(t) = got {
            return Some(t);
        }
    }
    None
}

/// Puts the staged good content back over a damaged file, unless the file changed since the
/// damage was found (then the scanner looks at it again) or the entry moved on.
fn put_back(node: &Node, rel: &str, entry: &Entry, damaged: &Stamp, temp: &Path) -> bool {
    let root = &node.settings.sync_dir;
    // A foreign per-path lock holds the repair back like any apply. (No batch lock of our own:
    // `apply-<pid>.lock` is the fetcher's; the index lock already serialises us with its applies.)
    let (blocked, removed) = node.locks.blocked(rel);
    node.metrics.stale_locks_removed.inc_by(removed as u64);
    if blocked {
        return false;
    }
    let mut idx = node.index();
    let still =
        idx.get(rel) == Some(entry) && beneath::symlink_metadata(root, rel).is_ok_and(|m| Stamp::of(&m) == *damaged);
    if !still {
        return true; // nothing to repair any more
    }
    let placed = (|| -> std::io::Result<()> {
        std::fs::File::open(temp)?.sync_all()?;
        // Into the folder as opened (never through a symlink swapped in since the check).
        let target = beneath::parent(root, rel, false)?;
        target.rename_from(temp, rustix::fs::RenameFlags::empty())?;
        target.sync_dir()
    })();
    match placed {
        Ok(()) => {
            let s = beneath::symlink_metadata(root, rel).ok().map(|m| Stamp::of(&m));
            idx.set_stamp(rel, s);
            node.metrics.corruptions_repaired.inc();
            tracing::warn!(path = %rel, hash = %entry.hash, "repaired a damaged file from a good copy");
            true
        }
        Err(e) => {
            tracing::warn!(path = %rel, "cannot put back a damaged file: {e}");
            false
        }
    }
}

/// Repairs every queued damaged file it can; the others wait for the next round.
async fn repair(node: &Arc<Node>) {
    for (rel, (entry, stamp)) in node.damage.queued() {
        let current = node.index().get(&rel) == Some(&entry);
        if !current {
            // A newer version replaced it (and its content) meanwhile.
            node.damage.outdated(&rel);
            continue;
        }
        let Some(temp) = stage(node, &entry).await else {
            tracing::debug!(path = %rel, "no neighbour could send the good copy yet");
            continue;
        };
        let n = node.clone();
        let (r, e, t) = (rel.clone(), entry.clone(), temp.clone());
        let done = tokio::task::spawn_blocking(move || put_back(&n, &r, &e, &stamp, &t))
            .await
            .unwrap_or(false);
        let _ = std::fs::remove_file(&temp);
        if done {
            node.damage.repaired(&rel);
            let _ = node.scan_tx.send((node.full_path(&rel), Urgency::Now));
        }
    }
}

/// The scrub task: verifies recent files every second, everything every `scrub_interval`, and
/// repairs damage as soon as it is found.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut settle = tokio::time::interval(SETTLE_PERIOD);
    settle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut full = tokio::time::interval(node.settings.scrub_interval);
    full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    full.tick().await;
    // Saving rewrites every verification: at most every SAVE_PERIOD (and at shutdown), not after
    // every one-second pass while thousands of files are being synced.
    let mut saved = tokio::time::Instant::now();
    loop {
        let whole = tokio::select! {
            _ = stop.changed() => {
                let n = node.clone();
                let _ = tokio::task::spawn_blocking(move || n.damage.save()).await;
                return;
            }
            _ = node.damage.wait_queued() => None,
            _ = settle.tick() => Some(false),
            _ = full.tick() => Some(true),
        };
        if let Some(whole) = whole {
            let n = node.clone();
            let save = saved.elapsed() >= SAVE_PERIOD;
            if save {
                saved = tokio::time::Instant::now();
            }
            let _ = tokio::task::spawn_blocking(move || {
                verify(&n, whole);
                if save {
                    n.damage.save();
                }
            })
            .await;
        }
        if node.damage.any_queued() {
            repair(&node).await;
        }
    }
}
