//! Checkers: pure functions from what a run recorded (history records, final trees, peer logs) to a
//! [`Check`] with a [`Verdict`] and its evidence. Verdicts compose worst-wins (Jepsen's habit):
//! `invalid` beats `unknown` beats `valid`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::record::history::{Event, Outcome, Record};
use crate::record::observations::Observation;
use crate::record::samples::Counters;
use crate::tree::Tree;

pub mod byzantine;
pub mod causal;
pub mod criteria;
pub mod figures;
pub mod growth;
pub mod loops;
pub mod mitm;
pub mod state;
pub mod took;

pub use figures::Figures;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Valid,
    Unknown,
    Invalid,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Unknown => "unknown",
            Verdict::Invalid => "invalid",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    /// One line a human reads first.
    pub summary: String,
    /// What the verdict was judged from (trees, observations, which counters), in words.
    #[serde(default)]
    pub rests_on: String,
    /// Machine-readable detail: which peer, which path, expected vs found.
    pub evidence: serde_json::Value,
}

/// Everything the checkers judge: the plan, the history read back from disk, every peer's final state.
pub struct Evidence<'a> {
    pub plan: &'a crate::plan::Plan,
    /// How the daemon names conflict copies and what in its log means a crash (its profile's).
    pub conventions: &'a crate::profile::Conventions,
    pub history: &'a [Record],
    pub peers: &'a [PeerFinal],
    /// Every change the convergence monitor saw in a peer's tree (`observations.jsonl`).
    pub observations: &'a [Observation],
    /// The same changes as the inotify watcher timed them (`sightings.jsonl`): propagation figures only.
    pub sightings: &'a [Observation],
    /// Metrics scrapes from the last time the trees became equal on (at least the last one per peer).
    pub counters: &'a [Counters],
    /// Every peer's container memory and task count over the run (for the growth check).
    pub resources: &'a BTreeMap<String, Vec<crate::record::samples::Resource>>,
}

/// The checks of a run and the figures they were computed from.
pub struct Judgement {
    pub checks: Vec<Check>,
    pub recoveries: Vec<Recovery>,
    pub figures: Figures,
}

/// The author of a soak window's starting content (`soak::baseline`): operations by it stand for what
/// every peer held when the window began, so the window's own operations are ordered after them. They
/// are nobody's writes: propagation, traffic and version counts leave them out.
pub const WINDOW_START: &str = "(window start)";

/// The final window over which `no-loop` wants the counters flat (two scrapes apart, and longer
/// than the peers' default anti-entropy interval).
pub const LOOP_WINDOW_MS: u64 = 2000;

/// How long a run waits, once the trees agree, for the counters to stay flat over [`LOOP_WINDOW_MS`]
/// before judging (trailing index exchanges settle within a few seconds; a loop never does).
pub const LOOP_SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(12);

/// How long a run keeps watching, past [`LOOP_SETTLE_LIMIT`], when the counters have not yet been
/// watched over a whole window: on a loaded host scrapes come late or time out, and giving up early
/// made verdicts `unknown` that an idle host judged `valid`.
pub const LOOP_WATCH_LIMIT: std::time::Duration = std::time::Duration::from_secs(90);

/// When the trees last became equal: the last `converged` record not followed by `diverged`.
pub fn quiesced_at(history: &[Record]) -> Option<u64> {
    let mut at = None;
    for r in history {
        match r.event {
            Event::Converged { .. } => at = Some(r.t_ms),
            Event::Diverged => at = None,
            _ => {}
        }
    }
    at
}

/// Until when the run watched the counters, if it saw them quiet over a whole window: the no-loop
/// check judges that window, not a later scrape.
pub fn counters_watched_until(history: &[Record]) -> Option<u64> {
    history.iter().rev().find_map(|r| match r.event {
        Event::CountersWatched { until_ms, quiet: true } => Some(until_ms),
        Event::CountersWatched { quiet: false, .. } => Some(u64::MAX),
        _ => None,
    })
}

