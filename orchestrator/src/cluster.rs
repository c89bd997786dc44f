//! One run's cluster: a private bridge network with a subnet that collides with nothing, and one
//! container per peer at a static address, all labelled with the run id. Teardown removes everything
//! the run labelled; [`reap`] removes the leftovers of runs whose orchestrator died.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::docker::{ContainerSpec, Engine, LABEL_MANAGED, LABEL_PEER, LABEL_PID, LABEL_RUN};
use crate::peer_profile::{self, DATA_MOUNT, Identity, PeerDir, Status};

#[derive(Clone, Debug)]
pub struct Peer {
    pub name: String,
    pub container: String,
    pub ip: Ipv4Addr,
    pub dir: PeerDir,
}

pub struct Cluster {
    pub engine: Engine,
    pub run_id: String,
    pub network: String,
    pub peers: Vec<Peer>,
}

/// A /24 that overlaps no existing Docker network: 10.213-216.x.0 first, then 172.28-31.x.0.
pub fn pick_subnet(used: &[String]) -> Option<(String, Ipv4Addr)> {
    let used: Vec<(u32, u32)> = used.iter().filter_map(|c| parse_cidr(c)).collect();
    let prefixes = [
        (10u8, 213u8),
        (10, 214),
        (10, 215),
        (10, 216),
        (172, 28),
        (172, 29),
        (172, 30),
        (172, 31),
    ];
    for (first, second) in prefixes {
        for third in 0..=255u8 {
            let base = Ipv4Addr::new(first, second, third, 0);
            let (start, end) = (u32::from(base), u32::from(base) | 0xff);
            if used.iter().all(|&(s, e)| end < s || start > e) {
                return Some((format!("{base}/24"), base));
            }
        }
    }
    None
}

fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let start = u32::from(ip) & mask;
    Some((start, start | !mask))
}

pub fn run_labels(run_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_RUN.to_string(), run_id.to_string()),
        (LABEL_PID.to_string(), std::process::id().to_string()),
    ])
}

/// What a cluster is made of, independent of any plan (tests build one directly).
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub names: Vec<String>,
    /// Each peer's neighbours in the overlay, by index.
    pub neighbours: Vec<Vec<usize>>,
    pub image: String,
    /// Seeds the peers' identity keys.
    pub key_seed: u64,
    pub anti_entropy_ms: u64,
    pub flavor: String,
    /// Each peer's data folder becomes a tmpfs of this size (for disk-full faults); needs root.
    pub disk_limit: Option<u64>,
    /// The peers' `quarantine_ms` (how long a neighbour that sent bad data is ignored); `None`:
    /// the peer's default.
    pub quarantine_ms: Option<u64>,
}

impl Cluster {
    /// Picks a free subnet, writes every peer's folder (config, key, clock file) under `run_dir`, and
    /// creates the network and the containers (not started). On failure nothing is left behind.
    pub async fn provision(
        engine: Engine,
        run_id: &str,
        run_dir: &Path,
        spec: &ClusterSpec,
    ) -> anyhow::Result<Cluster> {
        let (subnet, base) =
            pick_subnet(&engine.used_subnets().await?).context("no free /24 subnet for the run's network")?;
        let addrs: Vec<Ipv4Addr> = (0..spec.names.len()).map(|i| peer_ip(base, i)).collect();
        let ids: Vec<Identity> = (0..spec.names.len())
            .map(|i| Identity::derive(spec.key_seed, i))
            .collect();
        for i in 0..spec.names.len() {
            let dir = PeerDir::new(run_dir, &spec.names[i]);
            if let Some(limit) = spec.disk_limit
                && let Err(e) = mount_limited(&dir.root, limit, run_id)
            {
                unmount_run(Some(run_id));
                return Err(e);
            }
            peer_profile::write_peer_dir(
                &dir,
                i,
                &spec.names,
                &addrs,
                &ids,
                &spec.neighbours[i],
                spec.anti_entropy_ms,
                &spec.flavor,
                spec.quarantine_ms,
            )
            .with_context(|| format!("preparing {}", dir.root.display()))?;
        }
        match Cluster::create(engine.clone(), run_id, &spec.image, &spec.names, base, &subnet, run_dir).await {
            Ok(c) => Ok(c),
            Err(e) => {
                let _ = reap_run(&engine, run_id).await;
                Err(e)
            }
        }
    }

