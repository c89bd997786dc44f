//! The nemesis's host side: faults applied through the peers' bind-mounted data folders (clock files,
//! lock folders, damaged or filled disks, Byzantine control files), and the clock read back from the
//! peer itself.

use std::os::unix::fs::PermissionsExt;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng};

use super::Nemesis;
use crate::cluster;
use crate::generator::ConcreteFault;
use crate::plan::{DiskAction, LockAction};
use crate::record::history::Event;

impl Nemesis {
    /// Writes each peer's libfaketime file from the journal (offsets add up; the last rate wins) and
    /// measures the offset the peer now reports. Returns `{peer: {requested_ms, measured_ms}}`.
    pub(super) async fn set_clocks(&self, peers: &[usize]) -> anyhow::Result<serde_json::Value> {
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
            std::fs::write(&tmp, super::faketime_spec(offset_ms, rate))
                .and_then(|()| std::fs::rename(&tmp, p.dir.faketime()))
                .with_context(|| format!("writing the clock file of {}", p.name))?;
            let down = self.journal.lock().await.down.contains_key(&n);
            let measured = if down { None } else { self.measure_offset(n).await };
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
            let file = self.peers[n].dir.root.join(rel);
            if behaviours.is_empty() {
                match std::fs::remove_file(&file) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e)
                            .with_context(|| format!("removing the byzantine file of {}", self.peers[n].name));
                    }
                    _ => {}
                }
            } else {
                // Written aside and renamed over, so the peer never reads half a list.
                let tmp = file.with_extension("tmp");
                std::fs::write(&tmp, format!("{}\n", behaviours.join("\n")))
                    .and_then(|()| std::fs::rename(&tmp, &file))
                    .with_context(|| format!("writing the byzantine file of {}", self.peers[n].name))?;
            }
            out.insert(self.peers[n].name.clone(), behaviours.into());
        }
        Ok(out.into())
    }

    pub(super) fn lock_fault(&self, node: usize, action: &LockAction, on: bool) -> anyhow::Result<serde_json::Value> {
        let Some(format) = &self.daemon.profile.locks else {
            bail!("the profile `{}` names no lock format", self.daemon.profile.name);
        };
        let peer_dir = &self.peers[node].dir;
        let dir = peer_dir.root.join(&format.dir);
        std::fs::create_dir_all(&dir)?;
        match (action, on) {
            (LockAction::Stale(path), true) => {
                let (name, contents) = stale_lock(format, path)?;
                std::fs::write(dir.join(&name), contents)?;
                peer_dir.chown(&dir)?;
                Ok(serde_json::json!({"lock": name, "path": path}))
            }
            (LockAction::Stale(path), false) => {
                let (name, _) = stale_lock(format, path)?;
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
    pub(super) fn disk_fault(&self, node: usize, action: &DiskAction, seed: u64) -> anyhow::Result<serde_json::Value> {
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

    pub(super) fn filler(&self, node: usize) -> std::path::PathBuf {
        self.peers[node].dir.root.join(".syftchaos-fill")
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
