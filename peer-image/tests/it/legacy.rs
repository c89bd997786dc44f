//! Issue 6: `flavor: legacy` (the seed's design) really has the seed's bugs on real processes, where
//! the default flavor does not: a delete leaves no tombstone, so a peer that missed it brings the
//! file back (a zombie).

use std::time::Duration;

use crate::util::*;

/// p0 holds a file, is stopped (it misses the delete), p1 deletes the file; p0 comes back.
/// Returns whether the file is back everywhere (the zombie) once things settled.
fn delete_while_p0_is_away(flavor: &'static str) -> bool {
    let mut c = Cluster::new(3, &[(0, 1), (1, 2), (2, 0)]);
    c.flavor = flavor;
    c.start_all();
    assert_eq!(c.peers[0].status().unwrap()["flavor"], flavor);
    c.peers[0].write("docs/plan.txt", b"the plan");
    c.wait_trees(&Cluster::tree_of(&[("docs/plan.txt", b"the plan")]));
    assert_eq!(c.peers[0].stop(), Some(0));
    c.peers[1].remove("docs/plan.txt");
    wait_until("delete reached p2", TIMEOUT, || {
        c.peers[2].read("docs/plan.txt").is_none()
    });
    if flavor == "legacy" {
        wait_until("the delete is forgotten on p1 and p2", TIMEOUT, || {
            c.peers[1..]
                .iter()
                .all(|p| p.status().is_some_and(|s| s["tombstones"] == 0 && s["entries"] == 0))
        });
    }
    c.start(0);
    c.wait_quiescent(Duration::from_millis(1500));
    c.peers.iter().all(|p| p.read("docs/plan.txt").is_some())
}

#[test]
fn legacy_deletes_leave_no_tombstone_and_the_file_comes_back() {
    assert!(
        delete_while_p0_is_away("legacy"),
        "the legacy flavor must bring the file back"
    );
}

#[test]
fn default_deletes_stay_deleted_after_the_same_story() {
    assert!(!delete_while_p0_is_away("default"));
}
