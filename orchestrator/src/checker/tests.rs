//! Each checker is fed hand-made states with one planted anomaly (it must be caught) and clean ones
//! (they must pass).

use super::*;
use crate::tree::FileEntry;

fn tree(files: &[(&str, &str)]) -> Tree {
    Tree {
        files: files
            .iter()
            .map(|(p, content)| {
                (
                    p.to_string(),
                    FileEntry {
                        size: content.len() as u64,
                        hash: crate::tree::hash_bytes(content.as_bytes()),
                    },
                )
            })
            .collect(),
    }
}

fn peer(name: &str, files: &[(&str, &str)]) -> PeerFinal {
    PeerFinal {
        name: name.into(),
        tree: tree(files),
        alive: true,
        log: String::new(),
        id: None,
        convictions: None,
    }
}

fn rec(t_ms: u64, event: Event) -> Record {
    Record {
        t_ms,
        wall: String::new(),
        event,
    }
}

#[test]
fn identical_trees_are_converged() {
    let peers = [peer("p1", &[("a", "1")]), peer("p2", &[("a", "1")])];
    assert_eq!(converged(&peers).verdict, Verdict::Valid);
}

#[test]
fn a_divergent_peer_is_caught_with_the_path_named() {
    let peers = [
        peer("p1", &[("a", "1"), ("b", "x")]),
        peer("p2", &[("a", "2"), ("b", "x")]),
        peer("p3", &[("b", "x")]),
    ];
    let c = converged(&peers);
    assert_eq!(c.verdict, Verdict::Invalid);
    let diffs = c.evidence["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "only `a` differs: {diffs:?}");
    assert_eq!(diffs[0]["path"], "a");
    assert_eq!(diffs[0]["peers"]["p3"], "missing");
}

#[test]
fn dead_peers_and_panics_are_crashes() {
    let mut peers = vec![peer("p1", &[]), peer("p2", &[])];
    assert_eq!(no_crash(&peers, &conv()).verdict, Verdict::Valid);
    peers[1].log = "thread 'main' panicked at src/x.rs:1:1".into();
    assert_eq!(no_crash(&peers, &conv()).verdict, Verdict::Invalid);
    peers[1].log.clear();
    peers[0].alive = false;
    assert_eq!(no_crash(&peers, &conv()).verdict, Verdict::Invalid);
}

#[test]
fn recovery_is_measured_from_each_heal_to_the_next_convergence() {
    let h = vec![
        rec(0, Event::Converged { tree_hash: "x".into() }),
        rec(100, Event::Diverged),
        rec(
            1000,
            Event::FaultStopped {
                id: "s#1".into(),
                undo_ms: None,
            },
        ),
        rec(1450, Event::Converged { tree_hash: "y".into() }),
        rec(2000, Event::HealedAll),
    ];
    let r = recoveries(&h);
    assert_eq!(
        r[0],
        Recovery {
            fault: "s#1".into(),
            healed_at_ms: 1000,
            converged_after_ms: Some(450)
        }
    );
    assert_eq!(r[1].converged_after_ms, Some(0), "already converged at the final heal");
    assert_eq!(recovered_in_time(&r, 30_000).verdict, Verdict::Valid);
}

#[test]
fn never_converging_after_the_final_heal_is_invalid() {
    let h = vec![rec(0, Event::Diverged), rec(10, Event::HealedAll)];
    let r = recoveries(&h);
    assert_eq!(r[0].converged_after_ms, None);
    assert_eq!(recovered_in_time(&r, 1000).verdict, Verdict::Invalid);
    let slow = vec![
        rec(0, Event::Diverged),
        rec(10, Event::HealedAll),
        rec(5010, Event::Converged { tree_hash: "z".into() }),
    ];
    assert_eq!(recovered_in_time(&recoveries(&slow), 1000).verdict, Verdict::Invalid);
    assert_eq!(recovered_in_time(&[], 1000).verdict, Verdict::Unknown);
}

#[test]
fn verdicts_compose_worst_wins() {
    let mk = |v| Check {
        name: "x".into(),
        rests_on: String::new(),
        verdict: v,
        summary: String::new(),
        evidence: serde_json::Value::Null,
    };
    assert_eq!(compose(&[mk(Verdict::Valid), mk(Verdict::Unknown)]), Verdict::Unknown);
    assert_eq!(compose(&[mk(Verdict::Invalid), mk(Verdict::Unknown)]), Verdict::Invalid);
    assert_eq!(compose(&[]), Verdict::Unknown);
}

// ---- the causal checkers: histories and trees with one planted anomaly each ----

use super::causal;
use crate::plan::FileOpKind;
use crate::profile::Conventions;
use crate::record::history::Outcome;
use crate::record::observations::Observation;
use crate::record::samples::Counters;
use crate::tree::hash_bytes;

fn write(t_ms: u64, op: u64, peer: &str, path: &str, content: &str) -> Record {
    rec(
        t_ms,
        Event::Write {
            op,
            peer: peer.into(),
            kind: if op == 1 {
                FileOpKind::Create
            } else {
                FileOpKind::Modify
            },
            path: path.into(),
            size: content.len() as u64,
            hash: Some(hash_bytes(content.as_bytes())),
            base: None,
            outcome: Outcome::Ok,
        },
    )
}

fn delete(t_ms: u64, op: u64, peer: &str, path: &str) -> Record {
    rec(
        t_ms,
        Event::Write {
            op,
            peer: peer.into(),
            kind: FileOpKind::Delete,
            path: path.into(),
            size: 0,
            hash: None,
            base: None,
            outcome: Outcome::Ok,
        },
    )
}

fn seen(t_ms: u64, peer: &str, path: &str, content: Option<&str>) -> Observation {
    Observation {
        t_ms,
        peer: peer.into(),
        path: path.into(),
        hash: content.map(|c| hash_bytes(c.as_bytes())),
    }
}

/// The shipped `syncpeer` profile's conventions: the checkers are tested with the real pattern.
fn conv() -> Conventions {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../peer-image/profiles");
    crate::profile::load("syncpeer", &dir)
        .expect("the shipped profile")
        .conventions
}

fn parse_conflict_name(path: &str) -> Option<crate::profile::ConflictName> {
    conv().conflict(path)
}

/// A conflict copy's name as `syncpeer` writes it: `<stem>.sync-conflict-<author8>-<hash8><ext>`.
fn conflict_name(origin: &str, author: &str, hash: &str) -> String {
    let (dir, file) = origin.rsplit_once('/').map_or(("", origin), |(d, f)| (d, f));
    let dir = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let (stem, ext) = match file.rfind('.') {
        Some(i) if i > 0 => (&file[..i], &file[i..]),
        _ => (file, ""),
    };
    format!("{dir}{stem}.sync-conflict-{}-{}{ext}", &author[..8], &hash[..8])
}

fn copy_of(path: &str, content: &str) -> String {
    conflict_name(path, "abcdef0123456789", &hash_bytes(content.as_bytes()))
}

struct Judged {
    state: Check,
    lost: Check,
    zombie: Check,
    corrupt: Check,
}

fn judge_state(h: &[Record], obs: &[Observation], peers: &[PeerFinal]) -> Judged {
    let order = causal::order(h, obs);
    Judged {
        state: state::right_final_state(&order, peers, &conv()),
        lost: state::no_lost_update(&order, peers, &conv()),
        zombie: state::no_zombie(&order, peers),
        corrupt: state::no_corruption(&order, peers),
    }
}

/// p1 writes v1; p2 sees it, then overwrites it with v2; p1 sees v2.
fn sequential_history() -> (Vec<Record>, Vec<Observation>) {
    (
        vec![write(0, 1, "p1", "a.txt", "v1"), write(1000, 2, "p2", "a.txt", "v2")],
        vec![
            seen(5, "p1", "a.txt", Some("v1")),
            seen(300, "p2", "a.txt", Some("v1")),
            seen(1005, "p2", "a.txt", Some("v2")),
            seen(1300, "p1", "a.txt", Some("v2")),
        ],
    )
}

#[test]
fn a_causally_later_write_wins_and_a_clean_run_passes_every_check() {
    let (h, obs) = sequential_history();
    let order = causal::order(&h, &obs);
    assert_eq!(order["a.txt"].preds[1].iter().copied().collect::<Vec<_>>(), vec![0]);
    assert_eq!(order["a.txt"].maximal(), vec![1]);
    let peers = [peer("p1", &[("a.txt", "v2")]), peer("p2", &[("a.txt", "v2")])];
    let j = judge_state(&h, &obs, &peers);
    for c in [&j.state, &j.lost, &j.zombie, &j.corrupt] {
        assert_eq!(c.verdict, Verdict::Valid, "{}: {} {}", c.name, c.summary, c.evidence);
    }
}

#[test]
fn a_lost_update_is_caught_and_named() {
    // The legacy clock-skew outcome: p1's older write (clock ahead) beats p2's causally later one.
    let (h, obs) = sequential_history();
    let peers = [peer("p1", &[("a.txt", "v1")]), peer("p2", &[("a.txt", "v1")])];
    let j = judge_state(&h, &obs, &peers);
    assert_eq!(j.lost.verdict, Verdict::Invalid, "{}", j.lost.evidence);
    let p = &j.lost.evidence["problems"][0];
    assert_eq!(p["path"], "a.txt");
    assert_eq!(p["lost_write"]["op"], 2);
    assert_eq!(p["lost_write"]["peer"], "p2");
    assert_eq!(p["found_at_path"]["written_by"]["op"], 1);
    assert_eq!(j.lost.evidence["problem_count"], 2, "lost on both peers");
    assert_eq!(j.state.verdict, Verdict::Invalid);
    assert_eq!(j.corrupt.verdict, Verdict::Valid, "the content itself is a real write");
}

#[test]
fn concurrent_writes_leave_one_winner_and_conflict_copies() {
    // Nobody saw the other's write before writing: concurrent.
    let h = vec![write(0, 1, "p1", "d/a.txt", "x"), write(10, 2, "p2", "d/a.txt", "y")];
    let obs = vec![
        seen(200, "p1", "d/a.txt", Some("x")),
        seen(200, "p2", "d/a.txt", Some("y")),
    ];
    let copy = copy_of("d/a.txt", "x");
    assert_eq!(parse_conflict_name(&copy).unwrap().origin, "d/a.txt");
    let good = [
        peer("p1", &[("d/a.txt", "y"), (&copy, "x")]),
        peer("p2", &[("d/a.txt", "y"), (&copy, "x")]),
    ];
    let j = judge_state(&h, &obs, &good);
    for c in [&j.state, &j.lost, &j.zombie, &j.corrupt] {
        assert_eq!(c.verdict, Verdict::Valid, "{}: {}", c.name, c.evidence);
    }
    // Same winner, but p2 dropped the loser instead of keeping a copy.
    let bad = [
        peer("p1", &[("d/a.txt", "y"), (&copy, "x")]),
        peer("p2", &[("d/a.txt", "y")]),
    ];
    let j = judge_state(&h, &obs, &bad);
    assert_eq!(j.lost.verdict, Verdict::Invalid);
    assert_eq!(j.lost.evidence["problems"][0]["peer"], "p2");
    assert_eq!(j.state.verdict, Verdict::Invalid);
}

#[test]
fn a_zombie_is_caught_and_a_delete_that_stays_is_clean() {
    // p1 creates; p2 sees it and deletes it (p1 was cut off); after the heal the file is back.
    let h = vec![write(0, 1, "p1", "plan.txt", "v1"), delete(2000, 2, "p2", "plan.txt")];
    let obs = vec![
        seen(5, "p1", "plan.txt", Some("v1")),
        seen(300, "p2", "plan.txt", Some("v1")),
        seen(300, "p3", "plan.txt", Some("v1")),
        seen(2005, "p2", "plan.txt", None),
    ];
    let zombie = [
        peer("p1", &[("plan.txt", "v1")]),
        peer("p2", &[("plan.txt", "v1")]),
        peer("p3", &[("plan.txt", "v1")]),
    ];
    let j = judge_state(&h, &obs, &zombie);
    assert_eq!(j.zombie.verdict, Verdict::Invalid, "{}", j.zombie.evidence);
    assert_eq!(j.zombie.evidence["problem_count"], 3);
    assert_eq!(j.zombie.evidence["problems"][0]["deleted_by"]["op"], 2);
    assert_eq!(j.state.verdict, Verdict::Invalid);
    assert_eq!(j.lost.verdict, Verdict::Valid, "the write was deleted, not lost");
    let clean = [peer("p1", &[]), peer("p2", &[]), peer("p3", &[])];
    let j = judge_state(&h, &obs, &clean);
    assert_eq!(j.zombie.verdict, Verdict::Valid);
    assert_eq!(j.state.verdict, Verdict::Valid, "{}", j.state.evidence);
}

#[test]
fn a_write_after_seeing_a_delete_is_ordered_after_it() {
    let h = vec![
        write(0, 1, "p1", "f", "v1"),
        delete(1000, 2, "p2", "f"),
        write(2000, 3, "p1", "f", "v3"),
    ];
    let obs = vec![
        seen(5, "p1", "f", Some("v1")),
        seen(300, "p2", "f", Some("v1")),
        seen(1005, "p2", "f", None),
        seen(1300, "p1", "f", None),
        seen(2005, "p1", "f", Some("v3")),
    ];
    let order = causal::order(&h, &obs);
    assert_eq!(order["f"].maximal(), vec![2]);
    let peers = [peer("p1", &[("f", "v3")]), peer("p2", &[("f", "v3")])];
    let j = judge_state(&h, &obs, &peers);
    assert_eq!(j.state.verdict, Verdict::Valid, "{}", j.state.evidence);
    assert_eq!(j.zombie.verdict, Verdict::Valid);
}

#[test]
fn a_corrupted_file_is_caught() {
    let (h, obs) = sequential_history();
    let peers = [
        peer("p1", &[("a.txt", "v2")]),
        peer("p2", &[("a.txt", "v2 but flipped")]),
    ];
    let j = judge_state(&h, &obs, &peers);
    assert_eq!(j.corrupt.verdict, Verdict::Invalid);
    assert_eq!(j.corrupt.evidence["problems"][0]["peer"], "p2");
    assert_eq!(j.corrupt.evidence["problems"][0]["path"], "a.txt");
}

#[test]
fn a_file_nobody_wrote_is_a_wrong_final_state() {
    let (h, obs) = sequential_history();
    let peers = [
        peer("p1", &[("a.txt", "v2"), ("stray", "v1")]),
        peer("p2", &[("a.txt", "v2")]),
    ];
    let j = judge_state(&h, &obs, &peers);
    assert_eq!(j.state.verdict, Verdict::Invalid);
    assert_eq!(j.state.evidence["problems"][0]["path"], "stray");
}

#[test]
fn an_order_the_history_cannot_decide_is_unknown_not_invalid() {
    // p2 writes 1 s after p1, and shows p1's content only 100 ms after its own write: p2's daemon may
    // have had p1's version already (then overwriting it was right) or not (then a copy is due).
    let h = vec![write(0, 1, "p1", "a", "v1"), write(1000, 2, "p2", "a", "v2")];
    let obs = vec![seen(5, "p1", "a", Some("v1")), seen(1100, "p2", "a", Some("v1"))];
    let peers = [peer("p1", &[("a", "v2")]), peer("p2", &[("a", "v2")])];
    let j = judge_state(&h, &obs, &peers);
    assert_eq!(j.lost.verdict, Verdict::Unknown, "{}", j.lost.evidence);
    assert_eq!(j.state.verdict, Verdict::Unknown);
    // Seen 2 s later instead: clearly concurrent, and the missing copy is a lost update.
    let obs = vec![seen(5, "p1", "a", Some("v1")), seen(3000, "p2", "a", Some("v1"))];
    assert_eq!(judge_state(&h, &obs, &peers).lost.verdict, Verdict::Invalid);
}

#[test]
fn conflict_names_round_trip() {
    for (path, origin) in [
        ("d/report.sync-conflict-fedcba98-01234567.txt", "d/report.txt"),
        ("Makefile.sync-conflict-fedcba98-01234567", "Makefile"),
        (".env.sync-conflict-fedcba98-01234567", ".env"),
        ("a.tar.sync-conflict-fedcba98-01234567.gz", "a.tar.gz"),
    ] {
        let c = parse_conflict_name(path).unwrap();
        assert_eq!(c.origin, origin);
        assert_eq!(conflict_name(origin, "fedcba98ffff", "01234567eeee"), path);
    }
    assert!(parse_conflict_name("d/report.txt").is_none());
    assert!(parse_conflict_name("x.sync-conflict-zz-01234567").is_none());
}

fn watch(quiesced_at: Option<u64>, watched_until: Option<u64>) -> loops::Watch {
    loops::Watch {
        quiesced_at,
        watched_until,
        window_ms: 1000,
    }
}

fn counters(t_ms: u64, peer: &str, blob: f64, summary: f64) -> Counters {
    Counters {
        t_ms,
        peer: peer.into(),
        values: [
            ("messages_sent{kind=\"blob\",peer=\"p2\"}".to_string(), blob),
            (
                "background_messages_sent{kind=\"summary\",peer=\"p2\"}".to_string(),
                summary,
            ),
            ("versions_applied".to_string(), 1.0),
        ]
        .into_iter()
        .collect(),
    }
}

#[test]
fn a_loop_is_caught_by_moving_counters_after_quiescence() {
    let (h, obs) = sequential_history();
    let order = causal::order(&h, &obs);
    // Summaries may tick; blobs may not.
    let flat = [counters(5000, "p1", 3.0, 10.0), counters(7000, "p1", 3.0, 14.0)];
    assert_eq!(
        loops::no_loop(&order, &conv(), &obs, &BTreeMap::new(), &flat, watch(Some(4000), None)).verdict,
        Verdict::Valid
    );
    let looping = [counters(5000, "p1", 3.0, 10.0), counters(7000, "p1", 9.0, 14.0)];
    let c = loops::no_loop(
        &order,
        &conv(),
        &obs,
        &BTreeMap::new(),
        &looping,
        watch(Some(4000), None),
    );
    assert_eq!(c.verdict, Verdict::Invalid);
    assert_eq!(
        c.evidence["problems"][0]["series"],
        "messages_sent{kind=\"blob\",peer=\"p2\"}"
    );
    // Samples from before quiescence do not count; too short a window is unknown.
    assert_eq!(
        loops::no_loop(
            &order,
            &conv(),
            &obs,
            &BTreeMap::new(),
            &looping,
            watch(Some(6000), None)
        )
        .verdict,
        Verdict::Unknown
    );
    assert_eq!(
        loops::no_loop(&order, &conv(), &obs, &BTreeMap::new(), &[], watch(None, None)).verdict,
        Verdict::Unknown
    );
}

/// Issue 13 item 7, seen under load in `islands`: the run's watch saw a quiet window and stopped;
/// the scrape taken as the scraper stopped caught one trailing index exchange, and the check judged
/// that later window: a loop, though the counters had been flat over the window watched.
#[test]
fn the_window_judged_is_the_one_the_run_watched() {
    let (h, obs) = sequential_history();
    let order = causal::order(&h, &obs);
    let late = [
        counters(5000, "p1", 3.0, 10.0),
        counters(7000, "p1", 3.0, 14.0),
        counters(7900, "p1", 4.0, 15.0),
    ];
    let judged = |until| loops::no_loop(&order, &conv(), &obs, &BTreeMap::new(), &late, watch(Some(4000), until));
    assert_eq!(
        judged(None).verdict,
        Verdict::Invalid,
        "without the watch's end, the last window moved"
    );
    let c = judged(Some(7000));
    assert_eq!(c.verdict, Verdict::Valid, "{}", c.evidence);
    assert_eq!(c.evidence["watched_until_ms"], 7000);
    // A watch that ended without a quiet window judges up to the last scrape.
    let h2: Vec<Record> = [rec(
        8000,
        Event::CountersWatched {
            until_ms: 7000,
            quiet: false,
        },
    )]
    .into();
    assert_eq!(counters_watched_until(&h2), Some(u64::MAX));
    assert_eq!(judged(counters_watched_until(&h2)).verdict, Verdict::Invalid);
}

/// Syncthing replaces a file by unlinking it and renaming the new one in: the poll may see the path
/// absent for a moment between two versions. That is not a version (docs/DAEMONS.md); the same
/// content arriving again is.
#[test]
fn a_path_absent_for_a_moment_between_versions_is_not_a_loop_but_content_arriving_again_is() {
    let (h, mut obs) = sequential_history();
    let order = causal::order(&h, &obs);
    let flat = [counters(5000, "p1", 3.0, 10.0), counters(7000, "p1", 3.0, 14.0)];
    obs.push(seen(1299, "p1", "a.txt", None));
    obs.sort_by_key(|o| o.t_ms);
    let c = loops::no_loop(&order, &conv(), &obs, &BTreeMap::new(), &flat, watch(Some(4000), None));
    assert_eq!(c.verdict, Verdict::Valid, "{}", c.evidence);
    obs.push(seen(1500, "p1", "a.txt", None));
    obs.push(seen(1700, "p1", "a.txt", Some("v2")));
    let c = loops::no_loop(&order, &conv(), &obs, &BTreeMap::new(), &flat, watch(Some(4000), None));
    assert_eq!(c.verdict, Verdict::Invalid, "v2 arrived twice at p1: {}", c.evidence);
    assert_eq!(c.evidence["problems"][0]["found"], "3 changes seen");
}

/// A copy named after its content (syncpeer) holds one version; a copy named after a time and a
/// device (Syncthing, one-second resolution) is reused by each loser of that second, at most one per
/// write to the original.
#[test]
fn a_conflict_copy_name_without_a_hash_may_hold_one_loser_per_write_to_its_original() {
    let (h, mut obs) = sequential_history();
    let order = causal::order(&h, &obs);
    let flat = [counters(5000, "p1", 3.0, 10.0), counters(7000, "p1", 3.0, 14.0)];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../peer-image/profiles");
    let syncthing = crate::profile::load("syncthing", &dir)
        .expect("the shipped profile")
        .conventions;
    let copy = "a.sync-conflict-20261207-043423-AI6RAWW.txt";
    obs.push(seen(1400, "p1", copy, Some("v1")));
    obs.push(seen(1600, "p1", copy, Some("v2")));
    let judged = |c: &Conventions, obs: &[Observation]| {
        loops::no_loop(&order, c, obs, &BTreeMap::new(), &flat, watch(Some(4000), None))
    };
    assert_eq!(
        judged(&syncthing, &obs).verdict,
        Verdict::Valid,
        "two writes to a.txt: two losers"
    );
    let hashed = conflict_name("a.txt", "aaaaaaaa", "bbbbbbbb");
    obs.push(seen(1400, "p2", &hashed, Some("v1")));
    obs.push(seen(1600, "p2", &hashed, Some("v2")));
    let c = judged(&conv(), &obs);
    assert_eq!(
        c.verdict,
        Verdict::Invalid,
        "a copy named after one content changed: {}",
        c.evidence
    );
    assert_eq!(c.evidence["problems"][0]["path"], hashed.as_str());
}

#[test]
fn a_loop_is_caught_by_more_versions_than_writes() {
    let (h, mut obs) = sequential_history();
    let order = causal::order(&h, &obs);
    // Two writes, but p1 flips between them.
    obs.push(seen(1500, "p1", "a.txt", Some("v1")));
    obs.push(seen(1700, "p1", "a.txt", Some("v2")));
    let flat = [counters(5000, "p1", 3.0, 10.0), counters(7000, "p1", 3.0, 14.0)];
    let c = loops::no_loop(&order, &conv(), &obs, &BTreeMap::new(), &flat, watch(Some(4000), None));
    assert_eq!(c.verdict, Verdict::Invalid, "{}", c.evidence);
    assert_eq!(c.evidence["problems"][0]["peer"], "p1");
    assert_eq!(c.evidence["problems"][0]["path"], "a.txt");
    // A disk fault on that file explains two more changes (damage, then repair).
    let disk = [rec(
        1400,
        Event::FaultStarted {
            id: "rot#1".into(),
            step: "rot".into(),
            kind: "disk".into(),
            detail: serde_json::json!({"p1": {"path": "a.txt", "how": "corrupt"}}),
        },
    )];
    let damage = loops::disk_damage(&disk);
    assert_eq!(
        loops::no_loop(&order, &conv(), &obs, &damage, &flat, watch(Some(4000), None)).verdict,
        Verdict::Valid
    );
}

#[test]
fn quiescence_is_the_last_convergence_not_followed_by_divergence() {
    let h = vec![
        rec(10, Event::Converged { tree_hash: "a".into() }),
        rec(20, Event::Diverged),
        rec(30, Event::Converged { tree_hash: "b".into() }),
    ];
    assert_eq!(quiesced_at(&h), Some(30));
    assert_eq!(quiesced_at(&h[..2]), None);
}

#[test]
fn figures_propagation_quantiles_conflicts_and_traffic() {
    let (h, obs) = sequential_history();
    let ops = causal::ops(&h);
    let names = vec!["p1".to_string(), "p2".to_string(), "p3".to_string()];
    let p = figures::propagation(&ops, &names, &obs, &[], &[]);
    // v1 reached p2 after 300 ms, v2 reached p1 after 300 ms; p3 never saw either.
    assert_eq!((p.samples, p.never_visible), (2, 2));
    assert_eq!((p.p50_ms, p.max_ms), (Some(300), Some(300)));
    assert_eq!(p.histogram.iter().sum::<u64>(), 2);
    assert_eq!(figures::quantile(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.95), Some(10));
    assert_eq!(figures::quantile(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5), Some(5));
    let copy = copy_of("a.txt", "v1");
    let peers = [peer("p1", &[("a.txt", "v2"), (&copy, "v1")])];
    let c = figures::conflicts(&ops, &peers, &[], &conv());
    assert_eq!((c.writes, c.copies, c.rate), (2, 1, 0.5));
    let t = figures::traffic(&ops, 4, 3, &[counters(1, "p1", 4.0, 9.0), counters(2, "p2", 4.0, 1.0)]);
    assert_eq!(t.messages, 8.0);
    assert_eq!(t.summary_messages, 10.0);
    assert_eq!(t.messages_per_op, Some(4.0));
    assert_eq!(t.min_messages_per_op, 2.0);
    assert_eq!(t.message_overhead, Some(2.0));
}

#[test]
fn regression_partition_halves_seed_11_the_same_instant_write_of_p5_was_lost() {
    // Seen on a real run (partition-halves, seed 11): five peers modify the same file within 15 ms
    // (`peer: all`); 77 ms later p5 shows p4's content and p5's own write is gone for good, at its path
    // and as a conflict copy. Same-instant writes are concurrent, so this is a lost update, not unknown.
    let path = "shared/plan.txt";
    let mut h = vec![write(2810, 1, "p1", path, "v1")];
    let mut obs: Vec<Observation> = ["p1", "p2", "p3", "p4", "p5"]
        .iter()
        .map(|p| seen(3216, p, path, Some("v1")))
        .collect();
    for (i, p) in ["p1", "p2", "p3", "p4", "p5"].iter().enumerate() {
        h.push(write(
            7804 + 4 * i as u64,
            34 + i as u64,
            p,
            path,
            &format!("w{}", 34 + i),
        ));
    }
    obs.push(seen(7896, "p5", path, Some("w37")));
    let copies: Vec<(String, &str)> = ["w34", "w35", "w36"].iter().map(|c| (copy_of(path, c), *c)).collect();
    let mut files: Vec<(&str, &str)> = copies.iter().map(|(p, c)| (p.as_str(), *c)).collect();
    files.push((path, "w37"));
    let peers: Vec<PeerFinal> = ["p1", "p2", "p3", "p4", "p5"].iter().map(|p| peer(p, &files)).collect();
    let j = judge_state(&h, &obs, &peers);
    assert_eq!(j.lost.verdict, Verdict::Invalid, "{}", j.lost.evidence);
    assert_eq!(j.lost.evidence["problem_count"], 5, "lost on every peer");
    assert_eq!(j.lost.evidence["problems"][0]["lost_write"]["op"], 38);
    assert_eq!(j.lost.evidence["problems"][0]["lost_write"]["peer"], "p5");
    assert_eq!(j.corrupt.verdict, Verdict::Valid);
}

#[test]
fn conflict_copies_must_carry_their_authors_key_when_it_is_known() {
    let h = vec![write(0, 1, "p1", "a.txt", "x"), write(10, 2, "p2", "a.txt", "y")];
    let obs = vec![];
    let key1 = "1111aaaa".repeat(8);
    let right = conflict_name("a.txt", &key1, &hash_bytes(b"x"));
    let wrong = conflict_name("a.txt", &"2222bbbb".repeat(8), &hash_bytes(b"x"));
    let with_ids = |copy: &str| -> Vec<PeerFinal> {
        ["p1", "p2"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut p = peer(n, &[("a.txt", "y"), (copy, "x")]);
                p.id = Some(if i == 0 { key1.clone() } else { "2222bbbb".repeat(8) });
                p
            })
            .collect()
    };
    assert_eq!(judge_state(&h, &obs, &with_ids(&right)).state.verdict, Verdict::Valid);
    let j = judge_state(&h, &obs, &with_ids(&wrong));
    assert_eq!(j.state.verdict, Verdict::Invalid, "named after p2, but p1 wrote x");
    assert_eq!(j.state.evidence["problems"][0]["expected"]["author"], key1.as_str());
    assert_eq!(j.lost.verdict, Verdict::Valid, "the content survives");
}