/// Runs every checker over the evidence.
pub fn judge(e: &Evidence) -> Judgement {
    let recoveries = recoveries(e.history);
    let order = causal::order(e.history, e.observations);
    let ops = causal::ops(e.history);
    let mut checks = vec![
        converged(e.peers),
        state::right_final_state(&order, e.peers, e.conventions),
        state::no_lost_update(&order, e.peers, e.conventions),
        state::no_zombie(&order, e.peers),
        state::no_corruption(&order, e.peers),
        loops::no_loop(
            &order,
            e.conventions,
            e.observations,
            &loops::disk_damage(e.history),
            e.counters,
            loops::Watch {
                quiesced_at: quiesced_at(e.history),
                watched_until: counters_watched_until(e.history),
                window_ms: LOOP_WINDOW_MS,
            },
        ),
        recovered_in_time(&recoveries, e.plan.expect.converge_within.ms()),
        no_crash(e.peers, e.conventions),
    ];
    checks.extend(loops::no_metadata_version(e.history, e.counters));
    checks.extend(growth::no_leak(e.resources, &(&e.plan.expect.leak).into()));
    checks.extend(took::clock_applied(e.history));
    checks.extend(byzantine::forks_detected(e.history, e.counters));
    checks.extend(byzantine::sybils_refused(e.history, e.counters));
    checks.extend(mitm::mitm_refused(e.history));
    checks.extend(byzantine::offender_quarantined(e.plan, e.history, e.peers));
    checks.extend(byzantine::no_poisoning(
        e.history,
        &ops,
        e.observations,
        e.counters,
        &loops::disk_damage(e.history),
    ));
    let names: Vec<String> = e.peers.iter().map(|p| p.name.clone()).collect();
    let ops: Vec<causal::Op> = ops.into_iter().filter(|o| o.peer != WINDOW_START).collect();
    if let Some(slowdown) = e.plan.expect.criteria.flood_slowdown {
        let arrivals = figures::arrivals(&ops, &names, e.observations, e.sightings);
        checks.push(byzantine::flood_tolerated(e.history, &arrivals, slowdown));
    }
    for c in &mut checks {
        c.rests_on = rests_on(c, e.conventions);
    }
    let content_bytes = e
        .history
        .iter()
        .filter_map(|r| match &r.event {
            Event::Write {
                size,
                hash: Some(_),
                outcome: Outcome::Ok,
                peer,
                ..
            } if peer != WINDOW_START => Some(*size),
            _ => None,
        })
        .sum();
    let figures = Figures {
        propagation: figures::propagation(
            &ops,
            &names,
            e.observations,
            e.sightings,
            &figures::fault_windows(e.history),
        ),
        conflicts: figures::conflicts(&ops, e.peers, e.counters, e.conventions),
        traffic: figures::traffic(&ops, content_bytes, e.peers.len(), e.counters),
        steady: figures::steady_use(e.resources, quiesced_at(e.history)),
    };
    checks.extend(criteria::criteria(&e.plan.expect.criteria, &recoveries, &figures));
    Judgement {
        checks,
        recoveries,
        figures,
    }
}

/// What a check's verdict rests on, for the report: a verdict is only as good as its evidence.
fn rests_on(c: &Check, conv: &crate::profile::Conventions) -> String {
    let copies = if conv.conflicts.is_some() {
        "; conflict copies by the profile's pattern"
    } else {
        "; the profile names no conflict-copy pattern, so a kept loser counts as an unknown file"
    };
    match c.name.as_str() {
        "converged" => "every peer's final tree (the daemon's own files left out)".into(),
        "right-final-state" | "no-lost-update" => {
            format!("the final trees, the history's operations and the monitor's observations{copies}")
        }
        "no-zombie" | "no-corruption" => {
            "the final trees, the history's operations and the monitor's observations".into()
        }
        "no-loop" => format!(
            "versions seen per path (observations); after quiescence, {}",
            c.evidence["counters"].as_str().unwrap_or("the scraped counters")
        ),
        "no-metadata-version" => "the daemon's `local_changes` counter against the history's content writes".into(),
        "recovered-in-time" => "the monitor's converged/diverged transitions after each heal".into(),
        "no-crash" => "Docker's container state at the end and the profile's crash patterns in the logs".into(),
        "no-poisoning" => "the observations against the history's writes; rejection counters as extra evidence".into(),
        "forks-detected" => {
            "each honest peer's count of proofs of equivocation (its profile's `equivocations` counter), last scrape"
                .into()
        }
        "clock-applied" => {
            "the nemesis's reading of each peer's clock after each clock change (`clock-measured`)".into()
        }
        _ => String::new(),
    }
}

/// Worst-wins composition; no checks at all is `unknown`.
pub fn compose(checks: &[Check]) -> Verdict {
    checks.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Unknown)
}

/// What every peer looked like at the end of the run.
#[derive(Clone, Debug)]
pub struct PeerFinal {
    pub name: String,
    pub tree: Tree,
    pub alive: bool,
    pub log: String,
    /// The peer's identity (a public key, a device id), when known: a conflict copy whose name
    /// carries an author (the profile's `author` group) must carry a prefix of it.
    pub id: Option<String>,
    /// The proofs of misbehaviour it held at the end (`None`: its daemon lists none, or it did
    /// not answer).
    pub convictions: Option<Vec<crate::profile::Conviction>>,
}

