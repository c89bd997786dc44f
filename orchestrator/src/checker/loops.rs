//! Invariant 6, no loop: once the trees agree, nothing but the periodic background exchange moves, and
//! no file changes more often than it was written. Counters are read by [`Role`]: the daemon's own
//! (its profile maps them), or, for a daemon without metrics, Docker's network counters.

use std::collections::BTreeMap;

use serde_json::json;

use super::causal::PathOrder;
use super::{Check, Verdict};
use crate::profile::{Conventions, Role};
use crate::record::observations::Observation;
use crate::record::samples::{Counters, key_name};

/// Roles that must stay flat after quiescence: protocol messages and bytes (not the background
/// exchange), versions applied and local changes.
pub const FLAT_ROLES: [Role; 6] = [
    Role::MessagesSent,
    Role::MessagesReceived,
    Role::BytesSent,
    Role::BytesReceived,
    Role::VersionsApplied,
    Role::LocalChanges,
];

/// Whether a series key is of a role that must stay flat after quiescence.
pub fn must_stay_flat(key: &str) -> bool {
    FLAT_ROLES.iter().any(|r| key_name(key) == r.as_str())
}

/// For a daemon without its own counters: what Docker may see a quiet peer send, in bytes per second
/// (keep-alives, pings, a background index exchange; a loop that moves files or versions sends more).
pub const IDLE_TX_BYTES_PER_S: f64 = 4096.0;

/// Whether a peer was quiet between two scrapes: its flat roles did not move, or, when it has none
/// (no metrics), Docker saw it send at most [`IDLE_TX_BYTES_PER_S`].
pub fn quiet_between(first: &Counters, last: &Counters) -> bool {
    quiet_problems(first, last).is_empty()
}

/// What moved between two scrapes of one peer that should not have: (series, before, after).
fn quiet_problems(first: &Counters, last: &Counters) -> Vec<(String, f64, f64)> {
    let own: Vec<(&String, &f64)> = last.values.iter().filter(|(k, _)| must_stay_flat(k)).collect();
    if !own.is_empty() {
        return own
            .into_iter()
            .filter_map(|(k, after)| {
                let before = first.values.get(k).copied().unwrap_or(0.0);
                (*after > before).then(|| (k.clone(), before, *after))
            })
            .collect();
    }
    let tx = Role::NetTxBytes.as_str();
    match (first.values.get(tx), last.values.get(tx)) {
        (Some(b), Some(a)) => {
            let secs = (last.t_ms.saturating_sub(first.t_ms) as f64 / 1000.0).max(0.001);
            if (a - b) / secs > IDLE_TX_BYTES_PER_S {
                vec![(format!("{tx} (more than {IDLE_TX_BYTES_PER_S} B/s)"), *b, *a)]
            } else {
                vec![]
            }
        }
        _ => vec![],
    }
}

/// What the counter half of `no-loop` rests on for these scrapes.
fn counters_basis(counters: &[Counters]) -> &'static str {
    if counters.iter().any(|c| c.values.keys().any(|k| must_stay_flat(k))) {
        "the daemon's own counters (its profile's roles)"
    } else if counters
        .iter()
        .any(|c| c.values.contains_key(Role::NetTxBytes.as_str()))
    {
        "Docker's network counters (the daemon has no metrics of its own)"
    } else {
        "no counters"
    }
}

/// Changes the nemesis made to peers' files itself (disk faults: a corrupted or truncated file, then
/// the peer's repair), per path: each damage allows two more visible changes than operations on every
/// peer (the damaged content may spread before it is repaired; `no-corruption` judges the content).
pub fn disk_damage(history: &[crate::record::history::Record]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in history {
        if let crate::record::history::Event::FaultStarted { kind, detail, .. } = &r.event
            && kind == "disk"
            && let Some(per_peer) = detail.as_object()
        {
            for d in per_peer.values() {
                if let Some(path) = d.get("path").and_then(|p| p.as_str()) {
                    *m.entry(path.to_string()).or_default() += 2;
                }
            }
        }
    }
    m
}