fn write_on(t_ms: u64, op: u64, peer: &str, path: &str, content: &str, base: Option<&str>) -> Record {
    let mut r = write(t_ms, op, peer, path, content);
    if let Event::Write { base: b, .. } = &mut r.event {
        *b = base.map(|c| hash_bytes(c.as_bytes()));
    }
    r
}

#[test]
fn bases_order_writes_without_any_observation() {
    // p2 replaced v1 (its base), so v1 happened before v2 even though the monitor saw nothing.
    let h = vec![
        write_on(0, 1, "p1", "a", "v1", None),
        write_on(1000, 2, "p2", "a", "v2", Some("v1")),
    ];
    let order = causal::order(&h, &[]);
    assert_eq!(order["a"].maximal(), vec![1]);
    let peers = [peer("p1", &[("a", "v2")]), peer("p2", &[("a", "v2")])];
    let j = judge_state(&h, &[], &peers);
    assert_eq!(j.lost.verdict, Verdict::Valid, "{}", j.lost.evidence);
    assert_eq!(j.state.verdict, Verdict::Valid, "{}", j.state.evidence);
    // The legacy clock-skew outcome is still a lost update.
    let peers = [peer("p1", &[("a", "v1")]), peer("p2", &[("a", "v1")])];
    assert_eq!(judge_state(&h, &[], &peers).lost.verdict, Verdict::Invalid);
}

