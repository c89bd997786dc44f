//! Invariant 6, no loop: once the trees agree, nothing but the periodic digest exchange moves, and no
//! file changes more often than it was written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::causal::{PathOrder, parse_conflict_name};
use super::{Check, Verdict};
use crate::monitor::Observation;

/// One scrape of one peer's counters: series key (`name{label="v",...}`, labels sorted) -> value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub t_ms: u64,
    pub peer: String,
    pub values: BTreeMap<String, f64>,
}

/// The metric name of a series key.
pub fn key_name(key: &str) -> &str {
    key.split('{').next().unwrap_or(key)
}

/// A label's value in a series key.
pub fn key_label<'a>(key: &'a str, label: &str) -> Option<&'a str> {
    let inner = key.split_once('{')?.1.strip_suffix('}')?;
    let pat = format!("{label}=\"");
    let mut rest = inner;
    loop {
        let at = rest.find(&pat)?;
        if at == 0 || rest.as_bytes()[at - 1] == b',' {
            let v = &rest[at + pat.len()..];
            return v.find('"').map(|end| &v[..end]);
        }
        rest = &rest[at + pat.len()..];
    }
}

/// Counters that must stay flat after quiescence: protocol messages and bytes except the periodic
/// `summary` exchange, versions applied and local changes.
pub fn must_stay_flat(key: &str) -> bool {
    let name = key_name(key);
    let traffic = ["messages_sent", "messages_received", "bytes_sent", "bytes_received"]
        .iter()
        .any(|m| name == format!("syncpeer_{m}_total"));
    (traffic && key_label(key, "kind") != Some("summary"))
        || name == "syncpeer_versions_applied_total"
        || name == "syncpeer_local_changes_total"
}

/// Changes the nemesis made to peers' files itself (disk faults: a corrupted or truncated file, then
/// the peer's repair), per path: each damage allows two more visible changes than operations on every
/// peer (the damaged content may spread before it is repaired; `no-corruption` judges the content).
pub fn disk_damage(history: &[crate::history::Record]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in history {
        if let crate::history::Event::FaultStarted { kind, detail, .. } = &r.event
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

/// `quiesced_at`: when the trees last became equal (the last `converged` record); `counters`: scrapes
/// from then on; `min_window_ms`: the final window. Per peer, the counters of the last scrape are
/// compared with those of the latest scrape at least `min_window_ms` earlier (and after quiescence):
/// the run waits for them to settle before stopping (see [`crate::scraper::settled`]), so trailing
/// index exchanges right after the trees agree are not mistaken for a loop; a loop never settles.
pub fn no_loop(
    order: &BTreeMap<String, PathOrder>,
    observations: &[Observation],
    damage: &BTreeMap<String, usize>,
    counters: &[Counters],
    quiesced_at: Option<u64>,
    min_window_ms: u64,
) -> Check {
    let mut problems = Vec::new();
    let mut unknowns = Vec::new();

    // More visible versions of a path at a peer than operations on it: something re-applies versions.
    let mut changes: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for o in observations {
        *changes.entry((o.peer.as_str(), o.path.as_str())).or_default() += 1;
    }
    for ((peer, path), n) in &changes {
        let allowed = match order.get(*path) {
            Some(o) => o.ops.len(),
            None if parse_conflict_name(path).is_some() => 1,
            None => 0,
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
            for c in counters.iter().filter(|c| c.t_ms >= q) {
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
                for (key, after) in &last.values {
                    if !must_stay_flat(key) {
                        continue;
                    }
                    let before = first.values.get(key).copied().unwrap_or(0.0);
                    if *after > before {
                        problems.push(json!({
                            "peer": peer, "series": key,
                            "from_ms": first.t_ms, "to_ms": last.t_ms,
                            "expected": before, "found": after,
                        }));
                    }
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
            format!("counters flat for {watched} ms after quiescence; no path changed more often than written"),
        )
    };
    Check {
        name: "no-loop".into(),
        verdict,
        summary,
        evidence: json!({
            "quiesced_at_ms": quiesced_at,
            "problems": problems.iter().take(50).collect::<Vec<_>>(),
            "problem_count": problems.len(),
            "undecided": unknowns,
        }),
    }
}
