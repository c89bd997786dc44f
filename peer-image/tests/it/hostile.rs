//! Hostile neighbours (issue 13): unsigned data changes no state, and symlinks planted in the sync
//! folder are never followed on write or delete.

use syncpeer::codec::{PullReq, decode_pull_resp, encode_pull_req};
use syncpeer::knowledge::{Knowledge, author_key};

use crate::fake::FakePeer;
use crate::util::*;

/// `POST http://addr/path` with a binary body -> (status, body).
fn http_post(addr: &str, path: &str, from: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    request_as(addr, "POST", path, from, body)
}

/// What a peer says it has seen but no longer holds: the fills of a pull from nothing.
fn fills_of(peer: &Peer, from: &str) -> Knowledge {
    let req = encode_pull_req(&PullReq {
        knowledge: Knowledge::new(),
        inline: false,
    });
    let (code, body) = http_post(&peer.addr(), "/v1/pull", from, &req).unwrap();
    assert_eq!(code, 200);
    decode_pull_resp(body.into()).unwrap().fills
}

/// An unsigned version that the index already supersedes was recorded as "seen" before its
/// signature was checked: its dot then counted as known, so the genuine version with that dot
/// (another path) would never be offered to this peer again.
#[test]
fn issue_13_an_unsigned_superseded_version_is_not_recorded_as_seen() {
    let mut c = Cluster::new(1, &[]);
    let fake = FakePeer::start("fake");
    fake.state.lock().unwrap().inline = true;
    c.peers[0].extra_peers = fake.peer_yaml();
    // Quarantine would stop the pulls that deliver the forgery again and again.
    c.peers[0].extra_yaml = "strike_limit: 1000\n".into();
    fake.push(signed(&fake.id, "a.txt", b"five", 5), Some(b"five".to_vec()));
    c.start(0);
    wait_until("a.txt applied", TIMEOUT, || {
        c.peers[0].read("a.txt").as_deref() == Some(&b"five"[..])
    });
    // Counter 3 of the same author, for the same path: superseded by counter 5, and not signed.
    let mut forged = signed(&fake.id, "a.txt", b"three", 3);
    forged.sig = "00".repeat(64);
    fake.push(forged, Some(b"three".to_vec()));
    let pulls = fake.state.lock().unwrap().pull_requests;
    wait_until("forgery delivered twice", TIMEOUT, || {
        fake.state.lock().unwrap().pull_requests >= pulls + 2
    });
    let dot = (author_key(&fake.id.id().short()), 3);
    assert!(
        !fills_of(&c.peers[0], &fake.id.id().short()).contains(dot),
        "the unsigned version's dot counts as seen"
    );
}

/// Versions waiting for content at `peer` (its status).
fn pending(peer: &Peer) -> Option<u64> {
    peer.status()?["pending"].as_u64()
}

/// A folder outside every sync folder, with one file in it.
fn outside(c: &Cluster, file: &str, content: &[u8]) -> std::path::PathBuf {
    let dir = c._dir.path().join("outside");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), content).unwrap();
    dir
}

/// A symlink planted in the receiver's sync folder, to a folder outside it: a received file under
/// it was written through the link, outside the sync folder. A symlink in place of the file itself
/// was already refused.
#[test]
fn issue_13_a_received_file_is_never_written_through_a_symlinked_folder() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    let out = outside(&c, "victim.txt", b"precious");
    std::os::unix::fs::symlink(&out, c.peers[1].sync_dir().join("d")).unwrap();
    std::os::unix::fs::symlink(out.join("victim.txt"), c.peers[1].sync_dir().join("g.txt")).unwrap();
    c.start_all();
    c.peers[0].write("d/victim.txt", b"overwritten through the link");
    c.peers[0].write("d/new.txt", b"planted through the link");
    c.peers[0].write("g.txt", b"overwritten through the file link");
    c.peers[0].write("z.txt", b"marker");
    wait_until("marker applied, nothing pending", TIMEOUT, || {
        c.peers[1].read("z.txt").is_some() && pending(&c.peers[1]) == Some(0)
    });
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["victim.txt"], "files written through the link");
    assert_eq!(std::fs::read(out.join("victim.txt")).unwrap(), b"precious");
    for link in ["d", "g.txt"] {
        let m = std::fs::symlink_metadata(c.peers[1].sync_dir().join(link)).unwrap();
        assert!(m.file_type().is_symlink(), "{link} replaced");
    }
}

