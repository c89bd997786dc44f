//! One run's cluster: a private bridge network with a subnet that collides with nothing, one container
//! per peer at a static address running the profile's daemon, and beside each a fault-agent sidecar in
//! the peer's network namespace ([`sidecar`]). Everything is labelled with the run id; teardown
//! removes everything the run labelled, and [`reap`] removes the leftovers of runs whose orchestrator
//! died. What the daemon needs (files, readiness, identities, introductions) is read from its
//! [`Profile`] and done in [`daemon`].

pub mod agent_shell;
pub mod daemon;
mod reap;
pub mod sidecar;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use reap::{Reaped, StuckNetwork, is_limited_mount, live_runs, reap, reap_run, unmount_run};

use crate::docker::{ContainerSpec, Engine, LABEL_MANAGED, LABEL_PEER, LABEL_PID, LABEL_RUN};
use crate::profile::{ClockMethod, Facts, PlanFacts, Profile};
use crate::record::recipe::RunKeys;
use crate::record::run_folder::{self, FAULTS_MOUNT, LIBFAKETIME, PeerDir, TOOLS_MOUNT};

#[derive(Clone, Debug)]
pub struct Peer {
    pub name: String,
    pub container: String,
    /// The fault-agent sidecar in this peer's network namespace.
    pub agent: String,
    pub ip: Ipv4Addr,
    pub dir: PeerDir,
}

