//! Reports opened in real headless Chromium: the charts render (SVG elements in the DOM Chromium
//! dumps), the page logs no console error and fetches nothing (a dead proxy makes any fetch an
//! error), and a screenshot is saved into the run folder. Chromium comes from
//! `scripts/ensure-test-tools.sh` (`make test` runs it); under `CI=true` a missing Chromium fails, elsewhere
//! the tests skip saying why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use syftchaos::checker::{self, PeerFinal};
use syftchaos::docker::ContainerStats;
use syftchaos::plan::FileOpKind;
use syftchaos::record::history::{Event, Outcome, Record};
use syftchaos::record::observations::Observation;
use syftchaos::record::samples::Sample;
use syftchaos::report::{self, PeerSummary, RunResult};
use syftchaos::tree::{FileEntry, Tree, hash_bytes};

use crate::util::*;

/// The Chromium binary, or `None` (after failing under `CI=true`, or printing why the test skips).
fn chromium(test: &str) -> Option<String> {
    let candidates = std::env::var("CHROMIUM")
        .ok()
        .into_iter()
        .chain(["chromium".to_string(), "chromium-browser".to_string()]);
    for c in candidates {
        if Command::new(&c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c);
        }
    }
    let why = "no chromium found (run scripts/ensure-test-tools.sh, or set CHROMIUM)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: cannot run under CI=true: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}

/// What Chromium showed: the DOM after load and its console log lines.
struct Rendered {
    dom: String,
    console: Vec<String>,
}

fn chromium_args(profile: &Path) -> Vec<String> {
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--hide-scrollbars".into(),
        "--no-first-run".into(),
        // Nothing may be fetched: every request through this proxy fails and is logged.
        "--proxy-server=127.0.0.1:9".into(),
        "--proxy-bypass-list=<-loopback>".into(),
        "--enable-logging=stderr".into(),
        "--v=0".into(),
        format!("--user-data-dir={}", profile.display()),
    ]
}

fn render(chromium: &str, page: &Path, screenshot: &Path) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let out = Command::new(chromium)
        .args(chromium_args(profile.path()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let console = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Failed to load resource") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect();
    let shot = Command::new(chromium)
        .args(chromium_args(profile.path()))
        .arg("--window-size=1100,3600")
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(&url)
        .output()
        .expect("run chromium");
    assert!(
        shot.status.success(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    Rendered {
        dom: String::from_utf8_lossy(&out.stdout).to_string(),
        console,
    }
}

fn assert_charts_rendered(r: &Rendered, min_svgs: usize, what: &str) {
    assert!(
        r.console.is_empty(),
        "{what}: console errors or fetches: {:#?}",
        r.console
    );
    let svgs = r.dom.matches("<svg").count();
    assert!(
        svgs >= min_svgs,
        "{what}: {svgs} SVG charts in the DOM, want {min_svgs}"
    );
    for element in ["<polyline", "<rect", "<text"] {
        assert!(r.dom.contains(element), "{what}: no {element} in the rendered charts");
    }
    assert!(!r.dom.contains("<script"), "{what}: a report has no JavaScript");
    for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(
            !r.dom.contains(external),
            "{what}: refers to something outside the file: {external}"
        );
    }
}

fn png_ok(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display()));
    assert!(bytes.starts_with(b"\x89PNG"), "{} is no PNG", path.display());
    assert!(
        bytes.len() > 20_000,
        "a blank page would be tiny: {} bytes",
        bytes.len()
    );
}

fn rec(t_ms: u64, event: Event) -> Record {
    Record {
        t_ms,
        wall: String::new(),
        event,
    }
}

fn content(op: u64) -> String {
    format!("content of op {op}")
}

