//! Issue 6: the two legacy plans end `valid` with the default flavor and `invalid` with the legacy
//! flavor (the seed's original design), naming the lost write and the zombie: the checkers catch real
//! bugs, changing nothing but the flavor.

use crate::util::*;

#[test]
fn legacy_plans_are_valid_with_the_default_flavor_and_caught_with_the_legacy_one() {
    let test = "legacy_plans_are_valid_with_the_default_flavor_and_caught_with_the_legacy_one";
    if !docker_ready(test) {
        return;
    }
    let _lock = docker_lock();
    // (plan, the check that must catch the legacy design, the path its evidence must name)
    let cases = [
        ("legacy-clock-skew", "no-lost-update", "doc/report.txt"),
        ("legacy-partition-delete", "no-zombie", "docs/plan.txt"),
    ];
    for (plan, _, _) in cases {
        let reports = tempfile::tempdir().unwrap();
        let out = run(chaos()
            .args([
                "run",
                &format!("chaos-plans/{plan}.yaml"),
                "--flavor",
                "default",
                "--reports",
            ])
            .arg(reports.path()));
        let result = result_of(reports.path());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{plan} with the default flavor: {:#}",
            result["checks"]
        );
    }

    for (plan, catcher, path) in cases {
        let reports = tempfile::tempdir().unwrap();
        let out = run(chaos()
            .args(["run", &format!("chaos-plans/{plan}.yaml"), "--reports"])
            .arg(reports.path()));
        let result = result_of(reports.path());
        assert_eq!(
            out.status.code(),
            Some(1),
            "{plan} with the legacy flavor must be invalid"
        );
        let c = check(&result, catcher);
        assert_eq!(c["verdict"], "invalid", "{plan}: {catcher}: {c:#}");
        let problems = c["evidence"]["problems"].as_array().unwrap();
        assert!(
            problems.iter().any(|p| p["path"] == path),
            "{plan}: {path} named: {c:#}"
        );
    }
}
