//! Scrub: tells disk damage from user edits, and repairs damage from a good copy instead of
//! authoring (and so spreading) it as a new version.
//!
//! The rule ([`is_damage`]): a file whose content no longer hashes to its index entry is **damaged**
//! (not edited) when its mtime (nanoseconds) and inode are exactly those the scrub recorded when it
//! last *verified* that file against the same entry. Writing through the filesystem always moves the
//! mtime, so an unchanged mtime with changed content (or a changed size: a torn write) is what a
//! failing disk, or the chaos `disk` fault, leaves behind.
//!
//! A verification is recorded only when it cannot be "racy" (git's racy-clean problem): the file
//! must have been read at least [`SETTLE_NS`] after its mtime, by the kernel's real clock. File
//! timestamps come from a coarse clock (one jiffy, 1-10 ms): a write in the same tick as an earlier
//! one keeps the mtime, so a file hashed right after a write proves nothing about what an equal
//! mtime means later. The real clock is read with a raw `clock_gettime` syscall, because libfaketime
//! (the lab's clock faults) skews the libc call but not the kernel's file timestamps.
//!
//! The scrub task verifies files without a fresh verification every second (recently written or
//! applied ones), and re-hashes every file every `scrub_interval_ms` (a flipped bit keeps mtime,
//! size and inode, so the rescan, which skips files whose stat is unchanged, cannot see it).
//! Damage found by either (or by the scanner, through [`check`]) is queued; the task fetches the
//! indexed content by hash from a neighbour (verified by hash), and puts it back with temp + rename.
//! Verifications are persisted in `<state>/scrub.json` (at most every 5 s, and at shutdown), so
//! damage done while the daemon was down is recognised by the first scan after a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::beneath;
use crate::edits::hash_open;
use crate::entry::Entry;
use crate::fetch::{Got, fetch_batch, fetch_large};
use crate::index::Stamp;
use crate::mutex::lock;
use crate::node::Node;
use crate::protocol::BATCH_FILE_MAX;

/// How long after its mtime a file must be read for the verification to count (well above a jiffy).
pub const SETTLE_NS: i128 = 100_000_000;

/// How often files without a fresh verification are verified.
const SETTLE_PERIOD: Duration = Duration::from_secs(1);

/// How often changed verifications are saved to `<state>/scrub.json`.
const SAVE_PERIOD: Duration = Duration::from_secs(5);

/// What the scrub saw when it last checked a file against its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub stamp: Stamp,
    /// First 8 bytes of the entry's hash that the content matched.
    pub hash8: u64,
}

/// Scrub state shared by the scanner (which asks [`check`]), the blob server (which does not serve
/// damaged files) and the scrub task.
#[derive(Default)]
pub struct Scrub {
    file: Option<PathBuf>,
    verified: Mutex<HashMap<String, Verified>>,
    /// Damaged path -> (the entry whose content must be put back, the damaged file's stamp).
    damaged: Mutex<BTreeMap<String, (Entry, Stamp)>>,
    dirty: std::sync::atomic::AtomicBool,
    wake: Notify,
}

