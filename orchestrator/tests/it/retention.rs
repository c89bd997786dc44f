//! Issue 12, items 5 and 6: what a run folder keeps (the peers' files only for failed runs or with
//! `--keep-files`), what `result.json` says about the tool that made it, the orchestrator's own log,
//! and `chaos prune`.

use std::path::Path;

use crate::util::*;

/// The run folders under `reports`, oldest first (their names start with the plan, so by stamp).
fn run_dirs(reports: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect();
    dirs.sort_by_key(|d| {
        syftchaos::record::run_folder::parse_run_name(&d.file_name().unwrap().to_string_lossy())
            .map(|(_, s, _)| s.to_string())
    });
    dirs
}

#[test]
fn a_valid_run_drops_its_peers_files_unless_asked_and_prune_rotates() {
    if !docker_ready("a_valid_run_drops_its_peers_files_unless_asked_and_prune_rotates") {
        return;
    }
    let _lock = docker_lock();
    let reports = tempfile::tempdir().unwrap();
    let out = run(chaos()
        .args(["run", "chaos-plans/smoke.yaml", "--reports"])
        .arg(reports.path()));
    assert_eq!(out.status.code(), Some(0), "smoke must be valid");
    let first = run_dir(reports.path()).expect("a run folder");
    assert!(!first.join("peers").exists(), "a valid run's peers' files are removed");
    for f in [
        "result.json",
        "junit.xml",
        "index.html",
        "history.jsonl",
        "observations.jsonl",
        "metrics.jsonl",
        "logs/p1.log",
        "chaos.log",
        "recipe.json",
        "keys.json",
        "plan.yaml",
    ] {
        assert!(first.join(f).exists(), "{f} must stay");
    }
    // The orchestrator's log holds what it printed to stderr.
    let log = std::fs::read_to_string(first.join("chaos.log")).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    for line in [
        "chaos: run ",
        "chaos: all faults healed",
        "chaos: converged ",
        "removed the peers' files",
    ] {
        assert!(log.contains(line), "chaos.log lacks `{line}`: {log}");
        assert!(err.contains(line), "stderr lacks `{line}`: {err}");
    }
    // result.json names the tool, the image and the replay command.
    let result = result_of(reports.path());
    assert_eq!(result["version"], env!("CARGO_PKG_VERSION"));
    let commit = result["commit"].as_str().unwrap();
    assert!(commit == "unknown" || commit.len() == 40, "{commit}");
    let recipe: serde_json::Value = serde_json::from_slice(&std::fs::read(first.join("recipe.json")).unwrap()).unwrap();
    assert!(result["image_id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(result["image_id"], recipe["image_id"]);
    assert_eq!(
        result["replay"].as_str().unwrap(),
        format!("chaos replay {}", std::path::absolute(&first).unwrap().display())
    );

    let out = run(chaos()
        .args(["run", "chaos-plans/smoke.yaml", "--keep-files", "--reports"])
        .arg(reports.path()));
    assert_eq!(out.status.code(), Some(0));
    let dirs = run_dirs(reports.path());
    assert_eq!(dirs.len(), 2);
    let second = &dirs[1];
    assert!(
        second.join("peers/p1/sync/notes/from-p1.txt").is_file(),
        "--keep-files keeps the synced files"
    );

    let out = run(chaos()
        .args(["prune", "--keep-runs", "1", "--reports"])
        .arg(reports.path()));
    assert_eq!(out.status.code(), Some(0));
    assert!(!first.exists(), "the older run is rotated away");
    assert!(second.join("result.json").exists(), "the newest stays");
    let index = std::fs::read_to_string(reports.path().join("index.html")).unwrap();
    assert!(
        !index.contains(&*first.file_name().unwrap().to_string_lossy()),
        "the index is rewritten"
    );
}

#[test]
fn prune_spares_live_and_recently_interrupted_runs_and_rejects_bad_input() {
    let reports = tempfile::tempdir().unwrap();
    let r = reports.path();
    let make = |name: &str, result: bool, pid: Option<u32>| {
        let d = r.join(name);
        std::fs::create_dir_all(d.join("peers/p1/sync")).unwrap();
        std::fs::write(d.join("recipe.json"), "{}").unwrap();
        if result {
            std::fs::write(d.join("result.json"), r#"{"plan":"smoke","verdict":"valid"}"#).unwrap();
        }
        if let Some(pid) = pid {
            std::fs::write(d.join("chaos.pid"), format!("{pid}\n")).unwrap();
        }
        d
    };
    let old = make("smoke-20261201T000000Z-00000001", true, None);
    let live = make("soak-20261202T000000Z-00000002", false, Some(std::process::id()));
    let killed = make("smoke-20261203T000000Z-00000003", false, Some(4_194_304_999));
    let newest = make("smoke-20261204T000000Z-00000004", true, None);
    let out = run(chaos().args(["prune", "--keep-runs", "1", "--reports"]).arg(r));
    assert_eq!(out.status.code(), Some(0));
    assert!(!old.exists());
    assert!(live.exists() && killed.exists() && newest.exists());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("kept soak-20261202T000000Z-00000002: its orchestrator is running"),
        "{stdout}"
    );
    let index = std::fs::read_to_string(r.join("index.html")).unwrap();
    assert!(
        index.contains("<td class=\"interrupted\">interrupted</td>"),
        "listed, not hidden"
    );
    assert!(index.contains("<td class=\"in-progress\">in progress</td>"));

    for bad in [&["--keep-runs", "0"][..], &["--keep-runs", "many"][..]] {
        let out = run(chaos().arg("prune").args(bad).arg("--reports").arg(r));
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    let out = run(chaos().args(["prune", "--reports"]).arg(r.join("nope")));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a folder"));
}
