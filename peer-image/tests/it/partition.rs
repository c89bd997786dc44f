use std::time::{Duration, Instant};

use crate::util::*;

fn signal(p: &Peer, sig: i32) {
    unsafe {
        libc::kill(p.pid() as i32, sig);
    }
}

/// A paused (SIGSTOP) neighbour accepts connections but never answers, like a peer behind a
/// black-holing partition: the others keep syncing around it, and after it resumes everything
/// converges, with edits made on both sides meanwhile kept (split brain heals without loss).
#[test]
fn paused_neighbour_does_not_stall_sync_and_heals_without_loss() {
    let mut c = Cluster::new(3, &[(0, 1), (1, 2), (2, 0)]);
    c.start_all();
    c.peers[0].write("before.txt", b"seen by all");
    c.wait_trees(&Cluster::tree_of(&[("before.txt", b"seen by all")]));
    signal(&c.peers[2], libc::SIGSTOP);
    let t = Instant::now();
    for i in 0..5 {
        c.peers[0].write(
            &format!("during/{i}.txt"),
            format!("written while p2 hangs {i}").as_bytes(),
        );
    }
    // p2 edits the same file while cut off (the kernel queues its file events).
    c.peers[0].write("before.txt", b"p0 side");
    c.peers[2].write("before.txt", b"p2 side");
    wait_until("p1 has p0's files despite p2 hanging", TIMEOUT, || {
        (0..5).all(|i| c.peers[1].read(&format!("during/{i}.txt")).is_some())
            && c.peers[1].read("before.txt").as_deref() == Some(&b"p0 side"[..])
    });
    // Not a timing assertion on speed, only that nothing waited for a request timeout to p2.
    assert!(
        t.elapsed() < Duration::from_secs(9),
        "sync waited on the hung peer: {:?}",
        t.elapsed()
    );
    signal(&c.peers[2], libc::SIGCONT);
    wait_until("converged after heal", TIMEOUT, || {
        c.converged() && c.peers.iter().all(|p| p.tree().len() == 7) && c.peers[1].tree() == c.peers[2].tree()
    });
    let tree = c.peers[0].tree();
    let contents: Vec<&[u8]> = tree.values().map(|v| v.as_slice()).collect();
    assert!(
        contents.contains(&&b"p0 side"[..]) && contents.contains(&&b"p2 side"[..]),
        "{tree:?}"
    );
    assert!(tree.keys().any(|k| k.starts_with("before.sync-conflict-")));
}
