//! The `legacy` flavor (`flavor: legacy`, `--flavor legacy`, `SYNCPEER_FLAVOR=legacy`): the seed
//! system's original design, reproduced on purpose so that the chaos checkers can be shown catching
//! its bugs (issue 6). Never use it for data you care about. Its rules, against the default ones:
//!
//! * **Order: last-writer-wins by the author's wall clock** ([`resolve`]). A version's timestamp
//!   is the author's `SystemTime::now()` (so libfaketime's skew applies) and the larger timestamp
//!   wins, whatever either side had seen: version vectors are carried (entries must be signed
//!   over something) but never consulted, the HLC is not used, and there are no conflict copies.
//!   A peer whose clock is an hour ahead wins every write for an hour: others' later writes are
//!   silently lost.
//! * **Echo suppression by a lock file held for one second** ([`hold_echo`], [`echo_held`]):
//!   before writing a received version, `<state>/legacy-echo/<hash of path>.lock` is written with
//!   the wall-clock time; a file event on that path within 1 s is taken as our own write. After
//!   that, a change is detected by metadata (mtime, size, inode differ from what was recorded),
//!   not by content: an edit within a second of an apply is lost, and a touched file becomes a
//!   new version with the same content.
//! * **Deletes leave no tombstone** ([`forget_due`]): a delete is published as a tombstone only
//!   for [`TOMBSTONE_GRACE`] (the time a connected neighbour takes to pull it), then the entry is
//!   forgotten. A peer that missed the delete (partitioned) still has the file after the heal and
//!   offers it as a new file: a zombie.
//! * **No hash check on apply**: received content is written without comparing its BLAKE3 with
//!   the signed hash (only its size is checked).
//!
//! The flavor is a value of the node's settings ([`crate::config::Flavor::Legacy`], asked through
//! [`crate::node::Node::legacy`]), not a switch of the process: this module holds the flavor's
//! rules as plain functions of what they need, and the code that runs them picks them where the
//! default rules would run: [`crate::node::Node::resolve`], [`crate::edits::reconcile`], the echo
//! locks of [`crate::apply::apply_batch`], the hash checks of [`crate::fetch`], and the daemon's
//! task that forgets deletes (instead of the scrub).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::entry::{Entry, Resolution};
use crate::hlc::{Hlc, wall_ms};
use crate::index::Stamp;

/// How long a received write's echo lock is held.
pub const ECHO_HOLD_MS: u64 = 1000;

/// How long a delete stays visible to neighbours before it is forgotten.
pub const TOMBSTONE_GRACE: Duration = Duration::from_secs(1);

/// The order: the larger author wall-clock time wins (ties by author, hash, delete flag, so that
/// every peer picks the same one). Version vectors are ignored; the loser is dropped.
fn lww_key(e: &Entry) -> (u64, &str, &str, bool) {
    (e.hlc.ms, &e.author, &e.hash, e.deleted)
}

/// Last-writer-wins by the author's wall clock, without conflict copies (pure).
pub fn resolve(local: Option<&Entry>, remote: &Entry) -> Resolution {
    let Some(local) = local else {
        return Resolution::TakeRemote { copy: None };
    };
    if local == remote {
        return Resolution::Same;
    }
    if lww_key(remote) > lww_key(local) {
        Resolution::TakeRemote { copy: None }
    } else {
        Resolution::Ignore
    }
}

/// A version's timestamp: the author's own wall clock, nothing else.
pub fn timestamp() -> Hlc {
    Hlc { ms: wall_ms(), c: 0 }
}

/// Whether an echo lock written at `written_ms` still holds at `now_ms` (pure). A lock from the
/// future (the clock moved back) holds until the clock catches up, as in the seed.
pub fn holds(written_ms: u64, now_ms: u64) -> bool {
    written_ms.saturating_add(ECHO_HOLD_MS) > now_ms
}

/// The echo lock of `rel`, under the node's state folder `state_dir`.
fn echo_lock(state_dir: &Path, rel: &str) -> PathBuf {
    state_dir
        .join("legacy-echo")
        .join(format!("{}.lock", &blake3::hash(rel.as_bytes()).to_hex()[..24]))
}

/// Takes the echo locks of paths about to be written by sync.
pub fn hold_echo<'a>(state_dir: &Path, paths: impl IntoIterator<Item = &'a str>) {
    let now = wall_ms().to_string();
    for rel in paths {
        let p = echo_lock(state_dir, rel);
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(&p, &now) {
            tracing::warn!(path = %rel, "cannot write the echo lock: {e}");
        }
    }
}

/// Whether a file event on `rel` is our own write (its echo lock holds); an expired lock is removed.
pub fn echo_held(state_dir: &Path, rel: &str) -> bool {
    let p = echo_lock(state_dir, rel);
    let Ok(text) = std::fs::read_to_string(&p) else {
        return false;
    };
    let held = text.trim().parse::<u64>().is_ok_and(|t| holds(t, wall_ms()));
    if !held {
        let _ = std::fs::remove_file(&p);
    }
    held
}

/// Whether a present file is a local change (pure): never while its echo lock holds; otherwise
/// when its stat differs from the recorded one, whatever the content. With no stat recorded (the
/// first look after a start) the content decides, or every restart would re-author every file.
pub fn is_change(
    echo_held: bool,
    recorded: Option<Stamp>,
    observed: &Stamp,
    indexed: Option<&str>,
    observed_hash: &str,
) -> bool {
    if echo_held {
        return false;
    }
    match (indexed, recorded) {
        (None, _) => true,
        (Some(_), Some(r)) => r != *observed,
        (Some(h), None) => h != observed_hash,
    }
}

