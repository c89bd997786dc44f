//! The propagation watcher: inotify on the host side of every peer's sync folder, so that when a
//! content appeared at a peer is known to the millisecond, not to the monitor's 200 ms poll (the seed's
//! "< 100 ms p99" cannot be judged from samples 200 ms apart).
//!
//! Each peer's sync folder is a bind mount under the run folder; its host side is watched. Every
//! folder is opened beneath the peer's data folder ([`PeerDir::sync`], [`Beneath::dir`]: never through
//! a symlink), and the watch is added on that open folder through `/proc/self/fd/N`, which names the
//! inode opened, not a path resolved again. A file is hashed through the same handles. So the
//! watcher reads nothing outside the run folder, whatever a peer plants.
//!
//! On a file closed after writing or renamed into place, the watcher hashes it and, when the hash is
//! new for that (peer, path), writes an [`Observation`] to `sightings.jsonl`, timed on the history's
//! clock right after the hash (so "seen at `t`" means on disk at `t` at the latest, as for the
//! monitor). A file deleted or renamed away is an observation without a hash. A new folder is watched
//! and read at once (files written into it before its watch was in place are caught by that read).
//! The monitor's observations stay what the checkers' causal order rests on; the figures take the
//! earlier of the two times for each (peer, path, hash), and say which source they came from and
//! how often the two disagree (`crate::checker::figures::propagation`).
//!
//! The kernel's event queue can overflow (`max_queued_events`, 16384 by default): then events are
//! lost, the watcher logs it, and the figures fall back on the monitor for what it missed.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use tokio::sync::watch;

use crate::monitor::Dirty;
use crate::record::beneath::{Beneath, Kind};
use crate::record::history::History;
use crate::record::observations::{Observation, SIGHTINGS};
use crate::record::run_folder::PeerDir;
use crate::record::segment::{Appender, Segments};
use crate::tree::FileEntry;

/// What a folder's watch reports: files written, renamed in or out, created (folders) and deleted.
const MASK: WatchFlags = WatchFlags::CLOSE_WRITE
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::CREATE)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::EXCL_UNLINK);

/// How long one wait for events lasts before the watcher looks at its stop signal.
const WAIT_MS: i32 = 50;

/// Watches every peer's sync folder until `stop` turns true, writing sightings to `out`. Runs on a
/// thread of its own (its waits block); a folder that cannot be watched is logged and left to the
/// monitor.
/// Starts the watcher's thread. It tells the monitor which trees changed through `dirty`.
pub fn spawn(
    peers: Vec<(String, PeerDir)>,
    ignore: Arc<globset::GlobSet>,
    dirty: Arc<Dirty>,
    history: Arc<History>,
    out: Segments,
    stop: watch::Receiver<bool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let result = watch_all(&peers, &ignore, &dirty, &history, &out, &stop);
        // From now on nothing tells the monitor what changed: it reads every tree again.
        dirty.set_live(false);
        if let Err(e) = result {
            tracing::warn!("the inotify watcher stopped: {e}; propagation is timed by polling only");
        }
    })
}