/// The kernel's real wall clock in nanoseconds, bypassing libfaketime (see the module doc).
pub fn real_now_ns() -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into a valid pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clock_gettime,
            libc::CLOCK_REALTIME,
            &mut ts as *mut libc::timespec,
        )
    };
    if r != 0 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return d.as_nanos() as i128;
    }
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// First 8 bytes of a hex hash (0 for a tombstone's empty hash).
pub fn hash8(hex_hash: &str) -> u64 {
    hex_hash
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// The rule: the file at `now` hashes to `observed`, its entry says `indexed`; `verified` is the
/// last verification. Damage = content differs while mtime and inode are exactly as verified
/// against this same entry. Size may differ (a truncation keeps the mtime too).
pub fn is_damage(verified: Option<&Verified>, now: &Stamp, indexed: &str, observed: &str) -> bool {
    let Some(v) = verified else { return false };
    indexed != observed
        && !indexed.is_empty()
        && v.hash8 == hash8(indexed)
        && v.stamp.mtime_ns == now.mtime_ns
        && v.stamp.ino == now.ino
}

/// Whether a verification that read the file starting at `read_at_ns` may be recorded.
pub fn settled(stamp: &Stamp, read_at_ns: i128) -> bool {
    read_at_ns >= stamp.mtime_ns + SETTLE_NS
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Saved(Vec<(String, i64, u64, u64, u64)>);

impl Scrub {
    /// Loads the verifications persisted in `<state>/scrub.json` (none if absent or unreadable).
    pub fn load(state_dir: &Path) -> Scrub {
        let file = state_dir.join("scrub.json");
        let mut verified = HashMap::new();
        if let Ok(bytes) = std::fs::read(&file)
            && let Ok(Saved(rows)) = serde_json::from_slice::<Saved>(&bytes)
        {
            for (path, mtime, size, ino, hash8) in rows {
                let stamp = Stamp {
                    mtime_ns: mtime as i128,
                    size,
                    ino,
                };
                verified.insert(path, Verified { stamp, hash8 });
            }
        }
        Scrub {
            file: Some(file),
            verified: Mutex::new(verified),
            ..Default::default()
        }
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        if !self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let rows: Vec<_> = lock(&self.verified)
            .iter()
            .map(|(p, v)| (p.clone(), v.stamp.mtime_ns as i64, v.stamp.size, v.stamp.ino, v.hash8))
            .collect();
        let tmp = file.with_extension("json.tmp");
        let r = (|| -> std::io::Result<()> {
            std::fs::write(&tmp, serde_json::to_vec(&Saved(rows))?)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, file)
        })();
        if let Err(e) = r {
            tracing::warn!("cannot save scrub verifications: {e}");
        }
    }

    pub fn is_damaged(&self, rel: &str) -> bool {
        lock(&self.damaged).contains_key(rel)
    }

    fn verified(&self, rel: &str) -> Option<Verified> {
        lock(&self.verified).get(rel).copied()
    }

    fn record(&self, rel: &str, v: Verified) {
        lock(&self.verified).insert(rel.to_string(), v);
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Called by the scanner (under the index lock) before it authors a version for a file whose
/// content differs from its live entry: returns true, and queues a repair, when it is damage.
pub fn check(node: &Node, rel: &str, stamp: &Stamp, entry: &Entry, observed: &str) -> bool {
    let scrub = &node.scrub;
    if !is_damage(scrub.verified(rel).as_ref(), stamp, &entry.hash, observed) {
        return false;
    }
    let new = lock(&scrub.damaged)
        .insert(rel.to_string(), (entry.clone(), *stamp))
        .is_none();
    if new {
        node.metrics.corruptions_detected.inc();
        tracing::warn!(
            path = %rel,
            expected = %entry.hash,
            found = %observed,
            size = stamp.size,
            "damaged file (content changed, mtime kept): not a new version; repairing from a neighbour"
        );
    }
    scrub.wake.notify_one();
    true
}

/// Verifies live files against the index: every one when `full`, else only those without a
/// verification of their current stamp. Outside the index lock while hashing.
fn verify(node: &Node, full: bool) {
    let candidates: Vec<(String, String)> = {
        let idx = node.index();
        let verified = lock(&node.scrub.verified);
        idx.iter()
            .filter(|e| !e.deleted)
            .filter(|e| {
                full || match (verified.get(&e.path), idx.stamp(&e.path)) {
                    (Some(v), Some(s)) => v.stamp != s || v.hash8 != hash8(&e.hash),
                    (Some(v), None) => v.hash8 != hash8(&e.hash),
                    (None, _) => true,
                }
            })
            .map(|e| (e.path.clone(), e.hash.clone()))
            .collect()
    };
    if full {
        // Forget verifications of paths that are no longer live.
        let idx = node.index();
        let mut verified = lock(&node.scrub.verified);
        let before = verified.len();
        verified.retain(|p, _| idx.get(p).is_some_and(|e| !e.deleted));
        if verified.len() != before {
            node.scrub.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    for (rel, _) in candidates {
        if node.scrub.is_damaged(&rel) {
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
                node.scrub.record(
                    &rel,
                    Verified {
                        stamp,
                        hash8: hash8(&hash),
                    },
                );
                idx.set_stamp(&rel, Some(stamp));
            }
        } else if !check(node, &rel, &stamp, &entry, &hash) {
            // An edit that no event reported: the scanner authors it.
            drop(idx);
            let _ = node.scan_tx.send((full_path, crate::scanner::Urgency::Now));
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
    let todo: Vec<(String, (Entry, Stamp))> = lock(&node.scrub.damaged)
        .iter()
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect();
    for (rel, (entry, stamp)) in todo {
        let current = node.index().get(&rel) == Some(&entry);
        if !current {
            // A newer version replaced it (and its content) meanwhile.
            lock(&node.scrub.damaged).remove(&rel);
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
            lock(&node.scrub.damaged).remove(&rel);
            lock(&node.scrub.verified).remove(&rel);
            let _ = node.scan_tx.send((node.full_path(&rel), crate::scanner::Urgency::Now));
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
                let _ = tokio::task::spawn_blocking(move || n.scrub.save()).await;
                return;
            }
            _ = node.scrub.wake.notified() => None,
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
                    n.scrub.save();
                }
            })
            .await;
        }
        if !lock(&node.scrub.damaged).is_empty() {
            repair(&node).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(mtime_ns: i128, size: u64, ino: u64) -> Stamp {
        Stamp { mtime_ns, size, ino }
    }

    const H1: &str = "1111111111111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const H2: &str = "2222222222222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn damage_is_changed_content_with_the_verified_mtime_and_inode() {
        let v = Verified {
            stamp: st(5_000, 10, 7),
            hash8: hash8(H1),
        };
        // A flipped bit: same mtime, size and inode.
        assert!(is_damage(Some(&v), &st(5_000, 10, 7), H1, H2));
        // A truncation: same mtime and inode, smaller.
        assert!(is_damage(Some(&v), &st(5_000, 5, 7), H1, H2));
        // A user edit moves the mtime.
        assert!(!is_damage(Some(&v), &st(5_001, 10, 7), H1, H2));
        // A file replaced by rename has another inode.
        assert!(!is_damage(Some(&v), &st(5_000, 10, 8), H1, H2));
        // Never verified (or verified against another entry): not provably damage.
        assert!(!is_damage(None, &st(5_000, 10, 7), H1, H2));
        assert!(!is_damage(Some(&v), &st(5_000, 10, 7), H2, H1));
        // Content matching the entry is no damage.
        assert!(!is_damage(Some(&v), &st(5_000, 10, 7), H1, H1));
    }

    #[test]
    fn a_file_read_right_after_its_write_is_not_settled() {
        let s = st(1_000_000_000, 1, 1);
        assert!(!settled(&s, 1_000_000_000 + 2_000_000));
        assert!(settled(&s, 1_000_000_000 + SETTLE_NS));
    }

    #[test]
    fn hash8_reads_the_first_sixteen_hex_digits() {
        assert_eq!(hash8(H1), 0x1111_1111_1111_1111);
        assert_eq!(hash8(""), 0);
    }

    #[test]
    fn verifications_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let s = Scrub::load(dir.path());
        s.record(
            "a/b.txt",
            Verified {
                stamp: st(123_456_789_012_345, 3, 9),
                hash8: 42,
            },
        );
        s.save();
        let t = Scrub::load(dir.path());
        assert_eq!(t.verified("a/b.txt").unwrap().stamp, st(123_456_789_012_345, 3, 9));
    }
}
