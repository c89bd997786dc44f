//! The nemesis: applies and removes faults, and writes what it did into the history (Jepsen's habit).
//!
//! It keeps a **fault journal**: the active faults and the peers that are down. Every change
//! recomputes, from the journal, the full state of each affected peer, so removing one of two
//! overlapping faults leaves the other intact, a peer restarted mid-fault gets its faults back
//! ([`Nemesis::reapply`]), and heal-all is the sum of the undos: an empty journal.
//!
//! | fault | applied by | undone by |
//! |---|---|---|
//! | partition | the peer's `SYFTCHAOS` iptables chain, replaced atomically (`iptables-restore --noflush`) in its fault agent | the chain rewritten without it |
//! | link | `netfault apply` in the peer's fault agent (NFQUEUE userspace engine or kernel netem; `tc` for bandwidth) | `netfault clear --id` |
//! | clock | the peer's libfaketime file (`<run>/faults/<peer>/faketime`), rewritten from the host; measured at once when the profile has a status call | the file rewritten |
//! | kill / stop / pause | the Docker API | start, a new fault agent, faults re-applied / unpause |
//! | lock | a stale lock file in the profile's lock format, or the lock folder made read-only (host side) | folder writable again |
//! | disk | bits flipped or the file truncated in place, mtime kept (host side) | nothing: the peer must repair it |
//! | byzantine | the peer's Byzantine control file (the profile's `byzantine_file`) names its behaviours (host side) | the file rewritten from the journal, removed when none is left |
//!
//! Which kinds a daemon can take is its profile's `faults`; plans asking for others are refused at
//! validate time.

mod host;
mod network;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::sync::Mutex;

pub use crate::record::run_folder::faketime_spec;
use network::{cut_nodes, netfault_id};

use crate::cluster::agent_shell::AgentShells;
use crate::cluster::daemon::Daemon;
use crate::cluster::{self, Peer, sidecar};
use crate::docker::Engine;
use crate::generator::ConcreteFault;
use crate::plan::{DiskAction, ProcessAction};
use crate::profile::Facts;
use crate::record::history::{Event, History};

pub struct Nemesis {
    engine: Engine,
    /// One open shell per fault agent: what the nemesis runs there goes through it.
    agents: AgentShells,
    run_id: String,
    peers: Vec<Peer>,
    facts: Vec<Facts>,
    daemon: Daemon,
    history: Arc<History>,
    journal: Mutex<Journal>,
    /// Whether any link fault was ever installed (only then does a heal need `netfault clear`).
    links_used: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Journal {
    active: BTreeMap<String, ConcreteFault>,
    /// Peers whose container is stopped or frozen, and by which fault.
    down: BTreeMap<usize, (String, ProcessAction)>,
}

impl Nemesis {
    pub fn new(cluster: &cluster::Cluster, history: Arc<History>) -> Nemesis {
        Nemesis {
            engine: cluster.engine.clone(),
            agents: AgentShells::new(cluster.engine.clone()),
            run_id: cluster.run_id.clone(),
            peers: cluster.peers.clone(),
            facts: cluster.facts.clone(),
            daemon: cluster.daemon(),
            history,
            journal: Mutex::new(Journal::default()),
            links_used: Default::default(),
        }
    }

    fn addrs(&self) -> Vec<Ipv4Addr> {
        self.peers.iter().map(|p| p.ip).collect()
    }

    fn all(&self) -> Vec<usize> {
        (0..self.peers.len()).collect()
    }

    /// Creates the project's chain and the jumps to it in every peer (idempotent), and asks the
    /// first peer's `netfault` which packet-fault engines this kernel offers.
    pub async fn prepare(&self) -> anyhow::Result<serde_json::Value> {
        self.for_each(&self.all(), |n| self.prepare_one(n)).await?;
        if self.daemon.profile.clock == crate::profile::ClockMethod::Vdso {
            // Before anything starts: whether each daemon's vDSO can be patched (ptrace allowed,
            // a vDSO, x86_64), so that a run that cannot skew clocks stops here, saying why.
            self.for_each(&self.all(), |n| async move {
                self.netfault(n, vec!["clock".into(), "status".into()])
                    .await
                    .map(|_| ())
                    .with_context(|| {
                        format!(
                            "clock faults by vDSO patching (`clock: vdso`) cannot reach {}",
                            self.peers[n].name
                        )
                    })
            })
            .await?;
        }
        let probe = self.agents.exec(&self.peers[0].agent, &["netfault", "probe"]).await?;
        let engines: serde_json::Value = serde_json::from_str(&probe.stdout).unwrap_or(serde_json::Value::Null);
        Ok(engines)
    }