fn watch_all(
    peers: &[(String, PeerDir)],
    ignore: &globset::GlobSet,
    dirty: &Dirty,
    history: &History,
    out: &Segments,
    stop: &watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut w = Watcher {
        fd: inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?,
        peers: Vec::new(),
        folders: HashMap::new(),
        last: BTreeMap::new(),
        ignore,
        dirty,
        history,
        out: Appender::create(out, SIGHTINGS)?,
        overflows: 0,
    };
    for (i, (name, dir)) in peers.iter().enumerate() {
        match dir.sync() {
            Ok(sync) => {
                w.peers.push((name.clone(), Some(sync)));
                // Watched once its whole folder is: `add` takes it back if any watch fails.
                dirty.watching(i);
                w.add(i, PathBuf::new());
            }
            Err(e) => {
                tracing::warn!("not watching {name}'s sync folder: {e}");
                w.peers.push((name.clone(), None));
            }
        }
    }
    dirty.set_live(true);
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
    while !*stop.borrow() {
        let mut pfd = [rustix::event::PollFd::new(&w.fd, rustix::event::PollFlags::IN)];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(WAIT_MS) * 1_000_000,
        };
        match rustix::event::poll(&mut pfd, Some(&timeout)) {
            Ok(0) | Err(Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        // Events are copied out of the reader's buffer first: handling one adds watches on the fd.
        let mut batch = Vec::new();
        let mut reader = inotify::Reader::new(&w.fd, &mut buf);
        loop {
            match reader.next() {
                Ok(ev) => batch.push((
                    ev.wd(),
                    ev.events(),
                    ev.file_name()
                        .map(|n| PathBuf::from(std::ffi::OsStr::from_bytes(n.to_bytes()))),
                )),
                Err(Errno::AGAIN) => break,
                Err(e) => return Err(e.into()),
            }
            if reader.is_buffer_empty() {
                break;
            }
        }
        for (wd, flags, name) in batch {
            w.handle(wd, flags, name);
        }
    }
    if w.overflows > 0 {
        tracing::warn!(
            "the inotify queue overflowed {} times: some sightings are missing (the monitor's polls cover them)",
            w.overflows
        );
    }
    Ok(())
}

struct Watcher<'a> {
    fd: OwnedFd,
    /// Each peer's name and its sync folder, opened once beneath its data folder.
    peers: Vec<(String, Option<Beneath>)>,
    /// Watch descriptor -> (peer, folder relative to the sync folder).
    folders: HashMap<i32, (usize, PathBuf)>,
    /// The last hash written per (peer, path): a sighting is written when it changes.
    last: BTreeMap<(usize, String), Option<String>>,
    ignore: &'a globset::GlobSet,
    /// Which peers' trees changed, for the monitor.
    dirty: &'a Dirty,
    history: &'a History,
    /// `sightings.jsonl` in the folder the run records into now (a soak's window).
    out: Appender,
    overflows: u64,
}

