use std::collections::BTreeMap;

use crate::util::*;

/// SIGKILL the receiver (several times, at different moments) and the sender in the middle of a
/// sync: after restarts everything arrives, nothing is lost, and the receiver never mistakes a
/// half-applied file for a local edit.
#[test]
fn kill9_and_restart_mid_sync_loses_nothing() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    let mut expected = BTreeMap::new();
    for i in 0..300 {
        let (p, v) = (format!("many/f{i:03}.txt"), format!("file number {i}").into_bytes());
        c.peers[0].write(&p, &v);
        expected.insert(p, v);
    }
    let big: Vec<u8> = (0..(6u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    c.peers[0].write("big.bin", &big);
    expected.insert("big.bin".into(), big);
    c.start(0);
    c.start(1);
    // Kill at once, after the first files land, and while the big file is in flight.
    c.peers[1].kill9();
    c.start(1);
    wait_until("some files at p1", TIMEOUT, || !c.peers[1].tree().is_empty());
    c.peers[1].kill9();
    // The sender dies too, right after a local write it has indexed (acknowledged).
    c.peers[0].write("late.txt", b"written just before the crash");
    expected.insert("late.txt".into(), b"written just before the crash".to_vec());
    wait_until("late.txt indexed", TIMEOUT, || {
        c.peers[0].status().unwrap()["entries"] == 302
    });
    let digest = c.peers[0].digest();
    c.peers[0].kill9();
    c.start(0);
    assert_eq!(c.peers[0].digest(), digest, "acknowledged state lost by SIGKILL");
    c.start(1);
    let tmp = c.peers[1].state_dir().join("tmp");
    let _ = wait_for_part(&tmp);
    c.peers[1].kill9();
    c.start(1);
    c.wait_trees(&expected);
    let m1 = c.peers[1].metrics();
    assert_eq!(
        m1.sum("syncpeer_local_changes_total", &[]),
        0.0,
        "a synced file was taken for a local edit"
    );
    assert_eq!(m1.sum("syncpeer_conflicts_total", &[]), 0.0);
}

/// Waits briefly for a partial download; not finding one is fine (the transfer may be done).
fn wait_for_part(dir: &std::path::Path) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(5) {
        if std::fs::read_dir(dir)
            .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".part")))
            .unwrap_or(false)
        {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

/// The sync folder itself disappearing (an unmount, a fault) is not "the user deleted every file":
/// no delete is authored, so nothing is lost elsewhere.
#[test]
fn a_vanished_sync_folder_spreads_no_deletes() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    c.peers[1].extra_yaml = "rescan_interval_ms: 200\n".into();
    c.start_all();
    c.peers[0].write("keep/a.txt", b"a");
    c.peers[0].write("b.txt", b"b");
    c.wait_trees(&Cluster::tree_of(&[("keep/a.txt", b"a"), ("b.txt", b"b")]));
    // Gone at once, as an unmount does (`rm -rf` removes the files one by one first, which is
    // indistinguishable from the user deleting them).
    std::fs::rename(c.peers[1].sync_dir(), c.peers[1].root.join("moved-away")).unwrap();
    // Several rescans later (each would have tombstoned everything), nothing was authored.
    let s = |c: &Cluster| {
        c.peers[1]
            .metrics()
            .sum("syncpeer_messages_sent_total", &[("kind", "summary")])
    };
    let s0 = s(&c);
    wait_until("a few rounds", TIMEOUT, || s(&c) >= s0 + 4.0);
    // A new file elsewhere must not recreate the folder (which would make the rest look deleted).
    c.peers[0].write("c.txt", b"c");
    let s1 = s(&c);
    wait_until("a few more rounds", TIMEOUT, || s(&c) >= s1 + 4.0);
    assert!(!c.peers[1].sync_dir().exists());
    assert_eq!(c.peers[1].metrics().sum("syncpeer_local_changes_total", &[]), 0.0);
    assert_eq!(c.peers[0].tree().len(), 3, "a delete spread from the vanished folder");
    assert_eq!(c.peers[0].status().unwrap()["tombstones"], 0);
}
