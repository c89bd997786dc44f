//! Syncthing, the second daemon under test (issue 10), on real containers through its shipped profile:
//! the image is built offline by the profile's own script when missing, the peers are introduced
//! through Syncthing's REST API, a partition is applied by the fault agents, and every check is judged
//! from what Syncthing offers (trees, observations, Docker's counters). Plans Syncthing cannot take are
//! refused before anything starts, with the reason.

use crate::util::*;

#[test]
fn a_partition_plan_runs_against_syncthing_end_to_end() {
    if !docker_ready("a_partition_plan_runs_against_syncthing_end_to_end") {
        return;
    }
    let _lock = docker_lock();
    let reports = tempfile::tempdir().unwrap();
    // smoke: a 4 s partition of p1 while p1 and p2 write; single writers, so the verdict is decided.
    let out = run(chaos()
        .args(["run", "chaos-plans/smoke.yaml", "--peer", "syncthing", "--reports"])
        .arg(reports.path()));
    let dir = run_dir(reports.path()).expect("a run folder");
    let run_id = run_id_of(&dir);
    assert_eq!(labelled(Some(&run_id)), (0, 0), "peers, agents and network removed");
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["profile"], "syncthing");
    assert_eq!(result["image"], "syftchaos/syncthing:latest");
    let checks = result["checks"].as_array().unwrap();
    let verdict = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check"))["verdict"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for c in checks {
        assert!(
            !c["rests_on"].as_str().unwrap_or("").is_empty(),
            "says what it rests on: {c}"
        );
    }
    assert_eq!(verdict("converged"), "valid");
    assert_eq!(verdict("no-lost-update"), "valid");
    assert_eq!(verdict("recovered-in-time"), "valid");
    let no_loop = checks.iter().find(|c| c["name"] == "no-loop").unwrap();
    assert_eq!(
        no_loop["evidence"]["counters"], "Docker's network counters (the daemon has no metrics of its own)",
        "no metrics: judged by Docker's counters"
    );
    assert_eq!(out.status.code(), Some(0), "smoke is valid on Syncthing");
    // Syncthing's own files are not user data, and the partition really cut p1 off for a while.
    for p in result["peers"].as_array().unwrap() {
        assert_eq!(p["files"], 2, "{p}");
    }
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    assert!(history.contains("\"diverged\""), "the partition made the trees differ");
}

#[test]
fn plans_syncthing_cannot_take_are_refused_before_anything_starts_and_clock_offsets_are_not() {
    // Issue 11: clock offsets reach Syncthing through its vDSO (`clock: vdso`); a rate cannot.
    let out = run(chaos().args(["validate", "chaos-plans/clock-skew.yaml", "--peer", "syncthing"]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let rate = dir.path().join("clock-rate.yaml");
    std::fs::write(
        &rate,
        "name: clock-rate\npeers: 2\nsteps:\n  - {at: 1s, clock: {peers: p1, rate: 2}}\n",
    )
    .unwrap();
    let out = run(chaos().arg("validate").arg(&rate).args(["--peer", "syncthing"]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clock-rate.yaml:") && err.contains("no `rate`"), "{err}");
    let out = run(chaos().args(["validate", "chaos-plans/byzantine-peer.yaml", "--peer", "syncthing"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot take `byzantine` faults"));
    let out = run(chaos().args(["validate", "chaos-plans/partition-halves.yaml", "--peer", "syncthing"]));
    assert_eq!(out.status.code(), Some(0), "partitions are fine");
    let out = run(chaos().args(["validate", "chaos-plans/smoke.yaml", "--peer", "nosuch"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("profiles in"));
}
