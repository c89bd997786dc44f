//! The nemesis's host side: faults applied through the peers' bind-mounted data folders (clock files,
//! lock folders, damaged or filled disks, Byzantine control files), and the clock read back from the
//! peer itself.
//!
//! Every file operation goes through a [`Beneath`](crate::record::beneath::Beneath) handle, so a
//! symlink a peer planted is never followed. When one is in the way (or the peer's folder otherwise
//! refuses the operation), the fault's history detail says `failed` with the reason, and the run goes
//! on: what a peer does to its own folder is something to record, not a harness failure.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng};

use super::Nemesis;
use crate::cluster;
use crate::generator::ConcreteFault;
use crate::plan::{DiskAction, LockAction};
use crate::profile::ClockMethod;
use crate::record::history::Event;
use crate::record::run_folder::FAKETIME_FILE;

/// The disk-full fault's file, in the peer's data folder.
pub(super) const FILLER: &str = ".syftchaos-fill";

impl Nemesis {
    /// Whether a clock fault on peer `n` is active.
    pub(super) async fn has_clock_fault(&self, n: usize) -> bool {
        let j = self.journal.lock().await;
        j.active
            .values()
            .any(|f| matches!(f, ConcreteFault::Clock { peers, .. } if peers.contains(&n)))
    }

    /// Sets each peer's clock from the journal (offsets add up; the last rate wins), by the profile's
    /// mechanism: libfaketime's file, or `netfault clock` in the peer's agent (`vdso`: `set`, or
    /// `clear` once no clock fault is left on the peer), and measures the offset the peer now
    /// reports. All peers at once: with `vdso` each is a `docker exec` or two, and one after another
    /// they added up to seconds at 50 peers. Returns `{peer: {requested_ms, measured_ms, rate, mechanism}}`.
    pub(super) async fn set_clocks(&self, peers: &[usize]) -> anyhow::Result<serde_json::Value> {
        let mut out = serde_json::Map::new();
        for r in futures_util::future::join_all(peers.iter().map(|&n| self.set_clock(n))).await {
            let (name, detail) = r?;
            out.insert(name, detail);
        }
        Ok(out.into())
    }

    /// [`set_clocks`](Self::set_clocks) for one peer: its name and what was done.
    async fn set_clock(&self, n: usize) -> anyhow::Result<(String, serde_json::Value)> {
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
        let down = self.journal.lock().await.down.contains_key(&n);
        let mechanism = match self.daemon.profile.clock {
            ClockMethod::Vdso => {
                // A downed peer is patched when it is back (`bring_back`).
                if !down {
                    let args = if self.has_clock_fault(n).await {
                        vec![
                            "clock".into(),
                            "set".into(),
                            format!("--offset-ns={}", offset_ms * 1_000_000),
                        ]
                    } else {
                        vec!["clock".into(), "clear".into()]
                    };
                    self.netfault(n, args).await?;
                }
                "vdso"
            }
            _ => {
                // Written aside and renamed over: libfaketime re-reads the file on every clock
                // call, and a half-written file would read as offset 0 for that call. The fault
                // folder is the orchestrator's (read-only in the peer), so an error here is the
                // harness's own.
                let spec = super::faketime_spec(offset_ms, rate);
                p.dir
                    .fault_files()
                    .and_then(|f| f.write_atomically(FAKETIME_FILE, format!("{FAKETIME_FILE}.tmp"), spec.as_bytes()))
                    .with_context(|| format!("writing the clock file of {}", p.name))?;
                "libfaketime"
            }
        };
        let measured = match (down, self.daemon.profile.clock == ClockMethod::Vdso) {
            (true, _) => None,
            (false, false) => self.measure_offset(n).await,
            // Patched: from the daemon's status call when it has one, else the agent has each
            // patched process call its own clock (`netfault clock measure`).
            (false, true) => match self.measure_offset(n).await {
                Some(ms) => Some(ms),
                None => self.measure_in_agent(n, offset_ms).await,
            },
        };
        self.history.record(Event::ClockMeasured {
            peer: p.name.clone(),
            requested_ms: offset_ms,
            measured_ms: measured,
            rate,
        });
        Ok((
            p.name.clone(),
            serde_json::json!({"requested_ms": offset_ms, "measured_ms": measured, "rate": rate, "mechanism": mechanism}),
        ))
    }

