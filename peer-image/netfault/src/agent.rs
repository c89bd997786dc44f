//! The acting side of the CLI: install, remove and report faults, keeping `state.json` true.
//!
//! Every fault verb has its undo next to it: [`install`] / [`teardown`]; `clear` is the sum of
//! the teardowns plus a sweep of our chains and stray daemons; `restore` is clear-then-install
//! of every recorded spec (after a container restart, rules and daemons are gone but the state
//! file under `/run` survives in the container's filesystem).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use netfault::rules::{self, CHAIN_IN, CHAIN_OUT, Rule};
use netfault::spec::{EngineChoice, FaultSpec, Target};
use netfault::state::{ActiveFault, Engine, State};
use netfault::tc::{self, TcClass};

use crate::engine::{Counters, unix_ms};
use crate::{probe, sys};

pub struct Agent {
    pub dir: PathBuf,
    pub iptables: Option<String>,
}

fn counters_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.counters.json"))
}

fn read_counters(dir: &Path, id: &str) -> Option<Counters> {
    serde_json::from_slice(&fs::read(counters_path(dir, id)).ok()?).ok()
}

impl Agent {
    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn load(&self) -> Result<State> {
        match fs::read(self.state_path()) {
            Ok(b) => serde_json::from_slice(&b).context("state.json is corrupt"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).context("cannot read state.json"),
        }
    }

    fn save(&self, st: &State) -> Result<()> {
        sys::write_atomic(&self.state_path(), &serde_json::to_vec_pretty(st)?)
    }

    fn iptables_for(&self, st: &mut State) -> Result<String> {
        if let Some(b) = &self.iptables {
            st.iptables = Some(b.clone());
        }
        if st.iptables.is_none() {
            st.iptables = Some(probe::choose_iptables(None)?);
        }
        Ok(st.iptables.clone().unwrap_or_default())
    }

    /// `netfault apply`: install one fault (replacing a fault with the same id).
    pub fn apply(&self, spec: FaultSpec) -> Result<Value> {
        let _lock = sys::StateLock::take(&self.dir)?;
        let mut st = self.load()?;
        let ipt = self.iptables_for(&mut st)?;
        if let Some(old) = st.get(&spec.id).cloned() {
            st.faults.retain(|f| f.spec.id != spec.id);
            teardown(&ipt, &old, &st);
            self.save(&st)?;
        }
        let fault = self.install(&ipt, &st, spec)?;
        let out = describe(&fault, &ipt);
        st.faults.push(fault);
        self.save(&st)?;
        Ok(out)
    }

    /// Install `spec` given what else is installed; on failure, undo what was done.
    fn install(&self, ipt: &str, st: &State, spec: FaultSpec) -> Result<ActiveFault> {
        let engine = choose_engine(&spec)?;
        let mut fault = ActiveFault {
            spec,
            engine,
            queue: None,
            mark_slot: None,
            pid: None,
            rules: vec![],
            tc: vec![],
            applied_unix_ms: unix_ms(),
        };
        match self.install_steps(ipt, st, &mut fault) {
            Ok(()) => Ok(fault),
            Err(e) => {
                teardown(ipt, &fault, st);
                Err(e.context(format!("cannot apply fault {:?}", fault.spec.id)))
            }
        }
    }

