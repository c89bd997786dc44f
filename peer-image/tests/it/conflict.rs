use std::collections::BTreeSet;
use std::time::Duration;

use crate::util::*;

/// Offline concurrent edits of one file on 3 peers: identical trees everywhere, one winner plus
/// two conflict copies named the same on every peer, and no conflict after that.
#[test]
fn three_concurrent_writers_converge_with_identical_conflict_copies() {
    let mut c = Cluster::new(3, &[(0, 1), (1, 2), (2, 0)]);
    for (i, p) in c.peers.iter().enumerate() {
        p.write("doc/report.txt", format!("version from p{i}").as_bytes());
    }
    c.start_all();
    wait_until("3 files everywhere", TIMEOUT, || {
        c.converged() && c.peers.iter().all(|p| p.tree().len() == 3)
    });
    let settled = c.wait_quiescent(Duration::from_millis(1500));
    let tree = c.peers[0].tree();
    for p in &c.peers[1..] {
        assert_eq!(p.tree(), tree);
    }
    let contents: BTreeSet<Vec<u8>> = tree.values().cloned().collect();
    let expected: BTreeSet<Vec<u8>> = (0..3).map(|i| format!("version from p{i}").into_bytes()).collect();
    assert_eq!(contents, expected, "a write was lost");
    let copies: Vec<&String> = tree.keys().filter(|k| k.contains(".sync-conflict-")).collect();
    assert_eq!(copies.len(), 2, "{tree:?}");
    for k in copies {
        assert!(k.starts_with("doc/report.sync-conflict-") && k.ends_with(".txt"), "{k}");
    }
    let conflicts = |c: &Cluster| -> f64 {
        c.peers
            .iter()
            .map(|p| p.metrics().sum("syncpeer_conflicts_total", &[]))
            .sum()
    };
    let n = conflicts(&c);
    assert!(n >= 2.0);
    // Another change elsewhere runs the protocol again: no new conflict appears.
    c.peers[1].write("other.txt", b"x");
    wait_until("other.txt everywhere", TIMEOUT, || {
        c.converged() && c.peers.iter().all(|p| p.tree().len() == 4)
    });
    assert!(c.wait_quiescent(Duration::from_millis(1000)) > settled);
    assert_eq!(conflicts(&c), n);
    // Editing the winner after the conflict is an ordinary update everywhere.
    c.peers[2].write("doc/report.txt", b"resolved by hand");
    wait_until("edit everywhere", TIMEOUT, || {
        c.converged()
            && c.peers
                .iter()
                .all(|p| p.read("doc/report.txt").as_deref() == Some(&b"resolved by hand"[..]))
    });
    assert_eq!(conflicts(&c), n);
}

/// Writers racing while running: whatever the interleaving, the trees end identical and stay so.
#[test]
fn three_live_writers_converge() {
    let mut c = Cluster::new(3, &[(0, 1), (1, 2), (2, 0)]);
    c.start_all();
    for round in 0..5 {
        std::thread::scope(|s| {
            for (i, p) in c.peers.iter().enumerate() {
                s.spawn(move || p.write("hot.txt", format!("round {round} by p{i}").as_bytes()));
            }
        });
    }
    c.wait_quiescent(Duration::from_millis(1500));
    let tree = c.peers[0].tree();
    assert!(tree.contains_key("hot.txt"));
    for p in &c.peers[1..] {
        assert_eq!(p.tree(), tree);
    }
    // Every surviving content was written by someone.
    for (k, v) in &tree {
        let s = String::from_utf8(v.clone()).unwrap();
        assert!(s.starts_with("round "), "{k}: {s}");
    }
}