    pub async fn start(&self, id: &str, step: &str, fault: ConcreteFault) -> anyhow::Result<()> {
        let mut detail = self.describe(&fault);
        self.journal.lock().await.active.insert(id.to_string(), fault.clone());
        let began = std::time::Instant::now();
        match &fault {
            ConcreteFault::Partition(cut) => {
                let nodes = self.up(&cut_nodes(cut)).await;
                self.for_each(&nodes, |n| self.install_cuts(n)).await?;
            }
            ConcreteFault::Link {
                peers,
                to,
                params,
                seed,
            } => {
                // From now on a total heal must also clear packet faults (`reset`).
                self.links_used.store(true, std::sync::atomic::Ordering::Relaxed);
                let nodes = self.up(peers).await;
                let mut engines = serde_json::Map::new();
                for n in nodes {
                    let out = self.apply_link(n, id, to, params, *seed).await?;
                    engines.insert(self.peers[n].name.clone(), out);
                }
                detail["applied"] = engines.into();
            }
            ConcreteFault::Clock { peers, .. } => {
                detail["measured"] = self.set_clocks(peers).await?;
            }
            ConcreteFault::Process { peers, action } => {
                for &n in peers {
                    let name = &self.peers[n].container;
                    match action {
                        ProcessAction::Kill => self.engine.kill(name, "SIGKILL").await?,
                        ProcessAction::Stop => self.engine.stop(name, 10).await?,
                        ProcessAction::Pause => self.engine.pause(name).await?,
                    }
                    self.journal.lock().await.down.insert(n, (id.to_string(), *action));
                }
            }
            ConcreteFault::Lock { peers, action } => {
                for &n in peers {
                    detail[&self.peers[n].name] = self.lock_fault(n, action, true)?;
                }
            }
            ConcreteFault::Disk { peers, action, seed } => {
                for &n in peers {
                    detail[&self.peers[n].name] = self.disk_fault(n, action, *seed)?;
                }
            }
            ConcreteFault::Byzantine { peers, .. } => {
                detail["written"] = self.set_byzantine(peers).await?;
            }
        }
        // How long applying took (every peer's exec, write or signal): `docs/BENCHMARKS.md` reads it.
        detail["apply_ms"] = (began.elapsed().as_secs_f64() * 1000.0).into();
        self.history.record(Event::FaultStarted {
            id: id.into(),
            step: step.into(),
            kind: fault.kind().into(),
            detail,
        });
        Ok(())
    }

    pub async fn stop(&self, id: &str) -> anyhow::Result<()> {
        let Some(fault) = self.journal.lock().await.active.remove(id) else {
            bail!("fault {id} is not active");
        };
        let began = std::time::Instant::now();
        self.undo(id, &fault).await?;
        self.history.record(Event::FaultStopped {
            id: id.into(),
            undo_ms: Some(began.elapsed().as_secs_f64() * 1000.0),
        });
        Ok(())
    }

    async fn undo(&self, id: &str, fault: &ConcreteFault) -> anyhow::Result<()> {
        match fault {
            ConcreteFault::Partition(cut) => {
                let nodes = self.up(&cut_nodes(cut)).await;
                self.for_each(&nodes, |n| self.install_cuts(n)).await?;
            }
            ConcreteFault::Link { peers, params, .. } if params.mitm.is_some() => {
                // What each proxy saw is the evidence `mitm-refused` judges.
                let mut tallies = serde_json::Map::new();
                for n in self.up(peers).await {
                    tallies.insert(self.peers[n].name.clone(), self.stop_mitm(n, id).await?);
                }
                self.history.record(Event::Observed {
                    fault: id.into(),
                    detail: serde_json::json!({ "mitm": tallies }),
                });
            }
            ConcreteFault::Link { peers, .. } => {
                let nid = netfault_id(id);
                let nodes = self.up(peers).await;
                self.for_each(&nodes, |n| {
                    self.netfault(n, vec!["clear".into(), "--id".into(), nid.clone()])
                })
                .await?;
            }
            ConcreteFault::Clock { peers, .. } => {
                self.set_clocks(peers).await?;
            }
            ConcreteFault::Process { peers, .. } => {
                for &n in peers {
                    self.bring_back(n).await?;
                }
            }
            ConcreteFault::Lock { peers, action } => {
                let mut seen = serde_json::Map::new();
                for &n in peers {
                    seen.insert(self.peers[n].name.clone(), self.lock_fault(n, action, false)?);
                }
                self.history.record(Event::Observed {
                    fault: id.into(),
                    detail: seen.into(),
                });
            }
            ConcreteFault::Disk {
                peers,
                action: DiskAction::Fill,
                ..
            } => {
                for &n in peers {
                    let _ = self.peers[n].dir.data().and_then(|d| d.remove_file(host::FILLER));
                }
            }
            ConcreteFault::Disk { .. } => {}
            ConcreteFault::Byzantine { peers, .. } => {
                self.set_byzantine(peers).await?;
            }
        }
        Ok(())
    }

