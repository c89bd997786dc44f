//! The liars of issue 14 (Byzantine `equivocate`, `replay`, `drop`) on real processes, and the
//! honest peers' defence against each. Every test here fails if the defence it names is removed.

use std::time::Duration;

use syncpeer::identity::Identity;

use crate::util::*;

fn set_behaviours(c: &Cluster, liar: usize, text: Option<&str>) {
    let file = c.peers[liar].state_dir().join("byzantine");
    std::fs::create_dir_all(c.peers[liar].state_dir()).unwrap();
    match text {
        Some(t) => std::fs::write(file, t).unwrap(),
        None => std::fs::remove_file(file).unwrap(),
    }
}

/// A request to `c.peers[server]`'s sync port over mutual TLS as its neighbour `c.peers[me]`,
/// with the answer as text.
fn text_as(c: &Cluster, server: usize, me: usize, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let to = &c.peers[server];
    sync_request(&to.addr(), &c.peers[me].id, to.id.id(), method, path, &[], body)
        .ok()
        .map(|(code, b)| (code, String::from_utf8_lossy(&b).into_owned()))
}

/// The liar's whole listing (`GET /v1/index`) as neighbour `me` is served it: path -> hash.
fn listing_as(c: &Cluster, liar: usize, me: usize) -> std::collections::BTreeMap<String, String> {
    let (_, body) = text_as(c, liar, me, "GET", "/v1/index?limit=250", b"").unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn short(p: &Peer) -> String {
    p.id.id().short()
}

fn evidence(p: &Peer) -> Vec<serde_json::Value> {
    http_get(&p.http(), "/v1/evidence")
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| v["equivocations"].as_array().cloned())
        .unwrap_or_default()
}

fn quarantines(p: &Peer, name: &str) -> bool {
    p.neighbour_flag(name, "quarantined")
}

