//! A whole run: plan in, verdict and report out, nothing left behind.
//!
//! ```text
//! prepare folders, keys, configs -> network + containers -> ready -> schedule (workload + nemesis)
//!   -> heal all -> wait for convergence -> final trees, logs -> checkers -> report -> teardown
//! ```
//!
//! A convergence monitor runs beside the schedule, reading every peer's tree a few times a second and
//! writing `converged` / `diverged` transitions into the history; recovery times come from those.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::sync::watch;

use crate::checker::{self, PeerFinal, Verdict};
use crate::cluster::{self, Cluster};
use crate::docker::Engine;
use crate::generator::{self, Action};
use crate::history::{self, Event, History};
use crate::monitor::{self, MonitorState};
use crate::nemesis::Nemesis;
use crate::plan::Plan;
use crate::report::{self, PeerSummary, RunResult};
use crate::scraper;
use crate::tree::TreeReader;

pub struct RunOutcome {
    pub verdict: Verdict,
    pub run_dir: PathBuf,
}

/// A new run id: 8 hex characters, unique enough to keep concurrent runs' names apart.
pub fn new_run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// The run folder name: `<plan>-<UTC time>-<id>`.
pub fn run_dir_name(plan: &str, run_id: &str) -> String {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(['-', ':'], "");
    format!("{plan}-{stamp}-{run_id}")
}

/// Runs `plan` and tears the cluster down whatever happens inside.
pub async fn run(plan: &Plan, run_id: &str, reports: &Path) -> anyhow::Result<RunOutcome> {
    let engine = Engine::connect().await?;
    engine.require_image(&plan.image).await?;
    let stale = cluster::reap(&engine, true).await?;
    if !stale.runs.is_empty() {
        eprintln!(
            "chaos: removed leftovers of dead runs {} ({} containers)",
            stale.runs.join(", "),
            stale.containers
        );
    }

    std::fs::create_dir_all(reports).with_context(|| format!("creating {}", reports.display()))?;
    let run_dir = reports.join(run_dir_name(&plan.name, run_id));
    std::fs::create_dir_all(&run_dir)?;
    std::fs::copy(&plan.source, run_dir.join("plan.yaml")).context("copying the plan into the run folder")?;
    let history = Arc::new(History::create(&run_dir.join("history.jsonl"))?);
    history.record(Event::RunStarted {
        run_id: run_id.into(),
        plan: plan.name.clone(),
        seed: plan.seed,
        peers: plan.peers.clone(),
    });
    eprintln!(
        "chaos: run {run_id} of plan {} (seed {}), {} peers; folder {}",
        plan.name,
        plan.seed,
        plan.peers.len(),
        run_dir.display()
    );

    let spec = cluster::ClusterSpec {
        names: plan.peers.clone(),
        neighbours: (0..plan.peers.len()).map(|i| plan.topology.neighbours(i)).collect(),
        image: plan.image.clone(),
        key_seed: plan.seed ^ u64::from_str_radix(run_id, 16).unwrap_or(0),
        anti_entropy_ms: plan.anti_entropy.ms(),
        flavor: plan.flavor.clone(),
        disk_limit: plan.disk_limit,
        quarantine_ms: plan.quarantine.map(|q| q.ms()),
    };
    let cluster = Cluster::provision(engine.clone(), run_id, &run_dir, &spec).await?;
    let outcome = drive(plan, &cluster, &history, &run_dir, reports).await;
    if outcome.is_err() {
        let _ = cluster.save_logs(&run_dir).await;
    }
    let down = cluster.teardown().await;
    let outcome = outcome?;
    down.context("removing the run's containers")?;
    Ok(outcome)
}

