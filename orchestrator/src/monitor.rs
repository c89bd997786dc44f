//! The convergence monitor: reads every peer's tree a few times a second while a run goes on.
//!
//! It does two things with each round of reads:
//! * writes `converged` / `diverged` transitions into the history (recovery times come from those) and
//!   publishes a [`MonitorState`] for the settle wait;
//! * streams every change it sees in any peer's tree to `<run>/observations.jsonl`: one
//!   [`Observation`] per (peer, path) whose content changed or vanished since the previous round. The
//!   first observation of a (peer, path, hash) is when that content became visible at that peer:
//!   propagation latencies and the checkers' causal order ("had this peer seen that write?") come from
//!   these.
//!
//! Observation times are taken on the history's clock (`t_ms`) *after* a round's reads finish, so "seen
//! at `t`" means the content was on disk at `t` at the latest.
//!
//! A round reads only the trees the inotify watcher saw change since the last read ([`Dirty`]), and
//! every tree every [`FULL_EVERY`] rounds: at 100 peers, listing every tree five times a second was
//! the largest part of the orchestrator's own CPU (a third of it in a profile), while most trees sit
//! still most of the time. The full rounds catch what inotify does not report (a file truncated in
//! place); a queue overflow marks every peer. Without a live watcher, every round reads every tree.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::record::history::{Event, History};
use crate::record::observations::{OBSERVATIONS, Observation};
use crate::record::run_folder::PeerDir;
use crate::record::segment::{Appender, Segments};
use crate::tree::{Tree, TreeReader};

/// How often the convergence monitor reads every tree.
pub const INTERVAL: Duration = Duration::from_millis(200);

/// Every this many rounds the monitor forgets its cached hashes and rehashes every file: the cache is
/// keyed by (size, mtime), and damage that keeps both (a disk fault flipping a bit) would stay unseen.
pub const REHASH_EVERY: u64 = 25;

/// Every this many rounds every tree is read, whatever the watcher saw (1 s at [`INTERVAL`]). A
/// divisor of [`REHASH_EVERY`], so the rounds that drop the hash cache read every tree.
pub const FULL_EVERY: u64 = 5;

/// Which peers' trees changed since the monitor last read them, as the inotify watcher saw them.
/// Every flag starts set; a peer the watcher does not watch, or any peer while the watcher is not
/// live (not yet started, or stopped), is always read.
pub struct Dirty {
    live: AtomicBool,
    watched: Vec<AtomicBool>,
    changed: Vec<AtomicBool>,
}

impl Dirty {
    pub fn new(peers: usize) -> Dirty {
        Dirty {
            live: AtomicBool::new(false),
            watched: (0..peers).map(|_| AtomicBool::new(false)).collect(),
            changed: (0..peers).map(|_| AtomicBool::new(true)).collect(),
        }
    }

    /// Whether peer `i`'s tree must be read now; takes its flag (set again by the next change).
    pub fn take(&self, i: usize) -> bool {
        let changed = self.changed[i].swap(false, Ordering::SeqCst);
        changed || !self.live.load(Ordering::SeqCst) || !self.watched[i].load(Ordering::SeqCst)
    }

    /// Something changed in peer `i`'s tree.
    pub fn mark(&self, i: usize) {
        self.changed[i].store(true, Ordering::SeqCst);
    }

    /// Events were lost: every tree may have changed.
    pub fn mark_all(&self) {
        self.changed.iter().for_each(|c| c.store(true, Ordering::SeqCst));
    }

    /// Peer `i`'s whole sync folder is watched.
    pub fn watching(&self, i: usize) {
        self.watched[i].store(true, Ordering::SeqCst);
    }

    /// Part of peer `i`'s sync folder could not be watched: its tree is read every round.
    pub fn unwatch(&self, i: usize) {
        self.watched[i].store(false, Ordering::SeqCst);
    }

    /// The watcher is reading events (`true`) or has stopped (`false`).
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::SeqCst);
        self.mark_all();
    }
}

/// What the settle wait needs: are all trees equal, how many distinct trees, since when unchanged.
#[derive(Clone, Debug)]
pub struct MonitorState {
    pub converged: bool,
    pub distinct: usize,
    pub since: Instant,
}

