//! `metrics.jsonl`: what the scraper saw, one JSON line per (peer, source) and scrape: the daemon's
//! Prometheus page as it was, Docker's container counters, and the same scrape as [`crate::profile::Role`]s
//! (what the counters mean). Checkers and the report read it back from here; nothing is kept in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::docker::ContainerStats;

/// File name of the sample stream in the run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum Sample {
    /// A peer's `/metrics`: series key (`name{label="v",...}`, labels sorted) -> value.
    Metrics {
        t_ms: u64,
        peer: String,
        values: BTreeMap<String, f64>,
    },
    /// The peer's `/metrics` could not be read (down, partitioned from the host, paused).
    MetricsError { t_ms: u64, peer: String, error: String },
    /// The peer's container, from the Docker stats API.
    Docker {
        t_ms: u64,
        peer: String,
        #[serde(flatten)]
        stats: ContainerStats,
    },
    /// The size of the peer's state (its data folder outside the sync folder), read on the host.
    State { t_ms: u64, peer: String, state_bytes: u64 },
    /// The scrape as roles: `role{labels}` -> value (see [`crate::profile::Role`]).
    Roles {
        t_ms: u64,
        peer: String,
        values: BTreeMap<String, f64>,
    },
}

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

/// The series key of a sample: its name, then its labels sorted by name.
pub fn series_key(name: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Streams the samples of `metrics.jsonl` or its compressed copy (a missing file yields nothing; bad
/// lines are skipped).
pub fn read(path: &Path) -> impl Iterator<Item = Sample> + use<> {
    super::segment::lines(path)
        .into_iter()
        .flatten()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
}

/// The counters the checkers need, as roles: every scrape taken at or after `since_ms`, plus the last
/// scrape of each peer whatever its time (for traffic figures).
pub fn counters_for_checks(path: &Path, since_ms: Option<u64>) -> Vec<Counters> {
    let mut window = Vec::new();
    let mut last: BTreeMap<String, Counters> = BTreeMap::new();
    for s in read(path) {
        if let Sample::Roles { t_ms, peer, values } = s {
            let c = Counters { t_ms, peer, values };
            if since_ms.is_some_and(|q| t_ms >= q) {
                window.push(c.clone());
            }
            last.insert(c.peer.clone(), c);
        }
    }
    for c in last.into_values() {
        if !window.contains(&c) {
            window.push(c);
        }
    }
    window
}

/// Makes `counters` count from `start` (each peer's last scrape before a soak window began), so a
/// window's checks and figures see the window's own traffic. A counter below its start was reset
/// (the peer restarted) and counts from zero. The last scrape per peer in `start` is used.
pub fn rebase(counters: &mut [Counters], start: &[Counters]) {
    let mut base: BTreeMap<&str, &Counters> = BTreeMap::new();
    for c in start {
        if base.get(c.peer.as_str()).is_none_or(|b| b.t_ms <= c.t_ms) {
            base.insert(&c.peer, c);
        }
    }
    for c in counters.iter_mut() {
        let Some(b) = base.get(c.peer.as_str()) else { continue };
        for (k, v) in c.values.iter_mut() {
            if let Some(b0) = b.values.get(k)
                && *v >= *b0
            {
                *v -= b0;
            }
        }
    }
}

/// One peer's container at one scrape: what the growth check needs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Resource {
    pub t_ms: u64,
    /// Anonymous memory (no page cache), bytes.
    pub anon_bytes: u64,
    pub tasks: u64,
    /// The peer's state folder at that scrape, bytes (`None`: not sampled).
    pub state_bytes: Option<u64>,
    /// CPU time the container used since it started, ns.
    pub cpu_ns: u64,
}

/// Every peer's container resources over the run, in time order per peer (Docker samples only).
pub fn resources(path: &Path) -> BTreeMap<String, Vec<Resource>> {
    let mut out: BTreeMap<String, Vec<Resource>> = BTreeMap::new();
    // A scrape writes the state size just before the Docker sample: it joins that sample.
    let mut state: BTreeMap<String, u64> = BTreeMap::new();
    for s in read(path) {
        match s {
            Sample::State { peer, state_bytes, .. } => {
                state.insert(peer, state_bytes);
            }
            Sample::Docker { t_ms, peer, stats } => {
                let state_bytes = state.remove(&peer);
                out.entry(peer).or_default().push(Resource {
                    t_ms,
                    anon_bytes: stats.anon_bytes,
                    tasks: stats.tasks,
                    state_bytes,
                    cpu_ns: stats.cpu_ns,
                });
            }
            _ => {}
        }
    }
    out
}

/// Each peer's role samples in the last `tail` bytes of a metrics file of `len` bytes (a line cut by
/// the start of the tail is skipped).
fn read_tail(f: &mut File, len: u64, tail: u64) -> Option<BTreeMap<String, Vec<Counters>>> {
    use std::io::{Read, Seek, SeekFrom};
    f.seek(SeekFrom::Start(len - tail)).ok()?;
    let mut text = String::new();
    f.take(tail).read_to_string(&mut text).ok()?;
    let skip_partial = if tail < len { 1 } else { 0 };
    let mut per_peer: BTreeMap<String, Vec<Counters>> = BTreeMap::new();
    for line in text.lines().skip(skip_partial) {
        if let Ok(Sample::Roles { t_ms, peer, values }) = serde_json::from_str(line) {
            per_peer
                .entry(peer.clone())
                .or_default()
                .push(Counters { t_ms, peer, values });
        }
    }
    Some(per_peer)
}

/// What the tail of `metrics.jsonl` says about the counters' last window, for every peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settle {
    /// Every peer has samples spanning a full window that starts at `since_ms` or later.
    pub watched: bool,
    /// ... and over that window every peer's counters were quiet.
    pub quiet: bool,
    /// The latest scrape read (0: none).
    pub until_ms: u64,
}