impl Watcher<'_> {
    /// Watches the folder `rel` of peer `i` and reads what it already holds (files written before
    /// the watch was in place, folders below it), recursively.
    fn add(&mut self, i: usize, rel: PathBuf) {
        self.dirty.mark(i);
        let mut pending = vec![rel];
        while let Some(rel) = pending.pop() {
            let Some(sync) = &self.peers[i].1 else { return };
            let Ok(folder) = sync.dir(&rel) else { continue };
            let path = format!("/proc/self/fd/{}", folder.as_fd().as_raw_fd());
            match inotify::add_watch(&self.fd, path, MASK) {
                Ok(wd) => {
                    self.folders.insert(wd, (i, rel.clone()));
                }
                Err(e) => {
                    tracing::warn!("cannot watch {}: {e}", folder.path().display());
                    // Changes there would go unseen: the monitor reads this tree every round.
                    self.dirty.unwatch(i);
                    continue;
                }
            }
            let Ok(entries) = folder.read_dir("") else { continue };
            for (name, meta) in entries {
                let child = rel.join(name);
                if self.ignored(&child) {
                    continue;
                }
                match meta.kind {
                    Kind::Dir => pending.push(child),
                    _ => self.sight(i, &child, false),
                }
            }
        }
    }

    fn handle(&mut self, wd: i32, flags: ReadFlags, name: Option<PathBuf>) {
        if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
            self.overflows += 1;
            self.dirty.mark_all();
            return;
        }
        if flags.contains(ReadFlags::IGNORED) {
            self.folders.remove(&wd);
            return;
        }
        let (Some((i, folder)), Some(name)) = (self.folders.get(&wd).cloned(), name) else {
            return;
        };
        let rel = folder.join(name);
        if self.ignored(&rel) {
            return;
        }
        self.dirty.mark(i);
        let is_dir = flags.contains(ReadFlags::ISDIR);
        let gone = flags.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM);
        match (is_dir, gone) {
            (true, false) if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) => self.add(i, rel),
            (true, true) => self.gone_below(i, &rel),
            (false, false) if flags.intersects(ReadFlags::CLOSE_WRITE | ReadFlags::MOVED_TO) => {
                self.sight(i, &rel, false)
            }
            // A file just created is still being written (its close comes next); a symlink is whole.
            (false, false) if flags.contains(ReadFlags::CREATE) => self.sight(i, &rel, true),
            (false, true) => self.vanished(i, &rel),
            _ => {}
        }
    }

    /// A folder was removed or renamed away: everything seen below it is gone, and the watches
    /// below it name the wrong paths now (a folder renamed in is watched afresh).
    fn gone_below(&mut self, i: usize, rel: &Path) {
        let stale: Vec<i32> = self
            .folders
            .iter()
            .filter(|(_, (p, f))| *p == i && f.starts_with(rel))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in stale {
            let _ = inotify::remove_watch(&self.fd, wd);
            self.folders.remove(&wd);
        }
        let prefix = format!("{}/", slashed(rel));
        let held: Vec<String> = self
            .last
            .iter()
            .filter(|((p, path), h)| *p == i && path.starts_with(&prefix) && h.is_some())
            .map(|((_, path), _)| path.clone())
            .collect();
        for path in held {
            self.record(i, Path::new(&path), None);
        }
    }

    /// A name was removed or renamed away; a rename that exchanged two files (the workload's, and
    /// some daemons' way to replace a file and keep what it replaced) leaves a file there all the same.
    fn vanished(&mut self, i: usize, rel: &Path) {
        let Some(sync) = &self.peers[i].1 else { return };
        match sync.metadata(rel).map(|m| m.kind) {
            Ok(Kind::File | Kind::Symlink) => self.sight(i, rel, false),
            _ => self.record(i, rel, None),
        }
    }

    /// Hashes what is at `rel` now (a regular file's content, a symlink's text, as trees do).
    /// `links_only`: a regular file there is left for its close event.
    fn sight(&mut self, i: usize, rel: &Path, links_only: bool) {
        let Some(sync) = &self.peers[i].1 else { return };
        let hash = match sync.metadata(rel).map(|m| m.kind) {
            Ok(Kind::File) if !links_only => crate::tree::hash_file(sync, rel).ok(),
            Ok(Kind::Symlink) => sync.read_link(rel).ok().map(|t| FileEntry::symlink(&t).hash),
            _ => None,
        };
        if let Some(hash) = hash {
            self.record(i, rel, Some(hash));
        }
    }

    fn record(&mut self, i: usize, rel: &Path, hash: Option<String>) {
        let key = (i, slashed(rel));
        let before = self.last.get(&key);
        // A removal of something never seen, or the same content again (a rewrite, a touch): nothing new.
        if before == Some(&hash) || (hash.is_none() && before.is_none()) {
            return;
        }
        let o = Observation {
            t_ms: self.history.now_ms(),
            peer: self.peers[i].0.clone(),
            path: key.1.clone(),
            hash: hash.clone(),
        };
        self.last.insert(key, hash);
        let line = serde_json::to_string(&o).expect("observations serialize");
        if let Err(e) = self.out.write(|w| writeln!(w, "{line}")) {
            tracing::warn!("cannot write a sighting: {e}");
        }
    }

    fn ignored(&self, rel: &Path) -> bool {
        self.ignore.is_match(slashed(rel))
    }
}