impl Default for MonitorState {
    fn default() -> Self {
        MonitorState {
            converged: false,
            distinct: 0,
            since: Instant::now(),
        }
    }
}

/// The changes from `before` to `after`: (path, new hash or `None` when removed), sorted by path.
pub fn changes(before: &Tree, after: &Tree) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (path, e) in &after.files {
        if before.files.get(path).map(|b| &b.hash) != Some(&e.hash) {
            out.push((path.clone(), Some(e.hash.clone())));
        }
    }
    for path in before.files.keys() {
        if !after.files.contains_key(path) {
            out.push((path.clone(), None));
        }
    }
    out.sort();
    out
}

/// Reads every tree each [`INTERVAL`]; records transitions and observations; publishes the state for
/// the settle wait. "Since" resets whenever the common tree changes, so "stable for `quiet`" means no
/// file moved. Each round opens each peer's sync folder afresh beneath its data folder (a peer may
/// swap it for a symlink at any time): one that cannot be opened reads as an empty tree.
pub async fn run(
    peers: Vec<(String, PeerDir)>,
    ignore: Arc<globset::GlobSet>,
    dirty: Option<Arc<Dirty>>,
    history: Arc<History>,
    segments: Segments,
    mut stop: watch::Receiver<bool>,
    state: watch::Sender<MonitorState>,
) {
    let mut out = match Appender::create(&segments, OBSERVATIONS) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::error!("cannot write {OBSERVATIONS} in {}: {e}", segments.dir().display());
            None
        }
    };
    let dirs: Vec<PeerDir> = peers.iter().map(|p| p.1.clone()).collect();
    let mut readers: Vec<TreeReader> = dirs.iter().map(|_| TreeReader::new(ignore.clone())).collect();
    let mut previous: Vec<Tree> = vec![Tree::default(); dirs.len()];
    let mut digests: Vec<String> = previous.iter().map(Tree::digest).collect();
    let mut last: Option<(bool, String)> = None;
    let mut round = 0u64;
    loop {
        round += 1;
        if round.is_multiple_of(REHASH_EVERY) {
            readers = dirs.iter().map(|_| TreeReader::new(ignore.clone())).collect();
        }
        // Which trees to read: taken before reading, so a change made while they are read is
        // read next round.
        let full = round.is_multiple_of(FULL_EVERY) || round == 1;
        let read: Vec<bool> = (0..dirs.len())
            .map(|i| dirty.as_ref().is_none_or(|d| d.take(i)) || full)
            .collect();
        let (readers_back, fresh) = {
            let dirs = dirs.clone();
            let mut rs = std::mem::take(&mut readers);
            tokio::task::spawn_blocking(move || {
                let fresh: Vec<Option<Tree>> = rs
                    .iter_mut()
                    .zip(&dirs)
                    .zip(read)
                    .map(|((r, d), read)| read.then(|| d.sync().and_then(|sync| r.read(&sync)).unwrap_or_default()))
                    .collect();
                (rs, fresh)
            })
            .await
            .expect("tree reading does not panic")
        };
        readers = readers_back;
        let t_ms = history.now_ms();
        let mut lines = Vec::new();
        for (i, tree) in fresh.into_iter().enumerate() {
            // A tree not read is the one read before: no change, the same digest.
            let Some(tree) = tree else { continue };
            for (path, hash) in changes(&previous[i], &tree) {
                let o = Observation {
                    t_ms,
                    peer: peers[i].0.clone(),
                    path,
                    hash,
                };
                lines.push(serde_json::to_string(&o).expect("observations serialize"));
            }
            digests[i] = tree.digest();
            previous[i] = tree;
        }
        if let Some(w) = out.as_mut()
            && !lines.is_empty()
        {
            let res = w.write(|w| lines.iter().try_for_each(|l| writeln!(w, "{l}")));
            if let Err(e) = res {
                tracing::error!("cannot write observations: {e}");
            }
        }
        let distinct: std::collections::BTreeSet<&String> = digests.iter().collect();
        let converged = distinct.len() == 1;
        let key = (
            converged,
            distinct.iter().next().map(|d| d.to_string()).unwrap_or_default(),
        );
        if last.as_ref() != Some(&key) {
            match (converged, last.as_ref().map(|l| l.0)) {
                (true, _) => {
                    history.record(Event::Converged {
                        tree_hash: key.1.clone(),
                    });
                }
                (false, Some(true)) => {
                    history.record(Event::Diverged);
                }
                _ => {}
            }
            let _ = state.send(MonitorState {
                converged,
                distinct: distinct.len(),
                since: Instant::now(),
            });
            last = Some(key);
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::observations::{OBSERVATIONS, first_seen, read_observations};
    use crate::tree::FileEntry;

    fn tree(files: &[(&str, &str)]) -> Tree {
        Tree {
            files: files
                .iter()
                .map(|(p, h)| {
                    (
                        p.to_string(),
                        FileEntry {
                            size: 1,
                            hash: h.to_string(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn changes_list_new_changed_and_removed_paths() {
        let a = tree(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let b = tree(&[("a", "1"), ("b", "9"), ("d", "4")]);
        assert_eq!(
            changes(&a, &b),
            vec![
                ("b".to_string(), Some("9".to_string())),
                ("c".to_string(), None),
                ("d".to_string(), Some("4".to_string())),
            ]
        );
        assert!(changes(&b, &b).is_empty());
    }

    #[test]
    fn observations_round_trip_and_first_seen_keeps_the_earliest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OBSERVATIONS);
        let obs = vec![
            Observation {
                t_ms: 5,
                peer: "p1".into(),
                path: "a".into(),
                hash: Some("h".into()),
            },
            Observation {
                t_ms: 9,
                peer: "p1".into(),
                path: "a".into(),
                hash: None,
            },
            Observation {
                t_ms: 12,
                peer: "p1".into(),
                path: "a".into(),
                hash: Some("h".into()),
            },
        ];
        let text: String = obs.iter().map(|o| serde_json::to_string(o).unwrap() + "\n").collect();
        std::fs::write(&path, text).unwrap();
        let back = read_observations(&path).unwrap();
        assert_eq!(back, obs);
        assert_eq!(first_seen(&back)[&("p1", "a", "h")], 5);
        assert!(read_observations(&dir.path().join("none")).unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_monitor_records_convergence_and_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb) = (PeerDir::new(dir.path(), "a"), PeerDir::new(dir.path(), "b"));
        let (a, b) = (pa.root.join("sync"), pb.root.join("sync"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let history = Arc::new(History::create(&dir.path().join("history.jsonl")).unwrap());
        let obs_path = dir.path().join(OBSERVATIONS);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (state_tx, state_rx) = watch::channel(MonitorState::default());
        let task = tokio::spawn(run(
            vec![("p1".into(), pa), ("p2".into(), pb)],
            crate::tree::ignore_set(&[]),
            None,
            history.clone(),
            Segments::new(dir.path()),
            stop_rx,
            state_tx,
        ));
        let wait = |ms| tokio::time::sleep(Duration::from_millis(ms));
        wait(300).await;
        std::fs::write(a.join("f"), b"one").unwrap();
        wait(500).await;
        assert!(!state_rx.borrow().converged, "p2 lacks f");
        std::fs::write(b.join("f"), b"one").unwrap();
        wait(500).await;
        assert!(state_rx.borrow().converged);
        std::fs::remove_file(a.join("f")).unwrap();
        wait(500).await;
        let _ = stop_tx.send(true);
        task.await.unwrap();

        let obs = read_observations(&obs_path).unwrap();
        let h = crate::tree::hash_bytes(b"one");
        let summary: Vec<(&str, &str, Option<&str>)> = obs
            .iter()
            .map(|o| (o.peer.as_str(), o.path.as_str(), o.hash.as_deref()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("p1", "f", Some(h.as_str())),
                ("p2", "f", Some(h.as_str())),
                ("p1", "f", None)
            ]
        );
        assert!(obs.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));
        let kinds: Vec<String> = crate::record::history::read(&dir.path().join("history.jsonl"))
            .unwrap()
            .map(|r| match r.unwrap().event {
                Event::Converged { .. } => "converged".to_string(),
                Event::Diverged => "diverged".to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["converged", "diverged", "converged", "diverged"]);
    }
}
