//! Issue 15: every check proven end to end. Each of syncpeer's quick mutants (a `mutant-*` flavor:
//! one small, deliberate bug, docs/PEER.md "Mutants") runs the plan that should expose it; the check
//! that proves the bug's invariant is `invalid` with evidence naming the bug, and every other check
//! stays `valid` (or is named here with the reason it cannot be). The honest daemon is `valid` on
//! the same plans. `make mutants` (scripts/mutants.py) prints the same as a matrix.

use std::process::Stdio;

use crate::util::*;

/// One run of `plan` (a file under orchestrator/tests/plans/ or chaos-plans/) with `flavor`.
fn run_with(plan: &std::path::Path, flavor: &str) -> (Option<i32>, serde_json::Value) {
    let reports = tempfile::tempdir().unwrap();
    let out = chaos()
        .arg("run")
        .arg(plan)
        .args(["--flavor", flavor, "--reports"])
        .arg(reports.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn chaos");
    eprintln!("--- {flavor}\n{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), result_of(reports.path()))
}

/// Test `test`: runs `flavor` on `plan`: exit 1, `catchers` invalid (each checked by `evidence`),
/// every other check valid except those in `collateral` (name, the verdict it must have or `any`,
/// why).
fn caught(
    test: &str,
    plan: &std::path::Path,
    flavor: &str,
    catchers: &[&str],
    collateral: &[(&str, &str, &str)],
    evidence: impl Fn(&str, &serde_json::Value),
) {
    if !docker_ready(test) {
        return;
    }
    let _lock = docker_lock();
    let (code, result) = run_with(plan, flavor);
    assert_eq!(code, Some(1), "{flavor}: {:#}", result["checks"]);
    for c in result["checks"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        if catchers.contains(&name) {
            assert_eq!(c["verdict"], "invalid", "{flavor}: {name} must catch it: {c:#}");
            evidence(name, c);
        } else if let Some((_, want, why)) = collateral.iter().find(|(n, _, _)| *n == name) {
            if *want != "any" {
                assert_eq!(c["verdict"], *want, "{flavor}: {name} ({why}): {c:#}");
            }
        } else {
            assert_eq!(c["verdict"], "valid", "{flavor}: only {catchers:?} may fail: {c:#}");
        }
    }
}

/// A run that never converges has no quiet window to watch the counters in: no-loop says so.
const NEVER_CONVERGED: (&str, &str, &str) = (
    "no-loop",
    "unknown",
    "never converged: no quiet window to watch the counters in",
);

fn problems(c: &serde_json::Value) -> &Vec<serde_json::Value> {
    c["evidence"]["problems"].as_array().expect("problems")
}

#[test]
fn the_honest_daemon_is_valid_on_every_mutant_plan() {
    if !docker_ready("the_honest_daemon_is_valid_on_every_mutant_plan") {
        return;
    }
    let _lock = docker_lock();
    for plan in [
        plans().join("smoke.yaml"),
        test_plans().join("mutants.yaml"),
        test_plans().join("mutants-tamper.yaml"),
        test_plans().join("mutants-catch-up.yaml"),
    ] {
        let (code, result) = run_with(&plan, "default");
        assert_eq!(code, Some(0), "{}: {:#}", plan.display(), result["checks"]);
    }
}

#[test]
fn mutant_echo_loop_is_caught_by_no_loop() {
    caught(
        "mutant_echo_loop_is_caught_by_no_loop",
        &plans().join("smoke.yaml"),
        "mutant-echo-loop",
        &["no-loop"],
        &[],
        |_, c| {
            // The counters never settle: versions applied and authored keep climbing on every peer.
            let p = problems(c);
            assert!(
                p.iter()
                    .any(|p| p.to_string().contains("versions_applied") || p.to_string().contains("local_changes")),
                "{c:#}"
            );
        },
    );
}

#[test]
fn mutant_metadata_loop_is_caught_by_no_metadata_version() {
    caught(
        "mutant_metadata_loop_is_caught_by_no_metadata_version",
        &test_plans().join("mutants.yaml"),
        "mutant-metadata-loop",
        &["no-metadata-version"],
        &[],
        |_, c| {
            let ev = &c["evidence"];
            let authored = ev["authored"].as_f64().unwrap();
            assert!(authored > ev["content_writes"].as_f64().unwrap(), "{c:#}");
        },
    );
}

#[test]
fn mutant_software_bug_is_caught_by_no_crash() {
    caught(
        "mutant_software_bug_is_caught_by_no_crash",
        &test_plans().join("mutants.yaml"),
        "mutant-software-bug",
        &["no-crash"],
        &[],
        |_, c| {
            // The panic's own line, from the peer's log: where the bug is.
            let panics = c["evidence"]["panics"].as_array().unwrap();
            assert!(
                panics.iter().any(|p| p["line"]
                    .as_str()
                    .is_some_and(|l| l.contains("panicked at") && l.contains("server.rs"))),
                "{c:#}"
            );
        },
    );
}

#[test]
fn mutant_data_poisoning_is_caught_by_no_poisoning_and_no_corruption() {
    caught(
        "mutant_data_poisoning_is_caught_by_no_poisoning_and_no_corruption",
        &test_plans().join("mutants-tamper.yaml"),
        "mutant-data-poisoning",
        // The honest peers write the tampered bytes, then author them as a local edit (the file no
        // longer hashes to its entry), so they spread to every peer, the liar too: the liar's writes
        // are replaced everywhere (right-final-state, no-lost-update). Each names a `liar/big-*` file.
        &["no-poisoning", "no-corruption", "right-final-state", "no-lost-update"],
        &[(
            "no-loop",
            "any",
            "invalid when the monitor saw the liar hold its own content, then the poison (a second \
             version of a path written once); valid when the poison came first",
        )],
        |name, c| {
            let p = problems(c);
            if name == "no-poisoning" {
                assert!(
                    p.iter().all(|p| p["peer"] != "p3"),
                    "only honest peers are judged: {c:#}"
                );
            }
            assert!(
                p.iter()
                    .any(|p| p["path"].as_str().is_some_and(|s| s.starts_with("liar/big-"))),
                "{name}: {c:#}"
            );
        },
    );
}

#[test]
fn mutant_consensus_failure_is_caught_by_converged() {
    caught(
        "mutant_consensus_failure_is_caught_by_converged",
        &test_plans().join("mutants.yaml"),
        "mutant-consensus-failure",
        &["converged", "recovered-in-time"],
        &[NEVER_CONVERGED],
        |name, c| {
            if name == "converged" {
                assert!(c.to_string().contains("shared/doc.txt"), "{c:#}");
            }
        },
    );
}

#[test]
fn mutant_slow_catch_up_is_caught_by_recovered_in_time() {
    caught(
        "mutant_slow_catch_up_is_caught_by_recovered_in_time",
        &test_plans().join("mutants-catch-up.yaml"),
        "mutant-slow-catch-up",
        // The run judges the trees when converge_within passes, so a recovery past the limit is also
        // a converged failure, and the file each side wrote during the cut is still missing on the
        // other (right-final-state, no-lost-update: a write not arrived when judged is lost).
        &["recovered-in-time", "converged", "right-final-state", "no-lost-update"],
        &[NEVER_CONVERGED],
        |name, c| {
            if name == "recovered-in-time" {
                assert!(
                    c["evidence"]["recoveries"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|r| r["converged_after_ms"].is_null()),
                    "{c:#}"
                );
            } else {
                assert!(c.to_string().contains("cut/from-p"), "{name}: {c:#}");
            }
        },
    );
}
