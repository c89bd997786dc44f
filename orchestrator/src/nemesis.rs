//! The nemesis: applies and removes faults, and writes what it did into the history (Jepsen's habit).
//!
//! It keeps a **fault journal**: the active faults and the peers that are down. Every change
//! recomputes, from the journal, the full state of each affected peer, so removing one of two
//! overlapping faults leaves the other intact, a peer restarted mid-fault gets its faults back
//! ([`Nemesis::reapply`]), and heal-all is the sum of the undos: an empty journal.
//!
//! | fault | applied by | undone by |
//! |---|---|---|
//! | partition | the peer's `SYFTCHAOS` iptables chain, replaced atomically (`iptables-restore --noflush`) | the chain rewritten without it |
//! | link | `netfault apply` in the peer (NFQUEUE userspace engine or kernel netem; `tc` for bandwidth) | `netfault clear --id` |
//! | clock | the peer's libfaketime file (`/data/faketime`), rewritten from the host; measured at once | the file rewritten |
//! | kill / stop / pause | the Docker API | start (then faults re-applied) / unpause |
//! | lock | a stale lock file, or the lock folder made read-only (host side) | folder writable again |
//! | disk | bits flipped or the file truncated in place, mtime kept (host side) | nothing: the peer must repair it |

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use crate::cluster::{self, Peer};
use crate::docker::Engine;
use crate::generator::ConcreteFault;
use crate::history::{Event, History};
use crate::partition::{self, CHAIN, Cut};
use crate::peer_profile;
use crate::plan::{DiskAction, LinkParams, LockAction, ProcessAction};

pub struct Nemesis {
    engine: Engine,
    peers: Vec<Peer>,
    history: Arc<History>,
    http: reqwest::Client,
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

/// netfault ids are at most 32 of `[A-Za-z0-9_-]`; fault ids (`step#k`) are not, so hash them.
fn netfault_id(id: &str) -> String {
    format!("sc-{}", &blake3::hash(id.as_bytes()).to_hex()[..12])
}

impl Nemesis {
    pub fn new(engine: Engine, peers: Vec<Peer>, history: Arc<History>) -> Nemesis {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .expect("http client");
        Nemesis {
            engine,
            peers,
            history,
            http,
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
        let probe = self
            .engine
            .exec(&self.peers[0].container, "root", &["netfault", "probe"])
            .await?;
        let engines: serde_json::Value = serde_json::from_str(&probe.stdout).unwrap_or(serde_json::Value::Null);
        Ok(engines)
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
        let mut detail = self.describe(&fault);
        self.journal.lock().await.active.insert(id.to_string(), fault.clone());
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
        }
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
        self.undo(id, &fault).await?;
        self.history.record(Event::FaultStopped { id: id.into() });
        Ok(())
    }

    async fn undo(&self, id: &str, fault: &ConcreteFault) -> anyhow::Result<()> {
        match fault {
            ConcreteFault::Partition(cut) => {
                let nodes = self.up(&cut_nodes(cut)).await;
                self.for_each(&nodes, |n| self.install_cuts(n)).await?;
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
                    let _ = std::fs::remove_file(self.filler(n));
                }
            }
            ConcreteFault::Disk { .. } => {}
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
        let links = self.links_used.load(std::sync::atomic::Ordering::Relaxed);
        let all = self.all();
        self.for_each(&all, |n| self.reset(n, links)).await?;
        for (id, fault) in &faults {
            if matches!(
                fault,
                ConcreteFault::Clock { .. } | ConcreteFault::Lock { .. } | ConcreteFault::Disk { .. }
            ) {
                self.undo(id, fault).await?;
            }
        }
        self.history.record(Event::HealedAll);
        Ok(())
    }

    /// Empties `node`'s partition chain and, with `links`, removes every packet fault.
    async fn reset(&self, node: usize, links: bool) -> anyhow::Result<()> {
        let clear = if links { " && netfault clear >/dev/null" } else { "" };
        let script =
            format!("printf '%s\\n' '*filter' ':{CHAIN} - [0:0]' 'COMMIT' | iptables-restore --noflush{clear}");
        self.root_sh(node, &script, &[])
            .await
            .with_context(|| format!("healing {}", self.peers[node].name))
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
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while !matches!(cluster::status(&self.http, p.ip).await, Ok(s) if s.name == p.name) {
                    if tokio::time::Instant::now() > deadline {
                        bail!("{} did not come back within 60 s after a restart", p.name);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                self.reapply(node).await?;
            }
        }
        Ok(())
    }

