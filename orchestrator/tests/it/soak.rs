//! Issue 12: `chaos soak` on real containers. The shipped soak plan for five minutes is three windows,
//! each healed and judged alone, valid, compressed once judged, and playing exactly the schedule
//! `chaos plan --window K` prints; a soak of the seed's legacy design fails a window, stops there
//! with `--stop-on-failure`, and that window's replay command plays the same window's schedule.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use syftchaos::record::history::{self, Event};

use crate::util::*;

/// A workload operation as played: id, peer, kind, path.
type Played = (u64, String, String, String);

/// What a window's history says it played: every fault started (id) and every workload operation
/// (id, peer, kind, path), whatever their outcome.
fn played(window_dir: &Path) -> (BTreeSet<String>, BTreeSet<Played>) {
    let (mut faults, mut ops) = (BTreeSet::new(), BTreeSet::new());
    for r in history::read(&window_dir.join("history.jsonl")).expect("the window's history") {
        match r.expect("a history record").event {
            Event::FaultStarted { id, .. } => {
                faults.insert(id);
            }
            Event::Write {
                op, peer, kind, path, ..
            }
            | Event::Meta {
                op, peer, kind, path, ..
            } if peer != syftchaos::checker::WINDOW_START => {
                ops.insert((op, peer, format!("{kind:?}"), path));
            }
            _ => {}
        }
    }
    (faults, ops)
}

