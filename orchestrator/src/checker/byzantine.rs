//! `no-poisoning`: judged only in runs with a `byzantine` fault. The final-state checks already
//! require every peer (the liar included, once healed) to converge on written content; this one
//! looks at the whole run instead: no content that no write produced may ever be seen on an honest
//! peer, not even for one monitor tick. Its evidence is what the honest peers noticed: their
//! rejections by reason (`bad_hash`, `bad_signature`, `rate_limited`, `quarantined`) and whether
//! they held the liar in quarantine.
//!
//! `forks-detected`: judged only when a liar equivocated (signed two different statements under one
//! counter, shown to different neighbours). Two such statements are proof, and every honest peer must
//! end up holding it: found itself, or told by a neighbour and checked.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::causal::Op;
use super::{Check, Verdict};
use crate::profile::Role;
use crate::record::history::{Event, Record};
use crate::record::observations::Observation;
use crate::record::samples::{Counters, key_label, key_name};

/// Evidence lists are cut to this many items (the count is always given).
const MAX_ITEMS: usize = 50;

/// Peers that were Byzantine at some point, with the behaviours they were given (from the history).
pub fn liars(history: &[Record]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in history {
        if let Event::FaultStarted { kind, detail, .. } = &r.event
            && kind == "byzantine"
        {
            let names = |k: &str| -> Vec<String> {
                detail[k]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default()
            };
            for p in names("peers") {
                out.entry(p).or_default().extend(names("behaviours"));
            }
        }
    }
    out
}

/// `None` when the run had no Byzantine peer (the check does not apply).
pub fn no_poisoning(
    history: &[Record],
    ops: &[Op],
    observations: &[Observation],
    counters: &[Counters],
    damaged_paths: &BTreeMap<String, usize>,
) -> Option<Check> {
    let liars = liars(history);
    if liars.is_empty() {
        return None;
    }
    let written: BTreeSet<&str> = ops.iter().filter_map(|o| o.hash.as_deref()).collect();
    let mut problems = Vec::new();
    let mut seen = 0usize;
    for o in observations {
        let Some(hash) = o.hash.as_deref() else { continue };
        // A disk fault damages a file on purpose; `no-corruption` judges its repair.
        if liars.contains_key(&o.peer) || damaged_paths.contains_key(&o.path) {
            continue;
        }
        seen += 1;
        if !written.contains(hash) {
            problems.push(json!({
                "peer": o.peer,
                "path": o.path,
                "t_ms": o.t_ms,
                "found": &hash[..hash.len().min(12)],
                "expected": "content some write produced",
            }));
        }
    }
    let noticed = noticed(counters, &liars);
    let total = |reason: &str| -> f64 {
        noticed
            .values()
            .map(|v| v["rejections"][reason].as_f64().unwrap_or(0.0))
            .sum()
    };
    let ok = problems.is_empty();
    let summary = if ok {
        format!(
            "{seen} contents seen on honest peers, all written; they rejected {} bad hashes, {} bad signatures, {} requests over the rate limit, {} from quarantined peers",
            total("bad_hash"),
            total("bad_signature"),
            total("rate_limited"),
            total("quarantined"),
        )
    } else {
        format!(
            "{} times an honest peer held content no write produced (poisoned by a Byzantine peer)",
            problems.len()
        )
    };
    let n = problems.len();
    Some(Check {
        name: "no-poisoning".into(),
        rests_on: String::new(),
        verdict: if ok { Verdict::Valid } else { Verdict::Invalid },
        summary,
        evidence: json!({
            "liars": liars,
            "honest_peers": noticed,
            "problems": problems.into_iter().take(MAX_ITEMS).collect::<Vec<_>>(),
            "problem_count": n,
        }),
    })
}

/// Each honest peer's last scrape.
fn last_honest_scrapes<'a>(
    counters: &'a [Counters],
    liars: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<&'a str, &'a Counters> {
    let mut last: BTreeMap<&str, &Counters> = BTreeMap::new();
    for c in counters {
        if !liars.contains_key(&c.peer) && last.get(c.peer.as_str()).is_none_or(|l| l.t_ms <= c.t_ms) {
            last.insert(&c.peer, c);
        }
    }
    last
}

/// Per honest peer, from its last scrape: rejections by reason (cumulative) and how many peers
/// it held in quarantine then.
fn noticed(counters: &[Counters], liars: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, serde_json::Value> {
    last_honest_scrapes(counters, liars)
        .into_iter()
        .map(|(peer, c)| {
            let mut rejections: BTreeMap<&str, f64> = BTreeMap::new();
            for (k, v) in &c.values {
                if key_name(k) == Role::Rejections.as_str()
                    && let Some(reason) = key_label(k, "reason")
                {
                    *rejections.entry(reason).or_default() += v;
                }
            }
            let quarantined = c.values.get(Role::Quarantined.as_str()).copied().unwrap_or(0.0);
            (
                peer.to_string(),
                json!({"rejections": rejections, "quarantined_peers_at_end": quarantined}),
            )
        })
        .collect()
}

/// The Byzantine behaviour that signs two histories under one key.
pub const EQUIVOCATE: &str = "equivocate";

/// `forks-detected`: `None` unless some peer was told to `equivocate`. Every honest peer's proof
/// count (the profile's `equivocations` counter, its last scrape) must have risen; a daemon that
/// counts none is `unknown`. How fast the liar was quarantined is not judged here.
pub fn forks_detected(history: &[Record], counters: &[Counters]) -> Option<Check> {
    let liars = liars(history);
    let forkers: Vec<&String> = liars
        .iter()
        .filter(|(_, b)| b.iter().any(|line| line.split_whitespace().next() == Some(EQUIVOCATE)))
        .map(|(p, _)| p)
        .collect();
    if forkers.is_empty() {
        return None;
    }
    let proofs: BTreeMap<&str, Option<f64>> = last_honest_scrapes(counters, &liars)
        .iter()
        .map(|(peer, c)| (*peer, c.values.get(Role::Equivocations.as_str()).copied()))
        .collect();
    let missing: Vec<&str> = proofs.iter().filter(|(_, n)| n.is_none()).map(|(p, _)| *p).collect();
    let blind: Vec<&str> = proofs
        .iter()
        .filter(|(_, n)| n.is_some_and(|n| n < 1.0))
        .map(|(p, _)| *p)
        .collect();
    let (verdict, summary) = if proofs.is_empty() || !missing.is_empty() {
        (
            Verdict::Unknown,
            format!(
                "{} equivocated, but the daemon counts no proofs of equivocation (its profile maps no `equivocations` counter, or {} was never scraped)",
                forkers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                if missing.is_empty() {
                    "no honest peer".to_string()
                } else {
                    missing.join(", ")
                }
            ),
        )
    } else if !blind.is_empty() {
        (
            Verdict::Invalid,
            format!(
                "{} equivocated and {} of {} honest peers never proved it: {}",
                forkers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                blind.len(),
                proofs.len(),
                blind.join(", ")
            ),
        )
    } else {
        (
            Verdict::Valid,
            format!(
                "{} equivocated; all {} honest peers hold a proof (two statements signed under one counter)",
                forkers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                proofs.len()
            ),
        )
    };
    Some(Check {
        name: "forks-detected".into(),
        rests_on: String::new(),
        verdict,
        summary,
        evidence: json!({"equivocators": forkers, "proofs_per_honest_peer": proofs, "never_proved": blind}),
    })
}
