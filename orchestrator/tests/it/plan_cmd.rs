//! `chaos plan PLAN`: the concrete seeded schedule, printed; nothing started (no Docker, no run folder).

use crate::util::*;

/// `chaos plan` from an empty folder, with no Docker engine reachable.
fn plan_cmd(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    let mut c = chaos();
    c.current_dir(cwd)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .arg("plan")
        .args(args);
    run(&mut c)
}

#[test]
fn every_shipped_plan_prints_its_whole_schedule_and_starts_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    let mut shipped: Vec<_> = std::fs::read_dir(plans()).unwrap().map(|e| e.unwrap().path()).collect();
    shipped.sort();
    for p in shipped.iter().filter(|p| p.extension().is_some_and(|x| x == "yaml")) {
        let path = p.display().to_string();
        let validate = run(chaos().args(["validate", &path]));
        let said = String::from_utf8_lossy(&validate.stdout).to_string();
        let ops: usize = said
            .split(" operations")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("validate said: {said}"));
        let text = plan_cmd(&[&path], cwd.path());
        assert_eq!(text.status.code(), Some(0), "{path}");
        let lines = String::from_utf8_lossy(&text.stdout).lines().count();
        assert_eq!(lines, ops + 1, "{path}: a header and one line per operation");
        let json = plan_cmd(&["--json", &path], cwd.path());
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
        assert_eq!(v["ops"].as_array().unwrap().len(), ops, "{path}");
    }
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "`chaos plan` must not create a run folder or anything else"
    );
}

#[test]
fn the_seed_flag_redraws_the_schedule_and_the_same_seed_repeats_it() {
    let cwd = tempfile::tempdir().unwrap();
    let path = plans().join("kill-restart.yaml").display().to_string();
    let out = |seed: &str| plan_cmd(&["--seed", seed, &path], cwd.path()).stdout;
    assert_eq!(out("5"), out("5"));
    assert_ne!(out("5"), out("6"));
    assert!(String::from_utf8_lossy(&out("5")).contains("seed 5"));
}

#[test]
fn a_bad_plan_prints_no_schedule() {
    let cwd = tempfile::tempdir().unwrap();
    let plan = cwd.path().join("bad.yaml");
    std::fs::write(&plan, "name: x\npeers: 3\nsteps:\n  - {at: 1s, kill: {peers: p4}}\n").unwrap();
    let out = plan_cmd(&[&plan.display().to_string()], cwd.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(&format!("{}:4:", plan.display())));
}