/// A made-up but consistent run: 3 peers, a partition, a clock skew, writes, a conflict, metrics.
fn synthetic_run(dir: &Path, soak: Option<syftchaos::soak::summary::SoakSummary>) {
    let peers = ["p1", "p2", "p3"];
    let mut h = vec![rec(
        0,
        Event::RunStarted {
            run_id: "0badcafe".into(),
            plan: "synthetic".into(),
            seed: 7,
            peers: peers.iter().map(|p| p.to_string()).collect(),
        },
    )];
    let mut obs = Vec::new();
    let mut op = 0;
    for (i, t) in (1000..14000).step_by(700).enumerate() {
        op += 1;
        let peer = peers[i % 3];
        let path = format!("docs/f{}.txt", i % 5);
        h.push(rec(
            t,
            Event::Write {
                op,
                peer: peer.into(),
                kind: FileOpKind::Modify,
                path: path.clone(),
                size: 100,
                hash: Some(hash_bytes(content(op).as_bytes())),
                base: None,
                outcome: Outcome::Ok,
            },
        ));
        for (j, p) in peers.iter().enumerate() {
            obs.push(Observation {
                t_ms: t + if *p == peer {
                    5
                } else {
                    150 + 90 * j as u64 + 40 * (i as u64 % 4)
                },
                peer: p.to_string(),
                path: path.clone(),
                hash: Some(hash_bytes(content(op).as_bytes())),
            });
        }
    }
    h.push(rec(1200, Event::Converged { tree_hash: "aa".into() }));
    h.push(rec(
        3000,
        Event::FaultStarted {
            id: "cut-p1#1".into(),
            step: "cut-p1".into(),
            kind: "partition".into(),
            detail: serde_json::json!({}),
        },
    ));
    h.push(rec(
        3100,
        Event::ClockMeasured {
            peer: "p3".into(),
            requested_ms: -3_600_000,
            measured_ms: Some(-3_600_012),
            rate: None,
        },
    ));
    h.push(rec(3300, Event::Diverged));
    h.push(rec(
        8000,
        Event::FaultStopped {
            id: "cut-p1#1".into(),
            undo_ms: Some(3.2),
        },
    ));
    h.push(rec(9400, Event::Converged { tree_hash: "bb".into() }));
    h.push(rec(15000, Event::HealedAll));
    h.push(rec(15600, Event::Converged { tree_hash: "cc".into() }));
    h.sort_by_key(|r| r.t_ms);
    let lines: String = h.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
    std::fs::write(dir.join("history.jsonl"), lines).unwrap();

    let mut samples = Vec::new();
    let roles = crate::bed::shipped_profile("syncpeer")
        .metrics
        .clone()
        .expect("syncpeer has metrics");
    for s in 0..21u64 {
        for (i, p) in peers.iter().enumerate() {
            let t = 500 + s * 1000 + i as u64 * 7;
            let busy = if (3..8).contains(&s) { 1.0 } else { 4.0 };
            let values = BTreeMap::from([
                (
                    "syncpeer_messages_sent_total{kind=\"index\",peer=\"p2\"}".to_string(),
                    (s.min(15) as f64) * busy * (1.0 + i as f64 / 3.0),
                ),
                (
                    "syncpeer_bytes_sent_total{kind=\"blob\",peer=\"p2\"}".to_string(),
                    (s.min(15) as f64) * 900.0 * busy,
                ),
                (
                    "syncpeer_messages_sent_total{kind=\"summary\",peer=\"p2\"}".to_string(),
                    s as f64,
                ),
            ]);
            let mut as_roles = roles.roles(&values);
            as_roles.insert("net_tx_bytes".into(), (s * 900) as f64);
            samples.push(Sample::Metrics {
                t_ms: t,
                peer: p.to_string(),
                values,
            });
            samples.push(Sample::Roles {
                t_ms: t,
                peer: p.to_string(),
                values: as_roles,
            });
            samples.push(Sample::Docker {
                t_ms: t,
                peer: p.to_string(),
                stats: ContainerStats {
                    cpu_ns: s * (40_000_000 + i as u64 * 25_000_000),
                    mem_bytes: (12 + i as u64 * 3 + s / 4) * 1024 * 1024,
                    rx_bytes: s * 1000,
                    tx_bytes: s * 900,
                    ..Default::default()
                },
            });
        }
    }
    let text: String = samples
        .iter()
        .map(|s| serde_json::to_string(s).unwrap() + "\n")
        .collect();
    std::fs::write(dir.join("metrics.jsonl"), text).unwrap();

    // Final trees: the last write of each path everywhere.
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for r in &h {
        if let Event::Write {
            path, hash: Some(hash), ..
        } = &r.event
        {
            last.insert(path.clone(), hash.clone());
        }
    }
    let tree = Tree {
        files: last
            .iter()
            .map(|(p, h)| {
                (
                    p.clone(),
                    FileEntry {
                        size: 100,
                        hash: h.clone(),
                    },
                )
            })
            .collect(),
    };
    // One planted anomaly, so the report shows evidence: p3 still holds the first write of f0.
    let mut stale = tree.clone();
    stale.files.get_mut("docs/f0.txt").unwrap().hash = hash_bytes(content(1).as_bytes());
    let finals: Vec<PeerFinal> = peers
        .iter()
        .map(|p| PeerFinal {
            name: p.to_string(),
            tree: if *p == "p3" { stale.clone() } else { tree.clone() },
            alive: true,
            log: String::new(),
            id: None,
            convictions: None,
        })
        .collect();
    let plan = syftchaos::plan::parse(
        "name: synthetic\nseed: 7\npeers: 3\n",
        Path::new("synthetic.yaml"),
        &repo().join("topologies"),
    )
    .expect("plan parses");
    let counters =
        syftchaos::record::samples::counters_for_checks(&dir.join("metrics.jsonl"), checker::quiesced_at(&h));
    let conventions = crate::bed::shipped_profile("syncpeer").conventions.clone();
    let judged = checker::judge(&checker::Evidence {
        plan: &plan,
        conventions: &conventions,
        history: &h,
        peers: &finals,
        observations: &obs,
        sightings: &[],
        counters: &counters,
        resources: &syftchaos::record::samples::resources(&dir.join("metrics.jsonl")),
    });
    let verdict = checker::compose(&judged.checks);
    let result = RunResult {
        profile: "syncpeer".into(),
        clock: "libfaketime".into(),
        plan: "synthetic".into(),
        seed: 7,
        run_id: "0badcafe".into(),
        verdict,
        started_at: "2026-11-24T05:00:00Z".into(),
        duration_ms: 16_000,
        image: "syftchaos/peer:latest".into(),
        image_id: None,
        version: syftchaos::VERSION.into(),
        commit: syftchaos::COMMIT.into(),
        replay: report::replay_command(dir),
        flavor: "default".into(),
        engine: "userspace".into(),
        engines_probed: serde_json::Value::Null,
        checks: judged.checks,
        recovery: judged.recoveries,
        figures: judged.figures,
        peers: finals.iter().map(PeerSummary::from).collect(),
        soak,
    };
    // A soak's charts come from its windows' samples: the synthetic samples are its one window's.
    if let Some(w) = result.soak.as_ref().and_then(|s| s.windows.first()) {
        std::fs::create_dir_all(dir.join(&w.folder)).unwrap();
        std::fs::copy(dir.join("metrics.jsonl"), dir.join(&w.folder).join("metrics.jsonl")).unwrap();
    }
    report::write_all(dir, &result, &h).unwrap();
}

