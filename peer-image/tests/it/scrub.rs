//! Issue 5 (disk corruption): a file damaged in place with its mtime kept (a flipped byte, a
//! truncation) is repaired from a neighbour and never authored as a version; a real edit still is.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::util::*;

/// Damages `rel` on `p` the way the orchestrator's `disk` fault does: flip the middle byte, or
/// truncate to half, then put the mtime back.
fn damage(p: &Peer, rel: &str, truncate: bool) {
    let path = p.sync_dir().join(rel);
    let meta = std::fs::metadata(&path).unwrap();
    let mtime = meta.modified().unwrap();
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    if truncate {
        f.set_len(meta.len() / 2).unwrap();
    } else {
        let at = meta.len() / 2;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 0x5a;
        f.write_all_at(&b, at).unwrap();
    }
    f.set_modified(mtime).unwrap();
    f.sync_all().unwrap();
}

/// The scrub persists what it verified: wait until `rel` is in it (verification is what makes
/// damage recognisable, and it happens once the file is older than the settle window).
fn wait_verified(p: &Peer, rel: &str) {
    wait_until(&format!("{rel} verified on {}", p.name), TIMEOUT, || {
        std::fs::read_to_string(p.state_dir().join("scrub.json")).is_ok_and(|s| s.contains(rel))
    });
}

fn content(seed: u8) -> Vec<u8> {
    (0..64 * 1024u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn a_flipped_byte_and_a_truncation_are_repaired_and_never_spread() {
    let mut c = Cluster::new(3, &[(0, 1), (1, 2), (2, 0)]);
    c.start_all();
    let a = content(1);
    let b = content(2);
    c.peers[0].write("vault/a.bin", &a);
    c.peers[0].write("vault/b.bin", &b);
    let expected: BTreeMap<String, Vec<u8>> = Cluster::tree_of(&[("vault/a.bin", &a), ("vault/b.bin", &b)]);
    c.wait_trees(&expected);
    wait_verified(&c.peers[1], "vault/a.bin");
    wait_verified(&c.peers[2], "vault/b.bin");
    let digest = c.peers[0].digest();

    damage(&c.peers[1], "vault/a.bin", false);
    damage(&c.peers[2], "vault/b.bin", true);
    // Until repaired (and after), the other peers only ever hold the good content.
    wait_until("both files repaired", TIMEOUT, || {
        for (i, p) in c.peers.iter().enumerate() {
            let t = p.tree();
            if i != 1 {
                assert_eq!(t.get("vault/a.bin"), Some(&a), "damage spread to p{i}");
            }
            if i != 2 {
                assert_eq!(t.get("vault/b.bin"), Some(&b), "damage spread to p{i}");
            }
        }
        c.peers[1].read("vault/a.bin").as_ref() == Some(&a) && c.peers[2].read("vault/b.bin").as_ref() == Some(&b)
    });
    c.wait_quiescent(Duration::from_millis(1500));
    for p in &c.peers {
        assert_eq!(p.tree(), expected);
        assert_eq!(p.digest(), digest, "no version was authored for the damage");
    }
    let m1 = c.peers[1].metrics();
    let m2 = c.peers[2].metrics();
    assert_eq!(m1.sum("syncpeer_corruptions_detected_total", &[]), 1.0);
    assert_eq!(m1.sum("syncpeer_corruptions_repaired_total", &[]), 1.0);
    assert_eq!(m2.sum("syncpeer_corruptions_repaired_total", &[]), 1.0);
    let authored: f64 = c
        .peers
        .iter()
        .map(|p| p.metrics().sum("syncpeer_local_changes_total", &[]))
        .sum();
    assert_eq!(authored, 2.0, "only the two writes are versions");

    // A real edit (the mtime moves) is still a version, and spreads.
    std::thread::sleep(Duration::from_millis(20));
    let edit = content(3);
    c.peers[1].write("vault/a.bin", &edit);
    let expected = Cluster::tree_of(&[("vault/a.bin", &edit), ("vault/b.bin", &b)]);
    c.wait_trees(&expected);
    assert_eq!(c.peers[1].metrics().sum("syncpeer_local_changes_total", &[]), 1.0);
    assert_eq!(
        c.peers[1].metrics().sum("syncpeer_corruptions_detected_total", &[]),
        1.0
    );
}

/// Damage done while the daemon was down is recognised at the next start (verifications persist).
#[test]
fn damage_done_while_stopped_is_repaired_at_restart() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    c.start_all();
    let a = content(7);
    c.peers[0].write("a.bin", &a);
    c.wait_trees(&Cluster::tree_of(&[("a.bin", &a)]));
    wait_verified(&c.peers[1], "a.bin");
    let digest = c.peers[0].digest();
    assert_eq!(c.peers[1].stop(), Some(0));
    damage(&c.peers[1], "a.bin", false);
    c.start(1);
    wait_until("repaired after restart", TIMEOUT, || {
        c.peers[1].read("a.bin").as_ref() == Some(&a)
    });
    c.wait_quiescent(Duration::from_millis(1000));
    assert_eq!(c.peers[0].read("a.bin").as_ref(), Some(&a));
    assert_eq!(c.peers[1].digest(), digest);
    assert_eq!(
        c.peers[1].metrics().sum("syncpeer_corruptions_repaired_total", &[]),
        1.0
    );
}

/// Bit rot reports no event: damage written through a hard link outside the sync folder (inotify
/// reports it to the link's folder only) is found by the periodic full scrub alone, and repaired.
#[test]
fn the_periodic_scrub_finds_damage_no_event_reported() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    c.peers[1].extra_yaml = "scrub_interval_ms: 700\nrescan_interval_ms: 600000\n".into();
    c.start_all();
    let a = content(9);
    c.peers[0].write("deep/a.bin", &a);
    c.wait_trees(&Cluster::tree_of(&[("deep/a.bin", &a)]));
    wait_verified(&c.peers[1], "deep/a.bin");
    let digest = c.peers[0].digest();
    let outside = c.peers[1].root.join("bitrot-link");
    std::fs::hard_link(c.peers[1].sync_dir().join("deep/a.bin"), &outside).unwrap();
    let mtime = std::fs::metadata(&outside).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&outside).unwrap();
    f.write_all_at(b"\xff", 100).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    assert_ne!(
        c.peers[1].read("deep/a.bin").as_ref(),
        Some(&a),
        "the damage is visible in the folder"
    );
    wait_until("repaired by the scrub", TIMEOUT, || {
        c.peers[1].read("deep/a.bin").as_ref() == Some(&a)
    });
    c.wait_quiescent(Duration::from_millis(1000));
    assert_eq!(c.peers[0].read("deep/a.bin").as_ref(), Some(&a));
    assert_eq!(c.peers[1].digest(), digest, "no version was authored");
    assert_eq!(
        c.peers[1].metrics().sum("syncpeer_corruptions_repaired_total", &[]),
        1.0
    );
}
