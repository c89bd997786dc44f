//! `observations.jsonl`: when each content appeared at each peer, as the convergence monitor saw it.
//! Propagation latencies and the checkers' causal order ("had this peer seen that write?") come from
//! these.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// File name of the observation stream in the run folder.
pub const OBSERVATIONS: &str = "observations.jsonl";

/// File name of the inotify watcher's stream (`crate::watcher`): the same records, each timed when
/// the kernel reported the change, not at the next poll.
pub const SIGHTINGS: &str = "sightings.jsonl";

/// How finely the monitor's observations are timed: its poll interval (`crate::monitor::INTERVAL`;
/// a test keeps the two equal). Content seen at `t` appeared after the previous round, up to this
/// long (plus one round's reads) before.
pub const POLL_RESOLUTION_MS: u64 = 200;

/// How finely the watcher's sightings are timed: the history's clock counts milliseconds, and a
/// sighting is timed as soon as the event is read and the file hashed.
pub const INOTIFY_RESOLUTION_MS: u64 = 1;

/// A change seen in one peer's tree: `path` now holds `hash`, or is gone (`hash: None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub t_ms: u64,
    pub peer: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// Reads `observations.jsonl` (or `sightings.jsonl`) back (a missing file is an empty list: runs from
/// before the monitor recorded observations); a soak window's compressed copy is read as well.
pub fn read_observations(path: &Path) -> std::io::Result<Vec<Observation>> {
    let Some(lines) = super::segment::lines(path) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for line in lines {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?);
    }
    Ok(out)
}

/// First time each (peer, path, hash) was seen: the index propagation latencies and causal order use.
pub fn first_seen(obs: &[Observation]) -> BTreeMap<(&str, &str, &str), u64> {
    let mut m = BTreeMap::new();
    for o in obs {
        if let Some(h) = &o.hash {
            m.entry((o.peer.as_str(), o.path.as_str(), h.as_str()))
                .or_insert(o.t_ms);
        }
    }
    m
}
