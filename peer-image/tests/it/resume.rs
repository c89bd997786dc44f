use crate::fake::{FakePeer, entries_of};
use crate::util::*;

/// A large transfer cut in the middle resumes from the partial file with `Range` on another peer:
/// the honest peer sends only the missing part.
#[test]
fn broken_transfer_resumes_from_another_peer() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    let size = 3 << 20;
    let big: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    c.peers[0].write("big.bin", &big);
    c.start(0);
    wait_until("indexed", TIMEOUT, || {
        entries_of(&c.peers[0], &c.peers[1].id).len() == 1
    });
    let entry = entries_of(&c.peers[0], &c.peers[1].id).remove(0);
    assert_eq!(c.peers[0].stop(), Some(0));
    let cutter = FakePeer::start("cutter", &c);
    cutter.state.lock().unwrap().cut_after = Some(size / 2);
    cutter.push(entry, Some(big.clone()));
    c.peers[1].extra_peers = cutter.peer_yaml();
    c.start(1);
    // The cut leaves a partial download behind.
    let tmp = c.peers[1].state_dir().join("tmp");
    wait_until("a partial download", TIMEOUT, || {
        std::fs::read_dir(&tmp).is_ok_and(|rd| {
            rd.flatten().any(|e| {
                e.file_name().to_string_lossy().ends_with(".part")
                    && e.metadata().is_ok_and(|m| m.len() as usize == size / 2)
            })
        })
    });
    c.start(0);
    wait_until("big.bin at p1", TIMEOUT, || {
        c.peers[1].read("big.bin").as_deref() == Some(&big[..])
    });
    let sent = c.peers[0]
        .metrics()
        .sum("syncpeer_bytes_sent_total", &[("peer", "p1"), ("kind", "blob")]);
    assert!(
        sent > 0.0 && sent < (size as f64) * 0.75,
        "p0 sent {sent} bytes of a {size}-byte file: no resume"
    );
    // A cut is not bad data: nobody was blamed.
    assert_eq!(
        c.peers[1]
            .metrics()
            .sum("syncpeer_rejections_total", &[("reason", "bad_hash")]),
        0.0
    );
}
