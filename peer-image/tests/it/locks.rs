use std::process::Command;

use syncpeer::hlc::wall_ms;

use crate::util::*;

/// Locks left by dead processes, corrupt locks and a lock held too long are all cleared, counted,
/// and sync goes on; a held lock blocks its path for at most the TTL.
#[test]
fn stale_locks_are_cleared_and_never_block_sync_past_ttl() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    c.peers[1].extra_yaml = "lock_ttl_ms: 2000\n".into();
    let locks = c.peers[1].state_dir().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(
        locks.join("dead.lock"),
        format!("pid={dead}\nincarnation=1\nstart_ms={}\n", wall_ms()),
    )
    .unwrap();
    std::fs::write(locks.join("corrupt.lock"), "\u{0}\u{1}garbage").unwrap();
    // A live process (this test) holds the lock of the very path p1 is about to receive.
    let name = format!("{}.lock", &blake3::hash(b"locked.txt").to_hex()[..24]);
    std::fs::write(
        locks.join(&name),
        format!("pid={}\nincarnation=1\nstart_ms={}\n", std::process::id(), wall_ms()),
    )
    .unwrap();
    c.start_all();
    let removed = |c: &Cluster| c.peers[1].metrics().sum("syncpeer_stale_locks_removed_total", &[]);
    wait_until("dead and corrupt locks removed", TIMEOUT, || removed(&c) >= 2.0);
    assert!(!locks.join("dead.lock").exists() && !locks.join("corrupt.lock").exists());
    c.peers[0].write("locked.txt", b"waits for the TTL at most");
    c.peers[0].write("free.txt", b"not blocked");
    wait_until("free.txt at p1", TIMEOUT, || c.peers[1].read("free.txt").is_some());
    wait_until("locked.txt at p1", TIMEOUT, || c.peers[1].read("locked.txt").is_some());
    assert_eq!(removed(&c), 3.0);
    assert!(!locks.join(&name).exists());
    // A crash leaves a lock while running: the periodic sweep clears it.
    std::fs::write(
        locks.join("crash.lock"),
        format!("pid={dead}\nincarnation=7\nstart_ms={}\n", wall_ms()),
    )
    .unwrap();
    wait_until("periodic sweep", TIMEOUT, || !locks.join("crash.lock").exists());
    wait_until("counted", TIMEOUT, || removed(&c) == 4.0);
}

/// A locks folder the daemon cannot write (a permission or disk fault on the lock files) does not
/// stop sync.
#[test]
fn unwritable_locks_folder_does_not_block_sync() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    c.start_all();
    let locks = c.peers[1].state_dir().join("locks");
    // Replace the folder by a file: creating a lock inside fails even for root.
    std::fs::remove_dir_all(&locks).unwrap();
    std::fs::write(&locks, b"not a folder").unwrap();
    c.peers[0].write("through.txt", b"arrives anyway");
    wait_until("through.txt at p1", TIMEOUT, || {
        c.peers[1].read("through.txt").is_some()
    });
}
