use crate::fake::FakePeer;
use crate::util::*;

/// A fake neighbour serves a genuine version with tampered content, and a version with a forged
/// signature: both are rejected and counted, the liar is quarantined, and the honest copies
/// arrive from the honest author.
#[test]
fn tampered_blob_and_bad_signature_rejected_honest_copy_arrives() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    let liar = FakePeer::start("liar", &c);
    // p1 asks the liar first for everything it advertises; p0 (honest) is down at first.
    c.peers[1].extra_peers = liar.peer_yaml();
    c.peers[1].extra_yaml = "strike_limit: 2\nquarantine_ms: 600000\n".into();
    let honest = b"the honest content".to_vec();
    let genuine = signed(&c.peers[0].id, "z.txt", &honest, 1);
    liar.push(genuine.clone(), Some(b"poisoned content!!".to_vec()));
    let mut forged = signed(&c.peers[0].id, "sig.txt", b"honest sig", 2);
    forged.hash = blake3::hash(b"evil").to_hex().to_string();
    forged.size = 4;
    liar.push(forged, Some(b"evil".to_vec()));
    c.start(1);
    let m = |c: &Cluster, r: &str| c.peers[1].metrics().sum("syncpeer_rejections_total", &[("reason", r)]);
    wait_until("bad hash rejected", TIMEOUT, || m(&c, "bad_hash") >= 1.0);
    wait_until("bad signature rejected", TIMEOUT, || m(&c, "bad_signature") >= 1.0);
    assert!(c.peers[1].read("z.txt").is_none(), "tampered content written");
    assert!(c.peers[1].read("sig.txt").is_none());
    wait_until("liar quarantined", TIMEOUT, || {
        let s = c.peers[1].status().unwrap();
        s["neighbours"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "liar" && n["quarantined"] == true)
    });
    assert_eq!(c.peers[1].metrics().sum("syncpeer_quarantined_peers", &[]), 1.0);
    // The honest author comes up with the genuine files.
    c.peers[0].write("sig.txt", b"honest sig");
    c.peers[0].write("z.txt", &honest);
    c.start(0);
    wait_until("honest copies at p1", TIMEOUT, || {
        c.peers[1].read("z.txt").as_deref() == Some(&honest[..])
            && c.peers[1].read("sig.txt").as_deref() == Some(&b"honest sig"[..])
    });
    assert!(
        c.peers[1]
            .tree()
            .values()
            .all(|v| v != b"poisoned content!!" && v != b"evil")
    );
}

/// A version signed by a key nobody trusts is refused, even when relayed by a trusted neighbour.
#[test]
fn untrusted_author_is_refused() {
    let mut c = Cluster::new(1, &[]);
    let relay = FakePeer::start("relay", &c);
    c.peers[0].extra_peers = relay.peer_yaml();
    let stranger = syncpeer::identity::Identity::generate();
    relay.push(signed(&stranger, "x.txt", b"x", 1), Some(b"x".to_vec()));
    c.start(0);
    wait_until("untrusted counted", TIMEOUT, || {
        c.peers[0]
            .metrics()
            .sum("syncpeer_rejections_total", &[("reason", "untrusted")])
            >= 1.0
    });
    assert!(c.peers[0].read("x.txt").is_none());
}

