//! A whole run: plan in, verdict and report out, nothing left behind.
//!
//! ```text
//! recipe, keys -> prepare folders, configs -> network + containers -> ready -> schedule (workload + nemesis)
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
use crate::cluster::{self, Cluster, sidecar};
use crate::docker::Engine;
use crate::generator::{self, Action};
use crate::monitor::{self, MonitorState};
use crate::nemesis::Nemesis;
use crate::plan::Plan;
use crate::profile::{PlanFacts, Profile};
use crate::record::history::{self, Event, History};
use crate::record::recipe::{self, Recipe, RunKeys};
use crate::record::run_folder::PeerDir;
use crate::record::{observations, samples};
use crate::report::{self, PeerSummary, RunResult};
use crate::retention::{self, Retention};
use crate::scraper;
use crate::tree::{Tree, TreeReader};

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

/// The image a plan runs: its own `image`, else its profile's.
pub fn image_of(plan: &Plan, profile: &Profile) -> String {
    plan.image.clone().unwrap_or_else(|| profile.image.clone())
}

/// Makes sure the daemon's image and the tools image exist: a missing daemon image is built with the
/// profile's `image.build` command (run in the profile's folder), the tools image by `make image`.
/// Returns the daemon image's id.
pub async fn ensure_images(engine: &Engine, profile: &Profile, image: &str) -> anyhow::Result<String> {
    if engine.require_image(image).await.is_err()
        && let Some(build) = &profile.build
    {
        crate::say!(
            "chaos: image {image} is missing; building it with the profile `{}`: {build}",
            profile.name
        );
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(build)
            .current_dir(&profile.dir)
            .stdout(std::process::Stdio::inherit())
            .status()
            .await
            .with_context(|| format!("running `{build}` in {}", profile.dir.display()))?;
        anyhow::ensure!(
            status.success(),
            "`{build}` (profile `{}`) failed: {status}",
            profile.name
        );
    }
    let id = engine.require_image(image).await?;
    engine
        .require_image(&sidecar::tools_image())
        .await
        .context("the fault agents' tools image")?;
    Ok(id)
}

/// Where a run comes from: the topologies folder its plan was resolved with and, for `chaos replay`,
/// the run it repeats.
pub struct Origin {
    pub topologies: PathBuf,
    pub replay: Option<Replay>,
}

/// The run a replay repeats: its folder, recipe and keys.
pub struct Replay {
    pub run_dir: PathBuf,
    pub recipe: Recipe,
    pub keys: RunKeys,
}

