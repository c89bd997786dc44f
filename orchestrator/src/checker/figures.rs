//! The run's figures besides recovery times: propagation latency, conflict rate, traffic per write
//! against the theoretical minimum. Pure functions of the operations, the observations, the final
//! trees and the last metrics scrape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::PeerFinal;
use super::causal::Op;
use crate::profile::Role;
use crate::record::history::{Event, Record};
use crate::record::observations::{INOTIFY_RESOLUTION_MS, Observation, POLL_RESOLUTION_MS, first_seen};
use crate::record::samples::{Counters, Resource, key_name};

/// Upper bounds (ms) of the propagation latency histogram's buckets; the last bucket is open.
pub const LATENCY_BUCKETS_MS: [u64; 12] = [50, 100, 200, 300, 500, 750, 1000, 2000, 5000, 10_000, 30_000, 60_000];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub propagation: Propagation,
    pub conflicts: Conflicts,
    pub traffic: Traffic,
    /// Each peer's CPU and memory at steady state (after the trees last agreed).
    #[serde(default)]
    pub steady: Vec<SteadyUse>,
}

/// One peer's CPU and memory at steady state: from the moment the trees last agreed to the run's
/// last sample (the settle wait: `expect.quiet` and the counters' watch).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SteadyUse {
    pub peer: String,
    pub from_ms: u64,
    pub to_ms: u64,
    /// Docker samples of the running container in the span.
    pub samples: usize,
    /// CPU time over wall time in the span, percent of one core; `None` with fewer than two samples
    /// or a span under a second.
    pub cpu_pct: Option<f64>,
    /// The container's anonymous memory (no page cache) at its highest in the span, bytes.
    pub memory_bytes: Option<u64>,
}

/// Each peer's [`SteadyUse`] from `from_ms` on (none when the trees never agreed: no steady state).
/// Samples of a stopped container (no memory) are left out, and so is everything before a restart
/// (its CPU time starts again from 0).
pub fn steady_use(resources: &BTreeMap<String, Vec<Resource>>, from_ms: Option<u64>) -> Vec<SteadyUse> {
    let Some(from_ms) = from_ms else {
        return Vec::new();
    };
    resources
        .iter()
        .map(|(peer, samples)| {
            let live: Vec<&Resource> = samples
                .iter()
                .filter(|s| s.t_ms >= from_ms && s.anon_bytes > 0)
                .collect();
            let restart = live
                .windows(2)
                .rposition(|w| w[1].cpu_ns < w[0].cpu_ns)
                .map_or(0, |i| i + 1);
            let live = &live[restart..];
            let (first, last) = (live.first(), live.last());
            let span_ms = match (first, last) {
                (Some(a), Some(b)) => b.t_ms - a.t_ms,
                _ => 0,
            };
            let cpu_pct = match (first, last) {
                (Some(a), Some(b)) if span_ms >= 1000 => {
                    Some((b.cpu_ns - a.cpu_ns) as f64 / (span_ms as f64 * 1e6) * 100.0)
                }
                _ => None,
            };
            SteadyUse {
                peer: peer.clone(),
                from_ms: first.map_or(from_ms, |s| s.t_ms),
                to_ms: last.map_or(from_ms, |s| s.t_ms),
                samples: live.len(),
                cpu_pct: cpu_pct.map(|c| (c * 100.0).round() / 100.0),
                memory_bytes: live.iter().map(|s| s.anon_bytes).max(),
            }
        })
        .collect()
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
    /// The same latencies over the pairs no fault touched (from the write to its arrival, no fault
    /// was active): the seed's latency "within same region", which `expect.criteria` judges.
    #[serde(default)]
    pub calm: Quantiles,
    /// Where the sight times came from: `inotify` (the host-side watcher), `poll` (the monitor's tree
    /// reads), or `inotify+poll` (some pairs timed by each); empty without samples.
    #[serde(default)]
    pub source: String,
    /// How finely the latencies are known, ms: 1 when the watcher timed every pair, the poll
    /// interval (200) when the poll timed any. Quantiles are upper bounds to within this.
    #[serde(default)]
    pub resolution_ms: Option<u64>,
    /// Pairs the watcher timed (at or before the poll: the cross-check agrees).
    #[serde(default)]
    pub from_inotify: usize,
    /// Pairs only the poll saw (the watcher missed them: an overflowed queue, a folder not watched).
    #[serde(default)]
    pub poll_only: usize,
    /// Pairs the poll saw before the watcher did (the watcher lagged): timed by the poll.
    #[serde(default)]
    pub poll_first: usize,
    /// Counts per bucket of [`LATENCY_BUCKETS_MS`], plus one for everything above the last bound.
    pub histogram: Vec<u64>,
}

