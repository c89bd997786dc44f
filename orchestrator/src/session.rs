//! A cluster under observation: the phases a run and a soak window share.
//!
//! ```text
//! bring_up (start, ready, introduce) -> open (nemesis, monitor, watcher, scraper)
//!   -> play (schedule) -> settle (heal all, converge, watch counters) -> finals (trees, logs) -> judge
//!   -> close (monitor and scraper stopped)
//! ```
//!
//! A run goes through it once; a soak plays, settles and judges once per window on one session.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checker::{self, PeerFinal};
use crate::cluster::Cluster;
use crate::generator::{Action, ScheduledOp};
use crate::monitor::{self, MonitorState};
use crate::nemesis::Nemesis;
use crate::plan::Plan;
use crate::record::history::{Event, History, Record};
use crate::record::run_folder::PeerDir;
use crate::record::segment::Segments;
use crate::record::{observations, samples};
use crate::scraper;
use crate::tree::{Tree, TreeReader};

/// Starts every peer, waits until each answers, and introduces them to each other.
pub async fn bring_up(cluster: &mut Cluster, peers: usize, history: &History) -> anyhow::Result<()> {
    cluster.start_all().await?;
    let ready_timeout = cluster.profile.ready_timeout + Duration::from_secs(peers as u64);
    cluster.wait_ready(ready_timeout, progress_line("peers ready")).await?;
    cluster.introduce().await?;
    for p in &cluster.peers {
        history.record(Event::PeerReady {
            peer: p.name.clone(),
            ip: p.ip.to_string(),
        });
    }
    Ok(())
}

/// A running cluster with its nemesis, convergence monitor, propagation watcher and metrics scraper.
pub struct Session<'a> {
    pub cluster: &'a Cluster,
    pub history: Arc<History>,
    pub nemesis: Nemesis,
    /// What `netfault probe` found on the peers' kernel.
    pub engines: serde_json::Value,
    /// Where the monitor's observations and the scraper's samples go now.
    pub segments: Segments,
    stop_tx: watch::Sender<bool>,
    state_rx: watch::Receiver<MonitorState>,
    monitor: JoinHandle<()>,
    /// The inotify watcher's thread (its waits block).
    watcher: std::thread::JoinHandle<()>,
    scraper: JoinHandle<()>,
}

/// How the settle wait ended.
#[derive(Clone, Copy, Debug)]
pub struct Settled {
    /// When every fault was removed (run time, ms).
    pub healed_ms: u64,
    /// Whether the trees agreed (and stayed so for the plan's `quiet`) within `converge_within`.
    pub converged: bool,
}