/// A path relative to the sync folder as trees name it.
fn slashed(rel: &Path) -> String {
    rel.to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::observations::{OBSERVATIONS, SIGHTINGS, first_seen, read_observations};
    use std::time::Duration;

    fn peer(dir: &Path, name: &str) -> (PeerDir, PathBuf) {
        let p = PeerDir::new(dir, name);
        let sync = p.root.join("sync");
        std::fs::create_dir_all(&sync).unwrap();
        (p, sync)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sightings_follow_writes_renames_folders_and_deletes_and_skip_symlinks_targets() {
        let dir = tempfile::tempdir().unwrap();
        let (p1, s1) = peer(dir.path(), "p1");
        std::fs::write(s1.join("before.txt"), b"already here").unwrap();
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, b"host secret").unwrap();
        let history = Arc::new(History::create(&dir.path().join("history.jsonl")).unwrap());
        let out = dir.path().join(SIGHTINGS);
        let (stop_tx, stop_rx) = watch::channel(false);
        let ignore = crate::tree::ignore_set(&[".tmp-*".to_string()]);
        let t = spawn(
            vec![("p1".into(), p1)],
            ignore,
            Arc::new(Dirty::new(1)),
            history.clone(),
            crate::record::segment::Segments::new(dir.path()),
            stop_rx,
        );
        let settle = || std::thread::sleep(Duration::from_millis(150));
        settle();
        std::fs::write(s1.join(".tmp-a"), b"one").unwrap();
        std::fs::rename(s1.join(".tmp-a"), s1.join("a.txt")).unwrap();
        std::fs::create_dir_all(s1.join("d/e")).unwrap();
        std::fs::write(s1.join("d/e/f.txt"), b"deep").unwrap();
        std::os::unix::fs::symlink(&outside, s1.join("link")).unwrap();
        settle();
        // Replaced by exchanging names, as the workload does: never seen gone.
        std::fs::write(s1.join(".tmp-b"), b"two").unwrap();
        let sync = Beneath::open(&s1).unwrap();
        sync.rename_with(".tmp-b", "a.txt", rustix::fs::RenameFlags::EXCHANGE)
            .unwrap();
        sync.unlink(".tmp-b").unwrap();
        std::fs::write(s1.join("a.txt"), b"two").unwrap(); // same content again: no new sighting
        settle();
        std::fs::remove_file(s1.join("a.txt")).unwrap();
        std::fs::remove_dir_all(s1.join("d")).unwrap();
        settle();
        let _ = stop_tx.send(true);
        t.join().unwrap();

        let seen: Vec<(String, Option<String>)> = read_observations(&out)
            .unwrap()
            .into_iter()
            .map(|o| (o.path, o.hash))
            .collect();
        let h = |b: &[u8]| Some(crate::tree::hash_bytes(b));
        let link = Some(FileEntry::symlink(outside.as_os_str().as_bytes()).hash);
        assert_eq!(
            seen,
            vec![
                ("before.txt".into(), h(b"already here")),
                ("a.txt".into(), h(b"one")),
                ("d/e/f.txt".into(), h(b"deep")),
                ("link".into(), link),
                ("a.txt".into(), h(b"two")),
                ("a.txt".into(), None),
                ("d/e/f.txt".into(), None),
            ],
            "the folder made and written at once is read when watched; the link is its text, not the host file"
        );
        assert_eq!(std::fs::read(&outside).unwrap(), b"host secret");
    }

    /// The point of the watcher: it times a new content finer than the monitor's 200 ms poll. Ten
    /// writes spread over two poll intervals: the poll sees each up to 200 ms late (100 ms on
    /// average), the watcher within a few ms; the watcher is never much the later of the two (a
    /// loaded host may hold its thread back a little).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inotify_times_writes_finer_than_the_poll() {
        assert_eq!(
            crate::monitor::INTERVAL.as_millis() as u64,
            crate::record::observations::POLL_RESOLUTION_MS
        );
        let dir = tempfile::tempdir().unwrap();
        let (p1, s1) = peer(dir.path(), "p1");
        let history = Arc::new(History::create(&dir.path().join("history.jsonl")).unwrap());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (state_tx, _state_rx) = watch::channel(crate::monitor::MonitorState::default());
        let ignore = crate::tree::ignore_set(&[]);
        // Wired as a run wires them: the monitor reads the tree when the watcher saw it change.
        let dirty = Arc::new(Dirty::new(1));
        let monitor = tokio::spawn(crate::monitor::run(
            vec![("p1".into(), p1.clone())],
            ignore.clone(),
            Some(dirty.clone()),
            history.clone(),
            crate::record::segment::Segments::new(dir.path()),
            stop_rx.clone(),
            state_tx,
        ));
        let watcher = spawn(
            vec![("p1".into(), p1)],
            ignore,
            dirty,
            history.clone(),
            crate::record::segment::Segments::new(dir.path()),
            stop_rx,
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut written = Vec::new();
        for k in 0..10u64 {
            std::fs::write(s1.join(format!("f{k}")), format!("content {k}")).unwrap();
            written.push((format!("f{k}"), history.now_ms()));
            tokio::time::sleep(Duration::from_millis(43)).await;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        let _ = stop_tx.send(true);
        monitor.await.unwrap();
        watcher.join().unwrap();

        let polled = read_observations(&dir.path().join(OBSERVATIONS)).unwrap();
        let sighted = read_observations(&dir.path().join(SIGHTINGS)).unwrap();
        let (poll, fine) = (first_seen(&polled), first_seen(&sighted));
        let (mut poll_late, mut fine_late) = (0u64, 0u64);
        for (k, (path, t)) in written.iter().enumerate() {
            let h = crate::tree::hash_bytes(format!("content {k}").as_bytes());
            let key = ("p1", path.as_str(), h.as_str());
            let (p, f) = (poll[&key], fine[&key]);
            assert!(f <= p + 150, "{path}: inotify at {f} ms, the poll at {p} ms");
            poll_late += p.saturating_sub(*t);
            fine_late += f.saturating_sub(*t);
        }
        assert!(
            fine_late * 3 < poll_late,
            "over 10 writes the watcher was {fine_late} ms late in all, the poll {poll_late} ms"
        );
    }

    /// The monitor reads only the trees the watcher saw change: a write marks its peer and no
    /// other, an ignored name marks nobody, and once the watcher stops every tree is read again.
    #[test]
    fn the_watcher_marks_the_tree_that_changed_and_only_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (p1, s1) = peer(dir.path(), "p1");
        let (p2, s2) = peer(dir.path(), "p2");
        let history = Arc::new(History::create(&dir.path().join("history.jsonl")).unwrap());
        let (stop_tx, stop_rx) = watch::channel(false);
        let dirty = Arc::new(Dirty::new(2));
        assert!(
            dirty.take(0) && dirty.take(1),
            "before the watcher runs every tree is read"
        );
        let t = spawn(
            vec![("p1".into(), p1), ("p2".into(), p2)],
            crate::tree::ignore_set(&[".tmp-*".to_string()]),
            dirty.clone(),
            history,
            crate::record::segment::Segments::new(dir.path()),
            stop_rx,
        );
        let settle = || std::thread::sleep(Duration::from_millis(150));
        settle();
        // Taken once after the watcher went live (which marks everyone): nothing changed since.
        let _ = (dirty.take(0), dirty.take(1));
        assert!(!dirty.take(0) && !dirty.take(1), "nothing changed");
        std::fs::write(s1.join("a.txt"), b"one").unwrap();
        std::fs::create_dir(s2.join("sub")).unwrap();
        settle();
        assert!(dirty.take(0), "p1's write marks p1");
        assert!(dirty.take(1), "p2's new folder marks p2");
        std::fs::write(s2.join("sub/b.txt"), b"two").unwrap();
        settle();
        assert!(!dirty.take(0), "p2's write does not mark p1");
        assert!(dirty.take(1), "a write in a folder made after the start marks p2");
        std::fs::write(s1.join(".tmp-x"), b"ignored").unwrap();
        settle();
        assert!(!dirty.take(0), "an ignored name marks nobody");
        stop_tx.send(true).unwrap();
        t.join().unwrap();
        assert!(
            dirty.take(0) && dirty.take(0),
            "a stopped watcher sees nothing: every round reads"
        );
    }
}
