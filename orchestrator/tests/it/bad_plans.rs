//! A malformed plan gets one line with file:line:column and exit 2, and nothing is started.

use crate::util::*;

fn rejected(yaml: &str, expect_line: u32, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("bad.yaml");
    std::fs::write(&plan, yaml).unwrap();
    for sub in ["validate", "run"] {
        let reports = dir.path().join("reports");
        let out = run(chaos().arg(sub).arg(&plan).args(if sub == "run" {
            vec!["--reports".into(), reports.display().to_string()]
        } else {
            vec![]
        }));
        assert_eq!(out.status.code(), Some(2), "{sub} must exit 2");
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or_default();
        let prefix = format!("{}:{expect_line}:", plan.display());
        assert!(
            first.starts_with(&prefix),
            "{sub}: `{first}` should start with `{prefix}`"
        );
        assert!(first.contains(needle), "{sub}: `{first}` should mention `{needle}`");
        assert_eq!(err.lines().count(), 1, "{sub}: one line: {err}");
        assert!(!reports.exists(), "{sub}: a rejected plan must not create a run folder");
    }
}

#[test]
fn unknown_key_is_rejected_with_its_location() {
    rejected("name: x\npeers: 3\nstepz: []\n", 3, "unknown field `stepz`");
}

#[test]
fn negative_duration_is_rejected_with_its_location() {
    rejected(
        "name: x\npeers: 3\nsteps:\n  - at: 1s\n    duration: -5s\n    partition: {shape: halves}\n",
        5,
        "negative",
    );
}

#[test]
fn unknown_byzantine_behaviour_is_rejected_with_the_allowed_list() {
    rejected(
        "name: x\npeers: 3\nsteps:\n  - at: 1s\n    byzantine: {peers: p3, behaviour: [tamper, lie]}\n",
        5,
        "unknown byzantine behaviour `lie`; allowed: tamper, forge, withhold, flood, slowloris",
    );
}

#[test]
fn unknown_peer_is_rejected_with_its_location() {
    rejected(
        "name: x\npeers: 3\nworkload:\n  - {at: 1s, peer: p4, create: a.txt}\n",
        4,
        "unknown peer `p4`",
    );
}

#[test]
fn every_shipped_plan_validates() {
    let mut cmd = chaos();
    cmd.arg("validate");
    for e in std::fs::read_dir(plans()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            cmd.arg(p);
        }
    }
    assert_eq!(run(&mut cmd).status.code(), Some(0));
}