    /// The peer's reported wall clock minus ours, corrected by half the round trip (when its profile
    /// has a status call that reports it).
    pub(super) async fn measure_offset(&self, n: usize) -> Option<i64> {
        let now_ms = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let before = now_ms();
        let theirs = self.daemon.wall_clock_ms(&self.peers[n], &self.facts[n]).await?;
        let after = now_ms();
        Some(theirs - (before + after) / 2)
    }

    /// The daemon's own clock offset as `netfault clock measure` finds it in the peer's agent: of
    /// every process it measures (patched ones, and after a clear those it left unhooked), the one
    /// farthest from `requested_ms`, so a process that missed the change shows. `None` when no
    /// process was ever patched or the agent cannot tell.
    async fn measure_in_agent(&self, n: usize, requested_ms: i64) -> Option<i64> {
        let out = self.netfault(n, vec!["clock".into(), "measure".into()]).await.ok()?;
        worst_measured_ms(&out, requested_ms)
    }

    /// Writes each peer's Byzantine control file from the journal (the behaviours of every active
    /// byzantine fault on that peer, in plan order), or removes it when none is left: the peer reads
    /// it within 200 ms. Returns `{peer: [behaviours]}`.
    pub(super) async fn set_byzantine(&self, peers: &[usize]) -> anyhow::Result<serde_json::Value> {
        let mut out = serde_json::Map::new();
        for &n in peers {
            let behaviours = byzantine_behaviours(self.journal.lock().await.active.values(), n);
            let Some(rel) = &self.daemon.profile.byzantine_file else {
                bail!(
                    "the profile `{}` has no byzantine control file",
                    self.daemon.profile.name
                );
            };
            let rel = Path::new(rel);
            let written = self.peers[n].dir.data().and_then(|data| {
                if behaviours.is_empty() {
                    match data.remove_file(rel) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                        _ => Ok(()),
                    }
                } else {
                    // Written aside and renamed over, so the peer never reads half a list.
                    let list = format!("{}\n", behaviours.join("\n"));
                    data.write_atomically(rel, rel.with_extension("tmp"), list.as_bytes())
                }
            });
            let detail = match written {
                Ok(()) => behaviours.into(),
                Err(e) => failed(&self.peers[n].name, "byzantine file", e),
            };
            out.insert(self.peers[n].name.clone(), detail);
        }
        Ok(out.into())
    }

    pub(super) fn lock_fault(&self, node: usize, action: &LockAction, on: bool) -> anyhow::Result<serde_json::Value> {
        let Some(format) = &self.daemon.profile.locks else {
            bail!("the profile `{}` names no lock format", self.daemon.profile.name);
        };
        let stale = match action {
            LockAction::Stale(path) => Some((stale_lock(format, path)?, path)),
            LockAction::Unwritable => None,
        };
        let applied = self.peers[node].dir.data().and_then(|data| {
            let locks = data.create_dir_all(&format.dir)?;
            match (stale, on) {
                (Some(((name, contents), path)), true) => {
                    locks.write_new(&name, contents.as_bytes())?;
                    Ok(serde_json::json!({"lock": name, "path": path}))
                }
                (Some(((name, _), _)), false) => {
                    let cleared = matches!(locks.metadata(&name), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
                    Ok(serde_json::json!({"lock": name, "cleared": cleared}))
                }
                (None, on) => {
                    let mode = if on { 0o555 } else { 0o755 };
                    locks.set_mode("", mode)?;
                    Ok(serde_json::json!({"locks_dir_mode": format!("{mode:o}")}))
                }
            }
        });
        Ok(applied.unwrap_or_else(|e| failed(&self.peers[node].name, "lock fault", e)))
    }

    /// Damages one file in place the way a failing disk would: the mtime is kept, so only a content
    /// check (a scrub) can notice.
    pub(super) fn disk_fault(&self, node: usize, action: &DiskAction, seed: u64) -> anyhow::Result<serde_json::Value> {
        let (path, how) = match action {
            DiskAction::Corrupt(p) => (p.clone(), "corrupt"),
            DiskAction::Truncate(p) => (p.clone(), "truncate"),
            DiskAction::Fill => return self.fill_disk(node),
        };
        let sync = match self.peers[node].dir.sync() {
            Ok(s) => s,
            Err(e) => return Ok(failed(&self.peers[node].name, "disk fault", e)),
        };
        let path = match path {
            Some(p) => p,
            None => {
                let tree = crate::tree::TreeReader::default().read(&sync)?;
                let files: Vec<&String> = tree
                    .files
                    .iter()
                    .filter(|(_, e)| e.size > 0 && !e.is_symlink())
                    .map(|(p, _)| p)
                    .collect();
                if files.is_empty() {
                    return Ok(serde_json::json!({"skipped": "no file to damage"}));
                }
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                files[rng.random_range(0..files.len())].clone()
            }
        };
        let f = match sync.open_file(&path, true) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(serde_json::json!({"path": path, "skipped": "file not present"}));
            }
            Err(e) => return Ok(failed(&self.peers[node].name, "disk fault", e)),
        };
        let meta = f.metadata()?;
        let mtime = meta.modified()?;
        let size = meta.len();
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

    /// Writes zeros into the peer's data folder until the file system is full. The folder must be a
    /// size-limited mount (plan key `disk_limit`), or this would fill the host's disk: refuse otherwise.
    pub(super) fn fill_disk(&self, node: usize) -> anyhow::Result<serde_json::Value> {
        use std::io::Write;
        let root = &self.peers[node].dir.root;
        if !cluster::is_limited_mount(root) {
            bail!(
                "refusing to fill {}: it is not a size-limited mount (set `disk_limit`)",
                root.display()
            );
        }
        // The lab's own file, not one given to the daemon: it stays root's (no owner), as before.
        let created = self.peers[node]
            .dir
            .data()
            .and_then(|d| d.owned_by(None).create_new(FILLER, 0o644));
        let mut f = match created {
            Ok(f) => f,
            Err(e) => return Ok(failed(&self.peers[node].name, "disk fill", e)),
        };
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
}