/// Invariant 1: every peer holds the same tree (path, size, content hash).
pub fn converged(peers: &[PeerFinal]) -> Check {
    let digests: BTreeMap<&str, String> = peers.iter().map(|p| (p.name.as_str(), p.tree.digest())).collect();
    let mut groups: BTreeMap<&String, Vec<&str>> = BTreeMap::new();
    for (name, d) in &digests {
        groups.entry(d).or_default().push(name);
    }
    if groups.len() <= 1 {
        let files = peers.first().map_or(0, |p| p.tree.files.len());
        return Check {
            name: "converged".into(),
            rests_on: String::new(),
            verdict: Verdict::Valid,
            summary: format!("all {} peers hold the same {files} files", peers.len()),
            evidence: serde_json::json!({ "tree_hash": digests.values().next() }),
        };
    }
    // Per path, which peers disagree and how: the evidence a user needs to find the bug.
    let mut paths: BTreeMap<&String, BTreeMap<&str, String>> = BTreeMap::new();
    for p in peers {
        for (path, e) in &p.tree.files {
            paths.entry(path).or_default().insert(
                &p.name,
                format!("{} bytes, {}", e.size, &e.hash[..12.min(e.hash.len())]),
            );
        }
    }
    let mut differences = Vec::new();
    for (path, holders) in &paths {
        let versions: std::collections::BTreeSet<&String> = holders.values().collect();
        if holders.len() != peers.len() || versions.len() > 1 {
            let per_peer: BTreeMap<&str, &str> = peers
                .iter()
                .map(|p| {
                    (
                        p.name.as_str(),
                        holders.get(p.name.as_str()).map_or("missing", String::as_str),
                    )
                })
                .collect();
            differences.push(serde_json::json!({ "path": path, "peers": per_peer }));
        }
    }
    Check {
        name: "converged".into(),
        rests_on: String::new(),
        verdict: Verdict::Invalid,
        summary: format!(
            "peers hold {} different trees; {} paths differ",
            groups.len(),
            differences.len()
        ),
        evidence: serde_json::json!({
            "trees": groups.iter().map(|(d, names)| serde_json::json!({"tree_hash": d, "peers": names})).collect::<Vec<_>>(),
            "differences": differences.iter().take(50).collect::<Vec<_>>(),
        }),
    }
}

/// Invariant 8: every peer is alive at the end and no log shows a crash (the profile's patterns).
pub fn no_crash(peers: &[PeerFinal], conv: &crate::profile::Conventions) -> Check {
    let dead: Vec<&str> = peers.iter().filter(|p| !p.alive).map(|p| p.name.as_str()).collect();
    let panics: Vec<serde_json::Value> = peers
        .iter()
        .filter_map(|p| {
            conv.crash_line(&p.log)
                .map(|l| serde_json::json!({"peer": p.name, "line": l}))
        })
        .collect();
    let ok = dead.is_empty() && panics.is_empty();
    Check {
        name: "no-crash".into(),
        rests_on: String::new(),
        verdict: if ok { Verdict::Valid } else { Verdict::Invalid },
        summary: if ok {
            format!("all {} peers alive, no crash in their logs", peers.len())
        } else {
            format!("{} peers dead, {} logs with a crash", dead.len(), panics.len())
        },
        evidence: serde_json::json!({ "dead": dead, "panics": panics }),
    }
}

/// Time from one heal to the next moment every peer held the same tree.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recovery {
    pub fault: String,
    pub healed_at_ms: u64,
    /// `None`: the peers never converged after this heal.
    pub converged_after_ms: Option<u64>,
}

/// Recovery time per heal, from the history's fault-stop / heal and converged / diverged records.
/// A heal while the peers were already converged recovers in 0 ms.
pub fn recoveries(history: &[Record]) -> Vec<Recovery> {
    let mut heals = Vec::new();
    for r in history {
        match &r.event {
            Event::FaultStopped { id, .. } => heals.push((id.clone(), r.t_ms)),
            Event::HealedAll => heals.push(("heal-all".to_string(), r.t_ms)),
            _ => {}
        }
    }
    heals
        .into_iter()
        .map(|(fault, healed_at_ms)| {
            let mut state_at_heal = false;
            let mut after = None;
            for r in history {
                match (&r.event, r.t_ms <= healed_at_ms) {
                    (Event::Converged { .. }, true) => state_at_heal = true,
                    (Event::Diverged, true) => state_at_heal = false,
                    (Event::Converged { .. }, false) if after.is_none() => after = Some(r.t_ms - healed_at_ms),
                    _ => {}
                }
            }
            let converged_after_ms = if state_at_heal { Some(0) } else { after };
            Recovery {
                fault,
                healed_at_ms,
                converged_after_ms,
            }
        })
        .collect()
}

/// Invariant 7 as a check: after the final heal, peers converge within `limit_ms`.
pub fn recovered_in_time(recoveries: &[Recovery], limit_ms: u64) -> Check {
    let last = recoveries.iter().rev().find(|r| r.fault == "heal-all");
    let (verdict, summary) = match last {
        None => (Verdict::Unknown, "the run never reached its final heal".to_string()),
        Some(Recovery {
            converged_after_ms: Some(t),
            ..
        }) if *t <= limit_ms => (
            Verdict::Valid,
            format!("converged {t} ms after the final heal (limit {limit_ms} ms)"),
        ),
        Some(Recovery {
            converged_after_ms: Some(t),
            ..
        }) => (
            Verdict::Invalid,
            format!("converged only {t} ms after the final heal (limit {limit_ms} ms)"),
        ),
        Some(_) => (
            Verdict::Invalid,
            format!("never converged after the final heal (waited {limit_ms} ms)"),
        ),
    };
    Check {
        name: "recovered-in-time".into(),
        rests_on: String::new(),
        verdict,
        summary,
        evidence: serde_json::json!({ "limit_ms": limit_ms, "recoveries": recoveries }),
    }
}

#[cfg(test)]
mod tests;
