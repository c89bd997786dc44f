//! The nemesis: applies and removes faults inside the peers' containers, and writes what it did into
//! the history (Jepsen's habit).
//!
//! It keeps a **fault journal**: the set of active faults. Every change recomputes, from the journal,
//! the full rule set of each affected peer and installs it atomically (`iptables-restore --noflush`
//! replaces the project's chain in one commit), so removing one of two overlapping faults leaves the
//! other intact, a peer restarted mid-fault gets its rules back ([`Nemesis::reapply`]), and heal-all is
//! the sum of the undos: an empty journal.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::sync::Mutex;

use crate::cluster::Peer;
use crate::docker::Engine;
use crate::generator::ConcreteFault;
use crate::history::{Event, History};
use crate::partition::{self, CHAIN, Cut};

pub struct Nemesis {
    engine: Engine,
    peers: Vec<Peer>,
    history: Arc<History>,
    journal: Mutex<BTreeMap<String, ConcreteFault>>,
}

impl Nemesis {
    pub fn new(engine: Engine, peers: Vec<Peer>, history: Arc<History>) -> Nemesis {
        Nemesis {
            engine,
            peers,
            history,
            journal: Mutex::new(BTreeMap::new()),
        }
    }

    fn addrs(&self) -> Vec<Ipv4Addr> {
        self.peers.iter().map(|p| p.ip).collect()
    }

    /// Creates the project's chain and the jumps to it in every peer (idempotent).
    pub async fn prepare(&self) -> anyhow::Result<()> {
        let all: Vec<usize> = (0..self.peers.len()).collect();
        self.for_each(&all, |n| self.prepare_one(n)).await
    }

    async fn prepare_one(&self, node: usize) -> anyhow::Result<()> {
        let script = format!(
            "iptables -N {CHAIN} 2>/dev/null; \
             iptables -C INPUT -j {CHAIN} 2>/dev/null || iptables -I INPUT 1 -j {CHAIN}; \
             iptables -C OUTPUT -j {CHAIN} 2>/dev/null || iptables -I OUTPUT 1 -j {CHAIN}"
        );
        self.root_sh(node, &script, &[])
            .await
            .context("preparing the fault chain")
    }

    pub async fn start(&self, id: &str, step: &str, fault: ConcreteFault) -> anyhow::Result<()> {
        let affected = affected_nodes(&fault);
        let detail = self.describe(&fault);
        let kind = match &fault {
            ConcreteFault::Partition(_) => "partition",
        };
        self.journal.lock().await.insert(id.to_string(), fault);
        self.for_each(&affected, |n| self.install(n)).await?;
        self.history.record(Event::FaultStarted {
            id: id.into(),
            step: step.into(),
            kind: kind.into(),
            detail,
        });
        Ok(())
    }

    pub async fn stop(&self, id: &str) -> anyhow::Result<()> {
        let Some(fault) = self.journal.lock().await.remove(id) else {
            bail!("fault {id} is not active");
        };
        self.for_each(&affected_nodes(&fault), |n| self.install(n)).await?;
        self.history.record(Event::FaultStopped { id: id.into() });
        Ok(())
    }

    /// Removes every fault from every peer.
    pub async fn heal_all(&self) -> anyhow::Result<()> {
        self.journal.lock().await.clear();
        let all: Vec<usize> = (0..self.peers.len()).collect();
        self.for_each(&all, |n| self.install(n)).await?;
        self.history.record(Event::HealedAll);
        Ok(())
    }

    /// Re-applies the journal to a peer whose container restarted (new network namespace).
    pub async fn reapply(&self, node: usize) -> anyhow::Result<()> {
        self.prepare_one(node).await?;
        self.install(node).await
    }

    pub async fn active(&self) -> Vec<String> {
        self.journal.lock().await.keys().cloned().collect()
    }

    /// Replaces `node`'s chain with exactly the rules the journal implies.
    async fn install(&self, node: usize) -> anyhow::Result<()> {
        let cuts: Vec<Cut> = self
            .journal
            .lock()
            .await
            .values()
            .map(|f| match f {
                ConcreteFault::Partition(cut) => cut.clone(),
            })
            .collect();
        let mut lines = vec!["*filter".to_string(), format!(":{CHAIN} - [0:0]")];
        lines.extend(
            partition::rules_for(node, &cuts, &self.addrs())
                .into_iter()
                .map(|r| format!("-A {CHAIN} {r}")),
        );
        lines.push("COMMIT".into());
        let args: Vec<&str> = lines.iter().map(String::as_str).collect();
        self.root_sh(node, "printf '%s\\n' \"$@\" | iptables-restore --noflush", &args)
            .await
            .with_context(|| format!("installing partition rules on {}", self.peers[node].name))
    }

    async fn root_sh(&self, node: usize, script: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = vec!["sh", "-c", script, "sh"];
        cmd.extend_from_slice(args);
        let out = self.engine.exec(&self.peers[node].container, "root", &cmd).await?;
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

    async fn for_each<'a, F, Fut>(&'a self, nodes: &[usize], f: F) -> anyhow::Result<()>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>> + 'a,
    {
        for r in futures_util::future::join_all(nodes.iter().map(|&n| f(n))).await {
            r?;
        }
        Ok(())
    }

    /// The fault as the history and the report show it: links by peer name.
    fn describe(&self, fault: &ConcreteFault) -> serde_json::Value {
        match fault {
            ConcreteFault::Partition(cut) => {
                let links: Vec<[&str; 2]> = cut
                    .links
                    .iter()
                    .map(|&(a, b)| [self.peers[a].name.as_str(), self.peers[b].name.as_str()])
                    .collect();
                serde_json::json!({ "links": links, "mode": cut.mode, "port": cut.port })
            }
        }
    }
}

fn affected_nodes(fault: &ConcreteFault) -> Vec<usize> {
    match fault {
        ConcreteFault::Partition(cut) => cut
            .links
            .iter()
            .flat_map(|&(a, b)| [a, b])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    }
}
