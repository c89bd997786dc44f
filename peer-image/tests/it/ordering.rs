use std::time::Duration;

use crate::fake::{FakePeer, entries_of};
use crate::util::*;

/// Delete-before-create, update-without-base and replays of old versions, delivered by a fake peer
/// from versions really signed by p0: order of arrival never matters.
#[test]
fn delete_before_create_and_replayed_old_versions_are_harmless() {
    // p0 authors create -> update -> delete; we record each signed version.
    let mut c = Cluster::new(3, &[]);
    // The test reads p0's index as a neighbour would.
    let reader = syncpeer::identity::Identity::generate();
    c.peers[0].extra_peers = probe_yaml("reader", &reader);
    c.start(0);
    let mut versions = Vec::new();
    c.peers[0].write("f.txt", b"v1");
    wait_until("v1 indexed", TIMEOUT, || entries_of(&c.peers[0], &reader).len() == 1);
    versions.push(entries_of(&c.peers[0], &reader)[0].clone());
    c.peers[0].write("f.txt", b"v2 longer");
    wait_until("v2 indexed", TIMEOUT, || entries_of(&c.peers[0], &reader)[0].size == 9);
    versions.push(entries_of(&c.peers[0], &reader)[0].clone());
    c.peers[0].remove("f.txt");
    wait_until("delete indexed", TIMEOUT, || {
        entries_of(&c.peers[0], &reader)[0].deleted
    });
    versions.push(entries_of(&c.peers[0], &reader)[0].clone());
    let (v1, v2, del) = (versions[0].clone(), versions[1].clone(), versions[2].clone());

    // p1 hears the delete first, then the create and the update (replayed, out of order).
    let fake = FakePeer::start("replayer", &c);
    c.peers[1].extra_peers = fake.peer_yaml();
    c.start(1);
    fake.push(del.clone(), None);
    wait_until("tombstone at p1", TIMEOUT, || {
        c.peers[1].status().unwrap()["tombstones"] == 1
    });
    let digest = c.peers[1].digest();
    fake.push(v1.clone(), Some(b"v1".to_vec()));
    fake.push(v2.clone(), Some(b"v2 longer".to_vec()));
    fake.push(v1.clone(), Some(b"v1".to_vec()));
    // Wait until p1 has pulled all four (its cursor passes them), then some rounds more.
    let pulls = |p: &Peer| {
        p.metrics().sum(
            "syncpeer_messages_sent_total",
            &[("peer", "replayer"), ("kind", "index")],
        )
    };
    let p0 = pulls(&c.peers[1]);
    wait_until("p1 pulled the replays", TIMEOUT, || pulls(&c.peers[1]) >= p0 + 1.0);
    let s = |p: &Peer| {
        p.metrics().sum(
            "syncpeer_messages_sent_total",
            &[("peer", "replayer"), ("kind", "summary")],
        )
    };
    let s0 = s(&c.peers[1]);
    wait_until("3 more rounds", TIMEOUT, || s(&c.peers[1]) >= s0 + 3.0);
    assert!(c.peers[1].read("f.txt").is_none(), "a deleted file came back");
    assert_eq!(c.peers[1].digest(), digest);
    assert_eq!(c.peers[1].metrics().sum("syncpeer_versions_applied_total", &[]), 1.0);
    assert_eq!(
        fake.state.lock().unwrap().blob_requests,
        0,
        "fetched content of a dominated version"
    );

    // p2 gets the update before its base, then the base: the update stays.
    let fake2 = FakePeer::start("reorderer", &c);
    c.peers[2].extra_peers = fake2.peer_yaml();
    c.start(2);
    fake2.push(v2.clone(), Some(b"v2 longer".to_vec()));
    wait_until("v2 at p2", TIMEOUT, || {
        c.peers[2].read("f.txt").as_deref() == Some(&b"v2 longer"[..])
    });
    fake2.push(v1, Some(b"v1".to_vec()));
    let s0 = s2(&c.peers[2]);
    wait_until("3 more rounds", TIMEOUT, || s2(&c.peers[2]) >= s0 + 3.0);
    assert_eq!(c.peers[2].read("f.txt").as_deref(), Some(&b"v2 longer"[..]));
    // And the delete still wins when it finally arrives.
    fake2.push(del, None);
    wait_until("deleted at p2", TIMEOUT, || c.peers[2].read("f.txt").is_none());
    let _ = Duration::ZERO;
}

fn s2(p: &Peer) -> f64 {
    p.metrics().sum(
        "syncpeer_messages_sent_total",
        &[("peer", "reorderer"), ("kind", "summary")],
    )
}