/// A peer flooding requests is cut to its rate limit (429) and counted; each refusal is held for the
/// server's tarpit (so the flood cannot set the pace); at its 30th refusal it is quarantined (403),
/// and those refusals are held too. Its neighbours' sync keeps working.
#[test]
fn flooding_peer_is_rate_limited_then_quarantined() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    // The flooder is an authenticated neighbour of p0 (TLS lets only neighbours in).
    let flooder = syncpeer::identity::Identity::generate();
    c.peers[0].extra_peers = probe_yaml("flooder", &flooder);
    // Five tokens and next to no refill: 5 requests pass, then every one is over the limit.
    c.peers[0].extra_yaml = "rate_limit_per_sec: 0.01\nrate_limit_burst: 5\n".into();
    c.start_all();
    // 45 requests pipelined on one connection: as fast as the server reads them.
    let body = r#"{"digest":"x"}"#;
    let mut raw = String::new();
    for i in 0..45 {
        let close = if i == 44 { "connection: close\r\n" } else { "" };
        raw.push_str(&format!(
            "POST /v1/summary HTTP/1.1\r\nhost: p0\r\n{close}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    let started = std::time::Instant::now();
    let answers = sync_raw(&c.peers[0].addr(), &flooder, c.peers[0].id.id(), raw.as_bytes()).unwrap();
    let took = started.elapsed();
    let answers = String::from_utf8_lossy(&answers);
    let limited = answers.matches("HTTP/1.1 429").count();
    let quarantined = answers.matches("HTTP/1.1 403").count();
    // Three strikes of ten refusals each: the 30th refusal quarantines the flooder.
    assert_eq!(
        (limited, quarantined),
        (30, 10),
        "refusals over the limit, then as quarantined"
    );
    // Answered one after another on the connection, each refusal after the tarpit: without it the
    // 40 answers take milliseconds.
    let held = std::time::Duration::from_millis(200) * (limited + quarantined) as u32;
    assert!(
        took >= held,
        "{} refusals answered in {took:?}, under {held:?}: not held",
        limited + quarantined
    );
    // Counted (p1's own sync traffic runs into the same tiny limit, so at least these).
    let m = c.peers[0].metrics();
    assert!(m.sum("syncpeer_rejections_total", &[("reason", "rate_limited")]) >= 30.0);
    assert!(m.sum("syncpeer_rejections_total", &[("reason", "quarantined")]) >= 10.0);
    // The honest neighbour has its own budget.
    c.peers[1].write("still.txt", b"works");
    wait_until("sync despite the flood", TIMEOUT, || {
        c.peers[0].read("still.txt").is_some()
    });
}

/// The same lie with the content inline in a pull response: the receiver hashes what it got, the
/// author's signature does not cover that hash, so it is counted as bad content, nothing is
/// written, and the honest copy still arrives.
#[test]
fn tampered_inline_content_rejected() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    let liar = FakePeer::start("liar", &c);
    liar.state.lock().unwrap().inline = true;
    c.peers[1].extra_peers = liar.peer_yaml();
    let honest = b"the honest content".to_vec();
    liar.push(
        signed(&c.peers[0].id, "z.txt", &honest, 1),
        Some(b"poisoned content!!".to_vec()),
    );
    c.start(1);
    let bad = |c: &Cluster| {
        c.peers[1]
            .metrics()
            .sum("syncpeer_rejections_total", &[("reason", "bad_hash")])
    };
    wait_until("inline tampering rejected", TIMEOUT, || bad(&c) >= 1.0);
    assert!(c.peers[1].read("z.txt").is_none(), "tampered content written");
    c.peers[0].write("z.txt", &honest);
    c.start(0);
    wait_until("honest copy at p1", TIMEOUT, || {
        c.peers[1].read("z.txt").as_deref() == Some(&honest[..])
    });
}

/// A neighbour answering pulls with 48 MiB of garbage is cut off at the body limit: the peer
/// neither buffers it nor dies, and keeps syncing with its honest neighbour.
#[test]
fn oversized_answers_are_not_buffered() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    let flooder = FakePeer::start("flooder", &c);
    flooder.state.lock().unwrap().oversized = Some(48 << 20);
    c.peers[1].extra_peers = flooder.peer_yaml();
    c.start_all();
    c.peers[0].write("ok.txt", b"still syncing");
    c.wait_trees(&Cluster::tree_of(&[("ok.txt", b"still syncing")]));
    // Several rounds against the flooder.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.peers[1].pid())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(hwm_kib < 40 << 10, "peak RSS {hwm_kib} KiB: the flood was buffered");
    assert!(c.peers[1].status().is_some(), "the peer died");
}

/// A neighbour that answers every pull page with the same versions and "more pages follow" does
/// not keep the puller paging: a page that names nothing new ends the pull.
#[test]
fn endless_more_pages_end_when_nothing_is_new() {
    let mut c = Cluster::new(1, &[]);
    let liar = FakePeer::start("pager", &c);
    liar.state.lock().unwrap().always_more = true;
    c.peers[0].extra_peers = liar.peer_yaml();
    liar.push(signed(&c.peers[0].id, "a.txt", b"a", 1), Some(b"a".to_vec()));
    c.start(0);
    wait_until("a.txt arrives", TIMEOUT, || c.peers[0].read("a.txt").is_some());
    let p0 = liar.state.lock().unwrap().pull_requests;
    std::thread::sleep(std::time::Duration::from_secs(3));
    let pulls = liar.state.lock().unwrap().pull_requests - p0;
    // A few rounds and hints' worth, not thousands of pages.
    assert!(pulls < 30, "{pulls} pull pages in 3 s");
}
