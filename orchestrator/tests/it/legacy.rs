//! Issue 6: the two legacy plans end `valid` with the default flavor and, once `syncpeer --flavor legacy`
//! exists in the peer image, `invalid` with the legacy flavor, naming the lost write and the zombie.
//! Until then the legacy half prints why it is skipped.

use std::process::Command;

use crate::util::*;

/// Whether the peer image's `syncpeer` accepts `flavor: legacy` (it rejects an unknown flavor while
/// reading its config, before anything else; with the flavor known it fails on the missing key).
fn image_has_legacy_flavor() -> Result<bool, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "name: p1\nlisten: 127.0.0.1:1\nhttp: 127.0.0.1:2\nsync_dir: /nonexistent/sync\n\
         state_dir: /nonexistent/state\nkey_file: /nonexistent/key\nflavor: legacy\npeers: []\n",
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--entrypoint", "syncpeer", "-v"])
        .arg(format!("{}:/flavor-probe:ro", dir.path().display()))
        .args(["syftchaos/peer:latest", "--config", "/flavor-probe/config.yaml"])
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok(!stderr.contains("flavor `legacy` is not supported"))
}

fn result_of(reports: &std::path::Path) -> serde_json::Value {
    let dir = run_dir(reports).expect("a run folder");
    serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap()
}

fn check<'a>(result: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    result["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

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

    match image_has_legacy_flavor() {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("SKIPPED the legacy half of {test}: the peer image's syncpeer has no `legacy` flavor yet");
            return;
        }
        Err(e) => panic!("cannot probe the peer image: {e}"),
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