/// Runs `plan` with the daemon of `profile` and tears the cluster down whatever happens inside.
pub async fn run(
    plan: &Plan,
    profile: Arc<Profile>,
    run_id: &str,
    reports: &Path,
    origin: Origin,
    retention: Retention,
) -> anyhow::Result<RunOutcome> {
    crate::console::begin();
    let engine = Engine::connect().await?;
    let image = image_of(plan, &profile);
    let image_id = ensure_images(&engine, &profile, &image).await?;
    if let Some(r) = &origin.replay
        && r.recipe.image_id.as_deref().is_some_and(|was| was != image_id)
    {
        crate::say!(
            "chaos: warning: {image} is now {image_id}, but the run replayed used {}; the schedule is the same, the daemon may not be",
            r.recipe.image_id.as_deref().unwrap_or("?")
        );
    }
    let stale = cluster::reap(&engine, true).await?;
    if !stale.runs.is_empty() {
        crate::say!(
            "chaos: removed leftovers of dead runs {} ({} containers)",
            stale.runs.join(", "),
            stale.containers
        );
    }

    std::fs::create_dir_all(reports).with_context(|| format!("creating {}", reports.display()))?;
    let run_dir = reports.join(run_dir_name(&plan.name, run_id));
    std::fs::create_dir_all(&run_dir)?;
    if let Err(e) = crate::console::attach(&run_dir.join(crate::console::LOG_FILE)) {
        tracing::warn!("cannot keep the orchestrator's log in {}: {e}", run_dir.display());
    }
    crate::record::run_folder::mark_live(&run_dir).context("writing the orchestrator's pid into the run folder")?;
    std::fs::copy(&plan.source, run_dir.join(recipe::PLAN_COPY)).context("copying the plan into the run folder")?;
    let keys = match &origin.replay {
        Some(r) => r.keys.clone(),
        None => RunKeys::random(&plan.peers),
    };
    keys.save(&run_dir)?;
    Recipe {
        plan_source: std::path::absolute(&plan.source)?,
        seed: plan.seed,
        flavor: plan.flavor.clone(),
        image: image.clone(),
        image_id: Some(image_id.clone()),
        profile: std::path::absolute(&profile.dir)?,
        topologies: std::path::absolute(&origin.topologies)?,
        replay_of: origin.replay.as_ref().map(|r| r.run_dir.clone()),
    }
    .save(&run_dir)?;
    let history = Arc::new(History::create(&run_dir.join("history.jsonl"))?);
    history.record(Event::RunStarted {
        run_id: run_id.into(),
        plan: plan.name.clone(),
        seed: plan.seed,
        peers: plan.peers.clone(),
    });
    crate::say!(
        "chaos: run {run_id} of plan {} (seed {}), {} peers of {} ({image}); folder {}",
        plan.name,
        plan.seed,
        plan.peers.len(),
        profile.name,
        run_dir.display()
    );

    let spec = cluster::ClusterSpec {
        names: plan.peers.clone(),
        neighbours: (0..plan.peers.len()).map(|i| plan.topology.neighbours(i)).collect(),
        profile,
        image: image.clone(),
        keys,
        plan: PlanFacts {
            name: plan.name.clone(),
            seed: plan.seed,
            flavor: plan.flavor.clone(),
            anti_entropy_ms: plan.anti_entropy.ms(),
            quarantine_ms: plan.quarantine.map(|q| q.ms()),
        },
        disk_limit: plan.disk_limit,
    };
    let cluster = Cluster::provision(engine.clone(), run_id, &run_dir, &spec).await?;
    let outcome = drive(plan, (&image, &image_id), cluster, &history, &run_dir, reports).await;
    let (cluster, outcome) = outcome;
    if outcome.is_err() {
        let _ = cluster.save_logs(&run_dir).await;
    }
    let down = cluster.teardown().await;
    let outcome = outcome.and_then(|o| down.context("removing the run's containers").map(|()| o));
    if let Err(e) = &outcome {
        // Kept now, so that the index written below can say why the run ended; `chaos` prints it
        // when it exits, to stderr only (the log ends with this function).
        crate::console::keep(format!("chaos: error: {e:#}\n").as_bytes());
    }
    // The peers' files go only once their containers are gone, and only for a valid run; a run that
    // failed keeps them (a person needs them).
    if let Ok(o) = &outcome {
        match retention::after_run(&run_dir, o.verdict, retention.keep_files) {
            Ok(Some(bytes)) => crate::say!(
                "chaos: removed the peers' files ({:.1} MB; --keep-files keeps them)",
                bytes as f64 / 1e6
            ),
            Ok(None) => {}
            Err(e) => crate::say!(
                "chaos: warning: cannot remove the peers' files of {}: {e}",
                run_dir.display()
            ),
        }
    }
    let live = cluster::live_runs(&engine).await.unwrap_or_default();
    rotate(
        reports,
        retention.keep_runs,
        run_dir.file_name().map(|n| n.to_string_lossy()).as_deref(),
        &live,
    );
    if let Err(e) = report::write_index(reports) {
        crate::say!("chaos: cannot regenerate {}/index.html: {e}", reports.display());
    }
    crate::console::end();
    outcome
}