/// Nearest-rank quantiles of a set of latencies, ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub samples: usize,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

/// Each fault's window, from its start to its stop (or the final heal; open faults to the end of
/// time), from the history.
pub fn fault_windows(history: &[Record]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = fault_windows_marked(history, |_, _| false)
        .into_iter()
        .map(|(from, to, _)| (from, to))
        .collect();
    out.sort_unstable();
    out
}

/// [`fault_windows`], each with whether `mark` holds for its fault (`kind`, `detail` as started).
pub fn fault_windows_marked(
    history: &[Record],
    mark: impl Fn(&str, &serde_json::Value) -> bool,
) -> Vec<(u64, u64, bool)> {
    let mut open: BTreeMap<&str, (u64, bool)> = BTreeMap::new();
    let mut out = Vec::new();
    for r in history {
        match &r.event {
            Event::FaultStarted { id, kind, detail, .. } => {
                open.entry(id.as_str()).or_insert((r.t_ms, mark(kind, detail)));
            }
            Event::FaultStopped { id, .. } => {
                if let Some((from, marked)) = open.remove(id.as_str()) {
                    out.push((from, r.t_ms, marked));
                }
            }
            Event::HealedAll => out.extend(
                std::mem::take(&mut open)
                    .into_values()
                    .map(|(from, marked)| (from, r.t_ms, marked)),
            ),
            _ => {}
        }
    }
    out.extend(open.into_values().map(|(from, marked)| (from, u64::MAX, marked)));
    out
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
    /// of the bucket the quantile falls in ([`LATENCY_BUCKETS_MS`]), and its max is exact; the calm
    /// quantiles are the worst window's; steady state is the later window's.
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
        // The calm quantiles have no histogram of their own: the soak's are its worst window's.
        let (c, wc) = (&mut p.calm, &w.propagation.calm);
        c.samples += wc.samples;
        (c.p50_ms, c.p95_ms, c.p99_ms, c.max_ms) = (
            c.p50_ms.max(wc.p50_ms),
            c.p95_ms.max(wc.p95_ms),
            c.p99_ms.max(wc.p99_ms),
            c.max_ms.max(wc.max_ms),
        );
        if p.source.is_empty() || (!w.propagation.source.is_empty() && p.source != w.propagation.source) {
            p.source = if p.source.is_empty() {
                w.propagation.source.clone()
            } else {
                "inotify+poll".into()
            };
        }
        p.resolution_ms = p.resolution_ms.max(w.propagation.resolution_ms);
        p.from_inotify += w.propagation.from_inotify;
        p.poll_only += w.propagation.poll_only;
        p.poll_first += w.propagation.poll_first;
        self.steady = w.steady.clone();
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
///
/// Two sources time a sight: the monitor's polls (`obs`, every 200 ms) and the inotify watcher's
/// sightings (`fine`, to the ms). Which (write, peer) pairs count is decided by the polls alone, so
/// the figures' population does not depend on the watcher; each pair's time is the earlier of the two
/// sources (a poll sees content that was on disk at its time at the latest, a sighting as soon as the
/// kernel reported it). The cross-check counts the pairs only the poll timed and those it timed first.
///
/// `faults` are the run's fault windows ([`fault_windows`]): the pairs no fault touched make the
/// [`Propagation::calm`] quantiles.
pub fn propagation(
    ops: &[Op],
    peers: &[String],
    obs: &[Observation],
    fine: &[Observation],
    faults: &[(u64, u64)],
) -> Propagation {
    let mut lat = Vec::new();
    let mut calm = Vec::new();
    let touched = |from: u64, to: u64| faults.iter().any(|&(a, b)| a <= to && from <= b);
    let (mut never, mut deletes) = (0, 0);
    let (mut from_inotify, mut poll_only, mut poll_first) = (0, 0, 0);
    for a in arrivals(ops, peers, obs, fine) {
        if a.delete {
            deletes += 1;
        }
        match a.timed_by {
            Some(TimedBy::Inotify) => from_inotify += 1,
            Some(TimedBy::PollOnly) => poll_only += 1,
            Some(TimedBy::PollFirst) => poll_first += 1,
            None => {}
        }
        match a.at_ms {
            Some(t) => {
                lat.push(t.saturating_sub(a.from_ms));
                if !touched(a.from_ms, t) {
                    calm.push(t.saturating_sub(a.from_ms));
                }
            }
            None => never += 1,
        }
    }
    lat.sort_unstable();
    calm.sort_unstable();
    let mut histogram = vec![0u64; LATENCY_BUCKETS_MS.len() + 1];
    for &l in &lat {
        let b = LATENCY_BUCKETS_MS
            .iter()
            .position(|&ub| l <= ub)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        histogram[b] += 1;
    }
    let timed_by_poll = poll_only + poll_first;
    Propagation {
        samples: lat.len(),
        never_visible: never,
        delete_pairs: deletes,
        source: match (from_inotify, timed_by_poll) {
            (0, 0) => String::new(),
            (_, 0) => "inotify".into(),
            (0, _) => "poll".into(),
            _ => "inotify+poll".into(),
        },
        resolution_ms: (!lat.is_empty()).then_some(if timed_by_poll > 0 {
            POLL_RESOLUTION_MS
        } else {
            INOTIFY_RESOLUTION_MS
        }),
        from_inotify,
        poll_only,
        poll_first,
        p50_ms: quantile(&lat, 0.50),
        p95_ms: quantile(&lat, 0.95),
        p99_ms: quantile(&lat, 0.99),
        max_ms: lat.last().copied(),
        calm: Quantiles {
            samples: calm.len(),
            p50_ms: quantile(&calm, 0.50),
            p95_ms: quantile(&calm, 0.95),
            p99_ms: quantile(&calm, 0.99),
            max_ms: calm.last().copied(),
        },
        histogram,
    }
}

/// Which source timed an arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimedBy {
    /// The watcher, no later than the poll.
    Inotify,
    /// Only the poll saw it.
    PollOnly,
    /// Both, the poll first (the watcher lagged).
    PollFirst,
}