    /// Removes every fault from every peer: downed peers come back first, then each peer is reset in
    /// one exec (an empty partition chain, and no packet faults if any were ever installed), then the
    /// host-side faults (clock files, lock folders) are undone. One exec per peer keeps a heal of 50
    /// peers under two seconds (docs/BENCHMARKS.md).
    pub async fn heal_all(&self) -> anyhow::Result<()> {
        let faults: Vec<(String, ConcreteFault)> = std::mem::take(&mut self.journal.lock().await.active)
            .into_iter()
            .collect();
        let down: Vec<usize> = self.journal.lock().await.down.keys().copied().collect();
        for n in down {
            self.bring_back(n).await?;
        }
        // A man in the middle still on is taken off first, so that its tally is recorded.
        for (id, fault) in &faults {
            if matches!(fault, ConcreteFault::Link { params, .. } if params.mitm.is_some()) {
                self.undo(id, fault).await?;
            }
        }
        let links = self.links_used.load(std::sync::atomic::Ordering::Relaxed);
        let all = self.all();
        self.for_each(&all, |n| self.reset(n, links)).await?;
        for (id, fault) in &faults {
            if matches!(
                fault,
                ConcreteFault::Clock { .. }
                    | ConcreteFault::Lock { .. }
                    | ConcreteFault::Disk { .. }
                    | ConcreteFault::Byzantine { .. }
            ) {
                self.undo(id, fault).await?;
            }
        }
        self.history.record(Event::HealedAll);
        Ok(())
    }

    /// Re-applies the journal to a peer whose container restarted (new network namespace).
    pub async fn reapply(&self, node: usize) -> anyhow::Result<()> {
        self.prepare_one(node).await?;
        self.install_cuts(node).await?;
        let links: Vec<(String, ConcreteFault)> = self
            .journal
            .lock()
            .await
            .active
            .iter()
            .filter(|(_, f)| matches!(f, ConcreteFault::Link { peers, .. } if peers.contains(&node)))
            .map(|(id, f)| (id.clone(), f.clone()))
            .collect();
        for (id, f) in links {
            if let ConcreteFault::Link { to, params, seed, .. } = f {
                self.apply_link(node, &id, &to, &params, seed).await?;
            }
        }
        Ok(())
    }

    pub async fn active(&self) -> Vec<String> {
        self.journal.lock().await.active.keys().cloned().collect()
    }

    /// The nodes of `nodes` whose containers run (faults cannot be exec'd into stopped or frozen ones;
    /// they get the journal re-applied when they come back).
    async fn up(&self, nodes: &[usize]) -> Vec<usize> {
        let j = self.journal.lock().await;
        nodes.iter().copied().filter(|n| !j.down.contains_key(n)).collect()
    }

