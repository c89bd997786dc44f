//! Runs a soak on one cluster, window by window (Jepsen's rolling checks):
//!
//! ```text
//! for each window k:  rotate the recording into windows/<k>/ -> play window k's schedule
//!   -> heal all, converge, watch counters -> logs since the window began, final trees
//!   -> judge the window alone (its history, from the baseline the previous window ended with)
//!   -> windows/<k>/window.json, compress window k-1's files -> stop here if asked and it failed
//! ```
//!
//! Memory stays flat: the schedule is drawn one window at a time, the history, observations and
//! metrics stream to the window's files, and only the window being judged is ever read back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;

use crate::checker::{self, Judgement, Verdict};
use crate::plan::Plan;
use crate::record::history::{self, Event, Record};
use crate::record::{observations, samples, segment};
use crate::session::{self, Session};

use super::SoakSchedule;
use super::baseline::Baseline;
use super::summary::{Folded, Mtbf, SoakFacts, SoakSummary, WindowResult, own_rss_kib};

/// How `chaos soak` runs its plan's soak.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Play window K alone, on fresh peers (what a failed window's replay command does).
    pub only_window: Option<u64>,
    /// End the soak at the first window that is not valid.
    pub stop_on_failure: bool,
    /// The command that runs this soak again; a window's replay adds `--window K` to it.
    pub command: String,
}

/// The files a window streams, compressed once it is judged and its writers have moved on.
const STREAMS: [&str; 4] = [
    "history.jsonl",
    observations::OBSERVATIONS,
    observations::SIGHTINGS,
    samples::METRICS_FILE,
];

/// Where window `k`'s recording goes, relative to the run folder.
pub fn window_folder(k: u64) -> String {
    format!("windows/{k:04}")
}

/// A finished soak: its windows, and what the report draws.
pub struct SoakOutcome {
    pub summary: SoakSummary,
    /// The run's events worth drawing (faults, restarts, clocks, windows, each window's recovery),
    /// without the workload's and the monitor's thousands.
    pub timeline: Vec<Record>,
    pub replay: String,
    folded: Folded,
    last_folder: Option<PathBuf>,
}

impl SoakOutcome {
    /// The soak's verdicts, once its monitor and scraper stopped: every check's worst window, and
    /// the growth check over the whole soak (every window's samples). Compresses the last window.
    pub fn judgement(&self, plan: &Plan, run_dir: &Path) -> Judgement {
        if let Some(dir) = &self.last_folder {
            compress_window(dir);
        }
        let mut resources: BTreeMap<String, Vec<samples::Resource>> = BTreeMap::new();
        for w in &self.summary.windows {
            for (peer, mut series) in samples::resources(&run_dir.join(&w.folder).join(samples::METRICS_FILE)) {
                resources.entry(peer).or_default().append(&mut series);
            }
        }
        let mut checks = self.folded.checks();
        checks.extend(checker::growth::no_leak(&resources, &(&plan.expect.leak).into()));
        Judgement {
            checks,
            recoveries: self.folded.recoveries(),
            figures: self.folded.figures(),
        }
    }
}

