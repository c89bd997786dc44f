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
        if said.contains(": ok: soak plan") {
            // A soak's schedule is not printed whole: see the soak tests below.
            continue;
        }
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

/// Issue 12: a soak plan prints its first actions, or one window exactly as the whole soak makes it.
#[test]
fn a_soak_plan_prints_its_first_actions_or_one_window() {
    let cwd = tempfile::tempdir().unwrap();
    let path = plans().join("soak.yaml").display().to_string();
    let lines = |args: &[&str]| {
        let mut all = vec![];
        all.extend_from_slice(args);
        all.push(&path);
        let out = plan_cmd(&all, cwd.path());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let first = lines(&[]);
    assert_eq!(first.len(), 201, "a header and the first 200 actions");
    assert!(
        first[0].starts_with("# soak plan soak, seed 1") && first[0].contains("288 windows"),
        "{}",
        first[0]
    );
    assert_eq!(lines(&["--limit", "5"]).len(), 6);
    // Window 0 alone is the soak's first actions, and window 1 follows it.
    let w0 = lines(&["--window", "0"]);
    let w1 = lines(&["--window", "1"]);
    let n = w0.len() - 1 + w1.len() - 1;
    let whole = lines(&["--limit", &n.to_string()]);
    assert_eq!(&whole[1..w0.len()], &w0[1..]);
    assert_eq!(&whole[w0.len()..], &w1[1..]);
    assert!(w1.iter().any(|l| l.contains(" start ")), "window 1 has faults");
    // The same window again, and with another seed a different one.
    assert_eq!(lines(&["--window", "7"]), lines(&["--window", "7"]));
    assert_ne!(
        lines(&["--window", "7"])[1..],
        lines(&["--seed", "2", "--window", "7"])[1..]
    );
    let json = plan_cmd(&["--json", "--window", "1", &path], cwd.path());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(v["ops"].as_array().unwrap().len(), w1.len() - 1);
    assert_eq!(v["soak"]["windows"], 288);
    assert_eq!(v["span_ms"], serde_json::json!([100_000, 200_000]));
    let past = plan_cmd(&["--window", "288", &path], cwd.path());
    assert_eq!(past.status.code(), Some(2));
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0, "nothing written");
}

#[test]
fn chaos_run_refuses_a_soak_plan_before_anything_starts() {
    let cwd = tempfile::tempdir().unwrap();
    let path = plans().join("soak.yaml").display().to_string();
    let out = run(chaos()
        .current_dir(cwd.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["run", &path, "--reports", "reports"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a soak plan"));
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0, "no run folder");
}
