//! The walking skeleton on real Docker: the smoke plan end to end, and cleanup after SIGKILL.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn smoke_plan_converges_reports_and_leaves_nothing_behind() {
    if !docker_ready("smoke_plan_converges_reports_and_leaves_nothing_behind") {
        return;
    }
    let _lock = docker_lock_alone();
    let reports = tempfile::tempdir().unwrap();
    let out = run(chaos()
        .args(["run", "chaos-plans/smoke.yaml", "--reports"])
        .arg(reports.path()));
    let dir = run_dir(reports.path()).expect("a run folder");
    let run_id = run_id_of(&dir);
    assert_eq!(labelled(Some(&run_id)), (0, 0), "containers and network removed");
    assert_eq!(out.status.code(), Some(0), "smoke must be valid");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("verdict: valid"), "{stdout}");
    assert!(
        stdout.contains(&dir.join("index.html").display().to_string()),
        "prints the report path: {stdout}"
    );

    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["plan"], "smoke");
    assert_eq!(result["seed"], 42);
    assert_eq!(result["run_id"], run_id.as_str());
    assert_eq!(result["verdict"], "valid");
    assert!(
        ["userspace", "netem"].contains(&result["engine"].as_str().unwrap()),
        "engine: {}",
        result["engine"]
    );
    let peers = result["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 3);
    assert!(
        peers
            .iter()
            .all(|p| p["files"] == 2 && p["tree_hash"] == peers[0]["tree_hash"]),
        "{peers:?}"
    );
    let checks = result["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "converged" && c["verdict"] == "valid")
    );
    let recovery = result["recovery"].as_array().unwrap();
    assert!(
        recovery
            .iter()
            .any(|r| r["fault"] == "cut-p1#1" && r["converged_after_ms"].is_u64()),
        "{recovery:?}"
    );

    // The history has the op, the fault start/stop and the heal, in order.
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let types: Vec<String> = history
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let pos = |t: &str| {
        types
            .iter()
            .position(|x| x == t)
            .unwrap_or_else(|| panic!("no {t} in {types:?}"))
    };
    assert!(
        pos("run-started") < pos("write")
            && pos("fault-started") < pos("fault-stopped")
            && pos("fault-stopped") < pos("healed-all")
    );
    for f in ["index.html", "junit.xml", "plan.yaml", "logs/p1.log"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let latest = std::fs::read_link(reports.path().join("latest")).unwrap();
    assert_eq!(latest, dir.file_name().unwrap());
}

#[test]
fn sigkilled_orchestrator_leaves_nothing_after_chaos_clean() {
    if !docker_ready("sigkilled_orchestrator_leaves_nothing_after_chaos_clean") {
        return;
    }
    let _lock = docker_lock_alone();
    let reports = tempfile::tempdir().unwrap();
    let (mut child, run_id) = start_long_run(reports.path(), Stdio::null());
    // A run in progress is not touched by a plain `chaos clean`.
    let out = run(chaos().arg("clean"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        labelled(Some(&run_id)).0,
        6,
        "`chaos clean` removed a live run's containers (3 peers and their 3 fault agents)"
    );
    // SIGKILL the orchestrator mid-run.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        labelled(Some(&run_id)).0,
        6,
        "SIGKILL cannot clean up: the containers are still there"
    );

    let ps = run(chaos().arg("ps"));
    assert!(
        String::from_utf8_lossy(&ps.stdout).contains(&run_id),
        "`chaos ps` lists the orphaned run"
    );
    let out = run(chaos().arg("clean"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(labelled_but_stuck(), (0, 0), "no labelled container or network is left");
}

/// `chaos clean --all` also removes what a live process labelled (here a network carrying this
/// test's own pid).
#[test]
fn chaos_clean_all_removes_live_runs_too() {
    if !docker_ready("chaos_clean_all_removes_live_runs_too") {
        return;
    }
    let _lock = docker_lock_alone();
    let name = format!("sc-test-clean-{}", std::process::id());
    let created = run(Command::new("docker").args([
        "network",
        "create",
        "--label",
        "io.syftchaos.managed=true",
        "--label",
        &format!("io.syftchaos.pid={}", std::process::id()),
        &name,
    ]));
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    run(chaos().arg("clean"));
    let kept = run(Command::new("docker").args(["network", "inspect", "--format", "{{.Name}}", &name]));
    assert!(
        kept.status.success(),
        "a live process's network was removed without --all"
    );
    let out = run(chaos().args(["clean", "--all"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(labelled_but_stuck(), (0, 0));
}

#[test]
fn ctrl_c_and_sigterm_remove_the_runs_containers() {
    if !docker_ready("ctrl_c_and_sigterm_remove_the_runs_containers") {
        return;
    }
    let _lock = docker_lock_alone();
    for signal in ["INT", "TERM"] {
        let reports = tempfile::tempdir().unwrap();
        let (child, run_id) = start_long_run(reports.path(), Stdio::piped());
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        assert!(status.unwrap().success());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "SIG{signal}: exit 2 (the run did not finish): {err}"
        );
        assert!(
            err.contains("removing the run's containers"),
            "SIG{signal}: says it cleans up: {err}"
        );
        assert_eq!(
            labelled(Some(&run_id)),
            (0, 0),
            "SIG{signal}: nothing of run {run_id} is left"
        );
    }
}

/// Starts `chaos run` on a long plan and returns once its 3 containers exist (plus 2 s into the
/// schedule): the moment to interrupt it.
fn start_long_run(reports: &std::path::Path, stderr: Stdio) -> (std::process::Child, String) {
    let child = chaos()
        .args(["run", "--reports"])
        .arg(reports)
        .arg(test_plans().join("long-partition.yaml"))
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let run_id = loop {
        if let Some(dir) = run_dir(reports) {
            let id = run_id_of(&dir);
            if labelled(Some(&id)).0 == 3 {
                break id;
            }
        }
        assert!(Instant::now() < deadline, "the run never started its containers");
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(2));
    (child, run_id)
}