/// Tombstones seen longer than `grace` ago (pure): `seen` is updated with the current ones.
pub fn forget_due(
    seen: &mut HashMap<String, Instant>,
    tombstones: Vec<String>,
    now: Instant,
    grace: Duration,
) -> Vec<String> {
    let current: std::collections::HashSet<&String> = tombstones.iter().collect();
    seen.retain(|p, _| current.contains(p));
    let mut due = Vec::new();
    for p in tombstones {
        let since = *seen.entry(p.clone()).or_insert(now);
        if now.duration_since(since) >= grace {
            due.push(p);
        }
    }
    for p in &due {
        seen.remove(p);
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::version_vector::VersionVector;

    fn v(me: &Identity, counters: &[(&Identity, u64)], ms: u64, content: &str, deleted: bool) -> Entry {
        let mut vv = VersionVector::new();
        for (who, n) in counters {
            vv.set(&who.id().short(), *n);
        }
        let hash = if deleted {
            String::new()
        } else {
            blake3::hash(content.as_bytes()).to_hex().to_string()
        };
        Entry::author(me, "doc/report.txt".into(), vv, hash, 1, deleted, Hlc { ms, c: 0 })
    }

    #[test]
    fn the_later_wall_clock_wins_even_against_a_causally_later_write() {
        let p1 = Identity::from_seed([1; 32]);
        let p2 = Identity::from_seed([2; 32]);
        // p1's clock is an hour ahead; p2 saw p1's write and overwrote it 4 s later.
        let hour = 3_600_000;
        let first = v(&p1, &[(&p1, 1)], 1_000 + hour, "from p1", false);
        let later = v(&p2, &[(&p1, 1), (&p2, 1)], 5_000, "from p2", false);
        // The default rule keeps the causally later write; the legacy rule loses it, on every peer.
        assert!(matches!(
            crate::entry::resolve(Some(&first), &later),
            Resolution::TakeRemote { .. }
        ));
        assert_eq!(resolve(Some(&first), &later), Resolution::Ignore);
        assert_eq!(resolve(Some(&later), &first), Resolution::TakeRemote { copy: None });
        // Concurrent writes leave no conflict copy: the loser is gone.
        let a = v(&p1, &[(&p1, 2)], 10, "a", false);
        let b = v(&p2, &[(&p2, 2)], 20, "b", false);
        assert_eq!(resolve(Some(&a), &b), Resolution::TakeRemote { copy: None });
        assert_eq!(resolve(Some(&b), &a), Resolution::Ignore);
        assert_eq!(resolve(Some(&a), &a), Resolution::Same);
        assert_eq!(resolve(None, &a), Resolution::TakeRemote { copy: None });
    }

    #[test]
    fn a_delete_wins_only_by_its_timestamp() {
        let p1 = Identity::from_seed([1; 32]);
        let p2 = Identity::from_seed([2; 32]);
        let file = v(&p1, &[(&p1, 1)], 9_000, "x", false);
        let delete = v(&p2, &[(&p1, 1), (&p2, 1)], 8_000, "", true);
        assert_eq!(resolve(Some(&file), &delete), Resolution::Ignore);
        // Once the delete is forgotten, the file is simply new again (the zombie).
        assert_eq!(resolve(None, &file), Resolution::TakeRemote { copy: None });
    }

    #[test]
    fn changes_are_stat_changes_unless_an_echo_lock_holds() {
        let s = |mtime_ns| Stamp {
            mtime_ns,
            size: 3,
            ino: 1,
        };
        // Our own write, within the lock's second: never a change, even with new content.
        assert!(!is_change(true, Some(s(1)), &s(2), Some("h"), "other"));
        // A touch (new mtime, same content) is a new version: the seed's metadata loop.
        assert!(is_change(false, Some(s(1)), &s(2), Some("h"), "h"));
        // Same stat: nothing happened, whatever the content (a bit flip goes unnoticed).
        assert!(!is_change(false, Some(s(1)), &s(1), Some("h"), "other"));
        // First look after a start: the content decides.
        assert!(!is_change(false, None, &s(1), Some("h"), "h"));
        assert!(is_change(false, None, &s(1), Some("h"), "other"));
        // A file the index does not have (or has deleted) is new.
        assert!(is_change(false, None, &s(1), None, "h"));
    }

    #[test]
    fn an_echo_lock_holds_for_one_second() {
        assert!(holds(10_000, 10_000));
        assert!(holds(10_000, 10_999));
        assert!(!holds(10_000, 11_000));
        // Written by a clock that was ahead: still held until the clock catches up.
        assert!(holds(20_000, 10_000));
    }

    #[test]
    fn deletes_are_forgotten_after_the_grace_period() {
        let t0 = Instant::now();
        let g = Duration::from_secs(1);
        let mut seen = HashMap::new();
        assert!(forget_due(&mut seen, vec!["a".into()], t0, g).is_empty());
        assert!(forget_due(&mut seen, vec!["a".into(), "b".into()], t0 + g / 2, g).is_empty());
        assert_eq!(forget_due(&mut seen, vec!["a".into(), "b".into()], t0 + g, g), ["a"]);
        // A path that is live again is no longer tracked.
        assert!(forget_due(&mut seen, vec![], t0 + g * 2, g).is_empty());
        assert!(seen.is_empty());
    }
}