#[test]
fn bases_decide_what_sampling_could_not() {
    // The undecidable case of `an_order_the_history_cannot_decide_is_unknown_not_invalid`, with bases:
    // p2 replaced nothing (it never had v1), so v1 and v2 are concurrent and a copy of v1 is due.
    let h = vec![
        write_on(0, 1, "p1", "a", "v1", None),
        write_on(1000, 2, "p2", "a", "v2", None),
    ];
    let obs = vec![seen(5, "p1", "a", Some("v1")), seen(1100, "p2", "a", Some("v1"))];
    let peers = [peer("p1", &[("a", "v2")]), peer("p2", &[("a", "v2")])];
    // Another path with a base, so the history is known to record bases.
    let mut h2 = h.clone();
    h2.push(write_on(10, 3, "p1", "other", "o1", Some("o0")));
    let j = judge_state(&h2, &obs, &peers);
    assert_eq!(j.lost.verdict, Verdict::Invalid, "{}", j.lost.evidence);
    assert_eq!(j.lost.evidence["problems"][0]["lost_write"]["op"], 1);
}

/// A delete that records what it removed (`content`), as the workload does.
fn delete_of(t_ms: u64, op: u64, peer: &str, path: &str, content: &str) -> Record {
    let mut r = delete(t_ms, op, peer, path);
    if let Event::Write { base, .. } = &mut r.event {
        *base = Some(hash_bytes(content.as_bytes()));
    }
    r
}