/// A fault's detail when the peer's folder refused it (a symlink in the way, most likely).
fn failed(peer: &str, what: &str, e: std::io::Error) -> serde_json::Value {
    tracing::warn!("{what} on {peer}: {e}");
    serde_json::json!({ "failed": e.to_string() })
}

/// A lock for `path` as a crashed daemon leaves it, in the profile's format (name, contents).
fn stale_lock(format: &crate::profile::LockFormat, path: &str) -> anyhow::Result<(String, String)> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ctx = minijinja::context! { path => path, path_hash => blake3::hash(path.as_bytes()).to_hex().to_string(), now_ms => now_ms };
    let env = minijinja::Environment::new();
    let name = env.render_str(&format.name, &ctx)?;
    let stale = env.render_str(&format.stale, &ctx)?;
    Ok((name, stale))
}

/// The behaviours active byzantine faults give peer `n`, each once, in the order they were listed.
pub fn byzantine_behaviours<'a>(active: impl Iterator<Item = &'a ConcreteFault>, n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in active {
        if let ConcreteFault::Byzantine { peers, behaviours } = f
            && peers.contains(&n)
        {
            for b in behaviours {
                if !out.contains(b) {
                    out.push(b.clone());
                }
            }
        }
    }
    out
}
/// Of `netfault clock measure`'s targets, the measured offset (ms) farthest from `requested_ms`.
fn worst_measured_ms(out: &serde_json::Value, requested_ms: i64) -> Option<i64> {
    out["targets"]
        .as_array()?
        .iter()
        .filter_map(|t| t["measured_ns"].as_i64())
        .map(|ns| ns.div_euclid(1_000_000))
        .max_by_key(|ms| (ms - requested_ms).abs())
}

#[cfg(test)]
mod tests {
    use super::worst_measured_ms;

    #[test]
    fn the_agent_measure_farthest_from_the_request_is_the_one_reported() {
        let out = serde_json::json!({"mechanism": "vdso", "targets": [
            {"pid": 1, "comm": "docker-init", "measured_ns": 3_600_000_400_000i64},
            {"pid": 7, "comm": "syncthing", "measured_ns": 12_000_000},
            {"pid": 9, "gone": true},
            {"pid": 8, "comm": "x", "patched": false},
        ]});
        assert_eq!(worst_measured_ms(&out, 3_600_000), Some(12));
        assert_eq!(worst_measured_ms(&out, 0), Some(3_600_000));
        assert_eq!(worst_measured_ms(&serde_json::json!({"targets": []}), 0), None);
        assert_eq!(worst_measured_ms(&serde_json::json!({"error": 1}), 0), None);
    }
}
