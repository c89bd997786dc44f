use std::time::Duration;

use crate::util::*;

#[test]
fn two_party_create_update_delete() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    c.start_all();
    c.peers[0].write("a.txt", b"hello");
    c.peers[0].write("dir/b.bin", &[7u8; 3000]);
    c.wait_trees(&Cluster::tree_of(&[("a.txt", b"hello"), ("dir/b.bin", &[7u8; 3000])]));
    // Update on the other side flows back.
    c.peers[1].write("a.txt", b"hello again");
    c.wait_trees(&Cluster::tree_of(&[
        ("a.txt", b"hello again"),
        ("dir/b.bin", &[7u8; 3000]),
    ]));
    // Delete; the tombstone is counted on both.
    c.peers[0].remove("dir/b.bin");
    c.wait_trees(&Cluster::tree_of(&[("a.txt", b"hello again")]));
    for p in &c.peers {
        let s = p.status().unwrap();
        assert_eq!(s["entries"], 1);
        assert_eq!(s["tombstones"], 1);
    }
    let m0 = c.peers[0].metrics();
    let m1 = c.peers[1].metrics();
    assert_eq!(m0.sum("syncpeer_local_changes_total", &[]), 3.0);
    assert_eq!(m1.sum("syncpeer_local_changes_total", &[]), 1.0);
    assert_eq!(m1.sum("syncpeer_versions_applied_total", &[]), 3.0);
    assert_eq!(m0.sum("syncpeer_conflicts_total", &[]), 0.0);
    assert!(m1.sum("syncpeer_bytes_received_total", &[("peer", "p0"), ("kind", "blob")]) >= 1.0);
    // Graceful shutdown on SIGTERM.
    assert_eq!(c.peers[0].stop(), Some(0));
    let _ = Duration::ZERO;
}