/// One (write, other peer) pair that counts (see [`propagation`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival<'a> {
    pub writer: &'a str,
    pub peer: &'a str,
    /// When the write (or delete) was acknowledged, run ms.
    pub from_ms: u64,
    /// When the other peer first held it (a delete: showed the path gone); `None`: never.
    pub at_ms: Option<u64>,
    pub delete: bool,
    pub timed_by: Option<TimedBy>,
}

/// Every (write, other peer) pair that counts, with when it arrived: the polls decide which pairs
/// count, each arrival is the earlier of the two sources (see [`propagation`]).
pub fn arrivals<'a>(
    ops: &'a [Op],
    peers: &'a [String],
    obs: &'a [Observation],
    fine: &'a [Observation],
) -> Vec<Arrival<'a>> {
    let poll = Sights::of(obs);
    let inotify = Sights::of(fine);
    let mut out = Vec::new();
    for w in ops {
        for p in peers.iter().filter(|p| **p != w.peer) {
            let Some(polled) = poll.reached(w, p) else { continue };
            let (at_ms, timed_by) = match (inotify.reached(w, p).flatten(), polled) {
                (Some(f), Some(q)) if q < f => (Some(q), Some(TimedBy::PollFirst)),
                (Some(f), _) => (Some(f), Some(TimedBy::Inotify)),
                (None, Some(q)) => (Some(q), Some(TimedBy::PollOnly)),
                (None, None) => (None, None),
            };
            out.push(Arrival {
                writer: &w.peer,
                peer: p,
                from_ms: w.t_ms,
                at_ms,
                delete: w.hash.is_none(),
                timed_by,
            });
        }
    }
    out
}

