//! Telling disk damage from user edits: what the scrub knows about every file ([`Damage`]: when
//! it last verified the file against its entry, and which files are damaged and wait for repair),
//! and the rule that decides. Shared by the scanner (which asks [`Damage::check`] before it
//! authors a version), the blob server (which does not serve damaged files) and the scrub task
//! ([`crate::scrub`], which verifies and repairs); the node holds it, so it sits below them all.
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
//! Verifications are persisted in `<state>/scrub.json` (saved by the scrub task), so damage done
//! while the daemon was down is recognised by the first scan after a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use crate::entry::Entry;
use crate::index::{Index, Stamp};
use crate::metrics::Metrics;
use crate::mutex::lock;

/// How long after its mtime a file must be read for the verification to count (well above a jiffy).
pub const SETTLE_NS: i128 = 100_000_000;

/// What the scrub saw when it last checked a file against its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub stamp: Stamp,
    /// First 8 bytes of the entry's hash that the content matched.
    pub hash8: u64,
}

/// What the scrub knows about the files of the sync folder (see the module doc).
#[derive(Default)]
pub struct Damage {
    file: Option<PathBuf>,
    verified: Mutex<HashMap<String, Verified>>,
    /// Damaged path -> (the entry whose content must be put back, the damaged file's stamp).
    damaged: Mutex<BTreeMap<String, (Entry, Stamp)>>,
    dirty: AtomicBool,
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

impl Damage {
    /// Loads the verifications persisted in `<state>/scrub.json` (none if absent or unreadable).
    pub fn load(state_dir: &Path) -> Damage {
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
        Damage {
            file: Some(file),
            verified: Mutex::new(verified),
            ..Default::default()
        }
    }

    /// Writes the verifications to `<state>/scrub.json` if they changed since the last save.
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        if !self.dirty.swap(false, Ordering::Relaxed) {
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

    /// Records a verification of `rel` (the scrub read it settled, and it matched its entry).
    pub fn record(&self, rel: &str, v: Verified) {
        lock(&self.verified).insert(rel.to_string(), v);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Called by the scanner (under the index lock) before it authors a version for a file whose
    /// content differs from its live entry: returns true, and queues a repair, when it is damage.
    pub fn check(&self, metrics: &Metrics, rel: &str, stamp: &Stamp, entry: &Entry, observed: &str) -> bool {
        if !is_damage(self.verified(rel).as_ref(), stamp, &entry.hash, observed) {
            return false;
        }
        let new = lock(&self.damaged)
            .insert(rel.to_string(), (entry.clone(), *stamp))
            .is_none();
        if new {
            metrics.corruptions_detected.inc();
            tracing::warn!(
                path = %rel,
                expected = %entry.hash,
                found = %observed,
                size = stamp.size,
                "damaged file (content changed, mtime kept): not a new version; repairing from a neighbour"
            );
        }
        self.wake.notify_one();
        true
    }

    /// Live paths of `idx`, with their hashes, that want a verification: every one when `full`,
    /// else those whose last verification is not of their current stamp and entry.
    pub fn to_verify(&self, idx: &Index, full: bool) -> Vec<(String, String)> {
        let verified = lock(&self.verified);
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
    }

    /// Forgets the verifications of paths that are no longer live in `idx`.
    pub fn forget_dead(&self, idx: &Index) {
        let mut verified = lock(&self.verified);
        let before = verified.len();
        verified.retain(|p, _| idx.get(p).is_some_and(|e| !e.deleted));
        if verified.len() != before {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// The damaged files waiting for repair: path -> (the entry whose content must be put back,
    /// the damaged file's stamp).
    pub fn queued(&self) -> Vec<(String, (Entry, Stamp))> {
        lock(&self.damaged)
            .iter()
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect()
    }

    pub fn any_queued(&self) -> bool {
        !lock(&self.damaged).is_empty()
    }

    /// `rel` needs no repair any more: a newer version replaced its entry.
    pub fn outdated(&self, rel: &str) {
        lock(&self.damaged).remove(rel);
    }

    /// `rel` was put back: no repair, and no verification (the file put back has a new stamp).
    pub fn repaired(&self, rel: &str) {
        lock(&self.damaged).remove(rel);
        lock(&self.verified).remove(rel);
    }

    /// Returns once damage is queued (see [`Damage::check`]).
    pub async fn wait_queued(&self) {
        self.wake.notified().await
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
        let s = Damage::load(dir.path());
        s.record(
            "a/b.txt",
            Verified {
                stamp: st(123_456_789_012_345, 3, 9),
                hash8: 42,
            },
        );
        s.save();
        let t = Damage::load(dir.path());
        assert_eq!(t.verified("a/b.txt").unwrap().stamp, st(123_456_789_012_345, 3, 9));
    }
}
