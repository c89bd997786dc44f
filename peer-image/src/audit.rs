//! The audit trail (seed §3.3 "audit trails"): who sent what. One JSON line per version a
//! neighbour offered that this peer took (`offered`: queued for download), per version or proof it
//! refused (`rejected`, with the reason), and per conviction (`convicted`: an equivocation proven),
//! each naming the neighbour by its TLS identity (never by anything it declared), in
//! `<state>/audit.jsonl`.
//!
//! Bounded and rotated: once the file passes `audit_max_bytes` it becomes `audit.jsonl.1` (the one
//! before is dropped), so at most about twice that is ever on disk, whatever a flood sends. A
//! version that changes nothing (one already held or queued) is not written: the trail is about
//! what moved state or was refused, and a mesh would otherwise log every version once per
//! neighbour. Refused requests (quarantined, rate-limited) are counted in the metrics, not here:
//! a flood would rotate the interesting lines away.
//!
//! `GET /v1/audit?limit=N` on the status port returns the latest lines (default 200, at most
//! [`RECENT_MAX`]), newest last. Writing never blocks sync on a failing disk: the first error is
//! logged, later lines of that file are skipped until the next rotation.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::hlc::wall_ms;
use crate::mutex::lock;

/// Lines kept in memory for `GET /v1/audit`.
pub const RECENT_MAX: usize = 1000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A version from `from` that changes our state was verified and queued for its content.
    Offered,
    /// Something `from` sent was refused (`reason`).
    Rejected,
    /// `from` proved (or told us) that `author` signed two statements under one counter.
    Convicted,
}

/// One line of the trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Wall-clock ms when it was written.
    pub ms: u64,
    pub event: Event,
    /// The neighbour's name, from its TLS identity (or `self` for our own detection).
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Short id of the version's (or the offender's) key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The author's counter of the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<u64>,
    /// Content hash the version claims (empty for a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Line {
    /// A line about version `e` sent by `from`.
    pub fn version(event: Event, from: &str, e: &Entry, reason: Option<&str>) -> Line {
        Line {
            ms: wall_ms(),
            event,
            from: from.to_string(),
            path: Some(e.path.clone()),
            author: Some(e.author.clone()),
            counter: Some(e.vv.get(&e.author)),
            hash: Some(e.hash.clone()),
            reason: reason.map(str::to_string),
        }
    }
}

struct Sink {
    file: Option<File>,
    written: u64,
    /// Set after a write error: nothing more is written to this file.
    broken: bool,
}

/// The trail of one node.
pub struct Audit {
    path: PathBuf,
    max_bytes: u64,
    sink: Mutex<Sink>,
    recent: Mutex<VecDeque<Line>>,
}

impl Audit {
    /// The trail in `state_dir`, appending to what an earlier run wrote.
    pub fn open(state_dir: &Path, max_bytes: u64) -> Audit {
        let path = state_dir.join("audit.jsonl");
        let written = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Audit {
            path,
            max_bytes: max_bytes.max(1),
            sink: Mutex::new(Sink {
                file: None,
                written,
                broken: false,
            }),
            recent: Mutex::default(),
        }
    }

    /// Appends `line` (and keeps it for `GET /v1/audit`).
    pub fn record(&self, line: Line) {
        let mut text = serde_json::to_string(&line).expect("an audit line serializes");
        text.push('\n');
        {
            let mut recent = lock(&self.recent);
            if recent.len() == RECENT_MAX {
                recent.pop_front();
            }
            recent.push_back(line);
        }
        let mut sink = lock(&self.sink);
        if sink.written >= self.max_bytes {
            sink.file = None;
            let _ = std::fs::rename(&self.path, self.path.with_extension("jsonl.1"));
            sink.written = 0;
            sink.broken = false;
        }
        if sink.broken {
            return;
        }
        if sink.file.is_none() {
            match OpenOptions::new().create(true).append(true).open(&self.path) {
                Ok(f) => sink.file = Some(f),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), "cannot open the audit trail: {e}");
                    sink.broken = true;
                    return;
                }
            }
        }
        let result = sink.file.as_mut().expect("opened above").write_all(text.as_bytes());
        match result {
            Ok(()) => sink.written += text.len() as u64,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "cannot write the audit trail: {e}");
                sink.broken = true;
            }
        }
    }

    /// The latest `limit` lines, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Line> {
        let recent = lock(&self.recent);
        let skip = recent.len().saturating_sub(limit);
        recent.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: u64) -> Line {
        Line {
            ms: i,
            event: Event::Rejected,
            from: "p2".into(),
            path: Some(format!("f{i}")),
            author: Some("00112233aabbccdd".into()),
            counter: Some(i),
            hash: Some("ab".repeat(32)),
            reason: Some("bad_hash".into()),
        }
    }

    fn read(path: &Path) -> Vec<Line> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_survive_a_restart_and_the_trail_is_bounded_by_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_string(&line(0)).unwrap().len() as u64 + 1;
        let max = one * 10;
        let audit = Audit::open(dir.path(), max);
        for i in 0..5 {
            audit.record(line(i));
        }
        drop(audit);
        // A restart appends; the rotation counts what the earlier run wrote.
        let audit = Audit::open(dir.path(), max);
        for i in 5..95 {
            audit.record(line(i));
        }
        let current = read(&dir.path().join("audit.jsonl"));
        let previous = read(&dir.path().join("audit.jsonl.1"));
        assert_eq!(current.len(), 5, "95 lines, 10 per file: 9 full files, then 5");
        assert_eq!(previous.len(), 10);
        assert_eq!(previous[0].ms, 80);
        assert_eq!(current.last().unwrap().ms, 94);
        let on_disk: u64 = ["audit.jsonl", "audit.jsonl.1"]
            .iter()
            .map(|f| std::fs::metadata(dir.path().join(f)).unwrap().len())
            .sum();
        assert!(on_disk <= 2 * max, "{on_disk} bytes on disk, bound {}", 2 * max);
        assert!(!dir.path().join("audit.jsonl.2").exists());
        // Memory holds the latest lines, newest last.
        let recent = audit.recent(3);
        assert_eq!(recent.iter().map(|l| l.ms).collect::<Vec<_>>(), vec![92, 93, 94]);
    }

    #[test]
    fn a_trail_that_cannot_be_written_does_not_stop_the_node() {
        let dir = tempfile::tempdir().unwrap();
        // The trail's path is a folder: opening it fails; recording still works in memory.
        std::fs::create_dir(dir.path().join("audit.jsonl")).unwrap();
        let audit = Audit::open(dir.path(), 1 << 20);
        audit.record(line(1));
        audit.record(line(2));
        assert_eq!(audit.recent(10).len(), 2);
    }
}