    /// Creates the network, then each peer's container (not started). Peer folders must exist.
    pub async fn create(
        engine: Engine,
        run_id: &str,
        image: &str,
        names: &[String],
        addrs_base: Ipv4Addr,
        subnet: &str,
        run_dir: &Path,
    ) -> anyhow::Result<Cluster> {
        let network = format!("syftchaos-{run_id}");
        let gateway = Ipv4Addr::from(u32::from(addrs_base) + 1);
        engine
            .create_network(&network, subnet, &gateway.to_string(), run_labels(run_id))
            .await?;
        let mut cluster = Cluster {
            engine,
            run_id: run_id.to_string(),
            network,
            peers: Vec::new(),
        };
        for (i, name) in names.iter().enumerate() {
            let ip = peer_ip(addrs_base, i);
            let dir = PeerDir::new(run_dir, name);
            let container = format!("sc-{run_id}-{name}");
            let mut labels = run_labels(run_id);
            labels.insert(LABEL_PEER.to_string(), name.clone());
            let spec = ContainerSpec {
                name: container.clone(),
                image: image.to_string(),
                network: cluster.network.clone(),
                ip: ip.to_string(),
                binds: vec![format!(
                    "{}:{DATA_MOUNT}",
                    dir.root.canonicalize().context("peer folder")?.display()
                )],
                env: vec![format!("SYNCPEER_NAME={name}"), "RUST_LOG=info".to_string()],
                labels,
                cap_add: vec!["NET_ADMIN".to_string()],
            };
            cluster.engine.create_container(&spec).await?;
            cluster.peers.push(Peer {
                name: name.clone(),
                container,
                ip,
                dir,
            });
        }
        Ok(cluster)
    }

    pub async fn start_all(&self) -> anyhow::Result<()> {
        let starts = self.peers.iter().map(|p| self.engine.start(&p.container));
        for r in futures_util::future::join_all(starts).await {
            r?;
        }
        Ok(())
    }