/// Seed 1.3 "metadata loops": touch and chmod change no content, so no version is due for them,
/// and none is visible in the trees if one is made anyway. Judged only when the run had metadata
/// operations: over all peers, the versions authored from local changes (the last scrape of
/// the `local_changes` role) must not outnumber the content writes that succeeded.
pub fn no_metadata_version(history: &[crate::record::history::Record], counters: &[Counters]) -> Option<Check> {
    use crate::record::history::{Event, Outcome};
    let (mut writes, mut metas) = (0u64, 0u64);
    for r in history {
        match &r.event {
            Event::Write {
                outcome: Outcome::Ok,
                peer,
                ..
            } if peer != super::WINDOW_START => writes += 1,
            Event::Meta {
                outcome: Outcome::Ok, ..
            } => metas += 1,
            _ => {}
        }
    }
    if metas == 0 {
        return None;
    }
    let mut last: BTreeMap<&str, &Counters> = BTreeMap::new();
    for c in counters {
        if last.get(c.peer.as_str()).is_none_or(|l| l.t_ms <= c.t_ms) {
            last.insert(&c.peer, c);
        }
    }
    let per_peer: BTreeMap<&str, f64> = last
        .iter()
        .map(|(p, c)| {
            let n = c
                .values
                .iter()
                .filter(|(k, _)| key_name(k) == Role::LocalChanges.as_str())
                .map(|(_, v)| *v)
                .sum();
            (*p, n)
        })
        .collect();
    let authored: f64 = per_peer.values().sum();
    let declared = last
        .values()
        .any(|c| c.values.keys().any(|k| key_name(k) == Role::LocalChanges.as_str()));
    let (verdict, summary) = if per_peer.is_empty() {
        (Verdict::Unknown, "no metrics scraped".to_string())
    } else if !declared {
        (
            Verdict::Unknown,
            "the daemon counts no versions authored (its profile maps no `local_changes` counter); a touch that became a version leaves no trace in the trees".to_string(),
        )
    } else if authored > writes as f64 {
        (
            Verdict::Invalid,
            format!(
                "{authored} versions authored for {writes} content writes (and {metas} touch/chmod operations): metadata became versions"
            ),
        )
    } else {
        (
            Verdict::Valid,
            format!(
                "{authored} versions authored for {writes} content writes; {metas} touch/chmod operations made none"
            ),
        )
    };
    Some(Check {
        name: "no-metadata-version".into(),
        rests_on: String::new(),
        verdict,
        summary,
        evidence: json!({
            "content_writes": writes,
            "metadata_ops": metas,
            "authored": authored,
            "authored_per_peer": per_peer,
        }),
    })
}

/// What the no-loop check needs to know about the run's counter watch.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    pub quiesced_at: Option<u64>,
    pub watched_until: Option<u64>,
    pub window_ms: u64,
}

