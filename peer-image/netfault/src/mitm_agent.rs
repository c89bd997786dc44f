//! `netfault mitm start | stop | status`: puts a man in the middle on one link and takes it away
//! (see [`netfault::mitm`] for what it does to the streams, and `proxy` for the daemon).
//!
//! `start` spawns the proxy daemon, waits until it listens, installs its NAT and reset rules, then
//! closes the streams already open on the link (`ss -K`) so that they reconnect through the proxy;
//! `stop` removes the rules first (no new stream reaches a proxy about to go), then stops the
//! daemon, which judges its open streams, and returns the final tally. Each man in the middle is
//! kept in `<state>/mitm-<id>.json`, so `netfault clear` (everything) takes them away too.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use netfault::mitm::{MitmRule, MitmSpec, Tally, rules};

use crate::agent::Agent;
use crate::proxy::counters_path;
use crate::sys;

/// One installed man in the middle.
#[derive(Debug, Serialize, Deserialize)]
struct Installed {
    spec: MitmSpec,
    pid: u32,
    iptables: String,
    rules: Vec<MitmRule>,
}

fn installed_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("mitm-{id}.json"))
}

fn read_tally(dir: &Path, id: &str) -> Option<Tally> {
    serde_json::from_slice(&fs::read(counters_path(dir, id)).ok()?).ok()
}

fn is_proxy_alive(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let s = String::from_utf8_lossy(&c);
        s.contains("netfault") && s.contains("mitm-proxy")
    })
}

impl Agent {
    /// `netfault mitm start`: a man in the middle on the streams between this host and
    /// `spec.targets` (one with the same id is replaced).
    pub fn mitm_start(&self, spec: MitmSpec) -> Result<Value> {
        if spec.id.is_empty()
            || spec.id.len() > 32
            || !spec
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("`--id` must be 1..=32 characters of [A-Za-z0-9_-], got {:?}", spec.id);
        }
        if spec.targets.is_empty() {
            bail!("`--targets` names no address");
        }
        let _lock = sys::StateLock::take(&self.dir)?;
        if installed_path(&self.dir, &spec.id).exists() {
            self.mitm_teardown(&spec.id);
        }
        let ipt = crate::probe::choose_iptables(self.iptables.as_deref())?;
        let pid = self.spawn_proxy(&spec)?;
        let port = read_tally(&self.dir, &spec.id)
            .map(|t| t.listen_port)
            .unwrap_or_default();
        let mut done = Installed {
            spec: spec.clone(),
            pid,
            iptables: ipt.clone(),
            rules: vec![],
        };
        for r in rules(&spec, port) {
            if let Err(e) = sys::run(&ipt, &r.append()) {
                // Undo what was done: no half-installed man in the middle.
                for r in done.rules.iter().rev() {
                    let _ = sys::run(&ipt, &r.delete());
                }
                stop_proxy(pid);
                let _ = fs::remove_file(counters_path(&self.dir, &spec.id));
                return Err(e.context("cannot install the man in the middle's rules (nat REDIRECT and REJECT)"));
            }
            done.rules.push(r);
        }
        sys::write_atomic(&installed_path(&self.dir, &spec.id), &serde_json::to_vec_pretty(&done)?)?;
        // Streams already open would only meet the reset rules with their next packet, and a daemon
        // that keeps an idle stream (Syncthing's BEP) may send nothing for minutes: close them now
        // (`ss -K`, socket destroy; best effort, the rules still catch what it misses).
        let mut cut = 0;
        for t in &spec.targets {
            let filter = format!("( dport = :{p} or sport = :{p} )", p = spec.port);
            if let Ok(out) = sys::run_str("ss", &["-K", "-t", "-n", "dst", &t.to_string(), &filter]) {
                cut += out.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
            }
        }
        Ok(json!({
            "id": spec.id,
            "mode": spec.mode,
            "pid": pid,
            "listen_port": port,
            "streams_cut": cut,
            "iptables": done.rules.iter().map(|r| format!("{ipt} {}", r.append().join(" "))).collect::<Vec<_>>(),
        }))
    }

    /// `netfault mitm stop`: the man in the middle taken away; returns its final tally.
    pub fn mitm_stop(&self, id: &str) -> Result<Value> {
        let _lock = sys::StateLock::take(&self.dir)?;
        if !installed_path(&self.dir, id).exists() {
            bail!("no man in the middle with id {id:?}");
        }
        let tally = self.mitm_teardown(id);
        Ok(json!({ "id": id, "final": tally }))
    }

    /// `netfault mitm status`: every man in the middle and its tally so far.
    pub fn mitm_status(&self) -> Result<Value> {
        let mut out = Vec::new();
        for (id, inst) in self.mitm_installed() {
            if is_proxy_alive(inst.pid) {
                unsafe { libc::kill(inst.pid as i32, libc::SIGUSR1) };
                std::thread::sleep(Duration::from_millis(250));
            }
            out.push(json!({
                "id": id,
                "mode": inst.spec.mode,
                "alive": is_proxy_alive(inst.pid),
                "tally": read_tally(&self.dir, &id),
            }));
        }
        Ok(json!({ "mitm": out }))
    }

    /// Every man in the middle taken away (part of `netfault clear` without an id); their final
    /// tallies, by id.
    pub fn mitm_clear_all(&self) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        for (id, _) in self.mitm_installed() {
            out.insert(id.clone(), json!(self.mitm_teardown(&id)));
        }
        out
    }

    fn mitm_installed(&self) -> Vec<(String, Installed)> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return vec![];
        };
        dir.filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let id = name.strip_prefix("mitm-")?.strip_suffix(".json")?;
            if id.ends_with(".counters") {
                return None;
            }
            let inst: Installed = serde_json::from_slice(&fs::read(self.dir.join(&name)).ok()?).ok()?;
            Some((id.to_string(), inst))
        })
        .collect()
    }

    /// Rules out, daemon stopped (it writes its last tally), files removed; the last tally.
    fn mitm_teardown(&self, id: &str) -> Option<Tally> {
        let path = installed_path(&self.dir, id);
        if let Some(inst) = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Installed>(&b).ok())
        {
            for r in inst.rules.iter().rev() {
                if let Err(e) = sys::run(&inst.iptables, &r.delete()) {
                    tracing::debug!("{e:#}");
                }
            }
            stop_proxy(inst.pid);
        }
        let tally = read_tally(&self.dir, id);
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(counters_path(&self.dir, id));
        tally
    }

    /// Starts the proxy daemon detached and waits until it listens.
    fn spawn_proxy(&self, spec: &MitmSpec) -> Result<u32> {
        let _ = fs::remove_file(counters_path(&self.dir, &spec.id));
        let args = [
            "--state-dir".to_string(),
            self.dir.to_string_lossy().into_owned(),
            "mitm-proxy".into(),
            "--spec".into(),
            serde_json::to_string(spec)?,
        ];
        let log = self.dir.join(format!("mitm-{}.log", spec.id));
        sys::spawn_daemon(&args, &log, "proxy", |pid| {
            read_tally(&self.dir, &spec.id).is_some_and(|t| t.ready && t.pid == pid)
        })
    }
}

/// SIGTERM (the proxy judges its open streams and writes its tally), SIGKILL after 3 s.
fn stop_proxy(pid: u32) {
    if !is_proxy_alive(pid) {
        return;
    }
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
        if !is_proxy_alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}
