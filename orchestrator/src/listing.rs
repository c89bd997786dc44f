//! A plan's concrete schedule for people and tools (`chaos plan`): every workload operation and every
//! fault start and stop, with its time and its drawn targets, one per line, or as JSON. Nothing here
//! starts anything; it reads a resolved [`Plan`] and the [`Schedule`] the generator made from it (or,
//! for a soak, a part of the [`SoakSchedule`]: its first actions or one window).
//!
//! ```text
//!     1.000s  write  p1 create notes/from-p1.txt (4096 B) [op 1]
//!     4.000s  start  cut-p1#1 partition p1<->p2 p1<->p3 (drop)
//!     8.000s  stop   cut-p1#1
//! ```

use crate::generator::{Action, ConcreteFault, Schedule, ScheduledOp};
use crate::plan::{DiskAction, FileOpKind, LinkParams, LockAction, Plan};
use crate::soak::SoakSchedule;

/// The header and one line per scheduled operation.
pub fn lines(plan: &Plan, schedule: &Schedule) -> Vec<String> {
    let mut out = vec![format!(
        "# plan {}; {} operations over {}; then heal all, converge within {}",
        identity(plan),
        schedule.ops.len(),
        seconds(schedule.end_ms),
        plan.expect.converge_within
    )];
    out.extend(schedule.ops.iter().map(line));
    out
}

/// One scheduled operation as a line: its time, then what happens.
pub fn line(op: &ScheduledOp) -> String {
    let what = match &op.action {
        Action::Write(w) => {
            let size = match w.kind {
                FileOpKind::Create | FileOpKind::Modify => format!(" ({} B)", w.size),
                _ => String::new(),
            };
            format!(
                "write  {} {} {}{size} [op {}]",
                peer(w.peer),
                op_name(w.kind),
                w.path,
                w.id
            )
        }
        Action::FaultStart { id, fault, .. } => format!("start  {id} {}", fault_text(fault)),
        Action::FaultStop { id } => format!("stop   {id}"),
    };
    format!("{:>12}  {what}", seconds(op.at_ms))
}

/// A soak's header line: what the soak is, and which part of it follows (`window`, or the first
/// `limit` actions).
pub fn soak_header(plan: &Plan, soak: &SoakSchedule, window: Option<u64>, limit: usize) -> String {
    let s = plan.soak.as_ref().expect("a soak schedule comes from a soak plan");
    let workload = s.workload.as_ref().map_or("no workload".to_string(), |w| {
        format!("{} ops/s over {} files", w.rate, w.files)
    });
    let part = match window {
        Some(k) => {
            let (a, b) = soak.span(k);
            format!("window {k} ({} to {})", seconds(a), seconds(b))
        }
        None => format!("the first {limit} actions"),
    };
    format!(
        "# soak plan {}; {} in {} windows of {}; {workload}; {} faults in the mix, at most {} at once; {part}",
        identity(plan),
        s.duration,
        soak.windows(),
        s.window,
        s.faults.len(),
        s.max_concurrent,
    )
}

/// A soak's part as JSON: the plan's identity, the soak's shape and the actions shown (`ops` as the
/// generator makes them).
pub fn soak_json(plan: &Plan, soak: &SoakSchedule, window: Option<u64>, ops: &[ScheduledOp]) -> serde_json::Value {
    let s = plan.soak.as_ref().expect("a soak schedule comes from a soak plan");
    with_identity(
        plan,
        serde_json::json!({
            "soak": {
                "duration_ms": s.duration.ms(),
                "window_ms": s.window.ms(),
                "windows": soak.windows(),
            },
            "window": window,
            "span_ms": window.map(|k| soak.span(k)),
            "ops": ops,
        }),
    )
}

/// The same as JSON: the plan's identity and the schedule's operations as the generator holds them.
pub fn json(plan: &Plan, schedule: &Schedule) -> serde_json::Value {
    with_identity(
        plan,
        serde_json::json!({
            "end_ms": schedule.end_ms,
            "converge_within_ms": plan.expect.converge_within.ms(),
            "ops": schedule.ops,
        }),
    )
}

/// `rest` (a JSON map) after the plan's identity: name, source, seed, peers, overlay edges.
fn with_identity(plan: &Plan, rest: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({
        "plan": plan.name,
        "source": plan.source,
        "seed": plan.seed,
        "peers": plan.peers,
        "topology": plan.topology.edges.iter().map(|(a, b)| [peer(*a), peer(*b)]).collect::<Vec<_>>(),
    });
    if let (Some(map), serde_json::Value::Object(rest)) = (v.as_object_mut(), rest) {
        map.extend(rest);
    }
    v
}