    fn install_steps(&self, ipt: &str, st: &State, fault: &mut ActiveFault) -> Result<()> {
        let spec = fault.spec.clone();
        let egress_tc = spec.direction.egress() && (spec.rate_kbit.is_some() || fault.engine == Engine::Netem);
        let ingress_tc = spec.direction.ingress() && spec.rate_kbit.is_some();
        if egress_tc || ingress_tc {
            for dev in devices(&spec)? {
                if egress_tc {
                    let c = TcClass {
                        minor: st.free_minor(&dev),
                        dev: dev.clone(),
                        ingress_of: None,
                    };
                    if !st.dev_in_use(&c.dev, &spec.id) {
                        sys::run("tc", &tc::root_add(&c.dev)).with_context(|| {
                            format!(
                                "{} already has a root qdisc netfault did not create; refusing \
                                 to replace it",
                                c.dev
                            )
                        })?;
                    }
                    fault.tc.push(c.clone());
                    for cmd in tc::class_add(&spec, &c, fault.engine == Engine::Netem) {
                        sys::run("tc", &cmd)?;
                    }
                }
                if ingress_tc {
                    let ifb = tc::ifb_name(&dev);
                    let c = TcClass {
                        minor: st.free_minor(&ifb),
                        dev: ifb.clone(),
                        ingress_of: Some(dev.clone()),
                    };
                    if !st.dev_in_use(&ifb, &spec.id) {
                        setup_ingress(&dev)?;
                    }
                    fault.tc.push(c.clone());
                    for cmd in tc::class_add(&spec, &c, false) {
                        sys::run("tc", &cmd)?;
                    }
                }
            }
        }
        if fault.engine != Engine::Userspace {
            return Ok(());
        }
        let slot = st
            .free_mark_slot()
            .with_context(|| format!("at most {} packet faults can be active at once", rules::MARK_BITS))?;
        let mark = rules::mark_bit(slot);
        let queue = st.free_queue();
        fault.queue = Some(queue);
        fault.mark_slot = Some(slot);
        fault.pid = Some(self.spawn_engine(&spec, queue, mark)?);
        let rules = rules::fault_rules(&spec, queue, mark);
        let chains: BTreeSet<&str> = rules.iter().map(|r| r.chain.as_str()).collect();
        for chain in chains {
            ensure_chain(ipt, chain)?;
        }
        for r in rules {
            fault.rules.push(r.clone());
            sys::run(ipt, &r.append())?;
        }
        Ok(())
    }

    /// Start a detached engine daemon and wait until it has bound its queue.
    fn spawn_engine(&self, spec: &FaultSpec, queue: u16, mark: u32) -> Result<u32> {
        let _ = fs::remove_file(counters_path(&self.dir, &spec.id));
        let args = [
            "--state-dir".to_string(),
            self.dir.to_string_lossy().into_owned(),
            "daemon".into(),
            "--queue".into(),
            queue.to_string(),
            "--mark".into(),
            mark.to_string(),
            "--spec".into(),
            serde_json::to_string(spec)?,
        ];
        let log = self.dir.join(format!("{}.log", spec.id));
        sys::spawn_daemon(&args, &log, "engine daemon", |pid| {
            read_counters(&self.dir, &spec.id).is_some_and(|c| c.ready && c.pid == pid)
        })
    }

    /// `netfault clear`: remove one fault, or everything netfault owns.
    pub fn clear(&self, id: Option<&str>) -> Result<Value> {
        let _lock = sys::StateLock::take(&self.dir)?;
        let mut st = self.load()?;
        let ipt = self.iptables_for(&mut st)?;
        let (gone, keep): (Vec<_>, Vec<_>) = st.faults.drain(..).partition(|f| id.is_none_or(|id| f.spec.id == id));
        st.faults = keep;
        for f in &gone {
            teardown(&ipt, f, &st);
            let _ = fs::remove_file(counters_path(&self.dir, &f.spec.id));
        }
        if id.is_none() {
            // A total heal does not trust the state file alone.
            for chain in [CHAIN_OUT, CHAIN_IN] {
                remove_chain(&ipt, chain);
            }
            for pid in stray_engines(&self.dir) {
                sys::stop_engine(pid, Duration::from_secs(2));
            }
        }
        self.save(&st)?;
        // A total heal takes every man in the middle away too (their last tallies are kept).
        let mitm = if id.is_none() {
            self.mitm_clear_all()
        } else {
            Default::default()
        };
        Ok(json!({
            "cleared": gone.iter().map(|f| f.spec.id.clone()).collect::<Vec<_>>(),
            "remaining": st.faults.iter().map(|f| f.spec.id.clone()).collect::<Vec<_>>(),
            "mitm": mitm,
        }))
    }