/// Issue 13 item 7: under load `latency-jitter` once had a path "the history cannot order", a delete
/// against a write on another peer whose effect the monitor saw within a second. With bases, what the
/// writer held decides it.
#[test]
fn bases_order_a_delete_against_a_write_on_another_peer() {
    // p1 writes v1; p2 deletes it at 1 s; p1 writes v2 at 2 s. The monitor shows p1's path gone at
    // 1.98 s: too close to p1's write to tell from the samples whether the delete came first.
    let obs = vec![
        seen(5, "p1", "f", Some("v1")),
        seen(300, "p2", "f", Some("v1")),
        seen(1005, "p2", "f", None),
        seen(1980, "p1", "f", None),
        seen(2100, "p1", "f", Some("v2")),
        seen(2200, "p2", "f", Some("v2")),
    ];
    let order = |h: &[Record]| causal::order(h, &obs).remove("f").unwrap();

    // p1's write replaced v1, exactly what p2 deleted: p1 had not applied the delete. Concurrent.
    let h = vec![
        write_on(0, 1, "p1", "f", "v1", None),
        delete_of(1000, 2, "p2", "f", "v1"),
        write_on(2000, 3, "p1", "f", "v2", Some("v1")),
    ];
    let o = order(&h);
    assert!(o.ambiguous.is_empty(), "undecided: {:?}", o.ambiguous);
    assert!(!o.preds[2].contains(&1), "the delete was concurrent with the write");

    // p1 found the path empty, had last shown v1, and p2's is the only delete: p1 had applied it.
    let h = vec![
        write_on(0, 1, "p1", "f", "v1", None),
        delete_of(1000, 2, "p2", "f", "v1"),
        write_on(2000, 3, "p1", "f", "v2", None),
    ];
    let o = order(&h);
    assert!(o.ambiguous.is_empty(), "undecided: {:?}", o.ambiguous);
    assert!(o.preds[2].contains(&1), "the delete happened before the re-create");
    let final_v2 = [peer("p1", &[("f", "v2")]), peer("p2", &[("f", "v2")])];
    let j = judge_state(&h, &obs, &final_v2);
    assert_eq!(j.state.verdict, Verdict::Valid, "{}", j.state.evidence);
    assert_eq!(j.lost.verdict, Verdict::Valid, "{}", j.lost.evidence);

    // Seen under load in `latency-jitter`: two peers delete the same content 600 ms apart, and the
    // second shows the path gone 20 ms after its own delete. Both removed v1: concurrent deletes.
    let h = vec![
        write_on(0, 1, "p1", "g", "v1", None),
        delete_of(1000, 2, "p1", "g", "v1"),
        delete_of(1600, 3, "p3", "g", "v1"),
    ];
    let obs = vec![
        seen(5, "p1", "g", Some("v1")),
        seen(300, "p3", "g", Some("v1")),
        seen(1010, "p1", "g", None),
        seen(1620, "p3", "g", None),
    ];
    let o = causal::order(&h, &obs).remove("g").unwrap();
    assert!(o.ambiguous.is_empty(), "undecided: {:?}", o.ambiguous);
    assert!(!o.preds[2].contains(&1));
}