async fn drive(
    plan: &Plan,
    cluster: &Cluster,
    history: &Arc<History>,
    run_dir: &Path,
    reports: &Path,
) -> anyhow::Result<RunOutcome> {
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let started = Instant::now();
    cluster.start_all().await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()?;
    let ready_timeout = Duration::from_secs(60 + plan.peers.len() as u64);
    let ready = cluster
        .wait_ready(&http, ready_timeout, progress_line("peers ready"))
        .await;
    eprintln!();
    ready?;
    for p in &cluster.peers {
        history.record(Event::PeerReady {
            peer: p.name.clone(),
            ip: p.ip.to_string(),
        });
    }
    let nemesis = Nemesis::new(cluster.engine.clone(), cluster.peers.clone(), history.clone());
    let engines = nemesis.prepare().await?;
    history.record(Event::EnginesProbed {
        engines: engines.clone(),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let (state_tx, mut state_rx) = watch::channel(MonitorState::default());
    let sync_dirs: Vec<(String, PathBuf)> = cluster.peers.iter().map(|p| (p.name.clone(), p.dir.sync())).collect();
    let monitor = tokio::spawn(monitor::run(
        sync_dirs,
        history.clone(),
        run_dir.join(monitor::OBSERVATIONS),
        stop_rx.clone(),
        state_tx,
    ));
    let targets: Vec<scraper::Target> = cluster
        .peers
        .iter()
        .map(|p| scraper::Target {
            peer: p.name.clone(),
            container: p.container.clone(),
            metrics_url: crate::peer_profile::metrics_url(p.ip),
        })
        .collect();
    let scraper = tokio::spawn(scraper::run(
        targets,
        Some(cluster.engine.clone()),
        history.clone(),
        run_dir.join(scraper::METRICS_FILE),
        scraper::DEFAULT_INTERVAL,
        stop_rx,
    ));

    let schedule = generator::generate(plan);
    eprintln!(
        "chaos: schedule: {} operations over {:.1} s",
        schedule.ops.len(),
        schedule.end_ms as f64 / 1000.0
    );
    let t0 = tokio::time::Instant::now();
    for op in &schedule.ops {
        tokio::time::sleep_until(t0 + Duration::from_millis(op.at_ms)).await;
        match &op.action {
            Action::Write(w) => {
                let (seed, w2, name, dir, h) = (
                    plan.seed,
                    w.clone(),
                    cluster.peers[w.peer].name.clone(),
                    cluster.peers[w.peer].dir.clone(),
                    history.clone(),
                );
                tokio::task::spawn_blocking(move || crate::workload::apply(seed, &w2, &name, &dir, &h)).await?;
            }
            Action::FaultStart { id, step, fault } => {
                nemesis.start(id, step, fault.clone()).await?;
                eprintln!("chaos: {:>7.1}s  fault {id} started", op.at_ms as f64 / 1000.0);
            }
            Action::FaultStop { id } => {
                nemesis.stop(id).await?;
                eprintln!("chaos: {:>7.1}s  fault {id} healed", op.at_ms as f64 / 1000.0);
            }
        }
    }
    tokio::time::sleep_until(t0 + Duration::from_millis(schedule.end_ms)).await;
    nemesis.heal_all().await?;
    let healed_ms = history.now_ms();
    eprintln!(
        "chaos: all faults healed; waiting up to {} for convergence",
        plan.expect.converge_within
    );

    // Settled = converged and unchanged for `quiet`, or the convergence limit passed.
    let mut settle_progress = progress_line("distinct trees (1 = converged) / peers");
    let limit = tokio::time::Instant::now() + plan.expect.converge_within.0;
    let quiet = plan.expect.quiet.0;
    loop {
        let s = state_rx.borrow_and_update().clone();
        if s.converged && s.since.elapsed() >= quiet {
            break;
        }
        if tokio::time::Instant::now() >= limit {
            break;
        }
        settle_progress(s.distinct, cluster.peers.len());
        let _ = tokio::time::timeout(Duration::from_millis(500), state_rx.changed()).await;
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    // Counters must settle too: a loop is counters that keep moving once the trees agree.
    let metrics_path = run_dir.join(scraper::METRICS_FILE);
    let counters_limit = tokio::time::Instant::now() + checker::LOOP_SETTLE_LIMIT;
    while state_rx.borrow().converged
        && !scraper::settled_since(&metrics_path, cluster.peers.len(), checker::LOOP_WINDOW_MS, healed_ms)
        && tokio::time::Instant::now() < counters_limit
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = stop_tx.send(true);
    let _ = monitor.await;
    let _ = scraper.await;

    let logs = cluster.save_logs(run_dir).await;
    let mut finals = Vec::new();
    for (p, (_, log)) in cluster.peers.iter().zip(logs) {
        let tree = TreeReader::default().read(&p.dir.sync()).unwrap_or_default();
        let alive = cluster.engine.is_running(&p.container).await.unwrap_or(false);
        // The peer's key names its conflict copies (`/v1/status` `id`); unknown if it does not answer.
        let id = match http.get(crate::peer_profile::status_url(p.ip)).send().await {
            Ok(r) if alive => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string)),
            _ => None,
        };
        finals.push(PeerFinal {
            name: p.name.clone(),
            tree,
            alive,
            log,
            id,
        });
    }
    let records: Vec<history::Record> = history::read(&run_dir.join("history.jsonl"))?.collect::<Result<_, _>>()?;
    let observations = monitor::read_observations(&run_dir.join(monitor::OBSERVATIONS))?;
    let counters = scraper::counters_for_checks(&run_dir.join(scraper::METRICS_FILE), checker::quiesced_at(&records));
    let judged = checker::judge(&checker::Evidence {
        plan,
        history: &records,
        peers: &finals,
        observations: &observations,
        counters: &counters,
    });
    let (checks, recoveries, figures) = (judged.checks, judged.recoveries, judged.figures);
    let verdict = checker::compose(&checks);
    history.record(Event::RunFinished {
        verdict: verdict.as_str().into(),
    });
    let result = RunResult {
        plan: plan.name.clone(),
        seed: plan.seed,
        run_id: cluster.run_id.clone(),
        verdict,
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        image: plan.image.clone(),
        flavor: plan.flavor.clone(),
        engine: engines["auto_engine"].as_str().unwrap_or("unknown").to_string(),
        engines_probed: engines,
        checks,
        recovery: recoveries,
        figures,
        peers: finals.iter().map(PeerSummary::from).collect(),
    };
    report::write_all(run_dir, &result, &records)?;
    report::link_latest(reports, run_dir)?;
    if let Err(e) = report::write_index(reports) {
        eprintln!("chaos: cannot regenerate {}/index.html: {e}", reports.display());
    }
    for c in &result.checks {
        eprintln!("chaos: {:<20} {:<8} {}", c.name, c.verdict.as_str(), c.summary);
    }
    Ok(RunOutcome {
        verdict,
        run_dir: run_dir.to_path_buf(),
    })
}

/// A progress line that redraws in place on a terminal and prints one line per change elsewhere (CI logs).
fn progress_line(what: &'static str) -> impl FnMut(usize, usize) {
    let mut last = usize::MAX;
    move |n, total| {
        if n != last {
            if std::io::stderr().is_terminal() {
                eprint!("\rchaos: {what}: {n}/{total}   ");
            } else {
                eprintln!("chaos: {what}: {n}/{total}");
            }
            last = n;
        }
    }
}
