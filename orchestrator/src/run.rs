//! A whole run: plan in, verdict and report out, nothing left behind.
//!
//! ```text
//! recipe, keys -> prepare folders, configs -> network + containers -> ready -> schedule (workload + nemesis)
//!   -> heal all -> wait for convergence -> final trees, logs -> checkers -> report -> teardown
//! ```
//!
//! The phases between "ready" and "checkers" are a [`Session`]'s; a soak ([`Mode::Soak`]) repeats
//! them once per window (`soak::runner`). A convergence monitor runs beside the schedule, reading
//! every peer's tree a few times a second and writing `converged` / `diverged` transitions into the
//! history; recovery times come from those.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context;

use crate::checker::{self, Verdict};
use crate::cluster::{self, Cluster, sidecar};
use crate::docker::Engine;
use crate::generator;
use crate::plan::Plan;
use crate::profile::{PlanFacts, Profile};
use crate::record::history::{self, Event, History};
use crate::record::recipe::{self, Recipe, RunKeys};
use crate::record::samples;
use crate::record::segment::Segments;
use crate::report::{self, PeerSummary, RunResult};
use crate::retention::{self, Retention};
use crate::session::{self, Session};

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

/// What a run plays: the plan's schedule once, or its `soak:` section window by window.
pub enum Mode {
    Once,
    Soak(crate::soak::runner::Options),
}

/// Runs `plan` with the daemon of `profile` and tears the cluster down whatever happens inside.
pub async fn run(
    plan: &Plan,
    profile: Arc<Profile>,
    run_id: &str,
    reports: &Path,
    origin: Origin,
    retention: Retention,
    mode: Mode,
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
    for stuck in &stale.stuck {
        crate::say!("chaos: warning: {stuck}");
    }
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
        clock: match &profile.clock {
            crate::profile::ClockMethod::Unsupported(_) => None,
            m => Some(m.name().to_string()),
        },
        topologies: std::path::absolute(&origin.topologies)?,
        replay_of: origin.replay.as_ref().map(|r| r.run_dir.clone()),
        soak: match (&mode, &plan.soak) {
            (Mode::Soak(o), Some(soak)) => Some(recipe::SoakRecipe {
                duration: soak.duration.to_string(),
                window: o.only_window,
                stop_on_failure: o.stop_on_failure,
            }),
            _ => None,
        },
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
    let outcome = drive(plan, (&image, &image_id), cluster, &history, &run_dir, reports, &mode).await;
    let (cluster, outcome) = outcome;
    if outcome.is_err() {
        let _ = cluster.save_logs(&run_dir).await;
    }
    let down = match cluster.teardown().await {
        // A Docker bug, not the run's: said loudly, and the verdict stands.
        Err(e) if e.is::<cluster::StuckNetwork>() => {
            crate::say!("chaos: warning: {e:#}");
            Ok(())
        }
        other => other,
    };
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
    mode: &Mode,
) -> (Cluster, anyhow::Result<RunOutcome>) {
    let outcome = drive_inner(plan, image, &mut cluster, history, run_dir, reports, mode).await;
    (cluster, outcome)
}

async fn drive_inner(
    plan: &Plan,
    (image, image_id): (&str, &str),
    cluster: &mut Cluster,
    history: &Arc<History>,
    run_dir: &Path,
    reports: &Path,
    mode: &Mode,
) -> anyhow::Result<RunOutcome> {
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let started = Instant::now();
    session::bring_up(cluster, plan.peers.len(), history).await?;
    let cluster: &Cluster = cluster;
    let mut session = Session::open(cluster, history.clone(), Segments::new(run_dir)).await?;
    let soak = match mode {
        Mode::Once => None,
        Mode::Soak(options) => Some(
            crate::soak::runner::drive(plan, &mut session, run_dir, options)
                .await
                .context("the soak")?,
        ),
    };
    if soak.is_none() {
        let schedule = generator::generate(plan);
        crate::say!(
            "chaos: schedule: {} operations over {:.1} s",
            schedule.ops.len(),
            schedule.end_ms as f64 / 1000.0
        );
        session
            .play(plan.seed, schedule.ops.into_iter(), 0, schedule.end_ms)
            .await?;
        session.settle(plan).await?;
    }
    let engines = session.engines.clone();
    let logs = cluster.save_logs(run_dir).await;
    let convictions = cluster.save_evidence(run_dir).await;
    let finals = session.finals(logs, convictions).await;
    session.close().await;

    let (records, judged) = match &soak {
        None => {
            let records: Vec<history::Record> =
                history::read(&run_dir.join("history.jsonl"))?.collect::<Result<_, _>>()?;
            let metrics = run_dir.join(samples::METRICS_FILE);
            let counters = samples::counters_for_checks(&metrics, checker::quiesced_at(&records));
            let judged = session::judge(
                plan,
                cluster,
                run_dir,
                &records,
                &finals,
                &samples::resources(&metrics),
                &counters,
            )?;
            (records, judged)
        }
        Some(s) => (s.timeline.clone(), s.judgement(plan, run_dir)),
    };
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
        replay: match &soak {
            None => report::replay_command(run_dir),
            Some(s) => s.replay.clone(),
        },
        profile: cluster.profile.name.clone(),
        clock: cluster.profile.clock.name().to_string(),
        flavor: plan.flavor.clone(),
        engine: engines["auto_engine"].as_str().unwrap_or("unknown").to_string(),
        engines_probed: engines,
        checks,
        recovery: recoveries,
        figures,
        peers: finals.iter().map(PeerSummary::from).collect(),
        soak: soak.map(|s| s.summary),
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
