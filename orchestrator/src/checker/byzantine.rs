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
//!
//! `offender-quarantined`: the same liars, timed: every honest neighbour must have convicted the
//! liar (both signed statements kept as evidence) within `expect.quarantine_within` of its first
//! forked write.
//!
//! `criterion-flood`: judged when the plan sets `expect.criteria.flood_slowdown` (issue 14: 2). Honest
//! propagation under a flood (writes by honest peers made while a `flood` liar was on, to honest
//! peers, no other fault touching them) must keep its p99 within that many times the p99 of the calm
//! writes (no fault at all), plus [`FLOOD_SLACK_MS`]: "within 2x of the unloaded run", measured side
//! by side in one run.
//!
//! `sybils-refused`: judged only when a liar ran `sybil` (one container, many made-up identities).
//! Every attempt of a made-up identity on an honest peer's sync port must have been refused: the
//! liar's own count of answered attempts stays 0 while its refused ones rise. That the versions those
//! identities signed were never taken is `no-poisoning`'s business (they are content no write
//! produced); the honest peers' `untrusted` rejections are the evidence they were offered.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::causal::Op;
use super::figures::{Arrival, quantile};
use super::{Check, PeerFinal, Verdict};
use crate::profile::Role;
use crate::record::history::{Event, Outcome, Record};
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
            "{seen} contents seen on honest peers, all written; they rejected {} bad hashes, {} bad signatures, {} versions by untrusted authors, {} lying timestamps, {} lying counters, {} requests over the rate limit, {} from quarantined peers",
            total("bad_hash"),
            total("bad_signature"),
            total("untrusted"),
            total("bad_timestamp"),
            total("bad_counter"),
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
    last_scrapes(counters, |peer| !liars.contains_key(peer))
}

