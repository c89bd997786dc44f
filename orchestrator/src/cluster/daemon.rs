//! Acting on a daemon through its [`Profile`]: the files each peer gets before it starts, the
//! readiness probe, identities read after start, the introductions, and the daemon's own view of its
//! clock. What to do is the profile's; how (HTTP, TCP, `docker exec`) is here.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{ClusterSpec, Peer};
use crate::docker::Engine;
use crate::profile::template::render;
use crate::profile::{Facts, HttpCall, IdentitySource, PeerFacts, Probe, Profile};
use crate::record::run_folder::{FAKETIME_FILE, PeerDir, faketime_spec};

/// Every peer's template facts before start: identities made on the host are known, others are
/// filled in by [`Daemon::read_identities`].
pub fn initial_facts(spec: &ClusterSpec, addrs: &[Ipv4Addr], run_id: &str) -> Vec<Facts> {
    let n = spec.names.len();
    let keys: Vec<(String, String)> = (0..n)
        .map(|i| match spec.profile.identity {
            IdentitySource::HostEd25519 => spec.keys.peers[i].ed25519(),
            IdentitySource::None => (String::new(), spec.names[i].clone()),
            _ => (String::new(), String::new()),
        })
        .collect();
    let peers: Vec<PeerFacts> = (0..n)
        .map(|i| PeerFacts {
            name: spec.names[i].clone(),
            index: i,
            ip: addrs[i].to_string(),
            id: keys[i].1.clone(),
        })
        .collect();
    (0..n)
        .map(|i| Facts {
            peer: peers[i].clone(),
            secret: spec.keys.peers[i].secret.clone(),
            key_hex: keys[i].0.clone(),
            neighbours: spec.neighbours[i].iter().map(|&j| peers[j].clone()).collect(),
            peers: peers.clone(),
            ports: spec.profile.ports.clone(),
            plan: spec.plan.clone(),
            run_id: run_id.to_string(),
        })
        .collect()
}

/// Writes the profile's files for one peer into its data folder, makes its sync and fault folders
/// (with a neutral clock file), and hands the data folder to the daemon's uid.
pub fn write_peer_dir(profile: &Profile, dir: &PeerDir, facts: &Facts) -> anyhow::Result<()> {
    // The two folders themselves are the orchestrator's; everything in them goes through handles
    // that never follow a symlink (record::beneath), as it does once the peer runs.
    std::fs::create_dir_all(&dir.root)?;
    std::fs::create_dir_all(&dir.faults)?;
    let data = dir.data()?;
    data.create_dir_all(&dir.sync_rel)?;
    dir.fault_files()?
        .write_new(FAKETIME_FILE, faketime_spec(0, None).as_bytes())?;
    for f in &profile.files {
        let text = render(&f.template, facts).map_err(|e| anyhow::anyhow!("rendering {}: {e}", f.path))?;
        if let Some(parent) = Path::new(&f.path).parent() {
            data.create_dir_all(parent)?;
        }
        // Created with its mode (less the umask), then set exactly: a key is never world-readable.
        data.create_new(&f.path, f.mode)?.write_all(text.as_bytes())?;
        data.set_mode(&f.path, f.mode)?;
    }
    data.chown_tree("")?;
    Ok(())
}

/// Talks to running daemons the way their profile says.
#[derive(Clone)]
pub struct Daemon {
    pub engine: Engine,
    pub http: reqwest::Client,
    pub profile: Arc<Profile>,
}

impl Daemon {
    pub fn new(engine: Engine, profile: Arc<Profile>) -> Daemon {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .expect("http client");
        Daemon { engine, http, profile }
    }

