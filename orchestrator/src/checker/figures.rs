//! The run's figures besides recovery times: propagation latency, conflict rate, traffic per write
//! against the theoretical minimum. Pure functions of the operations, the observations, the final
//! trees and the last metrics scrape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::PeerFinal;
use super::causal::Op;
use crate::profile::Role;
use crate::record::observations::{Observation, first_seen};
use crate::record::samples::{Counters, key_name};

/// Upper bounds (ms) of the propagation latency histogram's buckets; the last bucket is open.
pub const LATENCY_BUCKETS_MS: [u64; 12] = [50, 100, 200, 300, 500, 750, 1000, 2000, 5000, 10_000, 30_000, 60_000];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub propagation: Propagation,
    pub conflicts: Conflicts,
    pub traffic: Traffic,
}

/// Write at one peer -> the same content visible at the same path on another peer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Propagation {
    /// (write, other peer) pairs where the content became visible.
    pub samples: usize,
    /// (write, other peer) pairs where it never did (overwritten first, or lost a conflict).
    pub never_visible: usize,
    /// How many of the pairs are deletes (with a recorded base, at peers that held the deleted
    /// version): the path seen gone there.
    #[serde(default)]
    pub delete_pairs: usize,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub max_ms: Option<u64>,
    /// Counts per bucket of [`LATENCY_BUCKETS_MS`], plus one for everything above the last bound.
    pub histogram: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Conflicts {
    pub writes: usize,
    /// Distinct conflict copies in the final trees (union over peers).
    pub copies: usize,
    /// copies / writes.
    pub rate: f64,
    /// Sum of the peers' `conflicts` counters (the profile's role) at the last scrape, if scraped.
    pub reported_by_peers: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// Which counter `bytes` is: the daemon's `bytes_sent`, or Docker's `net_tx_bytes`.
    #[serde(default)]
    pub bytes_from: String,
    /// Acknowledged operations (writes and deletes).
    pub ops: usize,
    pub peers: usize,
    /// Bytes of content written (sum of write sizes).
    pub content_bytes: u64,
    /// Messages and bytes sent by all peers, except the periodic `summary` exchange.
    pub messages: f64,
    pub bytes: f64,
    pub summary_messages: f64,
    pub summary_bytes: f64,
    pub messages_per_op: Option<f64>,
    pub bytes_per_op: Option<f64>,
    /// Each operation must reach the N-1 other peers once: N-1 messages.
    pub min_messages_per_op: f64,
    /// ... carrying its content: (N-1) x the mean content size.
    pub min_bytes_per_op: f64,
    /// messages / minimum and bytes / minimum (1.0 = optimal).
    pub message_overhead: Option<f64>,
    pub byte_overhead: Option<f64>,
}

impl Figures {
    /// Adds a later soak window's figures to these (the soak's so far). Counts and traffic add up;
    /// conflict copies are the later window's (copies stay in the trees, so its final trees hold the
    /// earlier ones too); quantiles come from the summed histogram, so a soak's are the upper bound
    /// of the bucket the quantile falls in ([`LATENCY_BUCKETS_MS`]), and its max is exact.
    pub fn merge(&mut self, w: &Figures) {
        let p = &mut self.propagation;
        p.samples += w.propagation.samples;
        p.never_visible += w.propagation.never_visible;
        p.delete_pairs += w.propagation.delete_pairs;
        p.max_ms = p.max_ms.max(w.propagation.max_ms);
        p.histogram.resize(LATENCY_BUCKETS_MS.len() + 1, 0);
        for (sum, n) in p.histogram.iter_mut().zip(&w.propagation.histogram) {
            *sum += n;
        }
        let bound = |q: f64| {
            let total: u64 = p.histogram.iter().sum();
            let rank = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, n) in p.histogram.iter().enumerate() {
                seen += n;
                if total > 0 && seen >= rank {
                    return Some(LATENCY_BUCKETS_MS.get(i).copied().or(p.max_ms).unwrap_or(0));
                }
            }
            None
        };
        (p.p50_ms, p.p95_ms, p.p99_ms) = (bound(0.50), bound(0.95), bound(0.99));
        let c = &mut self.conflicts;
        c.writes += w.conflicts.writes;
        c.copies = w.conflicts.copies;
        c.rate = if c.writes == 0 {
            0.0
        } else {
            c.copies as f64 / c.writes as f64
        };
        c.reported_by_peers = match (c.reported_by_peers, w.conflicts.reported_by_peers) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        let t = &mut self.traffic;
        let had = (t.messages_per_op.is_some(), t.bytes_per_op.is_some());
        t.bytes_from = w.traffic.bytes_from.clone();
        t.peers = w.traffic.peers;
        t.ops += w.traffic.ops;
        t.content_bytes += w.traffic.content_bytes;
        t.messages += w.traffic.messages;
        t.bytes += w.traffic.bytes;
        t.summary_messages += w.traffic.summary_messages;
        t.summary_bytes += w.traffic.summary_bytes;
        let per_op = |x: f64, measured: bool| (measured && t.ops > 0).then(|| x / t.ops as f64);
        t.messages_per_op = per_op(t.messages, had.0 || w.traffic.messages_per_op.is_some());
        t.bytes_per_op = per_op(t.bytes, had.1 || w.traffic.bytes_per_op.is_some());
        t.min_messages_per_op = w.traffic.min_messages_per_op;
        t.min_bytes_per_op = if t.ops == 0 {
            0.0
        } else {
            t.peers.saturating_sub(1) as f64 * t.content_bytes as f64 / t.ops as f64
        };
        let ratio = |x: Option<f64>, min: f64| x.filter(|_| min > 0.0).map(|x| x / min);
        t.message_overhead = ratio(t.messages_per_op, t.min_messages_per_op);
        t.byte_overhead = ratio(t.bytes_per_op, t.min_bytes_per_op);
    }
}

