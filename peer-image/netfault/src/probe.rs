//! `netfault probe`: which engines work in this network namespace.
//!
//! Qdiscs are tried on a throw-away `ifb` interface (created and deleted), so no real link is
//! touched. Without `ifb`, they are tried on `lo` only while `lo` has its default `noqueue`
//! root, and that qdisc is deleted again at once. NFQUEUE is tried by binding a queue number
//! over netlink and adding an NFQUEUE rule to a chain nothing jumps to.

use serde::Serialize;

use crate::sys;

/// iptables binaries tried in order: the distribution default first (so we share a backend with
/// the partition rules), then each backend explicitly (Debian bookworm ships both).
const IPTABLES_CANDIDATES: [&str; 3] = ["iptables", "iptables-nft", "iptables-legacy"];

const PROBE_DEV: &str = "nfprobe0";
const PROBE_CHAIN: &str = "SYFTCHAOS_PROBE";
const PROBE_QUEUE: u16 = 65_000;

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub netem: bool,
    pub htb: bool,
    pub tbf: bool,
    /// Needed for ingress bandwidth caps.
    pub ifb: bool,
    pub nfqueue: bool,
    pub iptables: Option<String>,
    pub iptables_version: Option<String>,
    /// The engine `"engine": "auto"` picks for a netem-compatible spec.
    pub auto_engine: &'static str,
    pub notes: Vec<String>,
}

/// Try a root qdisc of `kind` (with `args`) on the probe device; true if the kernel took it.
fn qdisc_works(dev: &str, kind: &str, args: &[&str], notes: &mut Vec<String>) -> bool {
    let mut a = vec!["qdisc", "add", "dev", dev, "root", "handle", "1:", kind];
    a.extend_from_slice(args);
    match sys::run_str("tc", &a) {
        Ok(_) => {
            let _ = sys::run_str("tc", &["qdisc", "del", "dev", dev, "root"]);
            true
        }
        Err(e) => {
            notes.push(format!("{kind}: {e:#}"));
            false
        }
    }
}

/// Run `f` with a scratch device to put qdiscs on; None when there is no safe one.
fn with_scratch_dev<T>(notes: &mut Vec<String>, f: impl FnOnce(&str, &mut Vec<String>) -> T) -> Option<T> {
    let _ = sys::run_str("ip", &["link", "del", PROBE_DEV]);
    if sys::run_str("ip", &["link", "add", PROBE_DEV, "type", "ifb"]).is_ok() {
        let r = f(PROBE_DEV, notes);
        let _ = sys::run_str("ip", &["link", "del", PROBE_DEV]);
        return Some(r);
    }
    let lo_root = sys::run_str("tc", &["qdisc", "show", "dev", "lo", "root"]).unwrap_or_default();
    if lo_root.contains("noqueue") {
        notes.push("ifb unavailable: probed qdiscs on lo (restored to noqueue)".into());
        return Some(f("lo", notes));
    }
    notes.push(format!(
        "no scratch interface and lo has a custom root qdisc: {lo_root}"
    ));
    None
}

/// Just the netem check, for `engine: auto` at apply time.
pub fn netem_available() -> bool {
    let mut notes = Vec::new();
    with_scratch_dev(&mut notes, |d, n| qdisc_works(d, "netem", &["delay", "1ms"], n)).unwrap_or(false)
}

fn nfqueue_works(iptables: Option<&str>, notes: &mut Vec<String>) -> bool {
    let bound = nfq::Queue::open().and_then(|mut q| {
        q.bind(PROBE_QUEUE)?;
        q.unbind(PROBE_QUEUE)
    });
    if let Err(e) = bound {
        notes.push(format!("nfqueue netlink bind: {e}"));
        return false;
    }
    let Some(ipt) = iptables else {
        notes.push("nfqueue: no working iptables".into());
        return false;
    };
    let ipt_run = |args: &[&str]| {
        let mut v = vec!["-w", "-t", "mangle"];
        v.extend_from_slice(args);
        sys::run_str(ipt, &v)
    };
    let _ = ipt_run(&["-F", PROBE_CHAIN]);
    let _ = ipt_run(&["-X", PROBE_CHAIN]);
    let q = PROBE_QUEUE.to_string();
    let ok = ipt_run(&["-N", PROBE_CHAIN])
        .and_then(|_| ipt_run(&["-A", PROBE_CHAIN, "-j", "NFQUEUE", "--queue-num", &q, "--queue-bypass"]));
    let _ = ipt_run(&["-F", PROBE_CHAIN]);
    let _ = ipt_run(&["-X", PROBE_CHAIN]);
    if let Err(e) = &ok {
        notes.push(format!("nfqueue rule: {e:#}"));
    }
    ok.is_ok()
}

pub fn probe(iptables: Option<&str>) -> Probe {
    let mut notes = Vec::new();
    let chosen = choose_iptables(iptables).ok();
    let version = chosen
        .as_deref()
        .and_then(|b| sys::run_str(b, &["--version"]).ok())
        .map(|s| s.trim().to_string());
    let (netem, htb, tbf, ifb) = with_scratch_dev(&mut notes, |d, n| {
        (
            qdisc_works(d, "netem", &["delay", "1ms"], n),
            qdisc_works(d, "htb", &[], n),
            qdisc_works(d, "tbf", &["rate", "1mbit", "burst", "32kb", "latency", "50ms"], n),
            d == PROBE_DEV,
        )
    })
    .unwrap_or((false, false, false, false));
    let nfqueue = nfqueue_works(chosen.as_deref(), &mut notes);
    Probe {
        netem,
        htb,
        tbf,
        ifb,
        nfqueue,
        iptables: chosen,
        iptables_version: version,
        auto_engine: if netem { "netem" } else { "userspace" },
        notes,
    }
}

/// The first iptables that can list the mangle table here.
pub fn choose_iptables(forced: Option<&str>) -> anyhow::Result<String> {
    let candidates: Vec<&str> = match forced {
        Some(f) => vec![f],
        None => IPTABLES_CANDIDATES.to_vec(),
    };
    let mut errs = Vec::new();
    for c in candidates {
        match sys::run_str(c, &["-w", "-t", "mangle", "-S", "OUTPUT"]) {
            Ok(_) => return Ok(c.to_string()),
            Err(e) => errs.push(format!("{e:#}")),
        }
    }
    anyhow::bail!("no working iptables: {}", errs.join("; "))
}