/// `smoke, seed 42, 3 peers (p1..p3), 3 overlay edges`: which plan, drawn how.
fn identity(plan: &Plan) -> String {
    format!(
        "{}, seed {}, {} peers (p1..p{}), {} overlay edges",
        plan.name,
        plan.seed,
        plan.peers.len(),
        plan.peers.len(),
        plan.topology.edges.len()
    )
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

fn peer(i: usize) -> String {
    format!("p{}", i + 1)
}

fn peers(list: &[usize]) -> String {
    list.iter().map(|p| peer(*p)).collect::<Vec<_>>().join(",")
}

fn op_name(kind: FileOpKind) -> &'static str {
    match kind {
        FileOpKind::Create => "create",
        FileOpKind::Modify => "modify",
        FileOpKind::Delete => "delete",
        FileOpKind::Touch => "touch",
        FileOpKind::Chmod => "chmod",
    }
}

fn fault_text(fault: &ConcreteFault) -> String {
    match fault {
        ConcreteFault::Partition(cut) => {
            // A link cut both ways reads `a<->b`; a one-way cut `a->b` (a cannot reach b).
            let mut parts = Vec::new();
            for &(a, b) in &cut.links {
                if cut.links.contains(&(b, a)) {
                    if a < b {
                        parts.push(format!("{}<->{}", peer(a), peer(b)));
                    }
                } else {
                    parts.push(format!("{}->{}", peer(a), peer(b)));
                }
            }
            let port = cut.port.map(|p| format!(", tcp port {p}")).unwrap_or_default();
            let mode = match cut.mode {
                crate::partition::CutMode::Drop => "drop",
                crate::partition::CutMode::NewConnections => "new-connections",
            };
            format!("partition {} ({mode}{port})", parts.join(" "))
        }
        ConcreteFault::Link {
            peers: on,
            to,
            params,
            seed,
        } => format!(
            "link on {} to {}: {} (seed {seed})",
            peers(on),
            peers(to),
            link_text(params)
        ),
        ConcreteFault::Clock {
            peers: on,
            offset_ms,
            rate,
        } => match rate {
            Some(r) => format!("clock on {}: runs x{r}", peers(on)),
            None => format!("clock on {}: offset {offset_ms:+} ms", peers(on)),
        },
        ConcreteFault::Process { peers: on, action } => format!("{} {}", action.as_str(), peers(on)),
        ConcreteFault::Lock { peers: on, action } => match action {
            LockAction::Stale(path) => format!("lock on {}: stale lock for {path}", peers(on)),
            LockAction::Unwritable => format!("lock on {}: lock folder unwritable", peers(on)),
        },
        ConcreteFault::Disk {
            peers: on,
            action,
            seed,
        } => {
            let pick = |p: &Option<String>| p.clone().unwrap_or_else(|| format!("a seeded pick (seed {seed})"));
            match action {
                DiskAction::Corrupt(p) => format!("disk on {}: corrupt {}", peers(on), pick(p)),
                DiskAction::Truncate(p) => format!("disk on {}: truncate {}", peers(on), pick(p)),
                DiskAction::Fill => format!("disk on {}: fill", peers(on)),
            }
        }
        ConcreteFault::Byzantine { peers: on, behaviours } => {
            format!("byzantine {}: {}", peers(on), behaviours.join(", "))
        }
    }
}

fn link_text(p: &LinkParams) -> String {
    let mut parts = Vec::new();
    let mut add = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{name} {v}"));
        }
    };
    add("delay", p.delay.map(|d| d.to_string()));
    add("jitter", p.jitter.map(|d| d.to_string()));
    add("distribution", p.distribution.clone());
    add("loss", p.loss.map(|v| format!("{v}%")));
    add("loss_correlation", p.loss_correlation.map(|v| format!("{v}%")));
    add("corrupt", p.corrupt.map(|v| format!("{v}%")));
    add("duplicate", p.duplicate.map(|v| format!("{v}%")));
    add("reorder", p.reorder.map(|v| format!("{v}%")));
    add("reorder_delay", p.reorder_delay.map(|d| d.to_string()));
    add("rate", p.rate.clone());
    add("direction", p.direction.clone());
    add("engine", p.engine.clone());
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_operation_is_one_line_with_its_time_and_targets() {
        let plan = crate::plan::parse(
            "name: x\nseed: 5\npeers: 3\nworkload:\n  - {at: 1s, peer: p1, create: a.txt, size: 4KiB}\nsteps:\n  - {name: cut, at: 2s, duration: 3s, partition: {groups: [[p1], [p2, p3]]}}\n  - {at: 2500ms, duration: 1s, kill: {peers: p3}}\n",
            Path::new("x.yaml"),
            Path::new("../topologies"),
        )
        .unwrap();
        let s = crate::generator::generate(&plan);
        let l = lines(&plan, &s);
        assert_eq!(l.len(), 1 + s.ops.len());
        assert_eq!(l[1].trim(), "1.000s  write  p1 create a.txt (4096 B) [op 1]");
        assert_eq!(l[2].trim(), "2.000s  start  cut#1 partition p1<->p2 p1<->p3 (drop)");
        assert_eq!(l[3].trim(), "2.500s  start  step-2#1 kill p3");
        assert!(
            l[5].trim().ends_with("stop   cut#1") && l[5].contains("5.000s"),
            "{l:?}"
        );
        let j = json(&plan, &s);
        assert_eq!(j["ops"].as_array().unwrap().len(), s.ops.len());
        assert_eq!(j["seed"], 5);
    }
}