#[test]
fn a_delete_propagates_when_other_peers_see_the_path_gone() {
    let h = vec![
        write_on(0, 1, "p1", "f", "v1", None),
        rec(
            1000,
            Event::Write {
                op: 2,
                peer: "p2".into(),
                kind: FileOpKind::Delete,
                path: "f".into(),
                size: 0,
                hash: None,
                base: Some(hash_bytes(b"v1")),
                outcome: Outcome::Ok,
            },
        ),
    ];
    let obs = vec![
        seen(5, "p1", "f", Some("v1")),
        seen(300, "p2", "f", Some("v1")),
        seen(1005, "p2", "f", None),
        seen(1400, "p1", "f", None),
    ];
    let p = figures::propagation(&causal::ops(&h), &["p1".to_string(), "p2".to_string()], &obs, &[], &[]);
    // v1 reached p2 after 300 ms; the delete reached p1 after 400 ms.
    assert_eq!((p.samples, p.delete_pairs, p.never_visible), (2, 1, 0));
    assert_eq!((p.p50_ms, p.max_ms), (Some(300), Some(400)));
}

mod poisoning {
    use super::*;
    use crate::checker::byzantine::no_poisoning;
    use crate::checker::causal;
    use crate::record::observations::Observation;
    use crate::tree::hash_bytes;