/// Plays the soak of `plan` on `session`'s cluster; see the module's overview.
pub async fn drive(
    plan: &Plan,
    session: &mut Session<'_>,
    run_dir: &Path,
    options: &Options,
) -> anyhow::Result<SoakOutcome> {
    let schedule = SoakSchedule::new(plan).context("the plan has no `soak:` section")?;
    let soak = plan.soak.as_ref().expect("checked above");
    let windows: Vec<u64> = match options.only_window {
        Some(k) => vec![k],
        None => (0..schedule.windows()).collect(),
    };
    let rss_start = own_rss_kib();
    // What happened before the first window (start-up, readiness) opens the timeline.
    let mut timeline: Vec<Record> = history::read(&run_dir.join("history.jsonl"))?
        .filter_map(Result::ok)
        .collect();
    let mut folded = Folded::default();
    let mut results: Vec<WindowResult> = Vec::new();
    let mut baseline = Baseline::default();
    let mut began_divergent = 0;
    let mut last_counters: Vec<samples::Counters> = Vec::new();
    let mut previous: Option<PathBuf> = None;
    let (mut crashes, mut restarts) = (0u64, 0u64);
    let mut first_failure = None;
    let mut stopped = false;
    let mut played_ms = 0u64;
    crate::say!(
        "chaos: soak of {} in {} window(s) of {}{}",
        soak.duration,
        windows.len(),
        soak.window,
        options
            .only_window
            .map_or(String::new(), |k| format!(" (window {k} alone)"))
    );
    for &k in &windows {
        let folder = window_folder(k);
        let dir = run_dir.join(&folder);
        session.segments.rotate(&dir)?;
        session.history.rotate(&dir.join("history.jsonl"))?;
        let (from_ms, to_ms) = schedule.span(k);
        let started_ms = session.history.record(Event::WindowStarted {
            window: k,
            from_ms,
            to_ms,
        });
        crate::say!(
            "chaos: window {k}: schedule {:.0}s..{:.0}s",
            from_ms as f64 / 1000.0,
            to_ms as f64 / 1000.0
        );
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i32);
        session.play(plan.seed, schedule.window(k), from_ms, to_ms).await?;
        played_ms += to_ms - from_ms;
        session.settle(plan).await?;
        let logs = session.cluster.save_logs_since(&dir, since).await;
        let convictions = session.cluster.save_evidence(&dir).await;
        let finals = session.finals(logs, convictions).await;

        let mut records: Vec<Record> = baseline.records(started_ms).collect();
        records.extend(history::read(&dir.join("history.jsonl"))?.collect::<Result<Vec<_>, _>>()?);
        let metrics = dir.join(samples::METRICS_FILE);
        let mut counters = samples::counters_for_checks(&metrics, checker::quiesced_at(&records));
        // As scraped (they hold each peer's last scrape): where the next window's counting starts.
        let scraped = counters.clone();
        samples::rebase(&mut counters, &last_counters);
        let judged = session::judge(
            plan,
            session.cluster,
            &dir,
            &records,
            &finals,
            &BTreeMap::new(),
            &counters,
        )?;
        last_counters = scraped;
        let verdict = checker::compose(&judged.checks);
        let judged_ms = session.history.record(Event::WindowJudged {
            window: k,
            verdict: verdict.as_str().into(),
        });
        crashes += crashes_in(&judged);
        restarts += records
            .iter()
            .filter(|r| matches!(&r.event, Event::PeerBack { after, .. } if after != "pause"))
            .count() as u64;
        let result = WindowResult {
            window: k,
            from_ms,
            to_ms,
            started_ms,
            judged_ms,
            verdict,
            checks: judged.checks.iter().map(|c| (c.name.clone(), c.verdict)).collect(),
            failures: judged
                .checks
                .iter()
                .filter(|c| c.verdict != Verdict::Valid)
                .map(|c| format!("{}: {}", c.name, c.summary))
                .collect(),
            faults: records
                .iter()
                .filter(|r| matches!(r.event, Event::FaultStarted { .. }))
                .count(),
            operations: records
                .iter()
                .filter(|r| match &r.event {
                    Event::Write { peer, .. } => peer != checker::WINDOW_START,
                    Event::Meta { .. } => true,
                    _ => false,
                })
                .count(),
            recovered_after_ms: judged
                .recoveries
                .iter()
                .rev()
                .find(|r| r.fault == "heal-all")
                .and_then(|r| r.converged_after_ms),
            began_divergent,
            orchestrator_rss_kib: own_rss_kib(),
            folder: folder.clone(),
            replay: format!("{} --window {k}", options.command),
        };
        write_window(&dir, &result, &judged)?;
        crate::say!(
            "chaos: window {k}: {} ({} operations, {} faults{})",
            verdict.as_str(),
            result.operations,
            result.faults,
            result
                .recovered_after_ms
                .map_or(", never converged".to_string(), |t| format!(
                    ", converged {t} ms after the heal"
                ))
        );
        for f in &result.failures {
            crate::say!("chaos:   {f}");
        }
        timeline.extend(drawn(&records, &result));
        if let Some(prev) = previous.replace(dir.clone()) {
            compress_window(&prev);
        }
        folded.add(k, &judged);
        baseline = Baseline::of(&finals);
        began_divergent = baseline.divergent(&finals);
        let failed = verdict != Verdict::Valid;
        results.push(result);
        if failed {
            first_failure.get_or_insert(k);
            crate::say!(
                "chaos: window {k} failed; seed {}; replay it alone: {} --window {k}",
                plan.seed,
                options.command
            );
            if options.stop_on_failure {
                stopped = true;
                break;
            }
        }
    }
    // The run's last records (its verdict) go back to the run's own history.
    session.history.rotate(&run_dir.join("history.jsonl"))?;
    let peer_hours = plan.peers.len() as f64 * played_ms as f64 / 3_600_000.0;
    let facts = SoakFacts {
        duration_ms: soak.duration.ms(),
        window_ms: soak.window.ms(),
        windows_planned: schedule.windows(),
        windows_judged: results.len() as u64,
        windows_failed: results
            .iter()
            .filter(|w| w.verdict != Verdict::Valid)
            .map(|w| w.window)
            .collect(),
        first_failure,
        stopped_at_failure: stopped,
        mtbf: Mtbf::new(peer_hours, crashes, restarts),
        orchestrator_rss_kib: (rss_start, own_rss_kib()),
    };
    Ok(SoakOutcome {
        summary: SoakSummary {
            windows: results,
            soak: facts,
        },
        timeline,
        replay: options.command.clone(),
        folded,
        last_folder: previous,
    })
}