/// `equivocate`: the liar signs a second statement (a delete) under the dot of each version it
/// writes, and serves it to every other neighbour. Some honest peer is shown both statements (the
/// stuck-digest listing of another honest peer's index), proves the fork, quarantines the liar and
/// tells its neighbours, who check the proof and do the same; the honest peers then agree on one
/// version. Guards `equivocation::check_received` (called in `fetch::offer`): without it nobody
/// keeps evidence and the wait for it times out.
#[test]
fn an_equivocating_liar_is_proven_and_quarantined_by_every_honest_neighbour() {
    let mut c = Cluster::new(4, &[(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]);
    for i in 1..4 {
        c.peers[i].extra_yaml = "quarantine_ms: 120000\n".into();
    }
    c.start_all();
    set_behaviours(&c, 0, Some("equivocate\n"));
    // Forked are the versions written once the liar has seen the switch (re-read every 200 ms).
    std::thread::sleep(Duration::from_millis(800));
    c.peers[0].write("liar/forked.txt", b"the genuine version");
    let liar = short(&c.peers[0]);
    for p in &c.peers[1..] {
        wait_until(&format!("{} keeps the proof", p.name), TIMEOUT, || {
            evidence(p).iter().any(|r| r["author"] == liar.as_str())
        });
        let r = evidence(p).into_iter().find(|r| r["author"] == liar.as_str()).unwrap();
        let [a, b] = [&r["statements"][0], &r["statements"][1]];
        // Two statements under one dot that say different things, each with the liar's signature.
        assert_eq!(a["vv"][&liar], b["vv"][&liar], "{r}");
        assert_ne!((&a["hash"], &a["deleted"]), (&b["hash"], &b["deleted"]), "{r}");
        assert!(a["sig"].as_str().unwrap().len() == 128 && b["sig"] != a["sig"]);
        assert!(r["how"] == "seen" || r["how"] == "told", "{r}");
        assert!(quarantines(p, "p0"), "{} does not quarantine the liar", p.name);
        assert!(p.metrics().sum("syncpeer_equivocations_detected_total", &[]) >= 1.0);
        assert_eq!(p.status().unwrap()["equivocations"], 1);
    }
    // The evidence is kept on disk.
    assert!(c.peers[1].state_dir().join("evidence.json").exists());
    // The honest peers agree among themselves: the genuine version wins the fork everywhere.
    wait_until("honest peers converged", TIMEOUT, || {
        let d: Vec<_> = c.peers[1..].iter().map(|p| p.digest()).collect();
        d[0].is_some() && d.windows(2).all(|w| w[0] == w[1])
    });
    for p in &c.peers[1..] {
        assert_eq!(
            p.read("liar/forked.txt").as_deref(),
            Some(&b"the genuine version"[..]),
            "{}",
            p.name
        );
    }
}

/// A proof of equivocation is checked by whoever receives it: a forged statement, two genuine
/// statements under different counters, or a statement signed by someone else in the author's
/// name convict nobody (and count as `bad_signature`); only then is a valid proof believed.
/// Guards `Proof::check` in `equivocation::accept`: without it the first forgery quarantines the
/// honest p0.
#[test]
fn a_forged_proof_convicts_nobody() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    // Two more neighbours of p1 that only ever connect: one sends the forgeries, the other the
    // genuine proof (the first is quarantined by its strikes).
    let (forger, teller) = (Identity::generate(), Identity::generate());
    c.peers[1].extra_peers = probe_yaml("forger", &forger) + &probe_yaml("teller", &teller);
    c.start_all();
    let (p0, p1) = (&c.peers[0], &c.peers[1]);
    let genuine = signed(&p0.id, "x.txt", b"one", 1000);
    let mut forged = genuine.clone();
    forged.hash = blake3::hash(b"two").to_hex().to_string();
    let other_counter = signed(&p0.id, "x.txt", b"two", 1001);
    let mut framed = signed(&p1.id, "x.txt", b"two", 1000);
    framed.author = short(p0);
    let post = |from: &Identity, a: &syncpeer::entry::Entry, b: &syncpeer::entry::Entry| {
        let body = serde_json::to_vec(&serde_json::json!({"a": a, "b": b})).unwrap();
        sync_request(&p1.addr(), from, p1.id.id(), "POST", "/v1/evidence", &[], &body)
            .unwrap()
            .0
    };
    // Each forgery is a strike against its sender (three quarantine it: the control comes from another).
    for fake in [&forged, &other_counter, &framed] {
        assert_eq!(post(&forger, &genuine, fake), 422);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(evidence(p1).is_empty());
    assert!(!quarantines(p1, "p0"), "a forged proof quarantined an honest peer");
    assert_eq!(p1.metrics().sum("syncpeer_equivocations_detected_total", &[]), 0.0);
    assert!(
        p1.metrics()
            .sum("syncpeer_rejections_total", &[("reason", "bad_signature")])
            >= 3.0
    );
    // The control: two genuine statements under one counter are believed, from anyone.
    let fork = signed(&p0.id, "y.txt", b"other", 1000);
    assert_eq!(post(&teller, &genuine, &fork), 204);
    assert_eq!(evidence(p1).len(), 1);
    assert_eq!(evidence(p1)[0]["how"], "told");
    assert!(quarantines(p1, "p0"));
}

/// `replay`: the liar re-sends the version a path had when replay went on, as current, and lies
/// in its digest so that its neighbour keeps pulling. The honest peer never moves the path back.
/// Guards the ordering rule (`entry::resolve_with`: `Causality::Before => Resolution::Ignore`):
/// with a dominated version taken instead, p1 goes back to version one.
#[test]
fn replayed_old_versions_never_move_a_path_back() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    c.start_all();
    // The old content stays at hand (a copy), so a replay taken for current could be applied at
    // once: only the version vectors stand in the way.
    c.peers[1].write("copy.txt", b"version one");
    c.peers[1].write("doc.txt", b"version one");
    wait_until("version one at the liar", TIMEOUT, || {
        c.peers[0].read("doc.txt").as_deref() == Some(&b"version one"[..])
    });
    set_behaviours(&c, 0, Some("replay\n"));
    // Replay is on once the liar's digest lies (it re-reads the file every 200 ms) ...
    let lie = blake3::hash(b"replayed versions").to_hex().to_string();
    wait_until("the liar replays", TIMEOUT, || {
        text_as(&c, 0, 1, "POST", "/v1/summary", br#"{"digest":""}"#).is_some_and(|(_, body)| body.contains(&lie))
    });
    // ... and it takes what it will replay at the first request it serves with replay on.
    let one = blake3::hash(b"version one").to_hex().to_string();
    assert_eq!(listing_as(&c, 0, 1).get("doc.txt"), Some(&one));
    c.peers[1].write("doc.txt", b"version two");
    wait_until("version two at the liar", TIMEOUT, || {
        c.peers[0].read("doc.txt").as_deref() == Some(&b"version two"[..])
    });
    // It now passes version one off as current, and p1 pulls from it every round (300 ms).
    assert_eq!(listing_as(&c, 0, 1).get("doc.txt"), Some(&one));
    let pulls = |c: &Cluster| {
        c.peers[0]
            .metrics()
            .sum("syncpeer_messages_received_total", &[("peer", "p1"), ("kind", "index")])
    };
    let before = pulls(&c);
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            c.peers[1].read("doc.txt").as_deref(),
            Some(&b"version two"[..]),
            "a replay moved the path back"
        );
    }
    assert!(pulls(&c) >= before + 3.0, "p1 did not pull the replays");
    set_behaviours(&c, 0, None);
    c.wait_trees(&Cluster::tree_of(&[
        ("copy.txt", b"version one"),
        ("doc.txt", b"version two"),
    ]));
}