    /// Polls every peer's status URL until it answers with its own name; never a fixed sleep.
    pub async fn wait_ready(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        mut progress: impl FnMut(usize, usize),
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut ready = vec![false; self.peers.len()];
        loop {
            for (i, p) in self.peers.iter().enumerate() {
                if !ready[i] {
                    ready[i] = matches!(status(http, p.ip).await, Ok(s) if s.name == p.name);
                    // A peer that exited will never answer: say why now, not after the timeout.
                    if !ready[i] && !self.engine.is_running(&p.container).await.unwrap_or(true) {
                        let log = self.engine.logs(&p.container).await.unwrap_or_default();
                        let tail: Vec<&str> = log
                            .lines()
                            .rev()
                            .take(5)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect();
                        bail!(
                            "peer {} exited before it was ready; its last log lines:\n{}",
                            p.name,
                            tail.join("\n")
                        );
                    }
                }
            }
            let n = ready.iter().filter(|r| **r).count();
            progress(n, self.peers.len());
            if n == self.peers.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let missing: Vec<&str> = self
                    .peers
                    .iter()
                    .zip(&ready)
                    .filter(|(_, r)| !**r)
                    .map(|(p, _)| p.name.as_str())
                    .collect();
                bail!(
                    "peers not ready after {}s: {} (see their logs in the run folder)",
                    timeout.as_secs(),
                    missing.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Saves each container's log as `<run>/logs/<peer>.log`.
    pub async fn save_logs(&self, run_dir: &Path) -> Vec<(String, String)> {
        let dir = run_dir.join("logs");
        let _ = std::fs::create_dir_all(&dir);
        let mut out = Vec::new();
        for p in &self.peers {
            let log = self
                .engine
                .logs(&p.container)
                .await
                .unwrap_or_else(|e| format!("(no log: {e})"));
            let _ = std::fs::write(dir.join(format!("{}.log", p.name)), &log);
            out.push((p.name.clone(), log));
        }
        out
    }

    /// Removes every container and network of this run, then its size-limited mounts.
    pub async fn teardown(&self) -> anyhow::Result<()> {
        reap_run(&self.engine, &self.run_id).await
    }
}

pub fn peer_ip(base: Ipv4Addr, index: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + 2 + index as u32)
}

pub async fn status(http: &reqwest::Client, ip: Ipv4Addr) -> anyhow::Result<Status> {
    Ok(http
        .get(peer_profile::status_url(ip))
        .send()
        .await?
        .error_for_status()?
        .json::<Status>()
        .await?)
}

/// The tmpfs "device" name marking a run's size-limited peer folders, so `chaos clean` finds them.
fn mount_source(run_id: &str) -> String {
    format!("syftchaos-{run_id}")
}

/// Mounts a tmpfs of `bytes` at `dir` (a peer's data folder), so a disk-full fault fills it and not the
/// host's disk.
fn mount_limited(dir: &Path, bytes: u64, run_id: &str) -> anyhow::Result<()> {
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
    let mine = containers
        .iter()
        .filter(|c| c.labels.get(LABEL_RUN).map(String::as_str) == Some(run_id));
    for r in futures_util::future::join_all(mine.map(|c| engine.remove_container(&c.id))).await {
        r?;
    }
    for (name, labels) in engine.managed_networks().await? {
        if labels.get(LABEL_RUN).map(String::as_str) == Some(run_id) {
            engine.remove_network(&name).await?;
        }
    }
    Ok(())
}

/// What `chaos clean` or a start-up reap removed.
#[derive(Debug, Default)]
pub struct Reaped {
    pub runs: Vec<String>,
    pub containers: usize,
    pub networks: usize,
}

/// Removes labelled containers and networks. With `only_stale`, only runs whose orchestrator process
/// is gone (its pid label names no live process) are removed, so concurrent runs are left alone.
pub async fn reap(engine: &Engine, only_stale: bool) -> anyhow::Result<Reaped> {
    let alive = |labels: &HashMap<String, String>| {
        labels
            .get(LABEL_PID)
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists())
    };
    let mut reaped = Reaped::default();
    let containers = engine.managed_containers().await?;
    let doomed: Vec<_> = containers
        .iter()
        .filter(|c| !(only_stale && alive(&c.labels)))
        .collect();
    for r in futures_util::future::join_all(doomed.iter().map(|c| engine.remove_container(&c.id))).await {
        r?;
    }
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
            engine.remove_network(&name).await?;
            reaped.networks += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_avoid_existing_networks() {
        let (s, base) = pick_subnet(&["172.17.0.0/16".into()]).unwrap();
        assert_eq!((s.as_str(), base), ("10.213.0.0/24", Ipv4Addr::new(10, 213, 0, 0)));
        let (s, _) = pick_subnet(&["10.213.0.0/24".into(), "10.213.1.0/25".into()]).unwrap();
        assert_eq!(s, "10.213.2.0/24");
        let (s, _) = pick_subnet(&["10.213.0.0/16".into()]).unwrap();
        assert_eq!(s, "10.214.0.0/24");
        let (s, _) = pick_subnet(&["10.0.0.0/8".into()]).unwrap();
        assert_eq!(s, "172.28.0.0/24", "falls back to another private range");
        assert!(pick_subnet(&["0.0.0.0/0".into()]).is_none());
    }

    #[test]
    fn peers_get_addresses_after_the_gateway() {
        assert_eq!(peer_ip(Ipv4Addr::new(10, 213, 4, 0), 0), Ipv4Addr::new(10, 213, 4, 2));
        assert_eq!(peer_ip(Ipv4Addr::new(10, 213, 4, 0), 2), Ipv4Addr::new(10, 213, 4, 4));
    }
}