/// When content reached peers, from one source of observations.
struct Sights<'a> {
    first: BTreeMap<(&'a str, &'a str, &'a str), u64>,
    timelines: super::causal::Timelines<'a>,
}

impl<'a> Sights<'a> {
    fn of(obs: &'a [Observation]) -> Self {
        Sights {
            first: first_seen(obs),
            timelines: super::causal::timelines(obs),
        }
    }

    /// `None`: the pair does not count (a delete without a base, or at a peer that never held the
    /// deleted content); `Some(None)`: it never arrived; `Some(Some(t))`: it arrived at `t`.
    fn reached(&self, w: &Op, p: &str) -> Option<Option<u64>> {
        match (w.hash.as_deref(), w.base.as_deref()) {
            (Some(h), _) => Some(self.first.get(&(p, w.path.as_str(), h)).copied()),
            // A delete reached `p` when `p` showed the path gone after holding what was deleted.
            (None, Some(base)) => {
                let states = self.timelines.get(&(p, w.path.as_str()))?;
                if !states.iter().any(|x| x.1 == Some(base)) {
                    return None;
                }
                Some(
                    states
                        .windows(2)
                        .find(|x| x[1].0 > w.t_ms && x[1].1.is_none() && x[0].1 == Some(base))
                        .map(|x| x[1].0),
                )
            }
            (None, None) => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_ms: u64, cpu_s: f64, mem_mib: u64) -> Resource {
        Resource {
            t_ms,
            anon_bytes: mem_mib << 20,
            tasks: 8,
            state_bytes: None,
            cpu_ns: (cpu_s * 1e9) as u64,
        }
    }

    #[test]
    fn steady_use_is_cpu_over_wall_time_and_the_highest_memory_after_quiescence() {
        // 0.05 s of CPU per second after 10 s (5 %); busy before, which does not count.
        let samples: Vec<Resource> = (0..20)
            .map(|i| {
                let t = i * 1000;
                let cpu = if t < 10_000 {
                    t as f64 / 1000.0
                } else {
                    10.0 + (t - 10_000) as f64 / 20_000.0
                };
                sample(t, cpu, if t == 15_000 { 40 } else { 30 })
            })
            .collect();
        let r = BTreeMap::from([("p1".to_string(), samples)]);
        let s = &steady_use(&r, Some(10_000))[0];
        assert_eq!((s.from_ms, s.to_ms, s.samples), (10_000, 19_000, 10));
        assert_eq!(s.cpu_pct, Some(5.0));
        assert_eq!(s.memory_bytes, Some(40 << 20));
        assert!(steady_use(&r, None).is_empty(), "never converged: no steady state");
        // One sample is not a rate; a restart (CPU time back to 0) starts the span afresh.
        let s = &steady_use(&r, Some(19_000))[0];
        assert_eq!((s.cpu_pct, s.samples), (None, 1));
        let restarted = vec![sample(0, 50.0, 30), sample(1000, 0.1, 20), sample(3000, 0.3, 20)];
        let s = &steady_use(&BTreeMap::from([("p1".to_string(), restarted)]), Some(0))[0];
        assert_eq!((s.from_ms, s.cpu_pct), (1000, Some(10.0)));
    }

    fn obs(t_ms: u64, peer: &str, path: &str, hash: Option<&str>) -> Observation {
        Observation {
            t_ms,
            peer: peer.into(),
            path: path.into(),
            hash: hash.map(String::from),
        }
    }

    fn op(t_ms: u64, peer: &str, path: &str, hash: Option<&str>, base: Option<&str>) -> Op {
        Op {
            op: t_ms,
            t_ms,
            peer: peer.into(),
            path: path.into(),
            hash: hash.map(String::from),
            base: base.map(String::from),
        }
    }

    #[test]
    fn propagation_takes_the_earlier_of_inotify_and_the_poll_and_says_so() {
        let peers = ["p1".to_string(), "p2".to_string(), "p3".to_string()];
        let ops = [
            op(1000, "p1", "a", Some("h1"), None),
            op(3000, "p1", "a", None, Some("h1")),
        ];
        let poll = [
            obs(1000, "p1", "a", Some("h1")),
            obs(1200, "p2", "a", Some("h1")),
            obs(1400, "p3", "a", Some("h1")),
            obs(3200, "p2", "a", None),
            obs(3200, "p3", "a", None),
        ];
        let only_poll = propagation(&ops, &peers, &poll, &[], &[]);
        assert_eq!(
            (only_poll.source.as_str(), only_poll.resolution_ms),
            ("poll", Some(200))
        );
        assert_eq!((only_poll.samples, only_poll.max_ms), (4, Some(400)));
        let fine = [
            obs(1010, "p2", "a", Some("h1")),
            obs(1500, "p3", "a", Some("h1")), // later than the poll: the watcher lagged
            obs(3007, "p2", "a", None),
            obs(3009, "p3", "a", None),
        ];
        let p = propagation(&ops, &peers, &poll, &fine, &[]);
        assert_eq!((p.source.as_str(), p.resolution_ms), ("inotify+poll", Some(200)));
        assert_eq!((p.from_inotify, p.poll_first, p.poll_only), (3, 1, 0));
        assert_eq!(
            (p.samples, p.delete_pairs, p.p50_ms, p.max_ms),
            (4, 2, Some(9), Some(400))
        );
        let all_fine = [
            fine[0].clone(),
            obs(1030, "p3", "a", Some("h1")),
            fine[2].clone(),
            fine[3].clone(),
        ];
        let p = propagation(&ops, &peers, &poll, &all_fine, &[]);
        assert_eq!((p.source.as_str(), p.resolution_ms), ("inotify", Some(1)));
        assert_eq!((p.p99_ms, p.max_ms), (Some(30), Some(30)));
        assert_eq!(p.calm.p99_ms, Some(30), "no fault: every pair is calm");
        // A fault from 1020 to 2000 ms touched p3's arrival at 1030; the deletes came after it.
        let p = propagation(&ops, &peers, &poll, &all_fine, &[(1020, 2000)]);
        assert_eq!((p.samples, p.calm.samples, p.calm.max_ms), (4, 3, Some(10)));
    }

    #[test]
    fn fault_windows_run_from_start_to_stop_or_the_final_heal() {
        let rec = |t_ms, event| Record {
            t_ms,
            wall: String::new(),
            event,
        };
        let started = |id: &str| Event::FaultStarted {
            id: id.into(),
            step: "s".into(),
            kind: "partition".into(),
            detail: serde_json::Value::Null,
        };
        let h = vec![
            rec(100, started("a#1")),
            rec(200, started("b#1")),
            rec(
                300,
                Event::FaultStopped {
                    id: "a#1".into(),
                    undo_ms: None,
                },
            ),
            rec(900, Event::HealedAll),
            rec(1000, started("c#1")),
        ];
        assert_eq!(fault_windows(&h), [(100, 300), (200, 900), (1000, u64::MAX)]);
    }
}
