//! `chaos`: runs chaos plans against real peer containers and judges the outcome.
//!
//! Exit codes: 0 every check valid, 1 a check failed (invalid or unknown), 2 the input was bad or the
//! harness itself failed. Whatever happens (error, panic, Ctrl-C, SIGTERM), the run's containers and
//! network are removed before exiting.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use syftchaos::checker::Verdict;
use syftchaos::docker::{Engine, LABEL_PEER, LABEL_PID, LABEL_RUN};
use syftchaos::record::recipe::{self, Recipe, RunKeys};
use syftchaos::retention::{KeepRuns, Retention};
use syftchaos::soak::SoakSchedule;
use syftchaos::{cluster, generator, listing, plan, profile, run};

#[derive(Parser)]
#[command(name = "chaos", version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SYFTCHAOS_COMMIT"), ")"), about = "Chaos-testing lab for peer-to-peer file sync")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a chaos plan: start the peers, apply the workload and faults, heal, check, report.
    Run {
        #[command(flatten)]
        target: Target,
    },
    /// Run a soak plan (one with a `soak:` section): its continuous workload and seeded fault mix on
    /// one cluster, window by window; each window ends healed and is judged on its own.
    Soak {
        #[command(flatten)]
        target: Target,
        /// How long the soak's schedule runs (e.g. 30m, 8h; from 10s to 30d); default: the plan's
        /// `soak.duration`. Each window adds its heal and judging time on top.
        #[arg(long, value_name = "DURATION")]
        duration: Option<String>,
        /// Play window K alone, on fresh peers: the replay of a failed window (its schedule is the
        /// same as in the whole soak).
        #[arg(long, value_name = "K")]
        window: Option<u64>,
        /// End the soak at the first window that is not valid (default: go on, and count).
        #[arg(long)]
        stop_on_failure: bool,
    },
    /// Run a finished run again: its plan (the copy in its folder), seed, flavor, image, peer profile
    /// and peer keys; the schedule is the same. The new run gets its own folder.
    Replay {
        /// The run folder to replay (`reports/<plan>-<time>-<id>`).
        run_dir: PathBuf,
        /// Where the new run folder goes.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        #[command(flatten)]
        keep: Keep,
    },
    /// Remove the oldest run folders beyond `--keep-runs`: never a run in progress, nor one without
    /// `result.json` (killed, crashed) changed in the last day. Rewrites the reports' index.
    Prune {
        /// The reports folder to prune.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        /// How many run folders to keep, newest first (a number, or `all`).
        #[arg(long, default_value_t = KeepRuns::default())]
        keep_runs: KeepRuns,
    },
    /// Check plans (and their peer profiles) without starting anything.
    Validate {
        #[arg(required = true)]
        plans: Vec<PathBuf>,
        #[command(flatten)]
        with: Checked,
    },
    /// Print the concrete seeded schedule (every workload operation and fault, with its time and
    /// targets) without starting anything: no Docker, no run folder.
    Plan {
        plan: PathBuf,
        /// Override the plan's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
        /// For a soak plan: how many of its first actions to print.
        #[arg(long, default_value_t = 200)]
        limit: usize,
        /// For a soak plan: print window K's actions (from 0), exactly as the whole soak makes them.
        #[arg(long, value_name = "K")]
        window: Option<u64>,
        #[command(flatten)]
        with: Checked,
    },
    /// Remove the containers and networks of runs whose orchestrator is gone (killed, crashed);
    /// runs in progress are left alone unless `--all`.
    Clean {
        /// Also remove the runs in progress (their orchestrators then fail).
        #[arg(long)]
        all: bool,
    },
    /// List runs in progress and their peers.
    Ps,
}

/// What a run keeps: its peers' files, and how many run folders its reports folder keeps.
#[derive(clap::Args)]
struct Keep {
    /// Keep the peers' data folders (`peers/`) even when the run is valid (they are always kept
    /// for invalid and unknown runs, and runs that ended in an error).
    #[arg(long)]
    keep_files: bool,
    /// How many run folders the reports folder keeps, newest first (a number, or `all`); older ones
    /// are removed after the run, but never one in progress.
    #[arg(long, default_value_t = KeepRuns::default())]
    keep_runs: KeepRuns,
}