    /// `netfault restore`: re-install every recorded fault (after a container restart).
    pub fn restore(&self) -> Result<Value> {
        let _lock = sys::StateLock::take(&self.dir)?;
        let mut st = self.load()?;
        let ipt = self.iptables_for(&mut st)?;
        let specs: Vec<FaultSpec> = st.faults.iter().map(|f| f.spec.clone()).collect();
        let old = std::mem::take(&mut st.faults);
        for f in &old {
            teardown(&ipt, f, &st);
        }
        for chain in [CHAIN_OUT, CHAIN_IN] {
            remove_chain(&ipt, chain);
        }
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for spec in specs {
            let id = spec.id.clone();
            match self.install(&ipt, &st, spec) {
                Ok(f) => {
                    out.push(describe(&f, &ipt));
                    st.faults.push(f);
                }
                Err(e) => errors.push(json!({"id": id, "error": format!("{e:#}")})),
            }
        }
        self.save(&st)?;
        if !errors.is_empty() {
            bail!("restore failed for {}", serde_json::to_string(&errors)?);
        }
        Ok(json!({ "restored": out }))
    }

    /// `netfault status`: what is installed and what each engine has done.
    pub fn status(&self) -> Result<Value> {
        let st = self.load()?;
        // Ask every live engine for fresh counters, and wait (briefly) until they are written.
        let asked = unix_ms();
        for f in &st.faults {
            if let Some(pid) = f.pid.filter(|p| sys::is_engine_alive(*p)) {
                unsafe { libc::kill(pid as i32, libc::SIGUSR1) };
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_millis(500)
                    && read_counters(&self.dir, &f.spec.id).is_none_or(|c| c.updated_unix_ms < asked)
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        let ipt = match &st.iptables {
            Some(b) => Some(b.clone()),
            None => probe::choose_iptables(self.iptables.as_deref()).ok(),
        };
        let faults: Vec<Value> = st
            .faults
            .iter()
            .map(|f| {
                let rules_present = ipt
                    .as_deref()
                    .is_some_and(|b| f.rules.iter().all(|r| sys::run(b, &r.check()).is_ok()));
                let alive = f.pid.is_some_and(sys::is_engine_alive);
                let tc_present = f.tc.iter().all(|c| {
                    let classid = format!("1:{:x}", c.minor);
                    sys::run_str("tc", &["class", "show", "dev", &c.dev, "classid", &classid])
                        .is_ok_and(|out| out.contains(&classid))
                });
                let healthy = tc_present
                    && match f.engine {
                        Engine::Userspace => alive && rules_present,
                        _ => true,
                    };
                let mut d = describe(f, ipt.as_deref().unwrap_or("iptables"));
                d["engine_alive"] = json!(alive);
                d["rules_present"] = json!(rules_present);
                d["tc_present"] = json!(tc_present);
                d["healthy"] = json!(healthy);
                d["counters"] = json!(read_counters(&self.dir, &f.spec.id));
                d
            })
            .collect();
        Ok(json!({
            "state_dir": self.dir,
            "iptables": ipt,
            "faults": faults,
        }))
    }
}

fn choose_engine(spec: &FaultSpec) -> Result<Engine> {
    if !spec.needs_packet_engine() && spec.engine != EngineChoice::Userspace {
        return Ok(Engine::None);
    }
    Ok(match spec.engine {
        EngineChoice::Userspace => Engine::Userspace,
        EngineChoice::Netem => {
            if !probe::netem_available() {
                bail!("engine \"netem\" was forced but this kernel has no sch_netem");
            }
            Engine::Netem
        }
        EngineChoice::Auto => {
            if spec.netem_cannot().is_none() && probe::netem_available() {
                Engine::Netem
            } else {
                Engine::Userspace
            }
        }
    })
}

/// Interfaces a tc-based fault goes on.
fn devices(spec: &FaultSpec) -> Result<Vec<String>> {
    if let Some(d) = &spec.dev {
        return Ok(vec![d.clone()]);
    }
    let devs: BTreeSet<String> = match &spec.target {
        Target::All => sys::non_loopback_interfaces().into_iter().collect(),
        Target::Hosts(h) => h.iter().map(|ip| sys::route_dev(*ip)).collect::<Result<_>>()?,
    };
    if devs.is_empty() {
        bail!("no interface to shape");
    }
    Ok(devs.into_iter().collect())
}

/// Create the ifb and ingress qdisc for shaping what `dev` receives. A leftover ifb of ours (a
/// crash) is replaced; an ingress qdisc someone else made is not.
fn setup_ingress(dev: &str) -> Result<()> {
    let ifb = tc::ifb_name(dev);
    let _ = sys::run_str("ip", &["link", "del", &ifb]);
    let steps = tc::ingress_setup(dev);
    for (i, (prog, args)) in steps.iter().enumerate() {
        if let Err(e) = sys::run(prog, args) {
            let _ = sys::run_str("ip", &["link", "del", &ifb]);
            if i == 2 {
                return Err(e.context(format!(
                    "{dev} already has an ingress qdisc netfault did not create; refusing to \
                     replace it"
                )));
            }
            return Err(e.context("cannot set up ingress shaping (is the ifb module available?)"));
        }
    }
    Ok(())
}

/// Create our chain (with its duplicate bypass) and the jump into it, if missing.
fn ensure_chain(ipt: &str, chain: &str) -> Result<()> {
    let exists = sys::run_str(ipt, &["-w", "-t", rules::TABLE, "-S", chain]).is_ok();
    if !exists {
        sys::run_str(ipt, &["-w", "-t", rules::TABLE, "-N", chain])?;
        sys::run(ipt, &rules::dup_bypass(chain).append())?;
    }
    if sys::run(ipt, &rules::jump(chain).check()).is_err() {
        sys::run_str(
            ipt,
            &[
                "-w",
                "-t",
                rules::TABLE,
                "-I",
                rules::parent_of(chain),
                "1",
                "-j",
                chain,
            ],
        )?;
    }
    Ok(())
}

/// Remove the jumps to our chain and the chain itself; nothing else.
fn remove_chain(ipt: &str, chain: &str) {
    while sys::run(ipt, &rules::jump(chain).delete()).is_ok() {}
    let _ = sys::run_str(ipt, &["-w", "-t", rules::TABLE, "-F", chain]);
    let _ = sys::run_str(ipt, &["-w", "-t", rules::TABLE, "-X", chain]);
}

/// Undo one fault, given the state without it. Best effort: keeps going past errors, so a
/// half-installed or half-vanished fault (container restart) is still cleaned up.
fn teardown(ipt: &str, f: &ActiveFault, rest: &State) {
    // Rules first, so no new packet is queued to an engine about to stop.
    for r in &f.rules {
        if let Err(e) = sys::run(ipt, &r.delete()) {
            tracing::debug!("{e:#}");
        }
    }
    if let Some(pid) = f.pid {
        sys::stop_engine(pid, Duration::from_secs(2));
    }
    for c in &f.tc {
        for cmd in tc::class_del(c) {
            if let Err(e) = sys::run("tc", &cmd) {
                tracing::debug!("{e:#}");
            }
        }
        if !rest.dev_in_use(&c.dev, &f.spec.id) {
            match &c.ingress_of {
                Some(real) => {
                    for (prog, args) in tc::ingress_teardown(real) {
                        let _ = sys::run(prog, &args);
                    }
                }
                None => {
                    let _ = sys::run("tc", &tc::root_del(&c.dev));
                }
            }
        }
    }
    for chain in [CHAIN_OUT, CHAIN_IN] {
        let used = rest
            .faults
            .iter()
            .flat_map(|g| &g.rules)
            .any(|r: &Rule| r.chain == chain);
        if !used {
            remove_chain(ipt, chain);
        }
    }
}

/// Engine daemons started with this state directory (found through /proc).
fn stray_engines(dir: &Path) -> Vec<u32> {
    let me = std::process::id();
    let dir = dir.to_string_lossy().to_string();
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| *pid != me)
                .filter(|pid| {
                    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                        let args: Vec<String> = c
                            .split(|b| *b == 0)
                            .map(|a| String::from_utf8_lossy(a).into_owned())
                            .collect();
                        args.iter().any(|a| a == "daemon")
                            && args.iter().any(|a| a == &dir)
                            && args.first().is_some_and(|a| a.contains("netfault"))
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The JSON describing an installed fault, including the literal commands it installed.
fn describe(f: &ActiveFault, ipt: &str) -> Value {
    json!({
        "id": f.spec.id,
        "engine": f.engine,
        "queue": f.queue,
        "mark": f.mark_slot.map(|s| format!("{:#x}", rules::mark_bit(s))),
        "pid": f.pid,
        "iptables": f.rules.iter().map(|r| format!("{ipt} {}", r.append().join(" "))).collect::<Vec<_>>(),
        "tc": f.tc,
        "spec": f.spec,
        "applied_unix_ms": f.applied_unix_ms,
    })
}