impl<'a> Session<'a> {
    /// Prepares the nemesis and starts the monitor and the scraper, writing into `segments`.
    pub async fn open(cluster: &'a Cluster, history: Arc<History>, segments: Segments) -> anyhow::Result<Session<'a>> {
        let nemesis = Nemesis::new(cluster, history.clone());
        let engines = nemesis.prepare().await?;
        history.record(Event::EnginesProbed {
            engines: engines.clone(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (state_tx, state_rx) = watch::channel(MonitorState::default());
        let sync_dirs: Vec<(String, PeerDir)> = cluster.peers.iter().map(|p| (p.name.clone(), p.dir.clone())).collect();
        // The watcher tells the monitor which trees changed, so it reads only those (and all of
        // them now and then).
        let dirty = Arc::new(monitor::Dirty::new(sync_dirs.len()));
        let watcher = crate::watcher::spawn(
            sync_dirs.clone(),
            crate::tree::ignore_set(&cluster.profile.ignore),
            dirty.clone(),
            history.clone(),
            segments.clone(),
            stop_rx.clone(),
        );
        let monitor = tokio::spawn(monitor::run(
            sync_dirs,
            crate::tree::ignore_set(&cluster.profile.ignore),
            Some(dirty),
            history.clone(),
            segments.clone(),
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
            segments.clone(),
            scraper::DEFAULT_INTERVAL,
            stop_rx,
        ));
        Ok(Session {
            cluster,
            history,
            nemesis,
            engines,
            segments,
            stop_tx,
            state_rx,
            monitor,
            watcher,
            scraper,
        })
    }

    /// Plays `ops` in time order: each at `at_ms - from_ms` after this call, and returns at `until_ms - from_ms`.
    /// `seed` makes the workload's contents.
    pub async fn play(
        &self,
        seed: u64,
        ops: impl Iterator<Item = ScheduledOp>,
        from_ms: u64,
        until_ms: u64,
    ) -> anyhow::Result<()> {
        let t0 = tokio::time::Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms.saturating_sub(from_ms));
        for op in ops {
            tokio::time::sleep_until(at(op.at_ms)).await;
            match op.action {
                Action::Write(w) => {
                    let p = &self.cluster.peers[w.peer];
                    let (name, dir, h) = (p.name.clone(), p.dir.clone(), self.history.clone());
                    tokio::task::spawn_blocking(move || crate::workload::apply(seed, &w, &name, &dir, &h)).await?;
                }
                Action::FaultStart { id, step, fault } => {
                    self.nemesis.start(&id, &step, fault).await?;
                    crate::say!("chaos: {:>7.1}s  fault {id} started", op.at_ms as f64 / 1000.0);
                }
                Action::FaultStop { id } => {
                    self.nemesis.stop(&id).await?;
                    crate::say!("chaos: {:>7.1}s  fault {id} healed", op.at_ms as f64 / 1000.0);
                }
            }
        }
        tokio::time::sleep_until(at(until_ms)).await;
        Ok(())
    }

    /// Heals every fault, waits for the trees to agree (up to the plan's `converge_within`), then
    /// for the counters to settle, and records until when they were watched.
    pub async fn settle(&mut self, plan: &Plan) -> anyhow::Result<Settled> {
        self.nemesis.heal_all().await?;
        let healed_ms = self.history.now_ms();
        crate::say!(
            "chaos: all faults healed; waiting up to {} for convergence",
            plan.expect.converge_within
        );
        // Settled = converged and unchanged for `quiet`, or the convergence limit passed.
        let mut settle_progress = progress_line("distinct trees (1 = converged) / peers");
        let limit = tokio::time::Instant::now() + plan.expect.converge_within.0;
        let quiet = plan.expect.quiet.0;
        let converged = loop {
            let s = self.state_rx.borrow_and_update().clone();
            if s.converged && s.since.elapsed() >= quiet {
                break true;
            }
            if tokio::time::Instant::now() >= limit {
                break false;
            }
            settle_progress(s.distinct, self.cluster.peers.len());
            let _ = tokio::time::timeout(Duration::from_millis(500), self.state_rx.changed()).await;
        };
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
        // Counters must settle too: a loop is counters that keep moving once the trees agree. The window
        // starts after the heal and after the trees last agreed (what the no-loop check judges from). Once
        // a whole window was watched the wait ends at LOOP_SETTLE_LIMIT (moving counters are the checker's
        // to judge); until then it goes on, up to LOOP_WATCH_LIMIT, because a busy host scrapes late.
        let metrics_path = self.segments.dir().join(samples::METRICS_FILE);
        let watch_started = tokio::time::Instant::now();
        let mut settle = samples::Settle::default();
        loop {
            let s = self.state_rx.borrow().clone();
            if !s.converged {
                break;
            }
            let agreed_ms = self
                .history
                .now_ms()
                .saturating_sub(s.since.elapsed().as_millis() as u64);
            settle = samples::settle_since(
                &metrics_path,
                self.cluster.peers.len(),
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
        self.history.record(Event::CountersWatched {
            until_ms: settle.until_ms,
            quiet: settle.quiet,
        });
        Ok(Settled { healed_ms, converged })
    }

    /// Every peer's tree now, whether it runs, and `logs` (peer name, log text) and `convictions`
    /// in peer order.
    pub async fn finals(
        &self,
        logs: Vec<(String, String)>,
        mut convictions: Vec<Option<Vec<crate::profile::Conviction>>>,
    ) -> Vec<PeerFinal> {
        convictions.resize(self.cluster.peers.len(), None);
        let cluster = self.cluster;
        let ignore = crate::tree::ignore_set(&cluster.profile.ignore);
        let mut finals = Vec::new();
        for (((p, (_, log)), facts), convictions) in cluster.peers.iter().zip(logs).zip(&cluster.facts).zip(convictions)
        {
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
                convictions,
            });
        }
        finals
    }

    /// Stops the monitor, the watcher and the scraper (which scrapes once more as it stops).
    pub async fn close(self) {
        let _ = self.stop_tx.send(true);
        let _ = self.monitor.await;
        let watcher = self.watcher;
        let _ = tokio::task::spawn_blocking(move || watcher.join()).await;
        let _ = self.scraper.await;
    }
}

/// Judges what `dir` (a run folder, or a soak window's) recorded: `history` and the observations
/// and counters beside it, with `finals` and, for growth, `resources`.
pub fn judge(
    plan: &Plan,
    cluster: &Cluster,
    dir: &Path,
    history: &[Record],
    finals: &[PeerFinal],
    resources: &std::collections::BTreeMap<String, Vec<samples::Resource>>,
    counters: &[samples::Counters],
) -> anyhow::Result<checker::Judgement> {
    let observations = observations::read_observations(&dir.join(observations::OBSERVATIONS))?;
    let sightings = observations::read_observations(&dir.join(observations::SIGHTINGS)).unwrap_or_else(|e| {
        tracing::warn!("reading the inotify sightings: {e}");
        Vec::new()
    });
    Ok(checker::judge(&checker::Evidence {
        plan,
        conventions: &cluster.profile.conventions,
        history,
        peers: finals,
        observations: &observations,
        sightings: &sightings,
        counters,
        resources,
    }))
}

/// A progress line that redraws in place on a terminal and prints one line per change elsewhere (CI logs).
pub fn progress_line(what: &'static str) -> impl FnMut(usize, usize) {
    let mut last = usize::MAX;
    move |n, total| {
        if n != last {
            crate::console::progress(&format!("chaos: {what}: {n}/{total}"));
            last = n;
        }
    }
}
