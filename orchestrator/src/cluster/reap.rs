//! Teardown: removing a run's containers (peers and fault agents), network and size-limited mounts,
//! and the leftovers of runs whose orchestrator died.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::docker::{Engine, LABEL_PID, LABEL_RUN, Managed};

/// The tmpfs "device" name marking a run's size-limited peer folders, so `chaos clean` finds them.
fn mount_source(run_id: &str) -> String {
    format!("syftchaos-{run_id}")
}

/// Mounts a tmpfs of `bytes` at `dir` (a peer's data folder), so a disk-full fault fills it and not the
/// host's disk.
pub(super) fn mount_limited(dir: &Path, bytes: u64, run_id: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let out = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={bytes},mode=0755"),
            &mount_source(run_id),
        ])
        .arg(dir)
        .output()
        .context("running mount")?;
    if !out.status.success() {
        bail!(
            "cannot mount a {bytes}-byte tmpfs at {} for `disk_limit` (this needs root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// True when `dir` is one of our size-limited mounts.
pub fn is_limited_mount(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else { return false };
    our_mounts(None).iter().any(|m| Path::new(m) == dir)
}

/// Mount points of our tmpfs folders (all runs, or one).
fn our_mounts(run_id: Option<&str>) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (source, point) = (f.next()?, f.next()?);
            let ours = match run_id {
                Some(r) => source == mount_source(r),
                None => source.starts_with("syftchaos-"),
            };
            ours.then(|| point.replace("\\040", " "))
        })
        .collect()
}

/// Unmounts the size-limited folders of one run (or of every run); returns how many.
pub fn unmount_run(run_id: Option<&str>) -> usize {
    let points = our_mounts(run_id);
    for p in &points {
        let _ = std::process::Command::new("umount").arg("-l").arg(p).status();
    }
    points.len()
}

/// Removes the containers and the network of one run, then its size-limited mounts.
pub async fn reap_run(engine: &Engine, run_id: &str) -> anyhow::Result<()> {
    let result = reap_containers(engine, run_id).await;
    unmount_run(Some(run_id));
    result
}

async fn reap_containers(engine: &Engine, run_id: &str) -> anyhow::Result<()> {
    let containers = engine.managed_containers().await?;
    let mine: Vec<_> = containers
        .iter()
        .filter(|c| c.labels.get(LABEL_RUN).map(String::as_str) == Some(run_id))
        .collect();
    remove_containers(engine, &mine).await?;
    for (name, labels) in engine.managed_networks().await? {
        if labels.get(LABEL_RUN).map(String::as_str) == Some(run_id) {
            remove_network(engine, &name, NETWORK_PATIENCE).await?;
        }
    }
    Ok(())
}

/// How long a run's own teardown keeps trying to remove its network while Docker still counts
/// endpoints on it.
const NETWORK_PATIENCE: Duration = Duration::from_secs(10);

/// How many container removals are in flight at once.
const REMOVALS_AT_ONCE: usize = 16;

/// Removes containers: fault agents first (they live in their peer's network namespace), then the
/// peers, [`REMOVALS_AT_ONCE`] at a time. Two hundred force-removals at once (100 peers) once left
/// the run's network with an endpoint Docker still counted and no container held, which no API call
/// clears (measured on Docker 28.2).
async fn remove_containers(engine: &Engine, containers: &[&Managed]) -> anyhow::Result<()> {
    let (agents, peers): (Vec<&&Managed>, Vec<&&Managed>) = containers
        .iter()
        .partition(|c| c.name.ends_with(super::sidecar::AGENT_SUFFIX));
    let slots = tokio::sync::Semaphore::new(REMOVALS_AT_ONCE);
    for group in [agents, peers] {
        let removals = group.iter().map(|c| async {
            let _slot = slots.acquire().await;
            engine.remove_container(&c.id).await
        });
        for r in futures_util::future::join_all(removals).await {
            r?;
        }
    }
    Ok(())
}

/// A network Docker will not remove because it still counts endpoints on it with no container
/// attached (moby/moby#42119): nothing the orchestrator can do frees it short of restarting the
/// engine. It holds no container, and new runs pick a subnet that collides with nothing.
#[derive(Debug)]
pub struct StuckNetwork {
    pub name: String,
    pub why: String,
}

impl std::fmt::Display for StuckNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "network {} could not be removed: {}; Docker counts an endpoint on it that no container holds (a Docker engine bug, moby/moby#42119): restarting the Docker engine frees it, and `chaos clean` tries again",
            self.name, self.why
        )
    }
}

impl std::error::Error for StuckNetwork {}

/// Removes a network, trying again for up to `patience` while Docker says it has active endpoints
/// (endpoints of containers just removed can take a moment to go). Still stuck: [`StuckNetwork`].
async fn remove_network(engine: &Engine, name: &str, patience: Duration) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(200);
    loop {
        match engine.remove_network(name).await {
            Ok(()) => return Ok(()),
            Err(e) if format!("{e:#}").contains("active endpoints") => {
                if start.elapsed() >= patience {
                    return Err(StuckNetwork {
                        name: name.to_string(),
                        why: "Docker says it has active endpoints".into(),
                    }
                    .into());
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What `chaos clean` or a start-up reap removed.
#[derive(Debug, Default)]
pub struct Reaped {
    pub runs: Vec<String>,
    pub containers: usize,
    pub networks: usize,
    /// Networks Docker would not remove (stale endpoints): left, with the reason.
    pub stuck: Vec<StuckNetwork>,
}

/// True when a labelled resource's orchestrator (its pid label) is another live process.
fn alive(labels: &HashMap<String, String>) -> bool {
    labels
        .get(LABEL_PID)
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|pid| pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists())
}

/// The ids of the runs whose containers belong to another live orchestrator: runs in progress.
pub async fn live_runs(engine: &Engine) -> anyhow::Result<BTreeSet<String>> {
    Ok(engine
        .managed_containers()
        .await?
        .iter()
        .filter(|c| alive(&c.labels))
        .filter_map(|c| c.labels.get(LABEL_RUN).cloned())
        .collect())
}

/// Removes labelled containers and networks. With `only_stale`, only runs whose orchestrator process
/// is gone (its pid label names no live process) are removed, so concurrent runs are left alone.
pub async fn reap(engine: &Engine, only_stale: bool) -> anyhow::Result<Reaped> {
    let mut reaped = Reaped::default();
    let containers = engine.managed_containers().await?;
    let doomed: Vec<_> = containers
        .iter()
        .filter(|c| !(only_stale && alive(&c.labels)))
        .collect();
    remove_containers(engine, &doomed).await?;
    reaped.containers = doomed.len();
    for c in &doomed {
        if let Some(run) = c.labels.get(LABEL_RUN)
            && !reaped.runs.contains(run)
        {
            reaped.runs.push(run.clone());
        }
    }
    for (name, labels) in engine.managed_networks().await? {
        if !(only_stale && alive(&labels)) {
            // One try: a network stuck for good must not hold up every run that starts after it.
            match remove_network(engine, &name, Duration::ZERO).await {
                Ok(()) => reaped.networks += 1,
                Err(e) => match e.downcast::<StuckNetwork>() {
                    Ok(stuck) => reaped.stuck.push(stuck),
                    Err(e) => return Err(e),
                },
            }
        }
    }
    if only_stale {
        for run in &reaped.runs {
            unmount_run(Some(run));
        }
    } else {
        unmount_run(None);
    }
    Ok(reaped)
}
