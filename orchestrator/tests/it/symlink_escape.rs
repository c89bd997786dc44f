//! Issue 13, item 4: nothing escapes the run folder. A whole `chaos run` in which the peers plant
//! symlinks to files outside the run folder, from inside their containers, wherever the orchestrator
//! (root, on the host) will work: workload touch, chmod, modify and create, the stale and read-only
//! lock faults with the lock folder's chown, the Byzantine control file, disk corrupt and truncate,
//! and the convergence monitor's and checkers' tree reads. The files outside must come out as they
//! went in (content, mode, owner, mtime, folder listings), and their content must appear nowhere in
//! what the run recorded.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::util::*;

const OLD: Duration = Duration::from_secs(1_000_000);

/// The files a hostile peer points at, outside any run folder, owned by root with known content,
/// mode and an old mtime.
fn outside_files(outside: &Path) {
    for (rel, mode) in [
        ("secret", 0o600),
        ("corrupt", 0o600),
        ("trunc", 0o600),
        ("out/keep", 0o600),
        ("state/locks/precious", 0o600),
        ("tree/tree-secret", 0o644),
    ] {
        let f = outside.join(rel);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, format!("outside {rel}: a host file no peer may touch\n").repeat(64)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for dir in ["out", "state", "state/locks", "tree"] {
        std::fs::set_permissions(outside.join(dir), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    // mtimes last, folders after their files, so creating the files does not move them.
    for rel in [
        "secret",
        "corrupt",
        "trunc",
        "out/keep",
        "state/locks/precious",
        "tree/tree-secret",
    ] {
        set_old(&outside.join(rel));
    }
    for dir in ["state/locks", "out", "state", "tree"] {
        set_old(&outside.join(dir));
    }
}

fn set_old(path: &Path) {
    std::fs::File::open(path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(SystemTime::UNIX_EPOCH + OLD))
        .unwrap();
}

/// What could change about one path outside: its content (or a folder's listing), mode, owner, mtime.
#[derive(Debug, PartialEq)]
struct State {
    content: Vec<u8>,
    mode: u32,
    owner: (u32, u32),
    mtime: SystemTime,
}

/// Every path under `outside` with its [`State`].
fn snapshot(outside: &Path) -> BTreeMap<PathBuf, State> {
    let mut out = BTreeMap::new();
    let mut stack = vec![outside.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let content = if m.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect();
            names.sort();
            let listing = names.iter().map(|n| n.display().to_string() + "\n").collect::<String>();
            stack.extend(names);
            listing.into_bytes()
        } else {
            std::fs::read(&p).unwrap()
        };
        let state = State {
            content,
            mode: m.mode(),
            owner: (m.uid(), m.gid()),
            mtime: m.modified().unwrap(),
        };
        out.insert(p, state);
    }
    out
}

/// What differs between two snapshots, one line per path and property.
fn changes(before: &BTreeMap<PathBuf, State>, after: &BTreeMap<PathBuf, State>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, b) in before {
        let Some(a) = after.get(path) else {
            out.push(format!("{}: gone", path.display()));
            continue;
        };
        if a.content != b.content {
            out.push(format!(
                "{}: content changed ({} bytes, now {})",
                path.display(),
                b.content.len(),
                a.content.len()
            ));
        }
        if a.mode != b.mode {
            out.push(format!("{}: mode {:o}, now {:o}", path.display(), b.mode, a.mode));
        }
        if a.owner != b.owner {
            out.push(format!("{}: owner {:?}, now {:?}", path.display(), b.owner, a.owner));
        }
        if a.mtime != b.mtime {
            out.push(format!("{}: mtime moved", path.display()));
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("{}: appeared", path.display()));
    }
    out
}

/// Runs `script` as root inside a peer container (retried for up to 2 minutes).
fn plant(container: &str, script: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new("docker")
            .args(["exec", "-u", "root", container, "sh", "-c", script])
            .output()
            .expect("docker");
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "planting in {container} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn symlinks_planted_by_peers_never_lead_the_orchestrator_out_of_the_run_folder() {
    if !docker_ready("symlinks_planted_by_peers_never_lead_the_orchestrator_out_of_the_run_folder") {
        return;
    }
    let _lock = docker_lock();
    let outside_tmp = tempfile::tempdir().unwrap();
    let outside = outside_tmp.path().join("outside");
    outside_files(&outside);
    let before = snapshot(&outside);

    let reports = tempfile::tempdir().unwrap();
    let mut child = chaos()
        .args(["run", "orchestrator/tests/plans/symlink-escape.yaml", "--reports"])
        .arg(reports.path())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn chaos");
    let deadline = Instant::now() + Duration::from_secs(60);
    let dir = loop {
        if let Some(d) = run_dir(reports.path()) {
            break d;
        }
        assert!(Instant::now() < deadline, "no run folder appeared");
        std::thread::sleep(Duration::from_millis(50));
    };
    let id = run_id_of(&dir);
    // Planted once every daemon is ready, not before: a daemon that finds its own folders replaced
    // at start-up exits, and the run would end before reaching the links.
    let ready = || {
        std::fs::read_to_string(dir.join("history.jsonl"))
            .unwrap_or_default()
            .matches("\"type\":\"peer-ready\"")
            .count()
    };
    while ready() < 4 {
        assert!(
            Instant::now() < deadline + Duration::from_secs(120),
            "the peers never became ready"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its peers were ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = |rel: &str| outside.join(rel).display().to_string();
    // The links point at host paths: inside the containers they dangle, so the daemons cannot
    // follow them; only the orchestrator on the host could.
    plant(
        &format!("sc-{id}-p2"),
        &format!(
            "mkdir -p /data/sync/doc /data/sync/vault && ln -sfn {} /data/sync/doc/secret.txt && \
             ln -sfn {} /data/sync/out && ln -sfn {} /data/sync/vault/c.bin && ln -sfn {} /data/sync/vault/t.bin",
            o("secret"),
            o("out"),
            o("corrupt"),
            o("trunc"),
        ),
    );
    plant(
        &format!("sc-{id}-p3"),
        &format!("mv /data/state /data/state.real; ln -sfn {} /data/state", o("state")),
    );
    plant(
        &format!("sc-{id}-p4"),
        &format!("mv /data/sync /data/sync.real && ln -sfn {} /data/sync", o("tree")),
    );
    let planted = SystemTime::now();
    let status = child.wait().expect("chaos ran");

    assert_eq!(labelled(Some(&id)), (0, 0), "nothing left behind");
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "the run ends with a verdict, hostile peers or not: {status:?}"
    );
    let history: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The plants were in place before the first operation on a hostile peer, so the run did meet them.
    let first_hostile = history
        .iter()
        .filter(|r| match r["type"].as_str() {
            Some("write" | "meta") => r["peer"] != "p1",
            Some("fault-started") => true,
            _ => false,
        })
        .map(|r| humantime::parse_rfc3339(r["wall"].as_str().unwrap()).unwrap())
        .min()
        .expect("operations on the hostile peers");
    assert!(planted < first_hostile, "links planted before the run reached them");

    let mut problems = changes(&before, &snapshot(&outside));
    // Nothing read through a link either: no outside content's hash (12 hex digits, as the report
    // shortens them) is in what the run recorded.
    let recorded: String = ["history.jsonl", "observations.jsonl", "result.json"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect();
    for (path, state) in &before {
        let hash = blake3::hash(&state.content).to_hex().to_string();
        if path.is_file() && recorded.contains(&hash[..12]) {
            problems.push(format!(
                "{}: read through a link (its hash is in the run's records)",
                path.display()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the run reached outside the run folder:\n{}",
        problems.join("\n")
    );

    // And the refusals are on the record: p2's write below its planted folder link failed.
    let create = history
        .iter()
        .find(|r| r["type"] == "write" && r["peer"] == "p2" && r["path"] == "out/x.txt")
        .expect("p2's create is recorded");
    assert_eq!(create["outcome"], "fail", "{create}");
}
