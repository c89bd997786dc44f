//! The nemesis's network side: the partition chain and `netfault` packet faults, in each peer's network
//! namespace, exec'd in the peer's fault-agent sidecar ([`crate::cluster::sidecar`]).

use std::collections::BTreeSet;

use anyhow::{Context, bail};

use super::Nemesis;
use crate::generator::ConcreteFault;
use crate::partition::{self, CHAIN, Cut};
use crate::plan::LinkParams;

/// netfault ids are at most 32 of `[A-Za-z0-9_-]`; fault ids (`step#k`) are not, so hash them.
pub(super) fn netfault_id(id: &str) -> String {
    format!("sc-{}", &blake3::hash(id.as_bytes()).to_hex()[..12])
}

pub(super) fn cut_nodes(cut: &Cut) -> Vec<usize> {
    cut.links
        .iter()
        .flat_map(|&(a, b)| [a, b])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl Nemesis {
    pub(super) async fn prepare_one(&self, node: usize) -> anyhow::Result<()> {
        let script = format!(
            "iptables -N {CHAIN} 2>/dev/null; \
             iptables -C INPUT -j {CHAIN} 2>/dev/null || iptables -I INPUT 1 -j {CHAIN}; \
             iptables -C OUTPUT -j {CHAIN} 2>/dev/null || iptables -I OUTPUT 1 -j {CHAIN}"
        );
        self.root_sh(node, &script, &[])
            .await
            .context("preparing the fault chain")
    }

    /// Empties `node`'s partition chain and, with `links`, removes every packet fault.
    pub(super) async fn reset(&self, node: usize, links: bool) -> anyhow::Result<()> {
        let clear = if links { " && netfault clear >/dev/null" } else { "" };
        let script =
            format!("printf '%s\\n' '*filter' ':{CHAIN} - [0:0]' 'COMMIT' | iptables-restore --noflush{clear}");
        self.root_sh(node, &script, &[])
            .await
            .with_context(|| format!("healing {}", self.peers[node].name))
    }

    /// Replaces `node`'s chain with exactly the cuts the journal implies.
    pub(super) async fn install_cuts(&self, node: usize) -> anyhow::Result<()> {
        let cuts: Vec<Cut> = self
            .journal
            .lock()
            .await
            .active
            .values()
            .filter_map(|f| match f {
                ConcreteFault::Partition(cut) => Some(cut.clone()),
                _ => None,
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

    /// Installs one link fault on `node` for traffic to the `to` peers; returns netfault's answer
    /// (which engine carried it out).
    pub(super) async fn apply_link(
        &self,
        node: usize,
        id: &str,
        to: &[usize],
        p: &LinkParams,
        seed: u64,
    ) -> anyhow::Result<serde_json::Value> {
        let targets: Vec<String> = to
            .iter()
            .filter(|&&t| t != node)
            .map(|&t| self.peers[t].ip.to_string())
            .collect();
        if targets.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        if let Some(mode) = &p.mitm {
            // Checked against the profile when the plan was loaded.
            let port = self.daemon.profile.ports.get("sync").copied().unwrap_or_default();
            return self
                .netfault(
                    node,
                    vec![
                        "mitm".into(),
                        "start".into(),
                        "--id".into(),
                        netfault_id(id),
                        "--targets".into(),
                        targets.join(","),
                        "--port".into(),
                        port.to_string(),
                        "--mode".into(),
                        mode.clone(),
                    ],
                )
                .await;
        }
        let ms = |d: Option<crate::plan::Dur>| d.map_or(0.0, |d| d.0.as_secs_f64() * 1000.0);
        let mut spec = serde_json::json!({
            "id": netfault_id(id),
            "target": targets,
            "direction": p.direction.clone().unwrap_or_else(|| "egress".into()),
            "delay_ms": ms(p.delay),
            "jitter_ms": ms(p.jitter),
            "distribution": p.distribution.clone().unwrap_or_else(|| "uniform".into()),
            "loss_pct": p.loss.unwrap_or(0.0),
            "loss_correlation_pct": p.loss_correlation.unwrap_or(0.0),
            "corrupt_pct": p.corrupt.unwrap_or(0.0),
            "duplicate_pct": p.duplicate.unwrap_or(0.0),
            "reorder_pct": p.reorder.unwrap_or(0.0),
            "seed": seed ^ node as u64,
            "engine": p.engine.clone().unwrap_or_else(|| "auto".into()),
        });
        if p.reorder_delay.is_some() {
            spec["reorder_delay_ms"] = ms(p.reorder_delay).into();
        }
        if let Some(rate) = &p.rate {
            spec["rate_kbit"] = crate::plan::parse_rate_kbit(rate).map_err(anyhow::Error::msg)?.into();
        }
        let out = self
            .netfault(node, vec!["apply".into(), "--spec".into(), spec.to_string()])
            .await?;
        Ok(out)
    }

    /// Takes a man in the middle off `node`'s links; its final tally (streams acted on, refused,
    /// answered, with the answered ones as evidence).
    pub(super) async fn stop_mitm(&self, node: usize, id: &str) -> anyhow::Result<serde_json::Value> {
        let out = self
            .netfault(node, vec!["mitm".into(), "stop".into(), "--id".into(), netfault_id(id)])
            .await?;
        Ok(out["final"].clone())
    }

    pub(super) async fn netfault(&self, node: usize, args: Vec<String>) -> anyhow::Result<serde_json::Value> {
        let mut cmd = vec!["netfault"];
        cmd.extend(args.iter().map(String::as_str));
        let out = self.agents.exec(&self.peers[node].agent, &cmd).await?;
        if out.exit_code != 0 {
            bail!(
                "`netfault {}` failed on {}: {}",
                args.join(" "),
                self.peers[node].name,
                out.stderr.trim()
            );
        }
        Ok(serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null))
    }
}
