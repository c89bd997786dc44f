//! Shared helpers: the `chaos` binary, Docker availability, unique temp folders, labelled-resource counts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Docker tests run two at a time (the harness's threads, one per core) under a shared hold of this
/// lock: each run has its own network, containers and run folder, so two do not see each other.
/// A test takes it alone (`docker_lock_alone`) when it cannot share the host: it counts or reaps every
/// labelled resource (`chaos clean`, `labelled(None)`), or it measures time (latency, bandwidth,
/// clock offsets, the seed's propagation limits) that a second run on two cores would distort.
static DOCKER: RwLock<()> = RwLock::new(());

/// A shared hold: other Docker tests may run beside this one.
pub fn docker_lock() -> RwLockReadGuard<'static, ()> {
    DOCKER.read().unwrap_or_else(|p| p.into_inner())
}

/// An exclusive hold: no other Docker test runs until it is dropped.
pub fn docker_lock_alone() -> RwLockWriteGuard<'static, ()> {
    DOCKER.write().unwrap_or_else(|p| p.into_inner())
}

pub fn chaos() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chaos"));
    c.current_dir(repo());
    c
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn plans() -> PathBuf {
    repo().join("chaos-plans")
}

pub fn test_plans() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans")
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn chaos");
    eprintln!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// True when Docker and the peer image are usable. Under `CI=true` a missing engine or image is a
/// failure (CI must exercise the real thing); elsewhere the test prints why it skips.
pub fn docker_ready(test: &str) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let problem = match Command::new("docker")
        .args(["image", "inspect", "syftchaos/peer:latest"])
        .output()
    {
        Err(e) => Some(format!("the docker CLI cannot run: {e}")),
        Ok(o) if !o.status.success() => Some(format!(
            "syftchaos/peer:latest is not available (run `make image`): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => None,
    };
    match problem {
        None => true,
        Some(p) if ci => panic!("{test}: Docker test cannot run under CI=true: {p}"),
        Some(p) => {
            eprintln!("SKIPPED {test}: {p}");
            false
        }
    }
}

/// Labelled containers and networks, optionally only those of one run.
pub fn labelled(run: Option<&str>) -> (usize, usize) {
    let filter = match run {
        Some(r) => format!("label=io.syftchaos.run={r}"),
        None => "label=io.syftchaos.managed=true".to_string(),
    };
    let count = |args: &[&str]| {
        let o = Command::new("docker").args(args).output().expect("docker");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    };
    (
        count(&["ps", "-aq", "--filter", &filter]),
        count(&["network", "ls", "-q", "--filter", &filter]),
    )
}

/// [`labelled`]`(None)`, less the networks Docker itself will not remove: no container on them,
/// yet "has active endpoints" (moby/moby#42119, seen here after 100-peer runs). Each is tried
/// once more and named; only a restart of the Docker engine frees it, so it must not fail every
/// later test on the machine. Anything else left counts (and is removed, so that one failure
/// does not fail the next test too).
pub fn labelled_but_stuck() -> (usize, usize) {
    let (containers, _) = labelled(None);
    let out = Command::new("docker")
        .args(["network", "ls", "-q", "--filter", "label=io.syftchaos.managed=true"])
        .output()
        .expect("docker");
    let mut networks = 0;
    for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let attached = Command::new("docker")
            .args(["network", "inspect", "--format", "{{len .Containers}}", id])
            .output()
            .expect("docker");
        let rm = Command::new("docker")
            .args(["network", "rm", id])
            .output()
            .expect("docker");
        let stuck = String::from_utf8_lossy(&attached.stdout).trim() == "0"
            && String::from_utf8_lossy(&rm.stderr).contains("has active endpoints");
        if stuck {
            eprintln!(
                "network {id}: no container on it, Docker says it has active endpoints (moby/moby#42119): not counted"
            );
        } else {
            // Left behind (removed now, or not), so counted.
            networks += 1;
        }
    }
    (containers, networks)
}

/// The single run folder created under `reports` (not the `latest` link to it).
pub fn run_dir(reports: &Path) -> Option<PathBuf> {
    std::fs::read_dir(reports)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir() && !p.is_symlink())
}

/// The run id is the last `-` part of the run folder's name.
pub fn run_id_of(dir: &Path) -> String {
    dir.file_name()
        .unwrap()
        .to_string_lossy()
        .rsplit('-')
        .next()
        .unwrap()
        .to_string()
}

/// The `result.json` of the single run folder under `reports`.
pub fn result_of(reports: &Path) -> serde_json::Value {
    let dir = run_dir(reports).expect("a run folder");
    serde_json::from_slice(&std::fs::read(dir.join("result.json")).expect("result.json")).unwrap()
}

/// One named check of a `result.json`.
pub fn check<'a>(result: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    result["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}