/// The last scrape of each peer that `keep` accepts.
fn last_scrapes(counters: &[Counters], keep: impl Fn(&str) -> bool) -> BTreeMap<&str, &Counters> {
    let mut last: BTreeMap<&str, &Counters> = BTreeMap::new();
    for c in counters {
        if keep(&c.peer) && last.get(c.peer.as_str()).is_none_or(|l| l.t_ms <= c.t_ms) {
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

/// The Byzantine behaviour that floods its neighbours with requests.
pub const FLOOD: &str = "flood";
/// Added to the limit: a p99 of a few ms doubles from one scheduling hiccup of a loaded test host.
pub const FLOOD_SLACK_MS: u64 = 100;
/// Fewer pairs than this on either side and the comparison says nothing (`unknown`).
pub const FLOOD_MIN_PAIRS: usize = 10;

/// `criterion-flood`, judged when the plan sets `expect.criteria.flood_slowdown` (`slowdown`): a run
/// with no `flood` liar is `unknown` (nothing was measured).
pub fn flood_tolerated(history: &[Record], arrivals: &[Arrival], slowdown: f64) -> Check {
    let liars = liars(history);
    let flooders: Vec<&str> = liars
        .iter()
        .filter(|(_, b)| b.contains(FLOOD))
        .map(|(p, _)| p.as_str())
        .collect();
    let windows = super::figures::fault_windows_marked(history, |kind, detail| {
        kind == "byzantine"
            && detail["behaviours"]
                .as_array()
                .is_some_and(|b| b.iter().any(|x| x.as_str() == Some(FLOOD)))
    });
    let (mut flooded, mut calm) = (Vec::new(), Vec::new());
    for a in arrivals {
        let Some(at) = a.at_ms else { continue };
        if liars.contains_key(a.writer) || liars.contains_key(a.peer) {
            continue;
        }
        let touching: Vec<bool> = windows
            .iter()
            .filter(|&&(from, to, _)| from <= at && a.from_ms <= to)
            .map(|&(_, _, flood)| flood)
            .collect();
        let during_flood = windows
            .iter()
            .any(|&(from, to, flood)| flood && from <= a.from_ms && a.from_ms <= to);
        let latency = at.saturating_sub(a.from_ms);
        if touching.is_empty() {
            calm.push(latency);
        } else if during_flood && touching.iter().all(|f| *f) {
            flooded.push(latency);
        }
    }
    flooded.sort_unstable();
    calm.sort_unstable();
    let (flood_p99, calm_p99) = (quantile(&flooded, 0.99), quantile(&calm, 0.99));
    let limit = calm_p99.map(|c| (c as f64 * slowdown) as u64 + FLOOD_SLACK_MS);
    let names = if flooders.is_empty() {
        "nobody".to_string()
    } else {
        flooders.join(", ")
    };
    let (verdict, summary) = match (flood_p99, calm_p99, limit) {
        _ if flooders.is_empty() => (
            Verdict::Unknown,
            "the plan sets `flood_slowdown`, but no peer was told to `flood`".to_string(),
        ),
        (Some(f), Some(c), Some(limit)) if flooded.len() >= FLOOD_MIN_PAIRS && calm.len() >= FLOOD_MIN_PAIRS => {
            let ratio = f as f64 / c.max(1) as f64;
            let said = format!(
                "while {names} flooded, honest propagation p99 was {f} ms, {ratio:.1}x the {c} ms with no fault (limit {slowdown}x + {FLOOD_SLACK_MS} ms = {limit} ms)"
            );
            (if f <= limit { Verdict::Valid } else { Verdict::Invalid }, said)
        }
        _ => (
            Verdict::Unknown,
            format!(
                "too few honest (write, peer) pairs to compare: {} during the flood, {} with no fault (at least {FLOOD_MIN_PAIRS} each)",
                flooded.len(),
                calm.len()
            ),
        ),
    };
    Check {
        name: "criterion-flood".into(),
        rests_on: String::new(),
        verdict,
        summary,
        evidence: json!({
            "flooders": flooders,
            "flooded": {"pairs": flooded.len(), "p50_ms": quantile(&flooded, 0.5), "p99_ms": flood_p99},
            "calm": {"pairs": calm.len(), "p50_ms": quantile(&calm, 0.5), "p99_ms": calm_p99},
            "limit_ms": limit,
            "ratio": match (flood_p99, calm_p99) {
                (Some(f), Some(c)) => Some(f as f64 / c.max(1) as f64),
                _ => None,
            },
        }),
    }
}

/// The Byzantine behaviour that presents many identities.
pub const SYBIL: &str = "sybil";

/// `sybils-refused`: `None` unless some peer ran `sybil`. From each such liar's last scrape: its
/// `sybil_requests{outcome="answered"}` must be 0 and `refused` above 0 (no attempt counted, or no
/// such series at all, is `unknown`: the attack cannot be said to have been refused).
pub fn sybils_refused(history: &[Record], counters: &[Counters]) -> Option<Check> {
    let liars = liars(history);
    let sybils: Vec<&String> = liars
        .iter()
        .filter(|(_, b)| b.contains(SYBIL))
        .map(|(p, _)| p)
        .collect();
    if sybils.is_empty() {
        return None;
    }
    let last = last_scrapes(counters, |peer| sybils.iter().any(|s| s.as_str() == peer));
    let mut attempts: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
    let (mut answered, mut refused, mut uncounted) = (Vec::new(), 0.0, Vec::new());
    for liar in &sybils {
        let outcome = |o: &str| -> Option<f64> {
            let c = last.get(liar.as_str())?;
            let mut found = None;
            for (k, v) in &c.values {
                if key_name(k) == Role::SybilRequests.as_str() && key_label(k, "outcome") == Some(o) {
                    *found.get_or_insert(0.0) += v;
                }
            }
            found
        };
        let (a, r) = (outcome("answered").unwrap_or(0.0), outcome("refused").unwrap_or(0.0));
        if a > 0.0 {
            answered.push(liar.as_str());
        }
        if a + r == 0.0 {
            uncounted.push(liar.as_str());
        }
        refused += r;
        attempts.insert(liar, json!({"refused": r, "answered": a}));
    }
    let untrusted: BTreeMap<&str, f64> = last_honest_scrapes(counters, &liars)
        .into_iter()
        .map(|(peer, c)| {
            let n = c
                .values
                .iter()
                .filter(|(k, _)| {
                    key_name(k) == Role::Rejections.as_str() && key_label(k, "reason") == Some("untrusted")
                })
                .map(|(_, v)| v)
                .sum();
            (peer, n)
        })
        .collect();
    let names = sybils.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let (verdict, summary) = if !answered.is_empty() {
        (
            Verdict::Invalid,
            format!(
                "identities made up by {} were answered by an honest peer (nobody trusted them): {}",
                names,
                answered.join(", ")
            ),
        )
    } else if !uncounted.is_empty() {
        (
            Verdict::Unknown,
            format!(
                "{} ran sybil, but no attempt of a made-up identity was counted (the profile maps no `sybil_requests`, or the liar was never scraped while it knocked)",
                uncounted.join(", ")
            ),
        )
    } else {
        (
            Verdict::Valid,
            format!("all {refused} attempts of identities made up by {names} were refused; none was answered"),
        )
    };
    Some(Check {
        name: "sybils-refused".into(),
        rests_on: String::new(),
        verdict,
        summary,
        evidence: json!({"attempts_per_liar": attempts, "untrusted_rejections_per_honest_peer": untrusted}),
    })
}

/// The Byzantine behaviours that leave a proof: two statements signed under one counter.
const PROVABLE: [&str; 2] = [EQUIVOCATE, "fork"];

/// When each provable liar first wrote while lying (run ms): the first moment an honest peer could
/// be shown two statements.
fn first_forked_writes(history: &[Record]) -> BTreeMap<String, u64> {
    let mut lying: BTreeMap<String, BTreeSet<String>> = BTreeMap::new(); // peer -> fault ids on
    let mut first: BTreeMap<String, u64> = BTreeMap::new();
    for r in history {
        match &r.event {
            Event::FaultStarted { id, kind, detail, .. } if kind == "byzantine" => {
                let provable = detail["behaviours"].as_array().is_some_and(|b| {
                    b.iter()
                        .filter_map(|v| v.as_str())
                        .any(|line| line.split_whitespace().next().is_some_and(|n| PROVABLE.contains(&n)))
                });
                if provable {
                    for p in detail["peers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str())
                    {
                        lying.entry(p.to_string()).or_default().insert(id.clone());
                    }
                }
            }
            Event::FaultStopped { id, .. } => {
                for ids in lying.values_mut() {
                    ids.remove(id);
                }
            }
            Event::Write { peer, outcome, .. }
                if *outcome == Outcome::Ok && lying.get(peer).is_some_and(|ids| !ids.is_empty()) =>
            {
                first.entry(peer.clone()).or_insert(r.t_ms);
            }
            _ => {}
        }
    }
    first
}

/// Wall-clock ms since the epoch at run time 0, from the first record's `wall`.
fn run_epoch_ms(history: &[Record]) -> Option<i64> {
    let r = history.first()?;
    let wall = humantime::parse_rfc3339_weak(&r.wall).ok()?;
    let ms = wall.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
    Some(ms - r.t_ms as i64)
}

/// `offender-quarantined`: `None` unless a liar signed two histories and wrote while doing so.
/// Every honest neighbour of it must hold a conviction (its daemon's `evidence` list, read when the
/// run ended) naming it, with both statements kept, made within `expect.quarantine_within` of the
/// liar's first forked write; the conviction time is the peer's own clock (plans that skew clocks
/// shift it). A daemon that lists no evidence is `unknown`.
pub fn offender_quarantined(plan: &crate::plan::Plan, history: &[Record], peers: &[PeerFinal]) -> Option<Check> {
    let first = first_forked_writes(history);
    if first.is_empty() {
        return None;
    }
    let liars = liars(history);
    let bound = plan.expect.quarantine_within.ms();
    let epoch = run_epoch_ms(history);
    let final_of = |name: &str| peers.iter().find(|p| p.name == name);
    let mut per_liar = serde_json::Map::new();
    let (mut late, mut unproven, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    for (liar, &from_ms) in &first {
        let Some(i) = plan.peers.iter().position(|p| p == liar) else {
            continue;
        };
        let mut rows = serde_json::Map::new();
        for j in plan.topology.neighbours(i) {
            let name = &plan.peers[j];
            if liars.contains_key(name) {
                continue;
            }
            let Some(convictions) = final_of(name).and_then(|f| f.convictions.as_ref()) else {
                unknown.push(name.clone());
                rows.insert(name.clone(), json!("no evidence list"));
                continue;
            };
            let held: Vec<_> = convictions.iter().filter(|c| &c.offender == liar).collect();
            let at = held.iter().filter_map(|c| c.detected_ms).min();
            let statements = held.iter().map(|c| c.statements).max().unwrap_or(0);
            let after_ms = at.zip(epoch).map(|(at, e)| at - e - from_ms as i64);
            rows.insert(
                name.clone(),
                json!({"convictions": held.len(), "statements": statements, "after_ms": after_ms}),
            );
            if held.is_empty() || statements < 2 {
                unproven.push(format!("{name} (of {liar})"));
            } else if after_ms.is_none_or(|a| a > bound as i64) {
                late.push(format!(
                    "{name} (of {liar}, {})",
                    after_ms.map_or("when: unknown".into(), |a| format!("{:.1} s", a as f64 / 1000.0))
                ));
            }
        }
        per_liar.insert(
            liar.clone(),
            json!({"first_forked_write_ms": from_ms, "honest_neighbours": rows}),
        );
    }
    let secs = bound as f64 / 1000.0;
    let (verdict, summary) = if !unproven.is_empty() {
        (
            Verdict::Invalid,
            format!(
                "honest neighbours hold no conviction with both statements: {}",
                unproven.join(", ")
            ),
        )
    } else if !late.is_empty() {
        (
            Verdict::Invalid,
            format!(
                "convicted later than {secs} s after the first forked write: {}",
                late.join(", ")
            ),
        )
    } else if !unknown.is_empty() {
        (
            Verdict::Unknown,
            format!(
                "the daemon lists no evidence (its profile has no `evidence`, or it did not answer): {}",
                unknown.join(", ")
            ),
        )
    } else {
        (
            Verdict::Valid,
            format!(
                "every honest neighbour of {} convicted it, both statements kept, within {secs} s of its first forked write",
                first.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    };
    Some(Check {
        name: "offender-quarantined".into(),
        rests_on: String::new(),
        verdict,
        summary,
        evidence: json!({"within_ms": bound, "liars": per_liar}),
    })
}
