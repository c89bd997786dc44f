//! Issue 13, item 5: keys are random per run and kept in the run folder; `chaos replay RUN_DIR`
//! reruns a run with its plan, seed, keys and image, and its schedule is the same.

use std::path::Path;

use crate::util::*;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// What the schedule did, without times: every workload operation and every fault, in order.
fn schedule(run_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap();
    let mut ops: Vec<(u64, String)> = Vec::new();
    let mut faults = Vec::new();
    for line in text.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        match e["type"].as_str() {
            Some("write") | Some("meta") => ops.push((
                e["op"].as_u64().unwrap(),
                format!("{} {} {} {} {}", e["peer"], e["kind"], e["path"], e["size"], e["hash"]),
            )),
            Some("fault-started") => {
                // How long applying took is a measurement, not part of the schedule.
                let mut detail = e["detail"].clone();
                if let Some(d) = detail.as_object_mut() {
                    d.remove("apply_ms");
                }
                faults.push(format!("{} {} {}", e["step"], e["kind"], detail))
            }
            _ => {}
        }
    }
    ops.sort();
    ops.into_iter().map(|(_, s)| s).chain(faults).collect()
}

#[test]
fn replay_reuses_plan_seed_keys_and_image_and_repeats_the_schedule() {
    if !docker_ready("replay_reuses_plan_seed_keys_and_image_and_repeats_the_schedule") {
        return;
    }
    let _lock = docker_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (first_reports, second_reports) = (tmp.path().join("first"), tmp.path().join("second"));
    let plan = test_plans().join("replay.yaml");
    // A seed other than the plan's: the replay must take the run's, not the plan file's.
    let out = run(chaos()
        .arg("run")
        .arg(&plan)
        .args(["--seed", "77", "--reports"])
        .arg(&first_reports));
    assert_eq!(out.status.code(), Some(0), "the first run is valid");
    let first = run_dir(&first_reports).unwrap();

    use std::os::unix::fs::PermissionsExt;
    let keys_mode = std::fs::metadata(first.join("keys.json")).unwrap().permissions().mode();
    assert_eq!(keys_mode & 0o777, 0o600, "keys are the owner's only");
    let keys = json(&first.join("keys.json"));
    let recipe = json(&first.join("recipe.json"));
    assert_eq!(recipe["seed"], 77);
    assert!(recipe["image_id"].as_str().unwrap().starts_with("sha256:"), "{recipe}");

    let out = run(chaos().arg("replay").arg(&first).arg("--reports").arg(&second_reports));
    assert_eq!(out.status.code(), Some(0), "the replay is valid too");
    let second = run_dir(&second_reports).unwrap();
    assert_eq!(
        json(&second.join("keys.json")),
        keys,
        "the replay's peers have the run's keys"
    );
    let again = json(&second.join("recipe.json"));
    assert_eq!(again["seed"], 77);
    assert_eq!(again["image_id"], recipe["image_id"]);
    assert_eq!(again["replay_of"].as_str().map(Path::new), Some(first.as_path()));
    let (a, b) = (schedule(&first), schedule(&second));
    assert!(a.len() > 5, "the plan schedules operations and a fault: {a:?}");
    assert_eq!(a, b, "same plan and seed: same operations, contents and faults");

    // A fresh run of the same plan and seed gets other keys: they derive from nothing public.
    let third_reports = tmp.path().join("third");
    let out = run(chaos()
        .arg("run")
        .arg(&plan)
        .args(["--seed", "77", "--reports"])
        .arg(&third_reports));
    assert_eq!(out.status.code(), Some(0));
    let third = run_dir(&third_reports).unwrap();
    let other = json(&third.join("keys.json"));
    for (x, y) in keys["peers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(other["peers"].as_array().unwrap())
    {
        assert_ne!(
            x["identity"], y["identity"],
            "{} kept its identity across runs",
            x["peer"]
        );
    }
    assert_eq!(schedule(&third), a, "the schedule depends on the plan and seed only");
}

#[test]
fn replay_of_a_folder_that_is_not_a_run_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    let out = run(chaos().arg("replay").arg(tmp.path()).arg("--reports").arg(&reports));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("recipe.json") && err.contains("not a run folder"), "{err}");
    assert!(!reports.exists(), "nothing started");
}