/// Removes the run folders beyond `keep` under `reports`, saying what it removed and what it could not;
/// `live` are the ids of runs in progress by their containers (besides each folder's `chaos.pid`).
pub fn rotate(
    reports: &Path,
    keep: retention::KeepRuns,
    current: Option<&str>,
    live: &std::collections::BTreeSet<String>,
) -> retention::Rotated {
    let r = retention::rotate(reports, keep, current, live).unwrap_or_else(|e| {
        crate::say!(
            "chaos: warning: cannot rotate the run folders in {}: {e}",
            reports.display()
        );
        retention::Rotated::default()
    });
    if !r.removed.is_empty() {
        crate::say!(
            "chaos: removed {} old run folder(s) beyond the newest {keep} ({:.1} MB): {}",
            r.removed.len(),
            r.bytes as f64 / 1e6,
            r.removed.join(", ")
        );
    }
    for (name, why) in &r.failed {
        crate::say!("chaos: warning: cannot remove the old run folder {name}: {why}");
    }
    r
}

/// Runs the plan on a provisioned cluster; hands the cluster back (identities filled in) for teardown.
async fn drive(
    plan: &Plan,
    image: (&str, &str),
    mut cluster: Cluster,
    history: &Arc<History>,
    run_dir: &Path,
    reports: &Path,
) -> (Cluster, anyhow::Result<RunOutcome>) {
    let outcome = drive_inner(plan, image, &mut cluster, history, run_dir, reports).await;
    (cluster, outcome)
}