    /// Replaces `node`'s chain with exactly the cuts the journal implies.
    async fn install_cuts(&self, node: usize) -> anyhow::Result<()> {
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
    async fn apply_link(
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

    async fn netfault(&self, node: usize, args: Vec<String>) -> anyhow::Result<serde_json::Value> {
        let mut cmd = vec!["netfault"];
        cmd.extend(args.iter().map(String::as_str));
        let out = self.engine.exec(&self.peers[node].container, "root", &cmd).await?;
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

    /// Writes each peer's libfaketime file from the journal (offsets add up; the last rate wins) and
    /// measures the offset the peer now reports. Returns `{peer: {requested_ms, measured_ms}}`.
    async fn set_clocks(&self, peers: &[usize]) -> anyhow::Result<serde_json::Value> {
        let mut out = serde_json::Map::new();
        for &n in peers {
            let (offset_ms, rate) = {
                let j = self.journal.lock().await;
                let mut offset = 0i64;
                let mut rate = None;
                for f in j.active.values() {
                    if let ConcreteFault::Clock {
                        peers,
                        offset_ms,
                        rate: r,
                    } = f
                        && peers.contains(&n)
                    {
                        offset += offset_ms;
                        rate = r.or(rate);
                    }
                }
                (offset, rate)
            };
            let p = &self.peers[n];
            // Written aside and renamed over: libfaketime re-reads the file on every clock call, and a
            // half-written file would read as offset 0 for that call.
            let tmp = p.dir.faketime().with_extension("tmp");
            std::fs::write(&tmp, faketime_spec(offset_ms, rate))
                .and_then(|()| std::fs::rename(&tmp, p.dir.faketime()))
                .with_context(|| format!("writing the clock file of {}", p.name))?;
            let down = self.journal.lock().await.down.contains_key(&n);
            let measured = if down { None } else { self.measure_offset(p.ip).await };
            self.history.record(Event::ClockMeasured {
                peer: p.name.clone(),
                requested_ms: offset_ms,
                measured_ms: measured,
            });
            out.insert(
                p.name.clone(),
                serde_json::json!({"requested_ms": offset_ms, "measured_ms": measured, "rate": rate}),
            );
        }
        Ok(out.into())
    }

    /// The peer's reported wall clock minus ours, corrected by half the round trip.
    async fn measure_offset(&self, ip: Ipv4Addr) -> Option<i64> {
        let now_ms = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let before = now_ms();
        let status = cluster::status(&self.http, ip).await.ok()?;
        let after = now_ms();
        Some(status.wall_clock_ms - (before + after) / 2)
    }

    fn lock_fault(&self, node: usize, action: &LockAction, on: bool) -> anyhow::Result<serde_json::Value> {
        let dir = self.peers[node].dir.state().join("locks");
        std::fs::create_dir_all(&dir)?;
        match (action, on) {
            (LockAction::Stale(path), true) => {
                let (name, contents) = peer_profile::stale_lock(path);
                std::fs::write(dir.join(&name), contents)?;
                peer_profile::chown_tree(&dir)?;
                Ok(serde_json::json!({"lock": name, "path": path}))
            }
            (LockAction::Stale(path), false) => {
                let (name, _) = peer_profile::stale_lock(path);
                let cleared = !dir.join(&name).exists();
                Ok(serde_json::json!({"lock": name, "cleared": cleared}))
            }
            (LockAction::Unwritable, on) => {
                let mode = if on { 0o555 } else { 0o755 };
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
                Ok(serde_json::json!({"locks_dir_mode": format!("{mode:o}")}))
            }
        }
    }

    /// Damages one file in place the way a failing disk would: the mtime is kept, so only a content
    /// check (a scrub) can notice.
    fn disk_fault(&self, node: usize, action: &DiskAction, seed: u64) -> anyhow::Result<serde_json::Value> {
        let sync = self.peers[node].dir.sync();
        let (path, how) = match action {
            DiskAction::Corrupt(p) => (p.clone(), "corrupt"),
            DiskAction::Truncate(p) => (p.clone(), "truncate"),
            DiskAction::Fill => return self.fill_disk(node),
        };
        let path = match path {
            Some(p) => p,
            None => {
                let tree = crate::tree::TreeReader::default().read(&sync)?;
                let files: Vec<&String> = tree.files.iter().filter(|(_, e)| e.size > 0).map(|(p, _)| p).collect();
                if files.is_empty() {
                    return Ok(serde_json::json!({"skipped": "no file to damage"}));
                }
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                files[rng.random_range(0..files.len())].clone()
            }
        };
        let file = sync.join(&path);
        let meta = match std::fs::metadata(&file) {
            Ok(m) => m,
            Err(_) => return Ok(serde_json::json!({"path": path, "skipped": "file not present"})),
        };
        let mtime = meta.modified()?;
        let size = meta.len();
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&file)?;
        if how == "corrupt" && size > 0 {
            use std::os::unix::fs::FileExt;
            let at = size / 2;
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, at)?;
            b[0] ^= 0x5a;
            f.write_all_at(&b, at)?;
        } else {
            f.set_len(size / 2)?;
        }
        f.set_modified(mtime)?;
        f.sync_all()?;
        Ok(serde_json::json!({"path": path, "how": how, "size_before": size}))
    }

    fn filler(&self, node: usize) -> std::path::PathBuf {
        self.peers[node].dir.root.join(".syftchaos-fill")
    }

    /// Writes zeros into the peer's data folder until the file system is full. The folder must be a
    /// size-limited mount (plan key `disk_limit`), or this would fill the host's disk: refuse otherwise.
    fn fill_disk(&self, node: usize) -> anyhow::Result<serde_json::Value> {
        use std::io::Write;
        let root = &self.peers[node].dir.root;
        if !cluster::is_limited_mount(root) {
            bail!(
                "refusing to fill {}: it is not a size-limited mount (set `disk_limit`)",
                root.display()
            );
        }
        let mut f = std::fs::File::create(self.filler(node))?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC: full, as intended
                Err(e) => return Err(e.into()),
            }
        }
        let _ = f.sync_all();
        Ok(serde_json::json!({"filled_bytes": written}))
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
        }
    }
}

fn cut_nodes(cut: &Cut) -> Vec<usize> {
    cut.links
        .iter()
        .flat_map(|&(a, b)| [a, b])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// libfaketime's relative format: signed seconds and a speed factor. The factor is always written:
/// once a rate was set, a file without one keeps the old rate (seen with libfaketime 0.9.10).
pub fn faketime_spec(offset_ms: i64, rate: Option<f64>) -> String {
    let secs = offset_ms as f64 / 1000.0;
    format!("{secs:+} x{}\n", rate.unwrap_or(1.0))
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
}
