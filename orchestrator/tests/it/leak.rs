//! Issue 12: the leak verdict on real containers. The same plan runs twice at once: with syncpeer's
//! `leak` flavor (256 KiB held per version) `no-leak` is invalid and names every peer's memory;
//! with the honest daemon it is valid.

use std::process::Stdio;

use crate::util::*;

#[test]
fn a_leaking_daemon_is_caught_and_an_honest_one_is_not() {
    if !docker_ready("a_leaking_daemon_is_caught_and_an_honest_one_is_not") {
        return;
    }
    let _lock = docker_lock();
    let tmp = tempfile::tempdir().unwrap();
    let plan = test_plans().join("leak.yaml");
    let start = |flavor: &str| {
        chaos()
            .arg("run")
            .arg(&plan)
            .args(["--flavor", flavor, "--reports"])
            .arg(tmp.path().join(flavor))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chaos")
    };
    let (leaking, honest) = (start("leak"), start("default"));
    for (flavor, child, want) in [("leak", leaking, "invalid"), ("default", honest, "valid")] {
        let out = child.wait_with_output().unwrap();
        eprintln!("--- {flavor}\n{}", String::from_utf8_lossy(&out.stderr));
        let result = result_of(&tmp.path().join(flavor));
        let c = check(&result, "no-leak");
        assert_eq!(c["verdict"], want, "{flavor}: {c}");
        if flavor == "leak" {
            assert_eq!(out.status.code(), Some(1));
            let problems = c["evidence"]["problems"].as_array().unwrap();
            assert_eq!(problems.len(), 3, "every peer's memory: {c}");
            assert!(problems.iter().all(|p| p["series"] == "memory"), "{c}");
            // Every other check is unaffected: the leak is the only thing wrong.
            for other in result["checks"].as_array().unwrap() {
                if other["name"] != "no-leak" {
                    assert_eq!(other["verdict"], "valid", "{other}");
                }
            }
        } else {
            assert_eq!(out.status.code(), Some(0));
        }
    }
}
