//! A real `syncpeer` turned into a liar by its Byzantine control file (`<state>/byzantine`), next
//! to an honest one: the honest peer must notice each lie on its own, and the liar must become
//! an ordinary peer again once the file is gone.

use crate::util::*;

/// Peer 0 lies, peer 1 is honest and quick to quarantine (and to forgive).
fn liar_and_honest(honest_yaml: &str) -> Cluster {
    let mut c = Cluster::new(2, &[(0, 1)]);
    c.peers[1].extra_yaml = honest_yaml.into();
    c
}

fn set_behaviours(c: &Cluster, text: Option<&str>) {
    let file = c.peers[0].state_dir().join("byzantine");
    std::fs::create_dir_all(c.peers[0].state_dir()).unwrap();
    match text {
        Some(t) => std::fs::write(file, t).unwrap(),
        None => std::fs::remove_file(file).unwrap(),
    }
}

fn rejections(c: &Cluster, reason: &str) -> f64 {
    c.peers[1]
        .metrics()
        .sum("syncpeer_rejections_total", &[("reason", reason)])
}

/// `tamper` on: the honest neighbour counts `bad_hash`, never writes the flipped bytes and
/// quarantines the liar; file removed: once the quarantine ends the genuine content arrives.
#[test]
fn tamper_gets_the_liar_quarantined_and_removing_the_file_makes_it_honest_again() {
    let mut c = liar_and_honest("strike_limit: 2\nquarantine_ms: 2000\n");
    let content: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    c.peers[0].write("doc/a.bin", &content);
    set_behaviours(&c, Some("tamper\n"));
    c.start_all();
    wait_until("bad_hash counted at the honest peer", TIMEOUT, || {
        rejections(&c, "bad_hash") >= 2.0
    });
    wait_until("the liar quarantined", TIMEOUT, || {
        c.peers[1].metrics().sum("syncpeer_quarantined_peers", &[]) == 1.0
    });
    assert!(c.peers[1].read("doc/a.bin").is_none(), "tampered content was written");
    set_behaviours(&c, None);
    wait_until("genuine content after the quarantine", TIMEOUT, || {
        c.peers[1].read("doc/a.bin").as_deref() == Some(&content[..])
    });
    c.wait_converged();
}

/// The audit trail (who sent what): the honest peer's `GET /v1/audit` and `<state>/audit.jsonl`
/// name the liar, by its TLS identity, for each tampered version it refused, and later for the
/// genuine version it took; the liar's own writes are never in its own trail.
#[test]
fn the_audit_trail_names_who_sent_the_lies_and_the_truth() {
    let mut c = liar_and_honest("strike_limit: 2\nquarantine_ms: 2000\n");
    let content: Vec<u8> = (0..3000u32).map(|i| (i % 247) as u8).collect();
    c.peers[0].write("doc/a.bin", &content);
    set_behaviours(&c, Some("tamper\n"));
    c.start_all();
    let liar = c.peers[0].name.clone();
    let audit = |p: usize| -> Vec<serde_json::Value> {
        let (code, body) = http_get(&c.peers[p].http(), "/v1/audit?limit=1000").expect("GET /v1/audit");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["lines"].as_array().unwrap().clone()
    };
    let refused = |lines: &[serde_json::Value]| {
        lines
            .iter()
            .filter(|l| l["event"] == "rejected" && l["reason"] == "bad_hash" && l["path"] == "doc/a.bin")
            .count()
    };
    wait_until("the tampered version refused, in the trail", TIMEOUT, || {
        refused(&audit(1)) >= 1
    });
    let lines = audit(1);
    let lie = lines.iter().find(|l| l["event"] == "rejected").unwrap();
    assert_eq!(lie["from"], liar.as_str(), "{lie}");
    assert_eq!(lie["author"], c.peers[0].id.id().short().as_str(), "{lie}");
    assert_eq!(lie["counter"], 1, "{lie}");
    set_behaviours(&c, None);
    let genuine = blake3::hash(&content).to_hex().to_string();
    wait_until("the genuine version taken, in the trail", TIMEOUT, || {
        audit(1)
            .iter()
            .any(|l| l["event"] == "offered" && l["path"] == "doc/a.bin" && l["hash"] == genuine.as_str())
    });
    c.wait_converged();
    // The file holds what the endpoint shows (one JSON object per line), and the liar's trail has
    // nothing about its own write.
    let on_disk: Vec<serde_json::Value> = std::fs::read_to_string(c.peers[1].state_dir().join("audit.jsonl"))
        .expect("audit.jsonl written")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(on_disk, audit(1));
    assert!(refused(&on_disk) >= 1);
    assert!(audit(0).is_empty(), "the liar's trail: {:?}", audit(0));
}