/// `quiesced_at`: when the trees last became equal (the last `converged` record); `counters`: scrapes
/// from then on; `watched_until`: the last scrape the run's counter watch judged quiet (later scrapes,
/// such as the one taken as the scraper stops, are left out: the window judged is the one watched);
/// `min_window_ms`: the final window. Per peer, the counters of the last scrape are
/// compared with those of the latest scrape at least `min_window_ms` earlier (and after quiescence):
/// the run waits for them to settle before stopping (see [`crate::record::samples::settle_since`]), so trailing
/// index exchanges right after the trees agree are not mistaken for a loop; a loop never settles.
pub fn no_loop(
    order: &BTreeMap<String, PathOrder>,
    conv: &Conventions,
    observations: &[Observation],
    damage: &BTreeMap<String, usize>,
    counters: &[Counters],
    watch: Watch,
) -> Check {
    let Watch {
        quiesced_at,
        watched_until,
        window_ms: min_window_ms,
    } = watch;
    let until = watched_until.unwrap_or(u64::MAX);
    let mut problems = Vec::new();
    let mut unknowns = Vec::new();

    // More visible versions of a path at a peer than operations on it: something re-applies versions.
    // A version is content arriving at the path. The path being absent is not one: a daemon that
    // replaces a file by unlinking it and renaming the new one in (Syncthing) leaves it missing for
    // a millisecond or two, and the monitor's poll catches that by chance (docs/DAEMONS.md). A
    // delete-and-resurrect loop still shows, as the same content arriving again and again.
    let mut changes: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for o in observations.iter().filter(|o| o.hash.is_some()) {
        *changes.entry((o.peer.as_str(), o.path.as_str())).or_default() += 1;
    }
    for ((peer, path), n) in &changes {
        let allowed = match order.get(*path) {
            Some(o) => o.ops.len(),
            // A copy named after its content holds one version. A copy named only after a time and
            // a device (Syncthing: one-second resolution) is reused by every loser resolved within
            // that second: at most one per write to the original.
            None => match conv.conflict(path) {
                Some(c) if c.hash.is_some() => 1,
                Some(c) => order.get(c.origin.as_str()).map_or(1, |o| o.ops.len().max(1)),
                None => 0,
            },
        } + damage.get(*path).copied().unwrap_or(0);
        if *n > allowed && allowed > 0 {
            problems.push(json!({
                "peer": peer, "path": path,
                "expected": format!("at most {allowed} versions (operations on the path)"),
                "found": format!("{n} changes seen"),
            }));
        }
    }

    let mut watched = 0u64;
    match quiesced_at {
        None => unknowns.push(json!("the trees never agreed: no quiescent window to watch")),
        Some(q) => {
            let mut per_peer: BTreeMap<&str, Vec<&Counters>> = BTreeMap::new();
            for c in counters.iter().filter(|c| c.t_ms >= q && c.t_ms <= until) {
                per_peer.entry(&c.peer).or_default().push(c);
            }
            if per_peer.is_empty() {
                unknowns.push(json!("no metrics scraped after the trees agreed"));
            }
            for (peer, mut samples) in per_peer {
                samples.sort_by_key(|c| c.t_ms);
                let last = samples[samples.len() - 1];
                // The final window: from the latest scrape at least `min_window_ms` before the last.
                let Some(first) = samples.iter().rev().find(|c| c.t_ms + min_window_ms <= last.t_ms) else {
                    let window = last.t_ms - samples[0].t_ms;
                    unknowns.push(json!({"peer": peer, "watched_ms": window, "needed_ms": min_window_ms}));
                    continue;
                };
                watched = watched.max(last.t_ms - first.t_ms);
                for (key, before, after) in quiet_problems(first, last) {
                    problems.push(json!({
                        "peer": peer, "series": key,
                        "from_ms": first.t_ms, "to_ms": last.t_ms,
                        "expected": before, "found": after,
                    }));
                }
            }
        }
    }
    let (verdict, summary) = if !problems.is_empty() {
        (
            Verdict::Invalid,
            format!(
                "{} signs of a loop (counters moving after quiescence, or more versions than writes)",
                problems.len()
            ),
        )
    } else if !unknowns.is_empty() {
        (
            Verdict::Unknown,
            "counters could not be watched long enough after quiescence".to_string(),
        )
    } else {
        (
            Verdict::Valid,
            format!(
                "quiet for {watched} ms after quiescence by {}; no path changed more often than written",
                counters_basis(counters)
            ),
        )
    };
    Check {
        name: "no-loop".into(),
        rests_on: String::new(),
        verdict,
        summary,
        evidence: json!({
            "quiesced_at_ms": quiesced_at,
            "watched_until_ms": watched_until.filter(|&u| u != u64::MAX),
            "counters": counters_basis(counters),
            "problems": problems.iter().take(50).collect::<Vec<_>>(),
            "problem_count": problems.len(),
            "undecided": unknowns,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::FileOpKind;
    use crate::record::history::{Event, Outcome, Record};

    fn rec(event: Event) -> Record {
        Record {
            t_ms: 0,
            wall: String::new(),
            event,
        }
    }

    fn history(writes: u64, metas: u64) -> Vec<Record> {
        let mut h = Vec::new();
        for op in 0..writes {
            h.push(rec(Event::Write {
                op,
                peer: "p1".into(),
                kind: FileOpKind::Create,
                path: format!("f{op}"),
                size: 1,
                hash: Some("h".into()),
                base: None,
                outcome: Outcome::Ok,
            }));
        }
        for op in 0..metas {
            h.push(rec(Event::Meta {
                op: 100 + op,
                peer: "p2".into(),
                kind: FileOpKind::Touch,
                path: "f0".into(),
                outcome: Outcome::Ok,
            }));
        }
        h
    }

    fn authored(peer: &str, t_ms: u64, n: f64) -> Counters {
        Counters {
            t_ms,
            peer: peer.into(),
            values: BTreeMap::from([("local_changes".to_string(), n)]),
        }
    }

    #[test]
    fn metadata_operations_that_author_versions_are_caught() {
        assert!(
            no_metadata_version(&history(3, 0), &[]).is_none(),
            "only judged with metadata ops"
        );
        let fine = [
            authored("p1", 10, 1.0),
            authored("p1", 20, 3.0),
            authored("p2", 20, 0.0),
        ];
        let c = no_metadata_version(&history(3, 4), &fine).unwrap();
        assert_eq!(c.verdict, Verdict::Valid, "{}", c.summary);
        // p2 turned its touches into versions: 3 writes, 5 versions.
        let planted = [
            authored("p1", 20, 3.0),
            authored("p2", 10, 0.0),
            authored("p2", 30, 2.0),
        ];
        let c = no_metadata_version(&history(3, 4), &planted).unwrap();
        assert_eq!(c.verdict, Verdict::Invalid, "{}", c.summary);
        assert_eq!(c.evidence["authored_per_peer"]["p2"], 2.0);
        assert_eq!(
            no_metadata_version(&history(3, 4), &[]).unwrap().verdict,
            Verdict::Unknown
        );
    }
}