#[test]
fn a_soak_judges_each_window_alone_and_plays_the_seeded_schedule() {
    if !docker_ready("a_soak_judges_each_window_alone_and_plays_the_seeded_schedule") {
        return;
    }
    let _lock = docker_lock();
    let tmp = tempfile::tempdir().unwrap();
    let plan = plans().join("soak.yaml");
    let out = run(chaos()
        .arg("soak")
        .arg(&plan)
        .args(["--duration", "5m", "--seed", "1", "--reports"])
        .arg(tmp.path()));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let result = result_of(tmp.path());
    let windows = result["windows"].as_array().expect("result.json has windows[]");
    assert_eq!(windows.len(), 3, "{windows:?}");
    assert_eq!(result["soak"]["windows_judged"], 3);
    assert!(result["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(result["image_id"].as_str().is_some_and(|i| i.starts_with("sha256:")));
    let dir = run_dir(tmp.path()).unwrap();
    for (k, w) in windows.iter().enumerate() {
        assert_eq!(w["window"], k as u64);
        assert_eq!(w["verdict"], "valid", "{w}");
        assert!(w["operations"].as_u64().unwrap() > 400, "5 ops/s for 100 s: {w}");
        assert!(w["recovered_after_ms"].is_u64(), "{w}");
        let wdir = dir.join(w["folder"].as_str().unwrap());
        // Judged windows are compressed, the last one too once the soak ended.
        for name in ["history.jsonl", "observations.jsonl", "metrics.jsonl"] {
            assert!(
                wdir.join(format!("{name}.gz")).is_file(),
                "{}/{name}.gz",
                wdir.display()
            );
            assert!(!wdir.join(name).exists(), "{}/{name}", wdir.display());
        }
        assert!(wdir.join("window.json").is_file());
        // The window played exactly what `chaos plan --window K` draws for this seed.
        let listed = run(chaos()
            .args(["plan", "--json", "--seed", "1", "--window"])
            .arg(k.to_string())
            .arg(&plan));
        let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        let (faults, ops) = played(&wdir);
        let want_faults: BTreeSet<String> = listed["ops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["action"]["action"] == "fault-start")
            .map(|o| o["action"]["id"].as_str().unwrap().to_string())
            .collect();
        let want_ops: BTreeSet<u64> = listed["ops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["action"]["action"] == "write")
            .map(|o| o["action"]["id"].as_u64().unwrap())
            .collect();
        assert_eq!(faults, want_faults, "window {k}");
        assert_eq!(
            ops.iter().map(|o| o.0).collect::<BTreeSet<u64>>(),
            want_ops,
            "window {k}"
        );
    }
    for c in result["checks"].as_array().unwrap() {
        assert_eq!(c["verdict"], "valid", "{c}");
        assert!(c["summary"].as_str().unwrap().contains("3 windows"), "{c}");
    }
    let html = std::fs::metadata(dir.join("index.html")).unwrap().len();
    assert!(html < 5 << 20, "the report is {html} bytes");
    assert_eq!(labelled(Some(&run_id_of(&dir))), (0, 0), "nothing left behind");
}

#[test]
fn a_failed_windows_replay_plays_that_windows_schedule() {
    if !docker_ready("a_failed_windows_replay_plays_that_windows_schedule") {
        return;
    }
    let _lock = docker_lock();
    let tmp = tempfile::tempdir().unwrap();
    let plan = test_plans().join("soak-legacy.yaml");
    let out = run(chaos()
        .arg("soak")
        .arg(&plan)
        .args(["--stop-on-failure", "--reports"])
        .arg(tmp.path().join("soak")));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let result = result_of(&tmp.path().join("soak"));
    let k = result["soak"]["first_failure"].as_u64().expect("a window failed");
    let windows = result["windows"].as_array().unwrap();
    assert_eq!(windows.len() as u64, k + 1, "the soak stopped at its first failure");
    assert_eq!(result["soak"]["stopped_at_failure"], true);
    let failed = &windows[k as usize];
    assert_eq!(failed["verdict"], "invalid", "{failed}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let replay = failed["replay"].as_str().unwrap();
    assert!(
        stderr.contains(replay),
        "the failure names its replay command: {stderr}"
    );
    assert!(
        replay.contains("--seed 5") && replay.ends_with(&format!("--window {k}")),
        "{replay}"
    );

    // The replay: the same command (its words after `chaos`), into another reports folder.
    let words: Vec<&str> = replay.split_whitespace().skip(1).collect();
    let again = chaos()
        .args(&words)
        .arg("--reports")
        .arg(tmp.path().join("replay"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        again.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let replayed = result_of(&tmp.path().join("replay"));
    assert_eq!(replayed["windows"].as_array().unwrap().len(), 1);
    assert_eq!(replayed["windows"][0]["window"], k);
    let original = played(
        &run_dir(&tmp.path().join("soak"))
            .unwrap()
            .join(failed["folder"].as_str().unwrap()),
    );
    let again = played(
        &run_dir(&tmp.path().join("replay"))
            .unwrap()
            .join(failed["folder"].as_str().unwrap()),
    );
    assert!(!original.0.is_empty() && !original.1.is_empty());
    assert_eq!(original, again, "the replay plays window {k}'s faults and operations");
    for reports in ["soak", "replay"] {
        let id = run_id_of(&run_dir(&tmp.path().join(reports)).unwrap());
        assert_eq!(labelled(Some(&id)), (0, 0), "{reports}: nothing left behind");
    }
}

/// Bad input to `chaos soak` is refused before anything starts: exit 2 and one line saying what is
/// allowed (no Docker needed).
#[test]
fn bad_soak_input_is_refused_with_what_is_allowed() {
    let soak = plans().join("soak.yaml");
    let cases: [(Vec<std::ffi::OsString>, &str); 5] = [
        (
            vec!["soak".into(), plans().join("smoke.yaml").into()],
            "has no `soak:` section; allowed: a soak plan",
        ),
        (
            vec!["soak".into(), soak.clone().into(), "--duration".into(), "2s".into()],
            "--duration 2s; allowed: a duration from 10s to 30d",
        ),
        (
            vec![
                "soak".into(),
                soak.clone().into(),
                "--duration".into(),
                "5m".into(),
                "--window".into(),
                "3".into(),
            ],
            "--window 3; allowed: a window of this soak, 0 to 2",
        ),
        (vec!["run".into(), soak.clone().into()], "is a soak plan"),
        (
            vec!["soak".into(), soak.into(), "--flavor".into(), "nope".into()],
            "nope",
        ),
    ];
    for (args, want) in cases {
        let out = chaos().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    }
}
