//! `mitm-refused`: judged only when a plan put a man in the middle on a link (`link: {mitm: ...}`,
//! issue 14). The proxy (`netfault mitm` in the peer's fault agent) altered, dropped or replayed one
//! message of every stream between the two ends that lived past its handshake, then counted what the
//! other side sent back. A daemon whose streams are authenticated (TLS) answers a forged message
//! with an alert and a close, a few dozen bytes; one that is not answers it. Every acted-on stream
//! must have been refused; none acted on at all is `unknown` (the attack never happened).
//!
//! The tallies come from the history: each man in the middle's `observed` event, recorded when it
//! was taken off (`{"mitm": {<peer>: <tally>}}`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Check, Verdict};
use crate::record::history::{Event, Record};

/// Answered streams listed at most (their count is always given).
const EVIDENCE_MAX: usize = 20;

/// The men in the middle a run started: fault id -> mode.
fn started(history: &[Record]) -> BTreeMap<String, String> {
    history
        .iter()
        .filter_map(|r| match &r.event {
            Event::FaultStarted { id, kind, detail, .. } if kind == "link" => {
                Some((id.clone(), detail["params"]["mitm"].as_str()?.to_string()))
            }
            _ => None,
        })
        .collect()
}

/// `None` unless a man in the middle was on some link.
pub fn mitm_refused(history: &[Record]) -> Option<Check> {
    let modes = started(history);
    if modes.is_empty() {
        return None;
    }
    // Tallies by fault id, then peer (a flapping step is started and observed once per flap).
    let mut tallies: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for r in history {
        if let Event::Observed { fault, detail } = &r.event
            && modes.contains_key(fault)
            && let Some(per_peer) = detail["mitm"].as_object()
        {
            for (peer, t) in per_peer {
                tallies
                    .entry(fault.clone())
                    .or_default()
                    .push((peer.clone(), t.clone()));
            }
        }
    }
    let sum = |k: &str| -> u64 {
        tallies
            .values()
            .flatten()
            .map(|(_, t)| t[k].as_u64().unwrap_or(0))
            .sum()
    };
    let (acted, refused, answered, streams) = (sum("acted"), sum("refused"), sum("answered"), sum("streams"));
    let unobserved: Vec<&String> = modes.keys().filter(|id| !tallies.contains_key(*id)).collect();
    let answered_streams: Vec<Value> = tallies
        .iter()
        .flat_map(|(id, per_peer)| {
            per_peer.iter().flat_map(move |(peer, t)| {
                t["recent"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|o| o["answered"] == true)
                    .map(move |o| json!({"fault": id, "proxy_on": peer, "stream": o}))
            })
        })
        .collect();
    let (verdict, summary) = if answered > 0 {
        (
            Verdict::Invalid,
            format!(
                "{answered} of {acted} streams the man in the middle tampered with were answered: the daemon took forged messages (see evidence)"
            ),
        )
    } else if !unobserved.is_empty() {
        (
            Verdict::Unknown,
            format!(
                "no tally was kept for {} (the man in the middle was not taken off cleanly)",
                unobserved.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )
    } else if acted == 0 {
        (
            Verdict::Unknown,
            format!(
                "the man in the middle saw {streams} streams but acted on none (none outlived its handshake while it was on)"
            ),
        )
    } else {
        (
            Verdict::Valid,
            format!(
                "all {acted} streams the man in the middle tampered with were refused (closed without an answer); {streams} streams went through it"
            ),
        )
    };
    let per_fault: BTreeMap<&String, Value> = tallies
        .iter()
        .map(|(id, per_peer)| {
            let peers: BTreeMap<&String, Value> = per_peer
                .iter()
                .map(|(p, t)| {
                    (
                        p,
                        json!({"streams": t["streams"], "acted": t["acted"], "refused": t["refused"],
                               "answered": t["answered"], "errors": t["errors"], "last_error": t["last_error"]}),
                    )
                })
                .collect();
            (id, json!({"mode": modes[id], "proxies": peers}))
        })
        .collect();
    Some(Check {
        name: "mitm-refused".into(),
        rests_on: String::new(),
        verdict,
        summary,
        evidence: json!({
            "acted": acted, "refused": refused, "answered": answered, "streams": streams,
            "faults": per_fault,
            "answered_streams": answered_streams.into_iter().take(EVIDENCE_MAX).collect::<Vec<_>>(),
        }),
    })
}