    fn liar_started(t_ms: u64) -> Record {
        rec(
            t_ms,
            Event::FaultStarted {
                id: "lie#1".into(),
                step: "lie".into(),
                kind: "byzantine".into(),
                detail: serde_json::json!({"peers": ["p3"], "behaviours": ["tamper"]}),
            },
        )
    }

    fn seen(t_ms: u64, peer: &str, path: &str, content: &str) -> Observation {
        Observation {
            t_ms,
            peer: peer.into(),
            path: path.into(),
            hash: Some(hash_bytes(content.as_bytes())),
        }
    }

    fn counters(peer: &str, bad_hash: f64) -> Counters {
        Counters {
            t_ms: 9000,
            peer: peer.into(),
            values: [
                ("rejections{reason=\"bad_hash\"}".to_string(), bad_hash),
                ("quarantined".to_string(), 1.0),
            ]
            .into(),
        }
    }

    #[test]
    fn runs_without_a_liar_are_not_judged() {
        let history = [write(1, 100, "p1", "a", "one")];
        let ops = causal::ops(&history);
        assert!(no_poisoning(&history, &ops, &[], &[], &BTreeMap::new()).is_none());
    }

    /// `p1` wrote `a` = "one" while `p3` was a liar; judged over `obs`.
    fn judged(obs: &[Observation], counters: &[Counters], damaged: &BTreeMap<String, usize>) -> Check {
        let history = [write(1, 100, "p1", "a", "one"), liar_started(50)];
        no_poisoning(&history, &causal::ops(&history), obs, counters, damaged).expect("a liar ran")
    }

    #[test]
    fn poisoned_content_seen_for_one_tick_on_an_honest_peer_is_caught() {
        let obs = [
            seen(300, "p2", "a", "one"),
            // Held for one monitor tick, then repaired: the final trees would not show it.
            seen(500, "p2", "a", "one, tampered"),
            seen(700, "p2", "a", "one"),
        ];
        let c = judged(&obs, &[counters("p2", 0.0)], &BTreeMap::new());
        assert_eq!(c.verdict, Verdict::Invalid);
        assert_eq!(c.evidence["problems"][0]["peer"], "p2");
        assert_eq!(c.evidence["problems"][0]["t_ms"], 500);
    }

    #[test]
    fn the_liar_itself_and_disk_damage_are_left_to_other_checks_and_rejections_are_evidence() {
        let obs = [
            seen(300, "p2", "a", "one"),
            seen(400, "p3", "a", "the liar's own mess"),
            seen(500, "p2", "vault/x", "damaged by a disk fault"),
        ];
        let damaged = BTreeMap::from([("vault/x".to_string(), 2)]);
        let c = judged(&obs, &[counters("p2", 4.0), counters("p3", 0.0)], &damaged);
        assert_eq!(c.verdict, Verdict::Valid, "{}", c.summary);
        assert_eq!(c.evidence["honest_peers"]["p2"]["rejections"]["bad_hash"], 4.0);
        assert!(
            c.evidence["honest_peers"].get("p3").is_none(),
            "the liar is not an honest peer"
        );
        assert_eq!(c.evidence["liars"]["p3"][0], "tamper");
        assert!(c.summary.contains("4 bad hashes"), "{}", c.summary);
    }
}

/// A daemon without metrics is judged quiet by Docker's network counters: a trickle of keep-alives
/// passes, a loop that keeps sending does not.
#[test]
fn no_loop_judges_a_daemon_without_metrics_by_its_network_counters() {
    let h = vec![write(0, 1, "p1", "a", "v1")];
    let obs = vec![seen(5, "p1", "a", Some("v1")), seen(300, "p2", "a", Some("v1"))];
    let order = causal::order(&h, &obs);
    let tx = |peer: &str, t_ms: u64, bytes: f64| Counters {
        t_ms,
        peer: peer.into(),
        values: BTreeMap::from([("net_tx_bytes".to_string(), bytes)]),
    };
    let idle = [
        tx("p1", 4000, 1000.0),
        tx("p1", 6000, 2000.0),
        tx("p2", 4000, 0.0),
        tx("p2", 6000, 500.0),
    ];
    let c = loops::no_loop(&order, &conv(), &obs, &BTreeMap::new(), &idle, watch(Some(4000), None));
    assert_eq!(c.verdict, Verdict::Valid, "{}", c.evidence);
    assert!(
        c.summary.contains("Docker's network counters"),
        "says what it rests on: {}",
        c.summary
    );
    let busy = [
        tx("p1", 4000, 1000.0),
        tx("p1", 6000, 900_000.0),
        tx("p2", 4000, 0.0),
        tx("p2", 6000, 500.0),
    ];
    let c = loops::no_loop(&order, &conv(), &obs, &BTreeMap::new(), &busy, watch(Some(4000), None));
    assert_eq!(c.verdict, Verdict::Invalid, "{}", c.evidence);
    assert_eq!(c.evidence["problems"][0]["peer"], "p1");
}

/// A touch that became a version cannot be seen without the daemon's own counter: `unknown`, with
/// the reason, never a silent `valid`.
#[test]
fn no_metadata_version_is_unknown_without_a_local_changes_counter() {
    let h = vec![
        write(0, 1, "p1", "a", "v1"),
        rec(
            100,
            Event::Meta {
                op: 2,
                peer: "p1".into(),
                kind: FileOpKind::Touch,
                path: "a".into(),
                outcome: Outcome::Ok,
            },
        ),
    ];
    let net_only = [Counters {
        t_ms: 1000,
        peer: "p1".into(),
        values: BTreeMap::from([("net_tx_bytes".to_string(), 10.0)]),
    }];
    let c = loops::no_metadata_version(&h, &net_only).unwrap();
    assert_eq!(c.verdict, Verdict::Unknown);
    assert!(c.summary.contains("local_changes"), "{}", c.summary);
}