/// Nearest-rank quantile of sorted values.
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Latencies (ms) from each write to its content's first sight at each other peer, and from each delete
/// (with a recorded base) to the path's disappearance at each other peer that held the deleted content.
pub fn propagation(ops: &[Op], peers: &[String], obs: &[Observation]) -> Propagation {
    let seen = first_seen(obs);
    let timelines = super::causal::timelines(obs);
    let mut lat = Vec::new();
    let (mut never, mut deletes) = (0, 0);
    for w in ops {
        for p in peers.iter().filter(|p| **p != w.peer) {
            let t = match (w.hash.as_deref(), w.base.as_deref()) {
                (Some(h), _) => seen.get(&(p.as_str(), w.path.as_str(), h)).copied(),
                // A delete reached `p` when `p` showed the path gone after holding what was deleted.
                (None, Some(base)) => {
                    let states = timelines.get(&(p.as_str(), w.path.as_str()));
                    let held = states.is_some_and(|s| s.iter().any(|x| x.1 == Some(base)));
                    if !held {
                        continue;
                    }
                    deletes += 1;
                    states.and_then(|s| {
                        s.windows(2)
                            .find(|x| x[1].0 > w.t_ms && x[1].1.is_none() && x[0].1 == Some(base))
                            .map(|x| x[1].0)
                    })
                }
                (None, None) => continue,
            };
            match t {
                Some(t) => lat.push(t.saturating_sub(w.t_ms)),
                None => never += 1,
            }
        }
    }
    lat.sort_unstable();
    let mut histogram = vec![0u64; LATENCY_BUCKETS_MS.len() + 1];
    for &l in &lat {
        let b = LATENCY_BUCKETS_MS
            .iter()
            .position(|&ub| l <= ub)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        histogram[b] += 1;
    }
    Propagation {
        samples: lat.len(),
        never_visible: never,
        delete_pairs: deletes,
        p50_ms: quantile(&lat, 0.50),
        p95_ms: quantile(&lat, 0.95),
        p99_ms: quantile(&lat, 0.99),
        max_ms: lat.last().copied(),
        histogram,
    }
}

/// The last scrape of each peer.
fn last_per_peer(counters: &[Counters]) -> BTreeMap<&str, &Counters> {
    let mut m: BTreeMap<&str, &Counters> = BTreeMap::new();
    for c in counters {
        if m.get(c.peer.as_str()).is_none_or(|prev| prev.t_ms <= c.t_ms) {
            m.insert(&c.peer, c);
        }
    }
    m
}

pub fn conflicts(
    ops: &[Op],
    peers: &[PeerFinal],
    counters: &[Counters],
    conv: &crate::profile::Conventions,
) -> Conflicts {
    let writes = ops.iter().filter(|o| o.hash.is_some()).count();
    let copies: std::collections::BTreeSet<&str> = peers
        .iter()
        .flat_map(|p| p.tree.files.keys())
        .filter(|p| conv.conflict(p).is_some())
        .map(String::as_str)
        .collect();
    let last = last_per_peer(counters);
    let reported = (!last.is_empty()).then(|| {
        last.values()
            .map(|c| c.values.get(Role::Conflicts.as_str()).copied().unwrap_or(0.0))
            .sum()
    });
    Conflicts {
        writes,
        copies: copies.len(),
        rate: if writes == 0 {
            0.0
        } else {
            copies.len() as f64 / writes as f64
        },
        reported_by_peers: reported,
    }
}

/// `content_bytes`: the sum of the writes' sizes (from the history).
pub fn traffic(ops: &[Op], content_bytes: u64, peers: usize, counters: &[Counters]) -> Traffic {
    let last = last_per_peer(counters);
    let has = |role: Role| {
        last.values()
            .any(|c| c.values.keys().any(|k| key_name(k) == role.as_str()))
    };
    // Bytes from the daemon's own counter when its profile maps one, else from Docker's network
    // counters (every byte the container sent, protocol and background alike).
    let bytes_role = if has(Role::BytesSent) {
        Role::BytesSent
    } else {
        Role::NetTxBytes
    };
    let sum = |role: Role| -> f64 {
        last.values()
            .flat_map(|c| c.values.iter())
            .filter(|(k, _)| key_name(k) == role.as_str())
            .map(|(_, v)| v)
            .sum()
    };
    let (messages, bytes) = (sum(Role::MessagesSent), sum(bytes_role));
    let (summary_messages, summary_bytes) = (sum(Role::BackgroundMessagesSent), sum(Role::BackgroundBytesSent));
    let n_ops = ops.len();
    let others = peers.saturating_sub(1) as f64;
    let per_op = |x: f64| (n_ops > 0 && !last.is_empty()).then(|| x / n_ops as f64);
    let min_messages_per_op = others;
    let min_bytes_per_op = if n_ops == 0 {
        0.0
    } else {
        others * content_bytes as f64 / n_ops as f64
    };
    let ratio = |x: Option<f64>, min: f64| x.filter(|_| min > 0.0).map(|x| x / min);
    let messages_per_op = per_op(messages).filter(|_| has(Role::MessagesSent));
    let bytes_per_op = per_op(bytes).filter(|_| has(bytes_role));
    Traffic {
        bytes_from: bytes_role.as_str().to_string(),
        ops: n_ops,
        peers,
        content_bytes,
        messages,
        bytes,
        summary_messages,
        summary_bytes,
        messages_per_op,
        bytes_per_op,
        min_messages_per_op,
        min_bytes_per_op,
        message_overhead: ratio(messages_per_op, min_messages_per_op),
        byte_overhead: ratio(bytes_per_op, min_bytes_per_op),
    }
}