    /// Sends a profile's HTTP call to a peer; returns the status and the body.
    pub async fn call(&self, ip: Ipv4Addr, call: &HttpCall, facts: &Facts) -> anyhow::Result<(u16, String)> {
        let path = render(&call.path, facts).map_err(anyhow::Error::msg)?;
        let url = format!("http://{ip}:{}{path}", call.port);
        let method = reqwest::Method::from_bytes(call.method.as_bytes())?;
        let mut req = self.http.request(method, &url);
        for (k, v) in &call.headers {
            req = req.header(k, render(v, facts).map_err(anyhow::Error::msg)?);
        }
        if let Some(body) = &call.body {
            let body = render(body, facts).map_err(anyhow::Error::msg)?;
            if !call.headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")) {
                req = req.header("content-type", "application/json");
            }
            req = req.body(body);
        }
        let resp = req.send().await.with_context(|| format!("{} {url}", call.method))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.unwrap_or_default()))
    }

    /// Runs a profile's exec command in a peer (as the daemon's user when the profile names one).
    pub async fn exec(&self, peer: &Peer, cmd: &[String], facts: &Facts) -> anyhow::Result<crate::docker::ExecOutput> {
        let cmd: Vec<String> = cmd
            .iter()
            .map(|c| render(c, facts))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let user = self.profile.user.map_or_else(String::new, |(u, g)| format!("{u}:{g}"));
        Ok(self.engine.exec(&peer.container, &user, &args).await?)
    }

    fn status_ok(call: &HttpCall, status: u16) -> bool {
        call.status.map_or((200..300).contains(&status), |s| s == status)
    }

    /// One readiness probe: `Ok(true)` ready, `Ok(false)` not yet (refused, wrong answer).
    pub async fn ready(&self, peer: &Peer, facts: &Facts) -> bool {
        match &self.profile.ready {
            Probe::Http(call) => match self.call(peer.ip, call, facts).await {
                Ok((status, body)) if Self::status_ok(call, status) => match (&call.pointer, &call.equals) {
                    (Some(ptr), Some(want)) => {
                        let want = render(want, facts).unwrap_or_default();
                        pointed(&body, ptr).is_some_and(|got| got == want)
                    }
                    (Some(ptr), None) => pointed(&body, ptr).is_some(),
                    _ => true,
                },
                _ => false,
            },
            Probe::Tcp(port) => {
                tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect((peer.ip, *port)))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            Probe::Exec(cmd) => self.exec(peer, cmd, facts).await.is_ok_and(|o| o.exit_code == 0),
        }
    }

    /// Polls every peer's probe until all pass; never a fixed sleep. A peer whose container exited
    /// fails at once, with its last log lines.
    pub async fn wait_ready(
        &self,
        peers: &[Peer],
        facts: &[Facts],
        timeout: Duration,
        mut progress: impl FnMut(usize, usize),
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut ready = vec![false; peers.len()];
        loop {
            let pending: Vec<usize> = (0..peers.len()).filter(|&i| !ready[i]).collect();
            let probes = pending.iter().map(|&i| self.ready(&peers[i], &facts[i]));
            for (&i, ok) in pending.iter().zip(futures_util::future::join_all(probes).await) {
                ready[i] = ok;
                if !ok && !self.engine.is_running(&peers[i].container).await.unwrap_or(true) {
                    let log = self.engine.logs(&peers[i].container).await.unwrap_or_default();
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
                        peers[i].name,
                        tail.join("\n")
                    );
                }
            }
            let n = ready.iter().filter(|r| **r).count();
            progress(n, peers.len());
            if n == peers.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let missing: Vec<&str> = peers
                    .iter()
                    .zip(&ready)
                    .filter(|(_, r)| !**r)
                    .map(|(p, _)| p.name.as_str())
                    .collect();
                bail!(
                    "peers not ready after {}s by the profile `{}`'s `ready` probe: {} (see their logs in the run folder)",
                    timeout.as_secs(),
                    self.profile.name,
                    missing.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reads every peer's identity when the profile says they are read after start, and puts them
    /// into every peer's facts (`peer.id`, `peers[*].id`, `neighbours[*].id`).
    pub async fn read_identities(&self, peers: &[Peer], facts: &mut [Facts]) -> anyhow::Result<()> {
        let reads = peers.iter().zip(facts.iter()).map(|(p, f)| self.identity(p, f));
        let ids: Vec<String> = futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        for f in facts.iter_mut() {
            f.peer.id = ids[f.peer.index].clone();
            for p in f.peers.iter_mut().chain(f.neighbours.iter_mut()) {
                p.id = ids[p.index].clone();
            }
        }
        Ok(())
    }

    async fn identity(&self, peer: &Peer, facts: &Facts) -> anyhow::Result<String> {
        let id = match &self.profile.identity {
            IdentitySource::Http(call) => {
                let (status, body) = self.call(peer.ip, call, facts).await?;
                if !Self::status_ok(call, status) {
                    bail!("reading {}'s identity: HTTP {status}: {}", peer.name, clip(&body));
                }
                let ptr = call.pointer.as_deref().unwrap_or("");
                pointed(&body, ptr)
                    .with_context(|| format!("{}'s identity: no `{ptr}` in {}", peer.name, clip(&body)))?
            }
            IdentitySource::Exec(cmd) => {
                let out = self.exec(peer, cmd, facts).await?;
                if out.exit_code != 0 {
                    bail!(
                        "reading {}'s identity: exit {}: {}",
                        peer.name,
                        out.exit_code,
                        clip(&out.stderr)
                    );
                }
                out.stdout.trim().to_string()
            }
            IdentitySource::HostEd25519 | IdentitySource::None => facts.peer.id.clone(),
        };
        if id.is_empty() {
            bail!("{}'s identity is empty", peer.name);
        }
        Ok(id)
    }

    /// Runs the profile's introductions on one peer, in order; any failure names the step and the
    /// daemon's answer.
    pub async fn introduce(&self, peer: &Peer, facts: &Facts) -> anyhow::Result<()> {
        for (k, action) in self.profile.introduce.iter().enumerate() {
            match action {
                crate::profile::Action::Http(call) => {
                    let (status, body) = self.call(peer.ip, call, facts).await?;
                    if !Self::status_ok(call, status) {
                        bail!(
                            "introduction step {} on {} ({} {}): HTTP {status}: {}",
                            k + 1,
                            peer.name,
                            call.method,
                            call.path,
                            clip(&body)
                        );
                    }
                }
                crate::profile::Action::Exec(cmd) => {
                    let out = self.exec(peer, cmd, facts).await?;
                    if out.exit_code != 0 {
                        bail!(
                            "introduction step {} on {} (exec): exit {}: {}",
                            k + 1,
                            peer.name,
                            out.exit_code,
                            clip(&out.stderr)
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The daemon's own wall clock (ms since the epoch), when its profile has a status call for it.
    pub async fn wall_clock_ms(&self, peer: &Peer, facts: &Facts) -> Option<i64> {
        let status = self.profile.status.as_ref()?;
        let ptr = status.wall_clock_ms.as_deref()?;
        let (code, body) = self.call(peer.ip, &status.http, facts).await.ok()?;
        if !Self::status_ok(&status.http, code) {
            return None;
        }
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()?
            .pointer(ptr)?
            .as_i64()
    }

    /// The daemon's answer listing the proofs of misbehaviour it holds, when its profile says
    /// where (`evidence`); `None` when it has no such list or did not answer.
    pub async fn evidence(&self, peer: &Peer, facts: &Facts) -> Option<String> {
        let probe = self.profile.evidence.as_ref()?;
        match self.call(peer.ip, &probe.http, facts).await {
            Ok((code, body)) if Self::status_ok(&probe.http, code) => Some(body),
            Ok((code, _)) => {
                tracing::warn!("evidence of {}: HTTP {code}", peer.name);
                None
            }
            Err(e) => {
                tracing::warn!("evidence of {}: {e:#}", peer.name);
                None
            }
        }
    }
}

/// The value at a JSON pointer of a JSON text, as a string (strings unquoted).
fn pointed(body: &str, ptr: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    match v.pointer(ptr)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pointers_read_strings_and_numbers() {
        assert_eq!(pointed(r#"{"myID":"ABC-DEF"}"#, "/myID").as_deref(), Some("ABC-DEF"));
        assert_eq!(pointed(r#"{"a":{"b":3}}"#, "/a/b").as_deref(), Some("3"));
        assert_eq!(pointed(r#"{"a":null}"#, "/a"), None);
        assert_eq!(pointed("not json", "/a"), None);
    }
}
