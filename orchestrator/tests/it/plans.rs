//! Shipped plans run for real (issue 5's "Done when"): process, lock and disk faults end `valid`
//! with the reference peer, and the evidence that matters is in the run folder.

use crate::util::*;

/// Runs a shipped plan; returns its exit code, result.json and history records.
fn run_plan(name: &str) -> (Option<i32>, serde_json::Value, Vec<serde_json::Value>) {
    let reports = tempfile::tempdir().unwrap();
    let out = run(chaos()
        .args(["run", &format!("chaos-plans/{name}.yaml"), "--reports"])
        .arg(reports.path()));
    let dir = run_dir(reports.path()).expect("a run folder");
    assert_eq!(labelled(Some(&run_id_of(&dir))), (0, 0), "{name}: nothing left behind");
    let result = result_of(reports.path());
    let history = std::fs::read_to_string(dir.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out.status.code(), result, history)
}

fn events<'a>(history: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    history.iter().filter(|r| r["type"] == kind).collect()
}

#[test]
fn a_killed_peer_comes_back_and_loses_nothing() {
    if !docker_ready("a_killed_peer_comes_back_and_loses_nothing") {
        return;
    }
    let _lock = docker_lock();
    let (code, result, history) = run_plan("kill-restart");
    assert_eq!(check(&result, "no-lost-update")["verdict"], "valid");
    let kills: Vec<_> = events(&history, "fault-started")
        .into_iter()
        .filter(|e| e["kind"] == "kill")
        .collect();
    assert_eq!(kills.len(), 1, "the plan killed p2 once");
    assert!(
        events(&history, "fault-stopped")
            .iter()
            .any(|e| e["id"] == "crash-p2#1"),
        "and brought it back"
    );
    let back = events(&history, "peer-back");
    assert!(
        back.iter().any(|e| e["peer"] == "p2" && e["after"] == "kill"),
        "p2 answered again: {back:?}"
    );
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

#[test]
fn a_paused_peer_catches_up_after_unpause() {
    if !docker_ready("a_paused_peer_catches_up_after_unpause") {
        return;
    }
    let _lock = docker_lock();
    let (code, result, _) = run_plan("pause-unpause");
    assert_eq!(check(&result, "converged")["verdict"], "valid");
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

#[test]
fn a_stale_lock_is_cleared_and_sync_goes_on() {
    if !docker_ready("a_stale_lock_is_cleared_and_sync_goes_on") {
        return;
    }
    let _lock = docker_lock();
    let (code, result, history) = run_plan("stale-lock");
    let seen = events(&history, "observed");
    assert!(
        seen.iter()
            .any(|e| e["fault"] == "crashed-apply#1" && e["detail"]["p2"]["cleared"] == true),
        "the stale lock on p2 was removed before the fault ended: {seen:?}"
    );
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

#[test]
fn a_bit_flipped_file_is_repaired_and_never_spreads() {
    if !docker_ready("a_bit_flipped_file_is_repaired_and_never_spreads") {
        return;
    }
    let _lock = docker_lock();
    let (code, result, _) = run_plan("disk-corruption");
    assert_eq!(
        check(&result, "no-corruption")["verdict"],
        "valid",
        "damage must not survive or spread"
    );
    assert_eq!(check(&result, "converged")["verdict"], "valid");
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}

#[test]
fn a_full_disk_is_survived_and_caught_up() {
    if !docker_ready("a_full_disk_is_survived_and_caught_up") {
        return;
    }
    let _lock = docker_lock();
    let (code, result, history) = run_plan("disk-full");
    let fill = events(&history, "fault-started")
        .into_iter()
        .find(|e| e["kind"] == "disk")
        .expect("fill started");
    assert!(
        fill["detail"]["p2"]["filled_bytes"].as_u64().unwrap() > 16 << 20,
        "p2's 32 MiB disk was filled"
    );
    assert_eq!(code, Some(0), "verdict {}", result["verdict"]);
}