impl Keep {
    fn retention(&self) -> Retention {
        Retention {
            keep_files: self.keep_files,
            keep_runs: self.keep_runs,
        }
    }
}

/// What `run` and `soak` start: a plan, the overrides given, where its run folder goes.
#[derive(clap::Args)]
struct Target {
    /// The plan file (see chaos-plans/).
    plan: PathBuf,
    /// Where run folders go.
    #[arg(long, default_value = "reports")]
    reports: PathBuf,
    /// Where named topologies live (default: `topologies/` beside the plan's folder).
    #[arg(long)]
    topologies: Option<PathBuf>,
    /// Override the plan's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the plan's peer flavor (default | legacy).
    #[arg(long)]
    flavor: Option<String>,
    /// Override the plan's image.
    #[arg(long)]
    image: Option<String>,
    #[command(flatten)]
    daemon: Daemon,
    #[command(flatten)]
    keep: Keep,
}

/// The daemon under test, as `run`, `soak`, `validate` and `plan` take it.
#[derive(clap::Args)]
struct Daemon {
    /// The daemon under test: a peer profile's name (under --profiles) or folder; overrides
    /// the plan's `peer` (default syncpeer).
    #[arg(long)]
    peer: Option<String>,
    /// Where named peer profiles live (default: `peer-image/profiles/` beside the plan's folder).
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// How clock faults reach the daemon, instead of its profile's `clock`: `vdso` for the same
    /// daemon built static (docs/FAULTS.md).
    #[arg(long, value_parser = ["libfaketime", "vdso"])]
    clock: Option<String>,
}

impl Daemon {
    /// Its profile, checked against the plan (errors printed).
    fn profile(&self, p: &mut plan::Plan) -> Result<profile::Profile, ExitCode> {
        load_profile(p, self.peer.as_deref(), self.profiles.as_deref(), self.clock.as_deref())
    }
}

impl Target {
    /// The plan with the overrides applied, checked against its peer profile (a bad --flavor too);
    /// errors are printed. `adjust` changes the plan before the overrides (a soak's duration).
    fn prepare(
        &self,
        adjust: impl FnOnce(&mut plan::Plan) -> Result<(), ExitCode>,
    ) -> Result<(plan::Plan, profile::Profile, run::Origin), ExitCode> {
        let topologies = topologies_for(&self.plan, self.topologies.clone());
        let mut p = load(&self.plan, Some(topologies.clone()))?;
        adjust(&mut p)?;
        if let Some(s) = self.seed {
            p.seed = s;
        }
        if let Some(f) = &self.flavor {
            p.flavor = f.clone();
        }
        if let Some(i) = &self.image {
            if let Err(e) = plan::check_image(i) {
                eprintln!("chaos: --image: {e}");
                return Err(ExitCode::from(2));
            }
            p.image = Some(i.clone());
        }
        let pr = self.daemon.profile(&mut p)?;
        let origin = run::Origin {
            topologies,
            replay: None,
        };
        Ok((p, pr, origin))
    }
}

/// What `validate` and `plan` check a plan with, besides the plan itself.
#[derive(clap::Args)]
struct Checked {
    /// Where named topologies live (default: `topologies/` beside the plan's folder).
    #[arg(long)]
    topologies: Option<PathBuf>,
    /// Use this flavor instead of the plan's.
    #[arg(long)]
    flavor: Option<String>,
    #[command(flatten)]
    daemon: Daemon,
}

impl Checked {
    /// Loads a plan with these overrides and checks it against its peer profile; errors are printed.
    fn load(&self, path: &Path) -> Result<(plan::Plan, profile::Profile), ExitCode> {
        let mut p = load(path, self.topologies.clone())?;
        if let Some(f) = &self.flavor {
            p.flavor = f.clone();
        }
        let pr = self.daemon.profile(&mut p)?;
        Ok((p, pr))
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(syftchaos::console::Writer)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            syftchaos::say!("chaos: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn topologies_for(plan: &Path, given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let beside = plan.parent().unwrap_or(Path::new(".")).join("../topologies");
        if beside.is_dir() {
            beside
        } else {
            PathBuf::from("topologies")
        }
    })
}