/// Seen in a soak window: two peers deleted different contents of one path, and the history could not
/// tell whether one delete came after the other. The path ends absent either way: no unknown. With
/// a write after the later delete, the order matters again (the earlier delete may be a concurrent
/// last operation), and the verdict stays unknown.
#[test]
fn an_undecidable_order_of_two_last_deletes_decides_nothing() {
    let del = |op, peer: &str, t_ms| causal::Op {
        op,
        peer: peer.into(),
        path: "f".into(),
        t_ms,
        hash: None,
        base: None,
    };
    let mut o = causal::PathOrder {
        ops: vec![del(1, "p1", 1000), del(2, "p2", 4000)],
        preds: vec![Default::default(), Default::default()],
        ambiguous: vec![(0, 1)],
    };
    let absent = [peer("p1", &[]), peer("p2", &[])];
    let order = BTreeMap::from([("f".to_string(), o.clone())]);
    let c = state::right_final_state(&order, &absent, &conv());
    assert_eq!(c.verdict, Verdict::Valid, "{}", c.evidence);

    o.ops.push(causal::Op {
        op: 3,
        peer: "p2".into(),
        path: "f".into(),
        t_ms: 6000,
        hash: Some("v3".into()),
        base: None,
    });
    o.preds.push([1].into_iter().collect());
    let v3 = [peer("p1", &[("f", "v3")]), peer("p2", &[("f", "v3")])];
    let order = BTreeMap::from([("f".to_string(), o)]);
    let c = state::right_final_state(&order, &v3, &conv());
    assert_eq!(c.verdict, Verdict::Unknown, "{}", c.evidence);
}

mod flood {
    use super::*;
    use crate::checker::byzantine::flood_tolerated;
    use crate::checker::figures::Arrival;

    /// p5 floods from 10 s to 20 s; a partition from 30 s to 40 s.
    fn history() -> Vec<Record> {
        let started = |t, id: &str, kind: &str, detail| {
            rec(
                t,
                Event::FaultStarted {
                    id: id.into(),
                    step: id.into(),
                    kind: kind.into(),
                    detail,
                },
            )
        };
        vec![
            started(
                10_000,
                "flood#1",
                "byzantine",
                serde_json::json!({"peers": ["p5"], "behaviours": ["flood"]}),
            ),
            rec(
                20_000,
                Event::FaultStopped {
                    id: "flood#1".into(),
                    undo_ms: None,
                },
            ),
            started(30_000, "split#1", "partition", serde_json::json!({})),
            rec(
                40_000,
                Event::FaultStopped {
                    id: "split#1".into(),
                    undo_ms: None,
                },
            ),
        ]
    }

    /// `n` pairs between honest peers, written from `from_ms` on, each `latency` ms late.
    fn pairs(n: u64, from_ms: u64, latency: u64) -> Vec<Arrival<'static>> {
        (0..n)
            .map(|i| Arrival {
                writer: "p1",
                peer: if i % 2 == 0 { "p2" } else { "p3" },
                from_ms: from_ms + i * 100,
                at_ms: Some(from_ms + i * 100 + latency),
                delete: false,
                timed_by: None,
            })
            .collect()
    }

    #[test]
    fn a_plan_that_asks_with_no_flood_gets_unknown() {
        assert_eq!(flood_tolerated(&[], &pairs(20, 0, 10), 2.0).verdict, Verdict::Unknown);
    }

    /// Calm pairs take 50 ms; flooded ones 150 ms pass (limit 2 x 50 + 100), 250 ms fail. Pairs the
    /// partition touched, and pairs to or from the liar, count on neither side; too few is unknown.
    #[test]
    fn flooded_propagation_within_twice_the_calm_p99_is_valid() {
        let h = history();
        let mut all = pairs(20, 0, 50);
        all.extend(pairs(20, 30_000, 5_000)); // the partition's, slow: left out
        all.push(Arrival {
            writer: "p5",
            peer: "p1",
            from_ms: 12_000,
            at_ms: Some(19_000),
            delete: false,
            timed_by: None,
        });
        let mut ok = all.clone();
        ok.extend(pairs(20, 11_000, 150));
        let c = flood_tolerated(&h, &ok, 2.0);
        assert_eq!(c.verdict, Verdict::Valid, "{}", c.summary);
        assert_eq!(c.evidence["limit_ms"], 200);
        assert_eq!(c.evidence["flooded"]["pairs"], 20);
        assert_eq!(c.evidence["calm"]["pairs"], 20);
        let mut slow = all.clone();
        slow.extend(pairs(20, 11_000, 250));
        let c = flood_tolerated(&h, &slow, 2.0);
        assert_eq!(c.verdict, Verdict::Invalid, "{}", c.summary);
        let mut few = all;
        few.extend(pairs(3, 11_000, 150));
        assert_eq!(flood_tolerated(&h, &few, 2.0).verdict, Verdict::Unknown);
    }
}

mod sybils {
    use super::*;
    use crate::checker::byzantine::sybils_refused;

    fn liar(behaviour: &str) -> Record {
        rec(
            100,
            Event::FaultStarted {
                id: "sybil#1".into(),
                step: "sybil".into(),
                kind: "byzantine".into(),
                detail: serde_json::json!({"peers": ["p3"], "behaviours": [behaviour]}),
            },
        )
    }