async fn drive_inner(
    plan: &Plan,
    (image, image_id): (&str, &str),
    cluster: &mut Cluster,
    history: &Arc<History>,
    run_dir: &Path,
    reports: &Path,
) -> anyhow::Result<RunOutcome> {
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let started = Instant::now();
    cluster.start_all().await?;
    let ready_timeout = cluster.profile.ready_timeout + Duration::from_secs(plan.peers.len() as u64);
    cluster.wait_ready(ready_timeout, progress_line("peers ready")).await?;
    cluster.introduce().await?;
    let cluster: &Cluster = cluster;
    for p in &cluster.peers {
        history.record(Event::PeerReady {
            peer: p.name.clone(),
            ip: p.ip.to_string(),
        });
    }
    let nemesis = Nemesis::new(cluster, history.clone());
    let engines = nemesis.prepare().await?;
    history.record(Event::EnginesProbed {
        engines: engines.clone(),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let (state_tx, mut state_rx) = watch::channel(MonitorState::default());
    let sync_dirs: Vec<(String, PeerDir)> = cluster.peers.iter().map(|p| (p.name.clone(), p.dir.clone())).collect();
    let watcher = crate::watcher::spawn(
        sync_dirs.clone(),
        crate::tree::ignore_set(&cluster.profile.ignore),
        history.clone(),
        run_dir.join(observations::SIGHTINGS),
        stop_rx.clone(),
    );
    let monitor = tokio::spawn(monitor::run(
        sync_dirs,
        crate::tree::ignore_set(&cluster.profile.ignore),
        history.clone(),
        run_dir.join(observations::OBSERVATIONS),
        stop_rx.clone(),
        state_tx,
    ));
    let targets: Vec<scraper::Target> = cluster
        .peers
        .iter()
        .map(|p| scraper::Target {
            peer: p.name.clone(),
            container: p.container.clone(),
            metrics_url: cluster
                .profile
                .metrics
                .as_ref()
                .map(|m| format!("http://{}:{}{}", p.ip, m.port, m.path)),
            roles: cluster.profile.metrics.clone().map(Arc::new),
            data: Some(p.dir.clone()),
        })
        .collect();
    let scraper = tokio::spawn(scraper::run(
        targets,
        Some(cluster.engine.clone()),
        history.clone(),
        run_dir.join(samples::METRICS_FILE),
        scraper::DEFAULT_INTERVAL,
        stop_rx,
    ));

    let schedule = generator::generate(plan);
    crate::say!(
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
                crate::say!("chaos: {:>7.1}s  fault {id} started", op.at_ms as f64 / 1000.0);
            }
            Action::FaultStop { id } => {
                nemesis.stop(id).await?;
                crate::say!("chaos: {:>7.1}s  fault {id} healed", op.at_ms as f64 / 1000.0);
            }
        }
    }
    tokio::time::sleep_until(t0 + Duration::from_millis(schedule.end_ms)).await;
    nemesis.heal_all().await?;
    let healed_ms = history.now_ms();
    crate::say!(
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
    // Counters must settle too: a loop is counters that keep moving once the trees agree. The window
    // starts after the heal and after the trees last agreed (what the no-loop check judges from). Once
    // a whole window was watched the wait ends at LOOP_SETTLE_LIMIT (moving counters are the checker's
    // to judge); until then it goes on, up to LOOP_WATCH_LIMIT, because a busy host scrapes late.
    let metrics_path = run_dir.join(samples::METRICS_FILE);
    let watch_started = tokio::time::Instant::now();
    let mut settle = samples::Settle::default();
    loop {
        let s = state_rx.borrow().clone();
        if !s.converged {
            break;
        }
        let agreed_ms = history.now_ms().saturating_sub(s.since.elapsed().as_millis() as u64);
        settle = samples::settle_since(
            &metrics_path,
            cluster.peers.len(),
            checker::LOOP_WINDOW_MS,
            healed_ms.max(agreed_ms),
            checker::loops::quiet_between,
        );
        let waited = watch_started.elapsed();
        if settle.quiet
            || (settle.watched && waited >= checker::LOOP_SETTLE_LIMIT)
            || waited >= checker::LOOP_WATCH_LIMIT
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    history.record(Event::CountersWatched {
        until_ms: settle.until_ms,
        quiet: settle.quiet,
    });
    let _ = stop_tx.send(true);
    let _ = monitor.await;
    let _ = tokio::task::spawn_blocking(move || watcher.join()).await;
    let _ = scraper.await;

    let logs = cluster.save_logs(run_dir).await;
    let mut finals = Vec::new();
    let ignore = crate::tree::ignore_set(&cluster.profile.ignore);
    for ((p, (_, log)), facts) in cluster.peers.iter().zip(logs).zip(&cluster.facts) {
        // Read beneath the data folder, never through a symlink: a sync folder a peer swapped for one
        // reads as empty, which the checkers then judge.
        let tree = p
            .dir
            .sync()
            .and_then(|sync| TreeReader::new(ignore.clone()).read(&sync))
            .unwrap_or_else(|e| {
                tracing::warn!("reading the tree of {}: {e}", p.name);
                Tree::default()
            });
        let alive = cluster.engine.is_running(&p.container).await.unwrap_or(false);
        // The peer's identity (a public key, a device id) may name its conflict copies.
        let id = Some(facts.peer.id.clone()).filter(|id| !id.is_empty());
        finals.push(PeerFinal {
            name: p.name.clone(),
            tree,
            alive,
            log,
            id,
        });
    }
    let records: Vec<history::Record> = history::read(&run_dir.join("history.jsonl"))?.collect::<Result<_, _>>()?;
    let observations = observations::read_observations(&run_dir.join(observations::OBSERVATIONS))?;
    let sightings = observations::read_observations(&run_dir.join(observations::SIGHTINGS)).unwrap_or_else(|e| {
        tracing::warn!("reading the inotify sightings: {e}");
        Vec::new()
    });
    let counters = samples::counters_for_checks(&run_dir.join(samples::METRICS_FILE), checker::quiesced_at(&records));
    let judged = checker::judge(&checker::Evidence {
        plan,
        conventions: &cluster.profile.conventions,
        history: &records,
        peers: &finals,
        observations: &observations,
        sightings: &sightings,
        counters: &counters,
        resources: &samples::resources(&run_dir.join(samples::METRICS_FILE)),
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
        image: image.to_string(),
        image_id: Some(image_id.to_string()),
        version: crate::VERSION.into(),
        commit: crate::COMMIT.into(),
        replay: report::replay_command(run_dir),
        profile: cluster.profile.name.clone(),
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
    for c in &result.checks {
        crate::say!("chaos: {:<20} {:<8} {}", c.name, c.verdict.as_str(), c.summary);
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
            crate::console::progress(&format!("chaos: {what}: {n}/{total}"));
            last = n;
        }
    }
}