/// Reads only the tail of `metrics.jsonl` (enough for a few rounds of `peers` scrapes), so it is cheap
/// to call every half second at the end of a long run.
pub fn settled(path: &Path, peers: usize, window_ms: u64, quiet: impl Fn(&Counters, &Counters) -> bool) -> bool {
    settle_since(path, peers, window_ms, 0, quiet).quiet
}

/// [`settled`], over a window that starts at `since_ms` or later: a window reaching back before the
/// final heal would hide the peers' reaction to it (a disk fault is repaired in milliseconds, between
/// two scrapes; reconnections after a partition begin a second after the heal, and a window whose last
/// scrape came 13 ms after the heal once judged Syncthing quiet just before its reconnect traffic).
pub fn settle_since(
    path: &Path,
    peers: usize,
    window_ms: u64,
    since_ms: u64,
    quiet: impl Fn(&Counters, &Counters) -> bool,
) -> Settle {
    let Ok(mut f) = File::open(path) else {
        return Settle::default();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // A first guess at a few rounds of scrapes; a line grows with the peers (each counter is labelled
    // per neighbour: 10 peers made 8 KiB lines, so a fixed guess held under 2 s of scrapes and the
    // window was never seen whole). The tail grows until every peer's window fits, it reaches back
    // to `since_ms` (older scrapes cannot help: a window starts at `since_ms` or later), or it is the file.
    let mut tail = (peers as u64 * 6 * 8192).min(len);
    let per_peer = loop {
        let Some(per_peer) = read_tail(&mut f, len, tail) else {
            return Settle::default();
        };
        let covered = per_peer.len() >= peers
            && per_peer.values().all(|s| {
                let last = s[s.len() - 1].t_ms;
                s[0].t_ms + window_ms < last
            });
        let oldest = per_peer.values().map(|s| s[0].t_ms).min().unwrap_or(u64::MAX);
        if covered || tail == len || oldest <= since_ms {
            break per_peer;
        }
        tail = tail.saturating_mul(4).min(len);
    };
    // Each peer's window: from the latest scrape at least `window_ms` before its last one.
    let windows: Vec<Option<(&Counters, &Counters)>> = per_peer
        .values()
        .map(|samples| {
            let last = &samples[samples.len() - 1];
            let first = samples.iter().rev().find(|s| s.t_ms + window_ms <= last.t_ms)?;
            (first.t_ms >= since_ms).then_some((first, last))
        })
        .collect();
    let watched = per_peer.len() >= peers && windows.iter().all(Option::is_some);
    Settle {
        until_ms: per_peer
            .values()
            .filter_map(|s| s.last())
            .map(|c| c.t_ms)
            .max()
            .unwrap_or(0),
        watched,
        quiet: watched && windows.iter().flatten().all(|(first, last)| quiet(first, last)),
    }
}