/// A folder under `target/` that survives the test, so the screenshot can be looked at.
fn keep_dir(name: &str) -> PathBuf {
    let d = repo().join("target/report-render").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_synthetic_report_renders_in_headless_chromium() {
    let Some(chromium) = chromium("a_synthetic_report_renders_in_headless_chromium") else {
        return;
    };
    let reports = keep_dir("synthetic");
    let run = reports.join("synthetic-20261124T050000Z-0badcafe");
    std::fs::create_dir_all(&run).unwrap();
    synthetic_run(&run, None);
    report::write_index(&reports).unwrap();

    let shot = run.join("screenshot.png");
    let r = render(&chromium, &run.join("index.html"), &shot);
    // Timeline, recovery, latency histogram, then messages, bytes, network, CPU, memory.
    assert_charts_rendered(&r, 8, "run report");
    assert!(
        r.dom.contains("class=\"bar fault\""),
        "the partition is drawn on the timeline"
    );
    assert!(r.dom.contains("Clock offsets"), "the measured skew is shown");
    assert!(
        r.dom.contains("p3 · docs/f0.txt — found at path:"),
        "the planted lost update is listed readably"
    );
    png_ok(&shot);
    eprintln!("screenshot: {}", shot.display());

    let index_shot = reports.join("index-screenshot.png");
    let r = render(&chromium, &reports.join("index.html"), &index_shot);
    assert_charts_rendered(&r, 1, "runs index");
    assert!(r.dom.contains("synthetic-20261124T050000Z-0badcafe/index.html"));
}

/// Issue 12: a soak's report (its windows' strip and table, the charts from its windows' samples)
/// renders like a run's.
#[test]
fn a_synthetic_soak_report_renders_in_headless_chromium() {
    use syftchaos::checker::Verdict;
    use syftchaos::soak::summary::{SoakFacts, SoakSummary, WindowResult};
    let Some(chromium) = chromium("a_synthetic_soak_report_renders_in_headless_chromium") else {
        return;
    };
    let reports = keep_dir("synthetic-soak");
    let run = reports.join("soak-20261124T050000Z-0badcafe");
    std::fs::create_dir_all(&run).unwrap();
    let window = |k: u64, verdict| WindowResult {
        window: k,
        from_ms: k * 8_000,
        to_ms: (k + 1) * 8_000,
        started_ms: k * 8_000,
        judged_ms: (k + 1) * 8_000,
        verdict,
        checks: Default::default(),
        failures: if verdict == Verdict::Valid {
            vec![]
        } else {
            vec!["no-lost-update: 1 lost update".into()]
        },
        faults: 1,
        operations: 12,
        recovered_after_ms: Some(400),
        began_divergent: 0,
        orchestrator_rss_kib: Some(40_000),
        folder: format!("windows/{k:04}"),
        replay: format!("chaos soak soak.yaml --seed 7 --duration 16s --window {k}"),
    };
    let summary = SoakSummary {
        windows: vec![window(0, Verdict::Valid), window(1, Verdict::Invalid)],
        soak: SoakFacts {
            windows_planned: 2,
            windows_judged: 2,
            first_failure: Some(1),
            ..Default::default()
        },
    };
    synthetic_run(&run, Some(summary));
    let shot = run.join("screenshot.png");
    let r = render(&chromium, &run.join("index.html"), &shot);
    assert_charts_rendered(&r, 8, "soak report");
    assert!(r.dom.contains("<h2>Windows</h2>"), "the windows section");
    assert!(
        r.dom.contains("window 1: invalid"),
        "the strip names each window's verdict"
    );
    assert!(
        r.dom
            .contains("chaos soak soak.yaml --seed 7 --duration 16s --window 1"),
        "the failed window's replay command"
    );
    png_ok(&shot);
}

/// Issue 16: at 100 peers a chart is a band across them with the highest peaks named, not 100
/// overlapping lines, and the peers table is folded with the odd ones named.
#[test]
fn a_hundred_peer_report_draws_bands_not_spaghetti() {
    use syftchaos::report::series::PeerSeries;
    let Some(chromium) = chromium("a_hundred_peer_report_draws_bands_not_spaghetti") else {
        return;
    };
    let dir = keep_dir("hundred");
    let peers: Vec<String> = (1..=100).map(|i| format!("p{i}")).collect();
    let line = |peak: f64| -> Vec<(u64, f64)> {
        (0..120u64)
            .map(|i| (i * 1000, if i == 60 { peak } else { 1.0 + (i % 5) as f64 }))
            .collect()
    };
    let series: std::collections::BTreeMap<String, PeerSeries> = peers
        .iter()
        .map(|p| {
            let peak = if p == "p37" { 90.0 } else { 5.0 };
            let l = line(peak);
            (
                p.clone(),
                PeerSeries {
                    messages_per_s: l.clone(),
                    bytes_per_s: l.clone(),
                    cpu_pct: l.clone(),
                    mem_mib: l.clone(),
                    net_bytes_per_s: l,
                },
            )
        })
        .collect();
    let run = RunResult {
        profile: "syncpeer".into(),
        clock: "libfaketime".into(),
        plan: "scale-100".into(),
        seed: 1,
        run_id: "0badcafe".into(),
        verdict: syftchaos::checker::Verdict::Valid,
        started_at: "2026-12-07T00:00:00Z".into(),
        duration_ms: 120_000,
        image: "syftchaos/peer:latest".into(),
        image_id: None,
        version: syftchaos::VERSION.into(),
        commit: syftchaos::COMMIT.into(),
        replay: String::new(),
        flavor: "default".into(),
        engine: "userspace".into(),
        engines_probed: serde_json::Value::Null,
        checks: vec![],
        recovery: vec![],
        figures: Default::default(),
        peers: peers
            .iter()
            .map(|p| PeerSummary {
                name: p.clone(),
                files: 10,
                tree_hash: if p == "p64" { "odd".into() } else { "common".into() },
                id: None,
            })
            .collect(),
        soak: None,
    };
    let page = dir.join("index.html");
    std::fs::write(&page, report::html(&run, &[], &series)).unwrap();
    let shot = dir.join("screenshot.png");
    let r = render(&chromium, &page, &shot);
    assert!(r.console.is_empty(), "{:#?}", r.console);
    // Five charts of four band lines each, not 500 lines.
    assert_eq!(r.dom.matches("class=\"series\"").count(), 20, "band lines");
    assert!(r.dom.contains("100 peers: each chart is a band"));
    assert!(
        r.dom.contains("highest: <a href=\"#peer-p37\">p37</a>"),
        "the outlier is named and linked"
    );
    assert!(
        r.dom.contains("<a href=\"#peer-p64\">p64</a>"),
        "the peer with another tree is named"
    );
    assert!(r.dom.contains("<summary>100 peers</summary>"), "the table is folded");
    png_ok(&shot);
}

#[test]
fn a_real_run_report_renders_in_headless_chromium() {
    let test = "a_real_run_report_renders_in_headless_chromium";
    let Some(chromium) = chromium(test) else { return };
    if !docker_ready(test) {
        return;
    }
    let _lock = docker_lock();
    let reports = keep_dir("real");
    let out = run(chaos()
        .args(["run", "chaos-plans/smoke.yaml", "--reports"])
        .arg(&reports));
    assert_eq!(out.status.code(), Some(0), "smoke must be valid");
    let dir = run_dir(&reports).expect("a run folder");
    for f in ["metrics.jsonl", "observations.jsonl", "index.html"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let result: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap();
    let names: Vec<&str> = result["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for c in [
        "converged",
        "right-final-state",
        "no-lost-update",
        "no-zombie",
        "no-corruption",
        "no-loop",
        "no-crash",
    ] {
        assert!(names.contains(&c), "{c} missing from {names:?}");
    }
    assert!(
        result["figures"]["propagation"]["p50_ms"].is_u64(),
        "{}",
        result["figures"]
    );
    assert!(
        result["figures"]["traffic"]["messages_per_op"].is_f64(),
        "{}",
        result["figures"]
    );
    assert!(reports.join("index.html").exists(), "reports/index.html regenerated");
    for p in result["peers"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap_or_default();
        assert!(
            id.len() == 64 && id.bytes().all(|c| c.is_ascii_hexdigit()),
            "peer key from /v1/status: {p}"
        );
    }

    let shot = dir.join("screenshot.png");
    let r = render(&chromium, &dir.join("index.html"), &shot);
    assert_charts_rendered(&r, 8, "real run report");
    png_ok(&shot);
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn the_console_check_sees_a_page_error() {
    // The check above must be able to fail: a page that logs an error is caught.
    let Some(chromium) = chromium("the_console_check_sees_a_page_error") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<html><body><script>console.error('boom')</script><svg></svg></body></html>",
    )
    .unwrap();
    let r = render(&chromium, &page, &dir.path().join("bad.png"));
    assert!(r.console.iter().any(|l| l.contains("boom")), "{:?}", r.console);
}
