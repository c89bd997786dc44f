//! Checks across steps: things each step alone cannot see that would break a run. Step names must
//! be unique (they name faults in the fault journal), and a peer takes one process fault (kill,
//! stop, pause) at a time: a kill of a paused peer, or a second kill, leaves the nemesis restarting
//! or thawing a container that another fault still holds.

use std::collections::HashMap;
use std::time::Duration;

use super::{Fault, FaultStep, Selector};

/// Where (line, column) and what, for the resolver to turn into a located error.
pub type Conflict = ((u64, u64), String);

pub fn check(steps: &[FaultStep], n: usize) -> Result<(), Conflict> {
    unique_names(steps)?;
    one_process_fault_at_a_time(steps, n)
}

fn unique_names(steps: &[FaultStep]) -> Result<(), Conflict> {
    let mut seen: HashMap<&str, (u64, u64)> = HashMap::new();
    for s in steps {
        if let Some(first) = seen.insert(&s.name, s.at_line) {
            return Err((
                s.at_line,
                format!(
                    "step name `{}` is used twice (first at line {}); allowed: a different name for each step (unnamed steps are step-<n>)",
                    s.name, first.0
                ),
            ));
        }
    }
    Ok(())
}

/// A process fault's window and the peers it may touch (`None`: a seeded selector, any peer).
struct Window<'a> {
    step: &'a FaultStep,
    start: Duration,
    end: Option<Duration>,
    peers: Option<Vec<usize>>,
}

fn one_process_fault_at_a_time(steps: &[FaultStep], n: usize) -> Result<(), Conflict> {
    let mut windows: Vec<Window> = steps
        .iter()
        .filter_map(|s| match &s.fault {
            Fault::Process(p) => Some(Window {
                step: s,
                start: s.at.0,
                end: s.duration.map(|d| s.at.0.saturating_add(d.0)),
                peers: match &p.peers {
                    Selector::All => Some((0..n).collect()),
                    Selector::Peers(v) => Some(v.clone()),
                    _ => None,
                },
            }),
            _ => None,
        })
        .collect();
    windows.sort_by_key(|w| w.start);
    let mut active: Vec<&Window> = Vec::new();
    for w in &windows {
        active.retain(|a| a.end.is_none_or(|e| e > w.start));
        for a in &active {
            let shared = match (&a.peers, &w.peers) {
                (Some(x), Some(y)) => x.iter().find(|p| y.contains(p)).map(|p| format!("peer p{}", p + 1)),
                _ => Some("a peer its seeded selector may draw".to_string()),
            };
            if let Some(on) = shared {
                let until = a.end.map_or("the final heal".to_string(), |e| {
                    humantime::format_duration(Duration::from_secs(e.as_secs())).to_string()
                });
                return Err((
                    w.step.at_line,
                    format!(
                        "step `{}` ({}) would overlap step `{}` ({} until {until}) on {on}; allowed: one process fault (kill, stop, pause) at a time on a peer",
                        w.step.name,
                        w.step.fault.kind(),
                        a.step.name,
                        a.step.fault.kind()
                    ),
                ));
            }
        }
        active.push(w);
    }
    Ok(())
}
