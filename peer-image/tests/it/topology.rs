use std::time::Duration;

use crate::util::*;

/// A-B-C-A: one create settles with a bounded number of messages, then only summaries move.
#[test]
fn triangle_single_create_settles_without_loop() {
    let mut c = Cluster::new(3, &[(0, 1), (1, 2), (2, 0)]);
    c.start_all();
    let before = c.wait_quiescent(Duration::from_millis(800));
    c.peers[0].write("loop.txt", b"once");
    c.wait_trees(&Cluster::tree_of(&[("loop.txt", b"once")]));
    let settled = c.wait_quiescent(Duration::from_millis(1500));
    let used = settled - before;
    eprintln!("triangle: {used} non-summary messages and changes for one create");
    // 1 local change + 2 applies, hints and pulls along 3 edges, each message counted at both
    // ends; a loop would be unbounded.
    assert!(used <= 60.0, "too much activity for one create: {used}");
    // Flat for several more anti-entropy rounds while summaries keep flowing.
    let summaries = |c: &Cluster| -> f64 {
        c.peers
            .iter()
            .map(|p| p.metrics().sum("syncpeer_messages_sent_total", &[("kind", "summary")]))
            .sum()
    };
    let s0 = summaries(&c);
    // 3 peers x 2 neighbours: 18 more summaries is at least 3 rounds on every link.
    wait_until("more summary rounds", TIMEOUT, || summaries(&c) >= s0 + 18.0);
    assert_eq!(c.activity(), settled, "non-summary counters moved after quiescence");
    let m: Vec<Metrics> = c.peers.iter().map(|p| p.metrics()).collect();
    assert_eq!(m[0].sum("syncpeer_local_changes_total", &[]), 1.0);
    assert_eq!(m[1].sum("syncpeer_local_changes_total", &[]), 0.0);
    assert_eq!(m[2].sum("syncpeer_local_changes_total", &[]), 0.0);
    assert_eq!(m[1].sum("syncpeer_versions_applied_total", &[]), 1.0);
    assert_eq!(m[2].sum("syncpeer_versions_applied_total", &[]), 1.0);
    assert_eq!(m[0].sum("syncpeer_versions_applied_total", &[]), 0.0);
}

/// p0-p1-p2-p3: changes relay over several hops, in both directions.
#[test]
fn four_peer_line_relays_multi_hop() {
    let mut c = Cluster::new(4, &[(0, 1), (1, 2), (2, 3)]);
    c.start_all();
    c.peers[0].write("from-0.txt", b"zero");
    c.wait_trees(&Cluster::tree_of(&[("from-0.txt", b"zero")]));
    c.peers[3].write("from-0.txt", b"edited at the far end");
    c.peers[3].write("sub/from-3.txt", b"three");
    c.wait_trees(&Cluster::tree_of(&[
        ("from-0.txt", b"edited at the far end"),
        ("sub/from-3.txt", b"three"),
    ]));
    c.peers[1].remove("sub/from-3.txt");
    c.wait_trees(&Cluster::tree_of(&[("from-0.txt", b"edited at the far end")]));
    // p3 is not p0's neighbour: everything it got came through p2.
    let m3 = c.peers[3].metrics();
    assert_eq!(m3.sum("syncpeer_versions_applied_total", &[]), 2.0);
    assert!(m3.sum("syncpeer_bytes_received_total", &[("peer", "p2"), ("kind", "blob")]) >= 1.0);
    assert!(
        !c.peers[0].sync_dir().join("sub").exists(),
        "empty folder left after the delete"
    );
}