fn load(path: &Path, topologies: Option<PathBuf>) -> Result<plan::Plan, ExitCode> {
    plan::load(path, &topologies_for(path, topologies)).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

/// Loads the plan's peer profile (or `--peer`'s), with `--clock`'s mechanism if given, and checks the
/// plan against it.
fn load_profile(
    p: &mut plan::Plan,
    peer: Option<&str>,
    profiles: Option<&Path>,
    clock: Option<&str>,
) -> Result<profile::Profile, ExitCode> {
    let dir = profiles.map_or_else(|| profile::profiles_dir_for(&p.source), Path::to_path_buf);
    let loaded = profile::load(peer.unwrap_or(&p.peer), &dir)
        .map_err(|e| match peer {
            // A profile the plan names but that cannot be read is the plan's error, at its `peer`.
            None if e.line == 0 => plan::PlanError {
                file: p.source.clone(),
                line: p.peer_at.0,
                column: p.peer_at.1,
                message: format!("`peer`: {}", e.message),
            },
            _ => e,
        })
        .map(|pr| match clock.and_then(profile::ClockMethod::parse) {
            Some(method) => pr.with_clock(method),
            None => pr,
        })
        .and_then(|pr| profile::check_plan(p, &pr).map(|()| pr));
    loaded.map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

/// What `chaos replay` needs from a run folder: the plan as it ran (its copy, with the recorded seed,
/// flavor and image), its profile, and its keys. Any error is the user's input: exit 2.
fn load_replay(run_dir: &Path) -> anyhow::Result<(plan::Plan, profile::Profile, run::Replay)> {
    let recipe = Recipe::load(run_dir)?;
    let mut p = plan::load(&run_dir.join(recipe::PLAN_COPY), &recipe.topologies)?;
    p.seed = recipe.seed;
    if let (Some(sr), Some(soak)) = (&recipe.soak, p.soak.as_mut()) {
        let d = humantime::parse_duration(&sr.duration)
            .with_context(|| format!("{}: the soak's duration `{}`", recipe::RECIPE, sr.duration))?;
        soak.duration = plan::LongDur(d);
    }
    p.flavor = recipe.flavor.clone();
    p.image = Some(recipe.image.clone());
    let profile = recipe.profile.to_string_lossy().into_owned();
    let mut pr = profile::load(&profile, &recipe.profile)?;
    if let Some(method) = recipe.clock.as_deref().and_then(profile::ClockMethod::parse) {
        pr = pr.with_clock(method);
    }
    profile::check_plan(&mut p, &pr)?;
    let keys = RunKeys::load(run_dir, &p.peers)?;
    let replay = run::Replay {
        run_dir: std::path::absolute(run_dir)?,
        recipe,
        keys,
    };
    Ok((p, pr, replay))
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { plans, with } => validate(plans, with),
        Command::Replay { run_dir, reports, keep } => replay(run_dir, reports, keep).await,
        Command::Prune { reports, keep_runs } => prune(reports, keep_runs).await,
        Command::Plan {
            plan: path,
            seed,
            json,
            limit,
            window,
            with,
        } => show_plan(path, seed, json, limit, window, with),
        Command::Run { target } => run_once(target).await,
        Command::Soak {
            target,
            duration,
            window,
            stop_on_failure,
        } => soak(target, duration, window, stop_on_failure).await,
        Command::Clean { all } => clean(all).await,
        Command::Ps => ps().await,
    }
}

/// `chaos validate`: checks each plan against its profile and prints what it would run.
fn validate(plans: Vec<PathBuf>, with: Checked) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for path in plans {
        match with.load(&path) {
            Ok((p, pr)) if p.soak.is_some() => {
                let s = p.soak.as_ref().expect("checked");
                println!(
                    "{}: ok: soak plan {}, {} peers of {}, {} in {} windows of {}, {}, {} faults in the mix",
                    path.display(),
                    p.name,
                    p.peers.len(),
                    pr.name,
                    s.duration,
                    s.windows(),
                    s.window,
                    s.workload
                        .as_ref()
                        .map_or("no workload".to_string(), |w| format!("{} ops/s", w.rate)),
                    s.faults.len()
                );
            }
            Ok((p, pr)) => {
                let s = generator::generate(&p);
                println!(
                    "{}: ok: plan {}, {} peers of {}, {} operations, {} fault steps, {:.1} s of schedule",
                    path.display(),
                    p.name,
                    p.peers.len(),
                    pr.name,
                    s.ops.len(),
                    p.steps.len(),
                    s.end_ms as f64 / 1000.0
                );
            }
            Err(c) => code = c,
        }
    }
    Ok(code)
}

