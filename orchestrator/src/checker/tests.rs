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
    assert_eq!(no_crash(&peers).verdict, Verdict::Valid);
    peers[1].log = "thread 'main' panicked at src/x.rs:1:1".into();
    assert_eq!(no_crash(&peers).verdict, Verdict::Invalid);
    peers[1].log.clear();
    peers[0].alive = false;
    assert_eq!(no_crash(&peers).verdict, Verdict::Invalid);
}

#[test]
fn recovery_is_measured_from_each_heal_to_the_next_convergence() {
    let h = vec![
        rec(0, Event::Converged { tree_hash: "x".into() }),
        rec(100, Event::Diverged),
        rec(1000, Event::FaultStopped { id: "s#1".into() }),
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
        verdict: v,
        summary: String::new(),
        evidence: serde_json::Value::Null,
    };
    assert_eq!(compose(&[mk(Verdict::Valid), mk(Verdict::Unknown)]), Verdict::Unknown);
    assert_eq!(compose(&[mk(Verdict::Invalid), mk(Verdict::Unknown)]), Verdict::Invalid);
    assert_eq!(compose(&[]), Verdict::Unknown);
}