/// A folder replaced by a symlink to a folder outside, while the peer was down: a received
/// delete of a file under it removed the file outside.
#[test]
fn issue_13_a_received_delete_is_never_applied_through_a_symlinked_folder() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    c.start_all();
    c.peers[0].write("d/f.txt", b"same");
    wait_until("d/f.txt at p1", TIMEOUT, || c.peers[1].read("d/f.txt").is_some());
    c.peers[1].stop();
    let out = outside(&c, "f.txt", b"same");
    let d = c.peers[1].sync_dir().join("d");
    std::fs::remove_dir_all(&d).unwrap();
    std::os::unix::fs::symlink(&out, &d).unwrap();
    c.peers[0].remove("d/f.txt");
    c.start(1);
    wait_until("the delete reached p1's index", TIMEOUT, || {
        crate::fake::entries_of(&c.peers[1].addr())
            .iter()
            .any(|e| e.path == "d/f.txt" && e.deleted)
            && pending(&c.peers[1]) == Some(0)
    });
    assert_eq!(
        std::fs::read(out.join("f.txt")).unwrap(),
        b"same",
        "deleted through the link"
    );
    assert!(std::fs::symlink_metadata(&d).unwrap().file_type().is_symlink());
}

/// `POST /v1/blobs` with more hashes than a fetch batch ever holds is refused before any file is
/// looked up (it was up to 100 000 lookups and opens per request).
#[test]
fn issue_13_a_blob_batch_is_capped() {
    let mut c = Cluster::new(1, &[]);
    c.start(0);
    let from = c.peers[0].id.id().short();
    let hashes = |n: usize| {
        let hashes: Vec<String> = (0..n).map(|i| format!("{i:064x}")).collect();
        serde_json::to_vec(&serde_json::json!({ "hashes": hashes })).unwrap()
    };
    let max = syncpeer::protocol::BLOBS_HASHES_MAX;
    assert_eq!(
        http_post(&c.peers[0].addr(), "/v1/blobs", &from, &hashes(max))
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        http_post(&c.peers[0].addr(), "/v1/blobs", &from, &hashes(max + 1))
            .unwrap()
            .0,
        413
    );
}

/// A listing page (`GET /v1/index`, asked with `limit=250`) with more entries than asked for is
/// refused before its entries are verified: a 16 MiB page held ~50 000 entries, a signature check
/// each.
#[test]
fn issue_13_a_listing_page_larger_than_asked_is_refused() {
    let mut c = Cluster::new(1, &[]);
    let fake = FakePeer::start("fake");
    fake.state.lock().unwrap().listing_only = true;
    c.peers[0].extra_peers = fake.peer_yaml();
    let n = syncpeer::protocol::INDEX_PAGE as u64 + 1;
    for i in 1..=n {
        let content = format!("{i}").into_bytes();
        fake.push(signed(&fake.id, &format!("f-{i}"), &content, i), Some(content));
    }
    c.start(0);
    // Digests that stay apart while pulls bring nothing: the peer lists the fake's whole index.
    // Then either its entries are taken (queued at once) or, refused, it is listed again later.
    let taken = |c: &Cluster| {
        let s = c.peers[0].status().unwrap();
        s["entries"].as_u64().unwrap() + s["pending"].as_u64().unwrap()
    };
    wait_until("a listing taken or listed again", TIMEOUT, || {
        taken(&c) > 0 || fake.state.lock().unwrap().index_requests >= 2
    });
    assert_eq!(taken(&c), 0, "entries of an oversized page were taken");
}