    fn scrape(t_ms: u64, peer: &str, values: &[(&str, f64)]) -> Counters {
        Counters {
            t_ms,
            peer: peer.into(),
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn only_runs_with_a_sybil_liar_are_judged() {
        assert!(sybils_refused(&[liar("flood")], &[]).is_none());
        assert!(sybils_refused(&[], &[]).is_none());
    }

    /// The liar's last scrape decides: refused attempts and none answered is valid; one answered
    /// attempt (an honest peer let a made-up identity in) is invalid; nothing counted is unknown.
    #[test]
    fn one_answered_attempt_is_invalid_and_none_counted_is_unknown() {
        let history = [liar("sybil")];
        let honest = scrape(9000, "p1", &[("rejections{reason=\"untrusted\"}", 16.0)]);
        let refused = |answered: f64| {
            vec![
                scrape(1000, "p3", &[("sybil_requests{outcome=\"answered\"}", 5.0)]),
                scrape(
                    9000,
                    "p3",
                    &[
                        ("sybil_requests{outcome=\"refused\"}", 96.0),
                        ("sybil_requests{outcome=\"answered\"}", answered),
                    ],
                ),
                honest.clone(),
            ]
        };
        let c = sybils_refused(&history, &refused(0.0)).unwrap();
        assert_eq!(c.verdict, Verdict::Valid, "{}", c.summary);
        assert_eq!(c.evidence["untrusted_rejections_per_honest_peer"]["p1"], 16.0);
        let c = sybils_refused(&history, &refused(1.0)).unwrap();
        assert_eq!(c.verdict, Verdict::Invalid, "{}", c.summary);
        assert_eq!(c.evidence["attempts_per_liar"]["p3"]["answered"], 1.0);
        let c = sybils_refused(&history, &[honest]).unwrap();
        assert_eq!(c.verdict, Verdict::Unknown, "{}", c.summary);
    }
}

mod forks {
    use super::*;
    use crate::checker::byzantine::forks_detected;

    fn liar(behaviour: &str) -> Record {
        rec(
            100,
            Event::FaultStarted {
                id: "fork#1".into(),
                step: "fork".into(),
                kind: "byzantine".into(),
                detail: serde_json::json!({"peers": ["p3"], "behaviours": [behaviour]}),
            },
        )
    }

    fn proofs(peer: &str, n: Option<f64>) -> Counters {
        Counters {
            t_ms: 9000,
            peer: peer.into(),
            values: n.map(|n| ("equivocations".to_string(), n)).into_iter().collect(),
        }
    }

    #[test]
    fn only_runs_with_an_equivocating_liar_are_judged() {
        assert!(forks_detected(&[liar("tamper")], &[proofs("p1", Some(0.0))]).is_none());
        assert!(forks_detected(&[], &[]).is_none());
    }

    /// The honest peers p1 and p2 (not the liar p3) must each hold a proof.
    #[test]
    fn every_honest_peer_must_hold_a_proof_of_the_fork() {
        let history = [liar("equivocate")];
        let all = [
            proofs("p1", Some(1.0)),
            proofs("p2", Some(2.0)),
            proofs("p3", Some(0.0)),
        ];
        let c = forks_detected(&history, &all).unwrap();
        assert_eq!(c.verdict, Verdict::Valid, "{}", c.summary);
        let blind = [proofs("p1", Some(1.0)), proofs("p2", Some(0.0))];
        let c = forks_detected(&history, &blind).unwrap();
        assert_eq!(c.verdict, Verdict::Invalid, "{}", c.summary);
        assert_eq!(c.evidence["never_proved"], serde_json::json!(["p2"]));
    }

    mod quarantined {
        use super::*;
        use crate::checker::byzantine::offender_quarantined;
        use crate::profile::Conviction;

        /// 2026-12-07T07:00:00Z, run time 0.
        const EPOCH_MS: i64 = 1_796_626_800_000;

        fn plan() -> crate::plan::Plan {
            let text = "name: t\nseed: 1\npeers: 4\ntopology: full-mesh\n";
            crate::plan::parse(
                text,
                std::path::Path::new("t.yaml"),
                std::path::Path::new("../topologies"),
            )
            .unwrap()
        }

        /// p3 equivocates from 1 s and writes at 2 s.
        fn history() -> Vec<Record> {
            let mut start = rec(0, Event::HealedAll);
            start.wall = "2026-12-07T07:00:00.000Z".into();
            let mut lie = liar("equivocate");
            lie.t_ms = 1000;
            vec![start, lie, write(2000, 1, "p3", "liar/a.txt", "forked")]
        }

        /// A peer that convicted p3 `after_ms` after its first forked write, keeping `statements`.
        fn convicted(name: &str, after_ms: i64, statements: usize) -> PeerFinal {
            let mut p = peer(name, &[]);
            p.convictions = Some(vec![Conviction {
                offender: "p3".into(),
                detected_ms: Some(EPOCH_MS + 2000 + after_ms),
                statements,
            }]);
            p
        }

        #[test]
        fn every_honest_neighbour_convicts_within_the_bound_with_both_statements() {
            let (plan, history) = (plan(), history());
            assert_eq!(plan.expect.quarantine_within.ms(), 10_000, "the seed's 10 s by default");
            let fast = [
                convicted("p1", 3000, 2),
                convicted("p2", 9500, 2),
                convicted("p4", 500, 2),
            ];
            let c = offender_quarantined(&plan, &history, &fast).unwrap();
            assert_eq!(c.verdict, Verdict::Valid, "{}", c.summary);
            assert_eq!(c.evidence["liars"]["p3"]["honest_neighbours"]["p2"]["after_ms"], 9500);

            let slow = [
                convicted("p1", 3000, 2),
                convicted("p2", 12_000, 2),
                convicted("p4", 500, 2),
            ];
            let c = offender_quarantined(&plan, &history, &slow).unwrap();
            assert_eq!(c.verdict, Verdict::Invalid, "{}", c.summary);
            assert!(c.summary.contains("p2 (of p3, 12.0 s)"), "{}", c.summary);

            let mut blind = convicted("p4", 500, 2);
            blind.convictions = Some(Vec::new());
            let one_statement = [convicted("p1", 3000, 1), convicted("p2", 1000, 2), blind];
            let c = offender_quarantined(&plan, &history, &one_statement).unwrap();
            assert_eq!(c.verdict, Verdict::Invalid, "{}", c.summary);
            assert!(
                c.summary.contains("p1 (of p3)") && c.summary.contains("p4 (of p3)"),
                "{}",
                c.summary
            );
        }

        #[test]
        fn a_liar_that_never_wrote_while_lying_or_a_daemon_without_evidence() {
            let plan = plan();
            let quiet = history()[..2].to_vec();
            assert!(
                offender_quarantined(&plan, &quiet, &[]).is_none(),
                "nothing forked, nothing to prove"
            );
            let mut tampering = history();
            tampering[1] = liar("tamper");
            assert!(offender_quarantined(&plan, &tampering, &[]).is_none());
            let silent = [peer("p1", &[]), peer("p2", &[]), peer("p4", &[])];
            let c = offender_quarantined(&plan, &history(), &silent).unwrap();
            assert_eq!(c.verdict, Verdict::Unknown, "{}", c.summary);
        }
    }

    #[test]
    fn a_daemon_that_counts_no_proofs_is_unknown() {
        let c = forks_detected(&[liar("equivocate")], &[proofs("p1", None)]).unwrap();
        assert_eq!(c.verdict, Verdict::Unknown, "{}", c.summary);
    }
}

mod mitm_refused {
    use super::*;
    use serde_json::json;

    fn started(id: &str, mode: &str) -> Record {
        rec(
            1000,
            Event::FaultStarted {
                id: id.into(),
                step: "mitm".into(),
                kind: "link".into(),
                detail: json!({"peers": ["p1"], "to": ["p2"], "params": {"mitm": mode}}),
            },
        )
    }

    fn observed(id: &str, acted: u64, refused: u64, answered: u64) -> Record {
        let recent: Vec<serde_json::Value> = (0..answered)
            .map(|_| json!({"dst": "10.0.0.2:7000", "answered": true, "back_bytes": 900}))
            .collect();
        rec(
            9000,
            Event::Observed {
                fault: id.into(),
                detail: json!({"mitm": {"p1": {"streams": acted + 2, "acted": acted, "refused": refused,
                                                "answered": answered, "recent": recent}}}),
            },
        )
    }

    #[test]
    fn every_tampered_stream_refused_is_valid() {
        let c = crate::checker::mitm::mitm_refused(&[started("m#1", "alter"), observed("m#1", 5, 5, 0)]).unwrap();
        assert_eq!(c.verdict, Verdict::Valid, "{}", c.summary);
        assert_eq!(c.evidence["faults"]["m#1"]["mode"], "alter");
    }

    #[test]
    fn one_answered_stream_is_invalid_and_named() {
        let c = crate::checker::mitm::mitm_refused(&[
            started("m#1", "alter"),
            observed("m#1", 4, 4, 0),
            started("m#2", "replay"),
            observed("m#2", 3, 2, 1),
        ])
        .unwrap();
        assert_eq!(c.verdict, Verdict::Invalid, "{}", c.summary);
        assert_eq!(c.evidence["answered_streams"][0]["fault"], "m#2");
        assert_eq!(c.evidence["answered"], 1);
    }

    #[test]
    fn nothing_acted_on_or_no_tally_is_unknown_and_no_mitm_is_no_check() {
        let none = crate::checker::mitm::mitm_refused(&[started("m#1", "drop"), observed("m#1", 0, 0, 0)]).unwrap();
        assert_eq!(none.verdict, Verdict::Unknown, "{}", none.summary);
        let lost = crate::checker::mitm::mitm_refused(&[started("m#1", "drop")]).unwrap();
        assert_eq!(lost.verdict, Verdict::Unknown, "{}", lost.summary);
        assert!(crate::checker::mitm::mitm_refused(&[]).is_none());
    }
}