    /// Starts or thaws a downed peer, waits until it answers, and re-applies its faults.
    async fn bring_back(&self, node: usize) -> anyhow::Result<()> {
        let Some((_, action)) = self.journal.lock().await.down.remove(&node) else {
            return Ok(());
        };
        let p = &self.peers[node];
        match action {
            ProcessAction::Pause => self.engine.unpause(&p.container).await?,
            ProcessAction::Kill | ProcessAction::Stop => {
                self.engine.start(&p.container).await?;
                // The old agent holds the old network namespace: a new one joins the new.
                let vdso = self.daemon.profile.clock == crate::profile::ClockMethod::Vdso;
                self.agents.forget(&p.agent);
                sidecar::reattach(&self.engine, &self.run_id, p, vdso).await?;
                self.reapply(node).await?;
                self.daemon
                    .wait_ready(
                        std::slice::from_ref(p),
                        std::slice::from_ref(&self.facts[node]),
                        cluster::RESTART_TIMEOUT,
                        |_, _| {},
                    )
                    .await
                    .with_context(|| format!("{} did not come back after a restart", p.name))?;
                // A vDSO skew lives in the daemon process, which is new: patch it again, now that
                // it runs (a wrapper that execs the daemon would have lost an earlier patch).
                // Recorded as the peer's `clock-measured`.
                if vdso && self.has_clock_fault(node).await {
                    self.set_clocks(&[node]).await?;
                }
            }
        }
        self.history.record(Event::PeerBack {
            peer: p.name.clone(),
            after: action.as_str().into(),
        });
        Ok(())
    }

    async fn root_sh(&self, node: usize, script: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = vec!["sh", "-c", script, "sh"];
        cmd.extend_from_slice(args);
        let out = self.agents.exec(&self.peers[node].agent, &cmd).await?;
        if out.exit_code != 0 {
            bail!(
                "`{script}` exited {} on {}: {}",
                out.exit_code,
                self.peers[node].name,
                out.stderr.trim()
            );
        }
        Ok(())
    }

    async fn for_each<'a, F, Fut, T>(&'a self, nodes: &[usize], f: F) -> anyhow::Result<()>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>> + 'a,
    {
        for r in futures_util::future::join_all(nodes.iter().map(|&n| f(n))).await {
            r?;
        }
        Ok(())
    }

    /// The fault as the history and the report show it: peers by name.
    fn describe(&self, fault: &ConcreteFault) -> serde_json::Value {
        let names = |v: &[usize]| v.iter().map(|&i| self.peers[i].name.clone()).collect::<Vec<_>>();
        match fault {
            ConcreteFault::Partition(cut) => {
                let links: Vec<[&str; 2]> = cut
                    .links
                    .iter()
                    .map(|&(a, b)| [self.peers[a].name.as_str(), self.peers[b].name.as_str()])
                    .collect();
                serde_json::json!({ "links": links, "mode": cut.mode, "port": cut.port })
            }
            ConcreteFault::Link { peers, to, params, .. } => {
                serde_json::json!({ "peers": names(peers), "to": names(to), "params": params })
            }
            ConcreteFault::Clock { peers, offset_ms, rate } => {
                serde_json::json!({ "peers": names(peers), "offset_ms": offset_ms, "rate": rate })
            }
            ConcreteFault::Process { peers, action } => serde_json::json!({ "peers": names(peers), "action": action }),
            ConcreteFault::Lock { peers, action } => serde_json::json!({ "peers": names(peers), "action": action }),
            ConcreteFault::Disk { peers, action, .. } => serde_json::json!({ "peers": names(peers), "action": action }),
            ConcreteFault::Byzantine { peers, behaviours } => {
                serde_json::json!({ "peers": names(peers), "behaviours": behaviours })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faketime_files_are_signed_seconds() {
        assert_eq!(faketime_spec(3_600_000, None), "+3600 x1\n");
        assert_eq!(faketime_spec(-7_200_000, None), "-7200 x1\n");
        assert_eq!(faketime_spec(0, None), "+0 x1\n");
        assert_eq!(faketime_spec(1500, Some(2.0)), "+1.5 x2\n");
    }

    #[test]
    fn netfault_ids_fit_its_alphabet() {
        let id = netfault_id("a very long step name with spaces#12");
        assert!(id.len() <= 32 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_ne!(netfault_id("s#1"), netfault_id("s#2"));
    }

    #[test]
    fn overlapping_byzantine_faults_add_up_per_peer() {
        let liar = |peers: Vec<usize>, b: &[&str]| ConcreteFault::Byzantine {
            peers,
            behaviours: b.iter().map(|s| s.to_string()).collect(),
        };
        let active = [liar(vec![0, 2], &["tamper"]), liar(vec![2], &["flood", "tamper"])];
        assert_eq!(host::byzantine_behaviours(active.iter(), 2), vec!["tamper", "flood"]);
        assert_eq!(host::byzantine_behaviours(active.iter(), 0), vec!["tamper"]);
        assert!(host::byzantine_behaviours(active.iter(), 1).is_empty());
    }
}
