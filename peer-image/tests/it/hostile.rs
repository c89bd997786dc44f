//! Hostile neighbours (issue 13): unsigned data changes no state, and symlinks planted in the sync
//! folder are never followed on write or delete.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use syncpeer::codec::{PullReq, decode_pull_resp, encode_pull_req};
use syncpeer::knowledge::{Knowledge, author_key};

use crate::fake::FakePeer;
use crate::util::*;

/// `POST http://addr/path` with a binary body -> (status, body).
fn http_post(addr: &str, path: &str, from: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nx-syncpeer-from: {from}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, buf[end + 4..].to_vec()))
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