/// `chaos replay`: a finished run again, from its recipe.
async fn replay(run_dir: PathBuf, reports: PathBuf, keep: Keep) -> anyhow::Result<ExitCode> {
    let (p, pr, replay) = match load_replay(&run_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    // A soak is replayed as it ran: its duration, its one window if it played one alone.
    // (A recipe without its soak's facts: the plan's own duration, every window.)
    let mode = match (&replay.recipe.soak, &p.soak) {
        (sr, Some(soak)) => run::Mode::Soak(syftchaos::soak::runner::Options {
            only_window: sr.as_ref().and_then(|s| s.window),
            stop_on_failure: sr.as_ref().is_some_and(|s| s.stop_on_failure),
            command: soak_command(
                &replay.recipe.plan_source,
                p.seed,
                &soak.duration.to_string(),
                [
                    ("--flavor", Some(p.flavor.as_str())),
                    ("--image", p.image.as_deref()),
                    ("--peer", Some(&*replay.recipe.profile.to_string_lossy())),
                    ("--topologies", Some(&*replay.recipe.topologies.to_string_lossy())),
                    ("--clock", replay.recipe.clock.as_deref()),
                ],
            ),
        }),
        (_, None) => run::Mode::Once,
    };
    let origin = run::Origin {
        topologies: replay.recipe.topologies.clone(),
        replay: Some(replay),
    };
    run_guarded(p, pr, reports, origin, keep.retention(), mode).await
}

/// `chaos prune`: old run folders removed, live runs spared.
async fn prune(reports: PathBuf, keep_runs: KeepRuns) -> anyhow::Result<ExitCode> {
    if !reports.is_dir() {
        eprintln!("chaos: prune: {} is not a folder", reports.display());
        return Ok(ExitCode::from(2));
    }
    // Runs in progress are known by their folder's `chaos.pid`, and by their containers when
    // Docker answers.
    let live = match Engine::connect().await {
        Ok(engine) => cluster::live_runs(&engine).await.unwrap_or_default(),
        Err(_) => Default::default(),
    };
    let r = run::rotate(&reports, keep_runs, None, &live);
    for (name, why) in &r.spared {
        println!("kept {name}: {}", why.describe());
    }
    println!(
        "removed {} run folders ({:.1} MB); {} could not be removed",
        r.removed.len(),
        r.bytes as f64 / 1e6,
        r.failed.len()
    );
    if let Err(e) = syftchaos::report::write_index(&reports) {
        eprintln!("chaos: cannot regenerate {}/index.html: {e}", reports.display());
    }
    Ok(if r.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `chaos plan`: the schedule a plan draws, starting nothing.
fn show_plan(
    path: PathBuf,
    seed: Option<u64>,
    json: bool,
    limit: usize,
    window: Option<u64>,
    with: Checked,
) -> anyhow::Result<ExitCode> {
    let mut p = match with.load(&path) {
        Ok((p, _)) => p,
        Err(code) => return Ok(code),
    };
    p.seed = seed.unwrap_or(p.seed);
    if let Some(soak) = SoakSchedule::new(&p) {
        if let Some(k) = window
            && k >= soak.windows()
        {
            eprintln!(
                "chaos: --window {k}: the soak has windows 0 to {}",
                soak.windows().saturating_sub(1)
            );
            return Ok(ExitCode::from(2));
        }
        let ops: Box<dyn Iterator<Item = generator::ScheduledOp> + '_> = match window {
            Some(k) => Box::new(soak.window(k)),
            None => Box::new(soak.actions().take(limit)),
        };
        if json {
            let ops: Vec<_> = ops.collect();
            let doc = listing::soak_json(&p, &soak, window, &ops);
            print_lines([serde_json::to_string_pretty(&doc)?])?;
        } else {
            // Line by line as drawn: a window at 1000 ops/s is 600 000 lines, never held.
            let header = listing::soak_header(&p, &soak, window, limit);
            print_lines(std::iter::once(header).chain(ops.map(|op| listing::line(&op))))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if window.is_some() {
        eprintln!(
            "chaos: --window: {} has no `soak:` section (windows are a soak's)",
            path.display()
        );
        return Ok(ExitCode::from(2));
    }
    let s = generator::generate(&p);
    let text = if json {
        vec![serde_json::to_string_pretty(&listing::json(&p, &s))?]
    } else {
        listing::lines(&p, &s)
    };
    print_lines(text)?;
    Ok(ExitCode::SUCCESS)
}

/// `chaos run`: one plan, once.
async fn run_once(target: Target) -> anyhow::Result<ExitCode> {
    let prepared = target.prepare(|p| {
        if p.soak.is_some() {
            eprintln!(
                "chaos: {} is a soak plan (it has a `soak:` section); allowed: plans without `soak:` (`chaos soak` runs it; `chaos plan` shows its schedule)",
                target.plan.display()
            );
            return Err(ExitCode::from(2));
        }
        Ok(())
    });
    let (p, pr, origin) = match prepared {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    run_guarded(p, pr, target.reports, origin, target.keep.retention(), run::Mode::Once).await
}

/// `chaos soak`: a soak plan, window by window.
async fn soak(
    target: Target,
    duration: Option<String>,
    window: Option<u64>,
    stop_on_failure: bool,
) -> anyhow::Result<ExitCode> {
    let (p, pr, origin) = match target.prepare(|p| soak_adjust(p, &target.plan, duration.as_deref(), window)) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let soak = p.soak.as_ref().expect("soak_adjust checked it");
    let command = soak_command(
        &std::path::absolute(&target.plan)?,
        p.seed,
        &soak.duration.to_string(),
        [
            ("--flavor", target.flavor.as_deref()),
            ("--image", target.image.as_deref()),
            ("--peer", target.daemon.peer.as_deref()),
            ("--topologies", None),
            ("--clock", target.daemon.clock.as_deref()),
        ],
    );
    let mode = run::Mode::Soak(syftchaos::soak::runner::Options {
        only_window: window,
        stop_on_failure,
        command,
    });
    run_guarded(p, pr, target.reports, origin, target.keep.retention(), mode).await
}

/// `chaos clean`: what killed runs left behind (with `all`, live runs too).
async fn clean(all: bool) -> anyhow::Result<ExitCode> {
    let engine = Engine::connect().await?;
    let r = cluster::reap(&engine, !all).await?;
    println!(
        "removed {} containers and {} networks from {} runs",
        r.containers,
        r.networks,
        r.runs.len()
    );
    for stuck in &r.stuck {
        println!("left: {stuck}");
    }
    let left = engine.managed_containers().await?.len();
    if left > 0 {
        println!(
            "left alone: {left} containers of runs in progress (`chaos ps`; `chaos clean --all` removes them too)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `chaos ps`: the runs whose containers exist, and whether their orchestrator lives.
async fn ps() -> anyhow::Result<ExitCode> {
    let engine = Engine::connect().await?;
    let mut runs: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut pids: std::collections::BTreeMap<String, String> = Default::default();
    for c in engine.managed_containers().await? {
        let run = c.labels.get(LABEL_RUN).cloned().unwrap_or_else(|| "?".into());
        let peer = c.labels.get(LABEL_PEER).cloned().unwrap_or(c.name.clone());
        runs.entry(run.clone()).or_default().push(format!("{peer}:{}", c.state));
        pids.insert(run, c.labels.get(LABEL_PID).cloned().unwrap_or_default());
    }
    if runs.is_empty() {
        println!("no syftchaos runs");
    }
    for (run, peers) in runs {
        let pid = &pids[&run];
        let alive = Path::new(&format!("/proc/{pid}")).exists();
        println!(
            "run {run}  orchestrator pid {pid} ({})  peers: {}",
            if alive {
                "alive"
            } else {
                "gone: `chaos clean` removes it"
            },
            peers.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A soak plan's `--duration` and `--window` checked and applied; a plan without `soak:` is refused.
fn soak_adjust(p: &mut plan::Plan, path: &Path, duration: Option<&str>, window: Option<u64>) -> Result<(), ExitCode> {
    let Some(soak) = p.soak.as_mut() else {
        eprintln!(
            "chaos: {} has no `soak:` section; allowed: a soak plan (e.g. chaos-plans/soak.yaml); `chaos run` runs the others",
            path.display()
        );
        return Err(ExitCode::from(2));
    };
    if let Some(d) = duration {
        match humantime::parse_duration(d) {
            Ok(d) if (plan::limits::MIN_SOAK_WINDOW..=plan::limits::MAX_SOAK).contains(&d) => {
                soak.duration = plan::LongDur(d);
            }
            _ => {
                eprintln!("chaos: --duration {d}; allowed: {}", plan::units::SOAK_DURATION_ALLOWED);
                return Err(ExitCode::from(2));
            }
        }
    }
    let windows = soak.windows();
    if let Some(k) = window
        && k >= windows
    {
        eprintln!(
            "chaos: --window {k}; allowed: a window of this soak, 0 to {}",
            windows.saturating_sub(1)
        );
        return Err(ExitCode::from(2));
    }
    Ok(())
}

/// The command that runs a soak again (a window's replay adds `--window K`): its plan, seed and
/// duration, and the overrides given.
fn soak_command(plan: &Path, seed: u64, duration: &str, overrides: [(&str, Option<&str>); 5]) -> String {
    let q = syftchaos::report::shell_quote;
    let mut command = format!(
        "chaos soak {} --seed {seed} --duration {}",
        q(&plan.to_string_lossy()),
        q(duration)
    );
    for (flag, value) in overrides {
        if let Some(v) = value {
            command.push_str(&format!(" {flag} {}", q(v)));
        }
    }
    command
}

/// Prints lines; a reader that stops early (`chaos plan P | head`) is not an error.
fn print_lines(lines: impl IntoIterator<Item = String>) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = lines
        .into_iter()
        .try_for_each(|l| writeln!(out, "{l}"))
        .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Runs the plan in its own task so that a panic, Ctrl-C or SIGTERM still reaches the teardown.
async fn run_guarded(
    p: plan::Plan,
    pr: profile::Profile,
    reports: PathBuf,
    origin: run::Origin,
    retention: Retention,
    mode: run::Mode,
) -> anyhow::Result<ExitCode> {
    let run_id = run::new_run_id();
    let task = {
        let run_id = run_id.clone();
        tokio::spawn(
            async move { run::run(&p, std::sync::Arc::new(pr), &run_id, &reports, origin, retention, mode).await },
        )
    };
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
    let abort = task.abort_handle();
    let result = tokio::select! {
        r = task => r,
        _ = tokio::signal::ctrl_c() => { abort.abort(); syftchaos::say!("\nchaos: interrupted; removing the run's containers"); return teardown_after(&run_id, "interrupted").await }
        _ = term.recv() => { abort.abort(); syftchaos::say!("\nchaos: terminated; removing the run's containers"); return teardown_after(&run_id, "terminated").await }
    };
    match result {
        Ok(Ok(outcome)) => {
            println!("verdict: {}", outcome.verdict.as_str());
            println!("report: {}", outcome.run_dir.join("index.html").display());
            Ok(match outcome.verdict {
                Verdict::Valid => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            })
        }
        Ok(Err(e)) => Err(e),
        Err(join) => {
            syftchaos::say!("chaos: the run crashed: {join}");
            teardown_after(&run_id, "crashed").await
        }
    }
}

async fn teardown_after(run_id: &str, why: &str) -> anyhow::Result<ExitCode> {
    let engine = Engine::connect().await?;
    cluster::reap_run(&engine, run_id)
        .await
        .with_context(|| format!("cleaning up run {run_id} after it {why}"))?;
    Ok(ExitCode::from(2))
}