/// `forge`: versions whose signature does not cover what they claim are `bad_signature`;
/// `withhold`: the liar takes (pulls the honest peer's files) but gives nothing.
#[test]
fn forged_versions_are_rejected_and_a_withholding_liar_still_takes() {
    let mut c = liar_and_honest("strike_limit: 1000\n");
    c.peers[0].write("forged.txt", b"a version the liar will lie about");
    set_behaviours(&c, Some("forge\n"));
    c.start_all();
    wait_until("bad_signature counted", TIMEOUT, || {
        rejections(&c, "bad_signature") >= 1.0
    });
    assert!(c.peers[1].read("forged.txt").is_none());
    set_behaviours(&c, Some("withhold\n"));
    c.peers[0].write("withheld.txt", b"kept back");
    c.peers[1].write("given.txt", b"from the honest peer");
    wait_until("the liar takes", TIMEOUT, || {
        c.peers[0].read("given.txt").as_deref() == Some(&b"from the honest peer"[..])
    });
    // Several anti-entropy rounds (300 ms) and hints later, nothing has come the other way.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(c.peers[1].read("withheld.txt").is_none(), "a withheld file arrived");
    assert!(
        c.peers[1].read("forged.txt").is_none(),
        "forged.txt came through the withholding liar"
    );
    set_behaviours(&c, None);
    c.wait_converged();
    assert_eq!(c.peers[1].read("withheld.txt").as_deref(), Some(&b"kept back"[..]));
}

/// `flood`: requests far above the honest peer's rate limit are refused as `rate_limited`, and
/// they stop when the file is removed.
#[test]
fn a_flood_is_quarantined_and_stops_with_the_file() {
    // A short quarantine, so the flooder comes back, is refused again, and is quarantined again.
    let mut c = liar_and_honest("rate_limit_per_sec: 50\nrate_limit_burst: 50\nquarantine_ms: 1000\n");
    c.start_all();
    set_behaviours(&c, Some("flood\n"));
    // Over its limit 30 times: quarantined; its requests are then refused as such.
    wait_until("the flooder refused as quarantined", TIMEOUT, || {
        rejections(&c, "quarantined") >= 40.0
    });
    assert!(rejections(&c, "rate_limited") >= 30.0);
    set_behaviours(&c, None);
    // The flood workers notice within a re-read (200 ms) and the quarantine ends within 1 s; then
    // at most the normal traffic, which stays within its limit.
    std::thread::sleep(std::time::Duration::from_millis(2000));
    let refused = || rejections(&c, "rate_limited") + rejections(&c, "quarantined");
    let before = refused();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(refused(), before, "the flood went on");
    c.peers[0].write("after.txt", b"honest traffic flows");
    wait_until("sync after the flood", TIMEOUT, || {
        c.peers[1].read("after.txt").as_deref() == Some(&b"honest traffic flows"[..])
    });
}

/// `slowloris`: a page trickled at 32 bytes a second never completes within the honest peer's
/// request timeout, so nothing arrives while it lasts; file removed: the next pull brings it.
#[test]
fn a_slowloris_liar_delivers_nothing_until_the_file_is_gone() {
    let mut c = liar_and_honest("");
    c.peers[0].write("trickled.bin", &[7u8; 4096]);
    set_behaviours(&c, Some("slowloris\n"));
    c.start_all();
    wait_until("the honest peer asked the liar", TIMEOUT, || {
        c.peers[0]
            .metrics()
            .sum("syncpeer_messages_received_total", &[("peer", "p1"), ("kind", "index")])
            >= 1.0
    });
    std::thread::sleep(std::time::Duration::from_millis(2000));
    assert!(
        c.peers[1].read("trickled.bin").is_none(),
        "a 4 KiB page came through a trickle"
    );
    set_behaviours(&c, None);
    wait_until("the file after the trickle", TIMEOUT, || {
        c.peers[1].read("trickled.bin").as_deref() == Some(&[7u8; 4096][..])
    });
}
