//! A malformed plan gets one line with file:line:column and exit 2, and nothing is started; the
//! corpus in `tests/bad-plans/` (issue 13) is run whole, each plan in bounded time and memory.

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
    rejected(
        "name: x\npeers: 3\nstepz: []\n",
        3,
        "unknown key `stepz`; allowed: name, description",
    );
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

#[test]
fn a_schedule_over_the_limit_is_refused_before_anything_starts() {
    rejected(
        "name: x\npeers: 3\nsteps:\n  - {at: 0s, duration: 23h, every: 100ms, partition: {shape: halves}}\n",
        4,
        "allowed: at most 10000",
    );
    rejected(
        "name: x\npeers: 3\nworkload:\n  - {at: 0s, peer: all, random: {duration: 23h, rate: 1000}}\n",
        4,
        "allowed: at most 100000",
    );
}

#[test]
fn issue_13_overflows_are_errors_not_panics() {
    rejected(
        "name: x\npeers: 3\nsteps:\n  - {at: 18446744073709551615, duration: 10s, partition: {shape: halves}}\n",
        4,
        "`at`",
    );
    rejected(
        "name: x\npeers: 3\nsteps:\n  - {at: 1s, duration: 1e300, partition: {shape: halves}}\n",
        4,
        "`duration`",
    );
    rejected(
        "name: x\npeers: 3\nsteps:\n  - {at: 1s, clock: {peers: p1, offset: +292277025y}}\n",
        4,
        "`offset`",
    );
}

#[test]
fn steps_that_would_break_a_run_are_refused() {
    rejected(
        "name: x\npeers: 3\nsteps:\n  - {name: a, at: 1s, duration: 1s, partition: {shape: halves}}\n  - {name: a, at: 5s, partition: {shape: halves}}\n",
        5,
        "step name `a` is used twice",
    );
    rejected(
        "name: x\npeers: 3\nsteps:\n  - {at: 1s, duration: 4s, kill: {peers: p1}}\n  - {at: 2s, duration: 4s, pause: {peers: [p1, p2]}}\n",
        5,
        "overlap",
    );
    rejected(
        "name: x\npeers: 3\nsteps:\n  - {at: 23h, duration: 2h, partition: {shape: halves}}\n",
        4,
        "past the end",
    );
}

// ---------------------------------------------------------------------------------------------------
// The corpus (issue 13): orchestrator/tests/bad-plans/, written by scripts/bad-plans.py.

/// How one `chaos validate` ended: exit code (None if killed by a signal) and stderr.
struct Bounded {
    code: Option<i32>,
    timed_out: bool,
    stderr: String,
}

