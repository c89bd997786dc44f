//! The history: everything that happened in a run, in order, one JSON object per line in
//! `history.jsonl`. Each record carries a monotonic offset from the run's start (`t_ms`, what checkers
//! compute with) and the wall time (`wall`, for humans). Records are written and flushed one by one,
//! so a long run holds nothing in memory and a crashed run still leaves its history behind.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::plan::FileOpKind;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Event {
    RunStarted {
        run_id: String,
        plan: String,
        seed: u64,
        peers: Vec<String>,
    },
    PeerReady {
        peer: String,
        ip: String,
    },
    /// A client operation on a peer's sync folder. `hash` is the BLAKE3 of what was written.
    /// `base` is the hash of what the client replaced (`None`: nothing was there): the version the
    /// client had seen, which is what makes a write causally after another.
    Write {
        op: u64,
        peer: String,
        kind: FileOpKind,
        path: String,
        size: u64,
        hash: Option<String>,
        #[serde(default)]
        base: Option<String>,
        outcome: Outcome,
    },
    /// A metadata-only client operation (touch, chmod): no content changed, so no version is due.
    Meta {
        op: u64,
        peer: String,
        kind: FileOpKind,
        path: String,
        outcome: Outcome,
    },
    FaultStarted {
        id: String,
        step: String,
        kind: String,
        detail: serde_json::Value,
    },
    FaultStopped {
        id: String,
        /// How long undoing it took, in ms (absent in runs recorded before it was measured).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo_ms: Option<f64>,
    },
    /// A peer's wall clock after a clock fault changed: what was asked and what the peer reports.
    ClockMeasured {
        peer: String,
        requested_ms: i64,
        measured_ms: Option<i64>,
        /// A speed factor set with the offset (libfaketime's `rate`): the measured offset then
        /// drifts from the requested one by design.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate: Option<f64>,
    },
    /// A killed or stopped peer restarted and answered again (its faults re-applied), or a paused
    /// one was thawed; `after` is `kill`, `stop` or `pause`.
    PeerBack {
        peer: String,
        after: String,
    },
    /// Something the nemesis saw when a fault ended (e.g. whether a stale lock was cleared).
    Observed {
        fault: String,
        detail: serde_json::Value,
    },
    /// Which packet-fault engines the peers' kernel offers (`netfault probe`).
    EnginesProbed {
        engines: serde_json::Value,
    },
    /// Every fault removed at once (teardown, or before the final convergence wait).
    HealedAll,
    /// The convergence monitor saw every peer hold the same tree.
    Converged {
        tree_hash: String,
    },
    /// The convergence monitor saw the trees differ again.
    Diverged,
    /// The run stopped watching the counters after the trees agreed: `quiet` when every peer's
    /// counters were flat over a whole window ending at the scrapes up to `until_ms`. The no-loop
    /// check judges that window; a scrape taken later, as the scraper stops, cannot move it.
    CountersWatched {
        until_ms: u64,
        quiet: bool,
    },
    /// A soak window began: its schedule spans `from_ms..to_ms` of the soak's schedule time.
    WindowStarted {
        window: u64,
        from_ms: u64,
        to_ms: u64,
    },
    /// A soak window was healed and judged on its own.
    WindowJudged {
        window: u64,
        verdict: String,
    },
    RunFinished {
        verdict: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Ok,
    /// Nothing to do (e.g. delete of a file the peer does not have).
    Noop,
    Fail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub t_ms: u64,
    pub wall: String,
    #[serde(flatten)]
    pub event: Event,
}

/// Appends records to `history.jsonl`; cheap to share behind an `Arc`.
pub struct History {
    file: Mutex<File>,
    start: Instant,
}

impl History {
    pub fn create(path: &Path) -> std::io::Result<History> {
        Ok(History {
            file: Mutex::new(File::create(path)?),
            start: Instant::now(),
        })
    }

    /// From now on, records go to the end of `path` (a soak's next window, or back to the run's
    /// own history); the clock goes on.
    pub fn rotate(&self, path: &Path) -> std::io::Result<()> {
        let next = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let mut f = self.file.lock().expect("history lock");
        f.flush()?;
        *f = next;
        Ok(())
    }

    /// Milliseconds since the run started (monotonic).
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// Writes one record and returns its `t_ms`. A write error is logged, not fatal: losing the
    /// history must not leave containers behind by aborting the run half-way.
    pub fn record(&self, event: Event) -> u64 {
        let t_ms = self.now_ms();
        let rec = Record {
            t_ms,
            wall: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            event,
        };
        let mut line = serde_json::to_vec(&rec).expect("history records serialize");
        line.push(b'\n');
        let mut f = self.file.lock().expect("history lock");
        if let Err(e) = f.write_all(&line).and_then(|_| f.flush()) {
            tracing::error!("cannot write the history: {e}");
        }
        t_ms
    }
}

/// Streams the records of a history file, or of its compressed copy (for checkers and reports).
pub fn read(path: &Path) -> std::io::Result<impl Iterator<Item = std::io::Result<Record>>> {
    let lines = match super::segment::lines(path) {
        Some(l) => l,
        None => {
            return Err(File::open(path)
                .err()
                .unwrap_or_else(|| std::io::ErrorKind::NotFound.into()));
        }
    };
    Ok(lines
        .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|line| {
            line.and_then(|l| {
                serde_json::from_str(&l).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let h = History::create(&path).unwrap();
        h.record(Event::HealedAll);
        h.record(Event::Write {
            op: 1,
            peer: "p1".into(),
            kind: FileOpKind::Create,
            path: "a".into(),
            size: 3,
            hash: Some("ab".into()),
            base: None,
            outcome: Outcome::Ok,
        });
        let back: Vec<Record> = read(&path).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].event, Event::HealedAll);
        assert!(matches!(back[1].event, Event::Write { op: 1, .. }));
        assert!(back[0].t_ms <= back[1].t_ms);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains("\"type\":\"healed-all\""));
    }
}
