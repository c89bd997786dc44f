//! The sync port's mutual TLS (issue 14): only configured neighbours get in, each end pins the
//! other's key, and a request's sender is its certificate's key, never what it claims.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use syncpeer::identity::Identity;

use crate::fake::{FakePeer, entries_of};
use crate::util::*;

/// Two peers that have synced `secret.txt`.
fn synced_pair() -> Cluster {
    let mut c = Cluster::new(2, &[(0, 1)]);
    c.start_all();
    c.peers[0].write("secret.txt", b"the plans");
    wait_until("secret.txt at p1", TIMEOUT, || c.peers[1].read("secret.txt").is_some());
    c
}

/// Whatever the sync port answers a plain-HTTP request, as raw bytes.
fn plain_answer(addr: &str, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nx-syncpeer-from: whoever\r\n\r\n");
    // The server may hang up before it has read the whole request: that is its answer too.
    let _ = s.write_all(request.as_bytes());
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf
}

/// Guards the transport itself: the sync port speaks only TLS, so a plain-HTTP client (anyone
/// who reaches the port) gets neither the index nor a file's content.
#[test]
fn a_plain_http_client_gets_nothing_from_the_sync_port() {
    let c = synced_pair();
    let hash = entries_of(&c.peers[0], &c.peers[1].id)[0].hash.clone();
    for path in ["/v1/index?limit=250".to_string(), format!("/v1/blob/{hash}")] {
        let answer = plain_answer(&c.peers[0].addr(), &path);
        assert!(
            parse_response(&answer).is_none(),
            "{path}: an HTTP answer to plain HTTP"
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(
            !text.contains("secret.txt") && !text.contains("the plans"),
            "{path}: {text}"
        );
    }
    // The status port stays plain HTTP.
    assert!(c.peers[0].status().is_some());
}

/// Guards the server's pinning: a TLS client whose key is not a configured neighbour's is refused
/// in the handshake; its request is never read (not even counted).
#[test]
fn a_client_that_is_not_a_neighbour_is_refused_in_the_handshake() {
    let c = synced_pair();
    let stranger = Identity::generate();
    let r = c.peers[0].sync_get(&stranger, "/v1/index?limit=250");
    // The refusal reaches the client as a TLS alert, or as a reset if the server's hang-up wins.
    let err = r.expect_err("a stranger was served");
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    let refused = err.to_string().contains("alert") || matches!(err.kind(), ConnectionReset | BrokenPipe);
    assert!(refused, "not a refusal: {err}");
    let unknown = c.peers[0]
        .metrics()
        .sum("syncpeer_messages_received_total", &[("peer", "unknown")]);
    assert_eq!(unknown, 0.0, "a stranger's request was read");
    // A neighbour's key gets through on the same port.
    assert_eq!(c.peers[0].sync_get(&c.peers[1].id, "/v1/index").unwrap().0, 200);
}

/// Guards "the sender is the certificate": a neighbour claiming in the old sender header to be
/// another peer is refused, and without the header it is counted as who its certificate says.
#[test]
fn the_sender_is_the_certificate_not_the_header() {
    let c = synced_pair();
    let p0 = &c.peers[0];
    let as_p1 = |headers: &[String]| {
        sync_request(&p0.addr(), &c.peers[1].id, p0.id.id(), "GET", "/v1/index", headers, b"")
            .unwrap()
            .0
    };
    let claim = |who: &Identity| vec![format!("x-syncpeer-from: {}", who.id().short())];
    assert_eq!(as_p1(&claim(&p0.id)), 403, "p1 passed itself off as p0");
    assert_eq!(
        as_p1(&claim(&Identity::generate())),
        403,
        "p1 passed itself off as a stranger"
    );
    assert_eq!(
        p0.metrics()
            .sum("syncpeer_rejections_total", &[("reason", "sender_mismatch")]),
        2.0
    );
    // Its own name, or none: served, and counted as p1's.
    let before = p0
        .metrics()
        .sum("syncpeer_messages_received_total", &[("peer", "p1"), ("kind", "index")]);
    assert_eq!(as_p1(&claim(&c.peers[1].id)), 200);
    assert_eq!(as_p1(&[]), 200);
    let after = p0
        .metrics()
        .sum("syncpeer_messages_received_total", &[("peer", "p1"), ("kind", "index")]);
    assert!(
        after >= before + 2.0,
        "requests not counted as p1's: {before} -> {after}"
    );
}

/// Guards the client's pinning: a server answering on a neighbour's address with another key
/// (an impostor that would even accept us) is never asked for anything, so its versions, signed
/// by the key configured for that neighbour, never arrive.
#[test]
fn a_server_with_another_key_than_the_neighbours_is_refused() {
    let mut c = Cluster::new(1, &[]);
    let expected = Identity::generate();
    let impostor = FakePeer::start_as("impostor", Identity::generate(), &c);
    impostor.push(
        signed(&expected, "planted.txt", b"planted", 1),
        Some(b"planted".to_vec()),
    );
    impostor.state.lock().unwrap().inline = true;
    c.peers[0].extra_peers = format!(
        "  - name: impostor\n    addr: {}\n    public_key: {}\n",
        impostor.addr,
        expected.id().hex()
    );
    c.start(0);
    let tries = |c: &Cluster| {
        c.peers[0].metrics().sum(
            "syncpeer_messages_sent_total",
            &[("peer", "impostor"), ("kind", "summary")],
        )
    };
    wait_until("three rounds tried", TIMEOUT, || tries(&c) >= 3.0);
    let st = impostor.state.lock().unwrap();
    assert_eq!((st.pull_requests, st.index_requests), (0, 0), "the impostor was asked");
    assert!(c.peers[0].read("planted.txt").is_none());
}

/// Three peers in a line sync over TLS, the middle one relaying (each link pinned both ways).
#[test]
fn three_peers_in_a_line_sync_over_tls() {
    let mut c = Cluster::new(3, &[(0, 1), (1, 2)]);
    c.start_all();
    c.peers[0].write("a.txt", b"from p0");
    c.peers[2].write("b.txt", b"from p2");
    c.wait_trees(&Cluster::tree_of(&[("a.txt", b"from p0"), ("b.txt", b"from p2")]));
}