/// `drop paths=secret/** peers=p2`: the liar keeps `secret/` back from p2 only (and claims its
/// dots as seen-and-superseded), serves everything else to everyone; p2 gets `secret/` from the
/// honest p1 at once. Guards per-neighbour fills (`Node::knowledge_for` adds only neighbour i's
/// fills): were the liar's fills believed towards p1, p2 would refuse p1's hint and tell p1 it
/// knows the dot, and only the stuck-digest listing (3 rounds of 2 s) would bring the file,
/// after the 4 s this test waits.
#[test]
fn dropped_paths_come_from_the_other_honest_neighbour() {
    let mut c = Cluster::new(3, &[(0, 1), (0, 2), (1, 2)]);
    c.interval_ms = 2000;
    c.start_all();
    set_behaviours(&c, 0, Some("drop paths=secret/** peers=p2\n"));
    std::thread::sleep(Duration::from_millis(500));
    c.peers[0].write("secret/plan.txt", b"kept from p2");
    c.peers[0].write("open/note.txt", b"for everyone");
    wait_until("the liar lists both files to p1", TIMEOUT, || {
        listing_as(&c, 0, 1).len() == 2
    });
    let to_p2 = listing_as(&c, 0, 2);
    assert!(
        to_p2.contains_key("open/note.txt") && !to_p2.contains_key("secret/plan.txt"),
        "{to_p2:?}"
    );
    wait_until("p1 has both files", TIMEOUT, || {
        c.peers[1].read("secret/plan.txt").is_some() && c.peers[1].read("open/note.txt").is_some()
    });
    wait_until("p2 gets secret/ from p1 at once", Duration::from_secs(4), || {
        c.peers[2].read("secret/plan.txt").as_deref() == Some(&b"kept from p2"[..])
    });
    c.wait_converged();
}