/// The memory a plan may cost `chaos validate`: 100 MiB of data (heap, anonymous maps, stacks).
///
/// Enforced as a limit (RLIMIT_DATA, set in the child before exec) rather than measured: a child's
/// `ru_maxrss` includes the spawning process's own peak, which Linux records at exec
/// (`exec_mmap`), so from inside a big test process it measures the test, not the plan. A plan that
/// needs more fails an allocation, aborts, and fails the test with a signal instead of exit 2.
const MAX_DATA_BYTES: u64 = 100 << 20;
const PLAN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `cmd` with its stderr in a file, at most `MAX_DATA_BYTES` of data, killed after `limit`.
fn run_bounded(cmd: &mut std::process::Command, limit: std::time::Duration, data: u64) -> Bounded {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: data,
                rlim_max: data,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn chaos");
    let started = std::time::Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chaos") {
            break status;
        }
        if started.elapsed() > limit && !timed_out {
            timed_out = true;
            let _ = child.kill();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    Bounded {
        code: status.code(),
        timed_out,
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

#[test]
fn the_memory_limit_bites() {
    // A valid plan at the schedule limits needs tens of MiB: refused 8 MiB, it must abort.
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("big.yaml");
    std::fs::write(
        &plan,
        "name: big\npeers: 200\nworkload:\n  - {at: 0s, peer: all, random: {duration: 100s, rate: 1000}}\n",
    )
    .unwrap();
    let out = run_bounded(chaos().arg("validate").arg(&plan), PLAN_TIMEOUT, 8 << 20);
    assert_eq!(out.code, None, "killed by a signal, not exited: {}", out.stderr);
    let out = run_bounded(chaos().arg("validate").arg(&plan), PLAN_TIMEOUT, MAX_DATA_BYTES);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

/// Checks one rejected plan: exit 2, one line `TARGET:LINE:COL: what; allowed: what`, in time and memory.
fn judge(
    plan: &std::path::Path,
    target: &str,
    line: &str,
    needle: &str,
    topologies: &std::path::Path,
) -> Option<String> {
    let out = run_bounded(
        chaos().arg("validate").arg("--topologies").arg(topologies).arg(plan),
        PLAN_TIMEOUT,
        MAX_DATA_BYTES,
    );
    let name = plan.file_name().unwrap().to_string_lossy().to_string();
    let first = out.stderr.lines().next().unwrap_or_default().to_string();
    let shape = regex::Regex::new(r"^(.+):(\d+):(\d+): (.+); allowed: (.+)$").unwrap();
    let problem = if out.timed_out {
        format!("took over {PLAN_TIMEOUT:?}")
    } else if out.code != Some(2) {
        format!("exit {:?} (want 2): {}", out.code, out.stderr.trim())
    } else if out.stderr.lines().count() != 1 {
        format!("{} lines (want 1): {}", out.stderr.lines().count(), out.stderr.trim())
    } else if !first.starts_with(&format!("{target}:{line}:")) {
        format!("`{first}` is not at {target}:{line}")
    } else if !first.contains(needle) {
        format!("`{first}` does not say `{needle}`")
    } else if !shape.is_match(&first) {
        format!("`{first}` is not `file:line:col: what is wrong; allowed: …`")
    } else {
        return None;
    };
    Some(format!("{name}: {problem}"))
}

#[test]
fn every_plan_in_the_bad_plans_corpus_is_refused_with_one_located_explained_line() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-plans");
    let topologies = corpus.join("topologies");
    let mut plans: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    plans.sort();
    assert!(
        plans.len() >= 200,
        "the corpus has {} plans; issue 13 asks for 200",
        plans.len()
    );
    let expect = regex::Regex::new(r"^# expect: (?:(\S+):)?(\d+): ?(.*)$").unwrap();
    let failures = std::sync::Mutex::new(Vec::new());
    let chunks: Vec<_> = plans.chunks(plans.len().div_ceil(2)).collect();
    std::thread::scope(|s| {
        for chunk in chunks {
            let (failures, expect, corpus, topologies) = (&failures, &expect, &corpus, &topologies);
            s.spawn(move || {
                for plan in chunk {
                    let bytes = std::fs::read(plan).unwrap();
                    let head =
                        String::from_utf8_lossy(bytes.split(|b| *b == b'\n').next().unwrap_or_default()).to_string();
                    let Some(c) = expect.captures(&head) else {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{}: no `# expect:` first line", plan.display()));
                        continue;
                    };
                    let target = match c.get(1) {
                        Some(f) => corpus.join(f.as_str()).display().to_string(),
                        None => plan.display().to_string(),
                    };
                    if let Some(f) = judge(plan, &target, &c[2], c[3].trim(), topologies) {
                        failures.lock().unwrap().push(f);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} corpus plans failed:\n{}",
        failures.len(),
        plans.len(),
        failures.join("\n")
    );
}

#[test]
fn a_10_mb_plan_and_an_empty_plan_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let mut text = String::from("name: big\npeers: 3\ndescription: ");
    text.push_str(&"lorem ipsum ".repeat((10 << 20) / 12 + 1));
    text.push('\n');
    assert!(text.len() >= 10 << 20);
    std::fs::write(&big, &text).unwrap();
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    let topologies = repo().join("topologies");
    let mut failures = Vec::new();
    for (plan, needle) in [(&big, "allowed: at most 1048576 bytes"), (&empty, "the plan is empty")] {
        failures.extend(judge(plan, &plan.display().to_string(), "1", needle, &topologies));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_bad_image_flag_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let out = run(chaos()
        .args([
            "run",
            "chaos-plans/smoke.yaml",
            "--image",
            "Not An/Image:ref:x",
            "--reports",
        ])
        .arg(&reports));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--image") && err.contains("allowed: an image reference"),
        "{err}"
    );
    assert!(!reports.exists(), "nothing may start");
}