pub struct Cluster {
    pub engine: Engine,
    pub run_id: String,
    pub network: String,
    pub peers: Vec<Peer>,
    pub profile: Arc<Profile>,
    /// What the templates were rendered with, per peer (identities filled in once known).
    pub facts: Vec<Facts>,
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

/// How many subnets a run tries before it gives up on finding a free one.
const NETWORK_ATTEMPTS: usize = 32;

/// Creates the run's network on a free /24 and returns its name and base address. Looking for a free
/// subnet and creating the network are two calls, so a run started at the same moment can take the
/// subnet in between (Docker answers "Pool overlaps"): then the next free one is tried, after a short
/// random pause so that two racing runs do not keep choosing the same one.
async fn claim_network(engine: &Engine, run_id: &str) -> anyhow::Result<(String, Ipv4Addr)> {
    let name = format!("syftchaos-{run_id}");
    let mut lost: Vec<String> = Vec::new();
    for _ in 0..NETWORK_ATTEMPTS {
        let mut used = engine.used_subnets().await?;
        used.extend(lost.iter().cloned());
        let (subnet, base) = pick_subnet(&used).context("no free /24 subnet for the run's network")?;
        let gateway = Ipv4Addr::from(u32::from(base) + 1);
        match engine
            .create_network(&name, &subnet, &gateway.to_string(), run_labels(run_id))
            .await
        {
            Ok(_) => return Ok((name, base)),
            Err(crate::docker::DockerError::SubnetTaken(s)) => {
                crate::say!("chaos: subnet {s} was taken by another network meanwhile; trying the next free one");
                lost.push(s);
                tokio::time::sleep(Duration::from_millis(rand::random_range(10..200))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!(
        "could not create the run's network: {NETWORK_ATTEMPTS} free subnets were taken by other networks as they were tried"
    )
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
    pub profile: Arc<Profile>,
    /// The image to run (the profile's, unless the plan overrides it).
    pub image: String,
    /// The peers' identity keys and secrets (random per run; a replay's are the original's).
    pub keys: RunKeys,
    /// What templates may read about the plan.
    pub plan: PlanFacts,
    /// Each peer's data folder becomes a tmpfs of this size (for disk-full faults); needs root.
    pub disk_limit: Option<u64>,
}

impl Cluster {
    /// Picks a free subnet, writes every peer's folder (the profile's files, the clock file) under
    /// `run_dir`, copies libfaketime out of the tools image when the profile uses it, and creates the
    /// network and the peer containers (not started). On failure nothing is left behind.
    pub async fn provision(
        engine: Engine,
        run_id: &str,
        run_dir: &Path,
        spec: &ClusterSpec,
    ) -> anyhow::Result<Cluster> {
        let (network, base) = claim_network(&engine, run_id).await?;
        let addrs: Vec<Ipv4Addr> = (0..spec.names.len()).map(|i| peer_ip(base, i)).collect();
        let facts = daemon::initial_facts(spec, &addrs, run_id);
        let result = async {
            if spec.profile.clock == ClockMethod::Libfaketime {
                let lib = engine
                    .file_from_image(&sidecar::tools_image(), sidecar::TOOLS_LIBFAKETIME, run_labels(run_id))
                    .await?;
                let dir = run_folder::tools_dir(run_dir);
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join(LIBFAKETIME), lib)?;
            }
            for (i, name) in spec.names.iter().enumerate() {
                let dir = peer_dir(run_dir, name, &spec.profile);
                if let Some(limit) = spec.disk_limit {
                    reap::mount_limited(&dir.root, limit, run_id)?;
                }
                daemon::write_peer_dir(&spec.profile, &dir, &facts[i])
                    .with_context(|| format!("preparing {}", dir.root.display()))?;
            }
            Cluster::create(engine.clone(), run_id, spec, network, base, run_dir, facts).await
        }
        .await;
        if result.is_err() {
            let _ = reap_run(&engine, run_id).await;
        }
        result
    }

    /// Creates each peer's container (not started) on `network`. Peer folders must exist.
    async fn create(
        engine: Engine,
        run_id: &str,
        spec: &ClusterSpec,
        network: String,
        addrs_base: Ipv4Addr,
        run_dir: &Path,
        facts: Vec<Facts>,
    ) -> anyhow::Result<Cluster> {
        let profile = spec.profile.clone();
        let mut cluster = Cluster {
            engine,
            run_id: run_id.to_string(),
            network,
            peers: Vec::new(),
            profile: profile.clone(),
            facts,
        };
        for (i, name) in spec.names.iter().enumerate() {
            let ip = peer_ip(addrs_base, i);
            let dir = peer_dir(run_dir, name, &profile);
            let container = format!("sc-{run_id}-{name}");
            let mut labels = run_labels(run_id);
            labels.insert(LABEL_PEER.to_string(), name.clone());
            let f = &cluster.facts[i];
            let render = |t: &String| crate::profile::template::render(t, f).map_err(anyhow::Error::msg);
            let mut env: Vec<String> = Vec::new();
            for (k, v) in &profile.env {
                env.push(format!("{k}={}", render(v)?));
            }
            let mut binds = vec![format!(
                "{}:{}",
                dir.root.canonicalize().context("peer folder")?.display(),
                profile.data_dir
            )];
            if profile.clock == ClockMethod::Libfaketime {
                // Clock skew through libfaketime: the orchestrator rewrites the clock file; the
                // library re-reads it on every call (NO_CACHE); monotonic clocks stay real, or timers
                // never fire (tokio #8358, libfaketime #545).
                binds.push(format!(
                    "{}:{TOOLS_MOUNT}:ro",
                    run_folder::tools_dir(run_dir).canonicalize()?.display()
                ));
                binds.push(format!("{}:{FAULTS_MOUNT}:ro", dir.faults.canonicalize()?.display()));
                env.extend([
                    format!("LD_PRELOAD={TOOLS_MOUNT}/{LIBFAKETIME}"),
                    format!("FAKETIME_TIMESTAMP_FILE={FAULTS_MOUNT}/{}", run_folder::FAKETIME_FILE),
                    "FAKETIME_NO_CACHE=1".into(),
                    "FAKETIME_DONT_FAKE_MONOTONIC=1".into(),
                ]);
            }
            let cmd = match &profile.command {
                Some(c) => Some(c.iter().map(render).collect::<anyhow::Result<Vec<_>>>()?),
                None => None,
            };
            let entrypoint = match &profile.entrypoint {
                Some(c) => Some(c.iter().map(render).collect::<anyhow::Result<Vec<_>>>()?),
                None => None,
            };
            cluster
                .engine
                .create_container(&ContainerSpec {
                    name: container.clone(),
                    image: spec.image.clone(),
                    network: cluster.network.clone(),
                    ip: Some(ip.to_string()),
                    binds,
                    env,
                    labels,
                    cap_add: vec![],
                    cmd,
                    entrypoint,
                    sysctls: profile.sysctls.clone().into_iter().collect(),
                    pid_mode: None,
                })
                .await?;
            cluster.peers.push(Peer {
                name: name.clone(),
                agent: sidecar::agent_name(&container),
                container,
                ip,
                dir,
            });
        }
        Ok(cluster)
    }

    /// Starts every peer, then its fault agent (which can only join a running peer's namespace).
    pub async fn start_all(&self) -> anyhow::Result<()> {
        let starts = self.peers.iter().map(|p| async {
            self.engine.start(&p.container).await?;
            sidecar::attach(&self.engine, &self.run_id, p, self.profile.clock == ClockMethod::Vdso).await
        });
        for r in futures_util::future::join_all(starts).await {
            r?;
        }
        Ok(())
    }

    /// A handle that talks to the daemons the profile's way.
    pub fn daemon(&self) -> daemon::Daemon {
        daemon::Daemon::new(self.engine.clone(), self.profile.clone())
    }

    /// Waits until every peer passes its profile's readiness probe, then reads the identities the
    /// profile says are read after start.
    pub async fn wait_ready(&mut self, timeout: Duration, progress: impl FnMut(usize, usize)) -> anyhow::Result<()> {
        let d = self.daemon();
        let ready = d.wait_ready(&self.peers, &self.facts, timeout, progress).await;
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!();
        }
        ready?;
        if matches!(
            self.profile.identity,
            crate::profile::IdentitySource::Http(_) | crate::profile::IdentitySource::Exec(_)
        ) {
            d.read_identities(&self.peers, &mut self.facts).await?;
        }
        Ok(())
    }

    /// Runs the profile's introductions on every peer at once (each peer's steps in order).
    pub async fn introduce(&self) -> anyhow::Result<()> {
        if self.profile.introduce.is_empty() {
            return Ok(());
        }
        let d = self.daemon();
        let all = self.peers.iter().zip(&self.facts).map(|(p, f)| d.introduce(p, f));
        for r in futures_util::future::join_all(all).await {
            r?;
        }
        Ok(())
    }

    /// Saves each container's log as `<run>/logs/<peer>.log`.
    pub async fn save_logs(&self, run_dir: &Path) -> Vec<(String, String)> {
        self.save_logs_since(run_dir, 0).await
    }

    /// Each peer's log from `since` (Unix seconds; 0: the whole log) into `<dir>/logs/<peer>.log`,
    /// and returned in peer order.
    pub async fn save_logs_since(&self, run_dir: &Path, since: i32) -> Vec<(String, String)> {
        let dir = run_dir.join("logs");
        let _ = std::fs::create_dir_all(&dir);
        let mut out = Vec::new();
        for p in &self.peers {
            let log = self
                .engine
                .logs_since(&p.container, since)
                .await
                .unwrap_or_else(|e| format!("(no log: {e})"));
            let _ = std::fs::write(dir.join(format!("{}.log", p.name)), &log);
            out.push((p.name.clone(), log));
        }
        out
    }

    /// Each peer's convictions (the proofs of misbehaviour it holds), when the profile says where
    /// the daemon lists them: its answer is kept as `<dir>/evidence/<peer>.json`, and what the
    /// profile's pointers read from it is returned in peer order (`None`: no list, no answer).
    pub async fn save_evidence(&self, run_dir: &Path) -> Vec<Option<Vec<crate::profile::Conviction>>> {
        let Some(probe) = &self.profile.evidence else {
            return vec![None; self.peers.len()];
        };
        let dir = run_dir.join("evidence");
        let _ = std::fs::create_dir_all(&dir);
        let daemon = self.daemon();
        let mut out = Vec::new();
        for (p, facts) in self.peers.iter().zip(&self.facts) {
            let body = daemon.evidence(p, facts).await;
            if let Some(b) = &body {
                let _ = std::fs::write(dir.join(format!("{}.json", p.name)), b);
            }
            out.push(body.and_then(|b| probe.convictions(&b)));
        }
        out
    }

    /// Removes every container and network of this run, then its size-limited mounts.
    pub async fn teardown(&self) -> anyhow::Result<()> {
        reap_run(&self.engine, &self.run_id).await
    }
}

/// A peer's folders for this profile.
pub fn peer_dir(run_dir: &Path, name: &str, profile: &Profile) -> PeerDir {
    let mut dir = PeerDir::new(run_dir, name);
    dir.sync_rel = profile.sync_rel.clone();
    dir.owner = profile.user;
    dir
}

pub fn peer_ip(base: Ipv4Addr, index: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + 2 + index as u32)
}

/// How long a restarted peer may take to be ready again.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

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