/// `sybil`: one process presenting many identities. Every made-up identity that knocks on an
/// honest peer's sync port is refused in the handshake (the liar counts nothing `answered`), and
/// the versions they signed, offered through the liar's genuine link, are refused as `untrusted`,
/// named in the audit trail with the liar as sender, and never written; honest traffic goes on.
/// Fails if a peer takes a client it did not pin (`answered`) or a version by an author it does
/// not trust (a `sybil/` file).
#[test]
fn sybil_identities_get_nothing_and_the_versions_they_sign_are_refused() {
    let mut c = Cluster::new(3, &[(0, 1), (0, 2), (1, 2)]);
    c.interval_ms = 300;
    c.start_all();
    set_behaviours(&c, 0, Some("sybil\n"));
    let liar = c.peers[0].name.clone();
    let sybils = syncpeer::byzantine::SYBILS as f64;
    let knocks = |outcome: &str| {
        c.peers[0]
            .metrics()
            .sum("syncpeer_sybil_requests_total", &[("outcome", outcome)])
    };
    // Two rounds of knocks on both neighbours.
    wait_until("two rounds of knocks refused", TIMEOUT, || {
        knocks("refused") >= 4.0 * sybils
    });
    assert_eq!(knocks("answered"), 0.0, "a made-up identity got an answer");
    for p in [1, 2] {
        wait_until("the vouched versions refused as untrusted", TIMEOUT, || {
            c.peers[p]
                .metrics()
                .sum("syncpeer_rejections_total", &[("reason", "untrusted")])
                >= sybils
        });
    }
    c.peers[1].write("doc/honest.txt", b"from an honest peer");
    wait_until("honest traffic goes on through the liar too", TIMEOUT, || {
        (0..3).all(|p| c.peers[p].read("doc/honest.txt").is_some())
    });
    for p in [1, 2] {
        let sybil_dir = c.peers[p].sync_dir().join("sybil");
        assert!(!sybil_dir.exists(), "p{p} wrote versions of identities nobody trusts");
        let (_, body) = http_get(&c.peers[p].http(), "/v1/audit?limit=1000").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let untrusted: Vec<&serde_json::Value> = v["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["reason"] == "untrusted")
            .collect();
        assert!(!untrusted.is_empty(), "p{p}'s audit trail: {v}");
        assert!(
            untrusted
                .iter()
                .all(|l| l["from"] == liar.as_str() && l["path"].as_str().unwrap().starts_with("sybil/")),
            "{untrusted:?}"
        );
    }
    assert_eq!(knocks("answered"), 0.0, "a made-up identity got an answer");
    set_behaviours(&c, 0, None);
    c.wait_converged();
}

fn rejected(p: &Peer, reason: &str) -> f64 {
    p.metrics().sum("syncpeer_rejections_total", &[("reason", reason)])
}

/// `lie-counter`: the liar signs its own versions again with a version vector claiming every
/// neighbour's counter at `u64::MAX - 1`. Believed, it would exhaust an honest peer's counters: its
/// next writes would all reuse the last one, and its neighbours would convict it of equivocation
/// for honest writes. Honest peers refuse it (`bad_counter`, `entry::COUNTER_MAX`), write on with
/// fresh counters, nobody is convicted, and the liar's file arrives once it tells the truth.
#[test]
fn a_counter_lie_cannot_exhaust_an_honest_peers_counters() {
    let mut c = Cluster::new(3, &[(0, 1), (0, 2), (1, 2)]);
    c.interval_ms = 300;
    c.peers[1].extra_yaml = "strike_limit: 1000\n".into();
    c.peers[2].extra_yaml = "strike_limit: 1000\n".into();
    c.start_all();
    set_behaviours(&c, 0, Some("lie-counter\n"));
    std::thread::sleep(Duration::from_millis(500));
    c.peers[0].write("lie/a.txt", b"written by the liar");
    // Reached both (refused, or, were the bound missing, taken).
    for p in [1, 2] {
        wait_until("the counter lie delivered", TIMEOUT, || {
            rejected(&c.peers[p], "bad_counter") >= 1.0 || c.peers[p].read("lie/a.txt").is_some()
        });
    }
    c.peers[1].write("doc/1.txt", b"first honest write");
    wait_until("p2 has p1's first write", TIMEOUT, || {
        c.peers[2].read("doc/1.txt").is_some()
    });
    c.peers[1].write("doc/2.txt", b"second honest write");
    wait_until("p2 has p1's second write", TIMEOUT, || {
        c.peers[2].read("doc/2.txt").as_deref() == Some(&b"second honest write"[..])
    });
    std::thread::sleep(Duration::from_millis(1000));
    for p in [0, 2] {
        let against_p1: Vec<serde_json::Value> = evidence(&c.peers[p])
            .into_iter()
            .filter(|r| r["author"] == short(&c.peers[1]).as_str())
            .collect();
        assert!(against_p1.is_empty(), "p{p} convicted the honest p1: {against_p1:?}");
    }
    for p in [1, 2] {
        assert!(
            rejected(&c.peers[p], "bad_counter") >= 1.0,
            "p{p} took the lying version"
        );
    }
    set_behaviours(&c, 0, None);
    wait_until("the liar's file, told truthfully", TIMEOUT, || {
        c.peers[1].read("lie/a.txt").as_deref() == Some(&b"written by the liar"[..])
    });
    c.wait_converged();
}

/// `lie-timestamp`: the liar signs its own versions again dated ten years ahead, which would win
/// every concurrent tie for a decade (and drag clocks forward, were they adopted). The honest peer
/// refuses them (`bad_timestamp`, beyond `hlc::MAX_FUTURE_MS`) and takes the version once it is
/// told truthfully.
#[test]
fn a_version_dated_years_ahead_is_refused() {
    let mut c = Cluster::new(2, &[(0, 1)]);
    c.interval_ms = 300;
    c.peers[1].extra_yaml = "strike_limit: 1000\n".into();
    c.start_all();
    set_behaviours(&c, 0, Some("lie-timestamp\n"));
    std::thread::sleep(Duration::from_millis(500));
    c.peers[0].write("later.txt", b"dated a decade ahead");
    wait_until("the timestamp lie refused", TIMEOUT, || {
        rejected(&c.peers[1], "bad_timestamp") >= 1.0
    });
    assert!(c.peers[1].read("later.txt").is_none(), "the lying version was taken");
    set_behaviours(&c, 0, None);
    wait_until("the version, told truthfully", TIMEOUT, || {
        c.peers[1].read("later.txt").is_some()
    });
    c.wait_converged();
}