/// The daemon's own crashes in a window: peers found dead and logs with a crash line.
fn crashes_in(j: &Judgement) -> u64 {
    j.checks.iter().find(|c| c.name == "no-crash").map_or(0, |c| {
        let n = |k: &str| c.evidence[k].as_array().map_or(0, Vec::len) as u64;
        n("dead") + n("panics")
    })
}

/// A window's records worth a place on the soak's timeline: its start (the peers diverge as the
/// workload begins), faults, restarts and clocks, the heal and the first convergence after it, and
/// its verdict.
fn drawn(records: &[Record], w: &WindowResult) -> Vec<Record> {
    let mut out = Vec::new();
    let mut healed = false;
    for r in records {
        match &r.event {
            Event::WindowStarted { .. } => {
                out.push(r.clone());
                out.push(Record {
                    event: Event::Diverged,
                    ..r.clone()
                });
            }
            Event::FaultStarted { .. }
            | Event::FaultStopped { .. }
            | Event::PeerBack { .. }
            | Event::ClockMeasured { .. }
            | Event::WindowJudged { .. } => out.push(r.clone()),
            Event::HealedAll => {
                healed = true;
                out.push(r.clone());
            }
            Event::Converged { .. } if healed => {
                healed = false;
                out.push(r.clone());
            }
            _ => {}
        }
    }
    debug_assert!(out.iter().all(|r| r.t_ms >= w.started_ms));
    out
}

/// `windows/<k>/window.json`: the window's whole judgement.
fn write_window(dir: &Path, w: &WindowResult, j: &Judgement) -> anyhow::Result<()> {
    let doc = serde_json::json!({
        "window": w,
        "checks": j.checks,
        "recovery": j.recoveries,
        "figures": j.figures,
    });
    std::fs::write(
        dir.join("window.json"),
        serde_json::to_vec_pretty(&doc).expect("serializable"),
    )
    .with_context(|| format!("writing {}", dir.join("window.json").display()))
}

/// Compresses a judged window's streams (its writers have moved to the next window).
fn compress_window(dir: &Path) {
    for name in STREAMS {
        if let Err(e) = segment::compress(&dir.join(name)) {
            crate::say!("chaos: warning: cannot compress {}: {e}", dir.join(name).display());
        }
    }
}
