//! Local edits racing with received versions: an editor's safe-save (write a temp file outside
//! the folder, rename it over the synced file) landing while a remote version of the same file is
//! being applied must never be overwritten. It becomes a version and loses or wins like any
//! concurrent version (the loser as a conflict copy); it is never silently lost.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::util::*;

/// Writes `content` to a temp file next to the sync folder (same filesystem) and renames it over
/// `rel`, as an editor's safe-save does: the daemon sees one rename, with a new inode.
fn safe_save(p: &Peer, rel: &str, content: &[u8], tag: &str) {
    let tmp = p.root.join(format!("editor-{tag}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, p.sync_dir().join(rel)).unwrap();
}

/// Every content of `wanted` is somewhere (at its path or in a conflict copy) in every tree.
fn missing(c: &Cluster, wanted: &BTreeSet<Vec<u8>>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in &c.peers {
        let have: BTreeSet<Vec<u8>> = p.tree().into_values().collect();
        for w in wanted.difference(&have) {
            out.push((p.name.clone(), String::from_utf8_lossy(w).into_owned()));
        }
    }
    out
}

/// Three peers safe-save the same synced file within a few milliseconds of each other, round after
/// round (with staggered offsets, so that local saves land while remote versions of the same round
/// are in the middle of being applied): after each round converges, every peer's save of that
/// round exists on every peer.
#[test]
fn racing_safe_saves_are_never_lost() {
    let mut c = Cluster::new(3, &[(0, 1), (1, 2), (2, 0)]);
    // One peer with a slow apply (a loaded disk's intent fsync) widens the check-to-rename window.
    c.peers[2]
        .env
        .push(("SYNCPEER_TEST_APPLY_PAUSE_MS".into(), "30".into()));
    c.start_all();
    c.peers[0].write("shared/plan.txt", b"base");
    c.wait_trees(&Cluster::tree_of(&[("shared/plan.txt", b"base")]));
    let mut lost = Vec::new();
    for round in 0..24u64 {
        let wanted: BTreeSet<Vec<u8>> = (0..3).map(|i| format!("round {round} by p{i}").into_bytes()).collect();
        std::thread::scope(|s| {
            for (i, p) in c.peers.iter().enumerate() {
                // Offsets 0..=24 ms, a different order every round.
                let delay = Duration::from_millis((round * 7 + i as u64 * 11) % 25);
                s.spawn(move || {
                    std::thread::sleep(delay);
                    let content = format!("round {round} by p{i}");
                    safe_save(p, "shared/plan.txt", content.as_bytes(), &format!("{round}-{i}"));
                });
            }
        });
        c.wait_quiescent(Duration::from_millis(400));
        let m = missing(&c, &wanted);
        if !m.is_empty() {
            lost.push((round, m));
        }
    }
    assert!(
        lost.is_empty(),
        "acknowledged saves lost (round, [(peer, content)]): {lost:?}"
    );
    let tree = c.peers[0].tree();
    for p in &c.peers[1..] {
        assert_eq!(p.tree(), tree);
    }
}

/// The race made deterministic: p1 checks its file, then (slow disk) takes 800 ms to get to the
/// rename of p0's version; p1's user safe-saves in the middle. p1's save must survive on both
/// peers (as the winner or as a conflict copy), and so must p0's.
#[test]
fn a_safe_save_during_an_apply_is_not_overwritten() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    c.peers[1]
        .env
        .push(("SYNCPEER_TEST_APPLY_PAUSE_MS".into(), "800".into()));
    c.start_all();
    c.peers[0].write("shared/plan.txt", b"base");
    c.wait_trees(&Cluster::tree_of(&[("shared/plan.txt", b"base")]));
    std::thread::sleep(Duration::from_millis(1500)); // past the apply of "base" on p1
    safe_save(&c.peers[0], "shared/plan.txt", b"from p0", "p0");
    std::thread::sleep(Duration::from_millis(350)); // p1 is inside its apply of "from p0"
    safe_save(&c.peers[1], "shared/plan.txt", b"from p1", "p1");
    let wanted: BTreeSet<Vec<u8>> = [b"from p0".to_vec(), b"from p1".to_vec()].into();
    wait_until("both saves on both peers", TIMEOUT, || {
        c.converged() && missing(&c, &wanted).is_empty()
    });
    c.wait_quiescent(Duration::from_millis(800));
    assert!(missing(&c, &wanted).is_empty(), "{:?}", missing(&c, &wanted));
    assert_eq!(c.peers[0].tree(), c.peers[1].tree());
    assert_eq!(c.peers[0].tree().len(), 2, "{:?}", c.peers[0].tree());
}

/// The conflict move: p1 pulls from p0 but not the other way round, so p1 resolves p1's save
/// against p0's later (winning) save before any conflict copy exists: p1 moves its own file aside
/// as the copy (after re-checking that file) and puts p0's content in place.
#[test]
fn a_losing_local_save_is_moved_to_its_conflict_copy() {
    let mut c = Cluster::new(2, &[]);
    let p0 = format!(
        "  - name: p0\n    addr: {}\n    public_key: {}\n",
        c.peers[0].addr(),
        c.peers[0].pubkey()
    );
    c.peers[1].extra_peers = p0;
    // p0 must know p1's key to let it in (TLS), but never reaches it: p1's address is nowhere.
    c.peers[0].extra_peers = probe_yaml("p1", &c.peers[1].id);
    c.start_all();
    c.peers[0].write("shared/plan.txt", b"base");
    wait_until("base on p1", TIMEOUT, || {
        c.peers[1].read("shared/plan.txt").as_deref() == Some(&b"base"[..])
    });
    safe_save(&c.peers[1], "shared/plan.txt", b"from p1", "p1");
    std::thread::sleep(Duration::from_millis(300)); // p1 authors its save, p0 never learns it
    safe_save(&c.peers[0], "shared/plan.txt", b"from p0", "p0");
    wait_until("p0's save in place on p1, p1's as a conflict copy", TIMEOUT, || {
        let t = c.peers[1].tree();
        t.get("shared/plan.txt").map(Vec::as_slice) == Some(&b"from p0"[..])
            && t.iter()
                .any(|(k, v)| k.starts_with("shared/plan.sync-conflict-") && v == b"from p1")
    });
    assert_eq!(c.peers[1].tree().len(), 2, "{:?}", c.peers[1].tree());
}
