//! [`Index`]: every path's current [`Entry`], persisted crash-safely, plus the bookkeeping the
//! protocol needs (a local change sequence for deltas, content hash -> paths for serving blobs,
//! the node's HLC and authoring counter, and a digest of the whole index).
//!
//! Persistence: `<state>/index/snapshot.json` (written to a temp file, fsynced, renamed) plus an
//! append-only `log` of checksummed JSON lines, fsynced once per batch before the batch is
//! visible. A torn last line (SIGKILL mid-write) fails its checksum and is cut off at the next open.
//! Replaying the log over a snapshot that already contains it is harmless (records are "path ->
//! entry", applied in order), so compaction needs no two-phase dance.
//!
//! An *intent* record is written before sync renames a received file into place; if the process
//! dies between the rename and the commit, the next start finds the file matching the intent and
//! commits it instead of mistaking it for a local edit.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::hlc::{Hlc, HlcClock, wall_ms};
use crate::knowledge::{Knowledge, dot};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index I/O in {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("index snapshot {path} is unreadable: {msg}")]
    Corrupt { path: String, msg: String },
}

/// What the scanner last saw of a file on disk (not persisted: rebuilt by the first scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub mtime_ns: i128,
    pub size: u64,
    pub ino: u64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            size: meta.len(),
            ino: meta.ino(),
        }
    }
}

/// What `snapshot.json` holds (written by [`Index::compact`] from borrowed entries).
#[derive(Deserialize)]
struct Snapshot {
    seq: u64,
    self_seq: u64,
    entries: Vec<(u64, Entry)>,
}

/// What [`Record`] serializes as, borrowing: appends and snapshots clone no entries (a clone of
/// every entry of a batch, or of the whole index for a snapshot, was the peak of resident memory).
#[derive(Serialize)]
enum RecordOut<'a> {
    #[serde(rename = "c")]
    Commit(u64, &'a Entry, u64),
    #[serde(rename = "i")]
    Intent(&'a Entry),
    #[serde(rename = "f")]
    Forget(&'a str),
}

#[derive(Deserialize)]
enum Record {
    /// `(seq, entry, self_seq after it)`.
    #[serde(rename = "c")]
    Commit(u64, Entry, u64),
    #[serde(rename = "i")]
    Intent(Entry),
    /// Written by earlier versions (an index id for delta cursors); read and ignored.
    #[serde(rename = "e")]
    Epoch(serde::de::IgnoredAny),
    /// A tombstone dropped from the index (only the `legacy` flavor forgets deletes).
    #[serde(rename = "f")]
    Forget(String),
}

pub struct Index {
    dir: PathBuf,
    log: File,
    log_records: usize,
    entries: BTreeMap<String, Slot>,
    /// Dot (author key, counter) -> the path holding that version (see [`crate::knowledge`]).
    by_dot: BTreeMap<(u64, u64), String>,
    /// Every dot this node has seen: held, or received and found superseded. Not persisted: a
    /// restart knows what it holds, and neighbours' fills bring back the rest.
    seen: Knowledge,
    /// Content hash -> paths holding it (usually one: a `Vec`, not a set, to save memory).
    by_hash: HashMap<[u8; 32], Vec<String>>,
    seq: u64,
    self_seq: u64,
    tombstones: usize,
    /// Wrapping sum of every entry's hash, lane by lane: an order-independent multiset hash
    /// updated in O(1) per change (recomputing a digest over 10k entries on every change cost
    /// more CPU than syncing).
    sum: [u64; 4],
    clock: HlcClock,
    /// Paths whose received content is recorded as intent but not committed yet -> its hash
    /// (empty for a delete). A commit that failed (disk full) after the rename leaves the new
    /// content on disk: the scanner must not take it for a local edit.
    inflight: HashMap<String, String>,
}

/// See [`Index::missing`].
pub struct Missing {
    pub entries: Vec<Entry>,
    pub fills: Knowledge,
    /// False when `limit` cut the list (fills are then empty).
    pub complete: bool,
}

/// One index slot: the entry, its local sequence and its hash (for the index digest).
struct Slot {
    seq: u64,
    entry: Entry,
    hash: [u8; 32],
    /// What the file looked like when last hashed (not persisted: rebuilt by the first scan).
    stamp: Option<Stamp>,
}

/// The binary form of a 64-hex content hash (a map key half the size of the text).
fn hash_key(hex_hash: &str) -> Option<[u8; 32]> {
    let mut k = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut k).ok()?;
    Some(k)
}

/// Adds (or subtracts) a 256-bit hash to the digest sum, four independent 64-bit lanes.
fn lanes(sum: &mut [u64; 4], h: &[u8; 32], add: bool) {
    for (i, lane) in sum.iter_mut().enumerate() {
        let v = u64::from_le_bytes(h[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        *lane = if add {
            lane.wrapping_add(v)
        } else {
            lane.wrapping_sub(v)
        };
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Appends `<16 hex of BLAKE3> <json>\n` to `out`; `json` is scratch space.
fn encode_line(out: &mut Vec<u8>, json: &mut Vec<u8>, rec: &RecordOut) {
    json.clear();
    serde_json::to_writer(&mut *json, rec).expect("records serialize");
    let sum = blake3::hash(json).to_hex();
    out.extend_from_slice(&sum.as_bytes()[..16]);
    out.push(b' ');
    out.extend_from_slice(json);
    out.push(b'\n');
}

fn decode_line(line: &str) -> Option<Record> {
    let (sum, json) = line.split_once(' ')?;
    if blake3::hash(json.as_bytes()).to_hex()[..16] != *sum {
        return None;
    }
    serde_json::from_str(json).ok()
}

impl Index {
    /// Opens (or creates) the index under `state_dir/index`, returning it and the intents that were
    /// never committed.
    pub fn open(state_dir: &Path) -> Result<(Index, Vec<Entry>), IndexError> {
        let dir = state_dir.join("index");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let snap_path = dir.join("snapshot.json");
        let mut idx = Index {
            log: File::open("/dev/null").map_err(io_err(&dir))?,
            dir: dir.clone(),
            log_records: 0,
            entries: BTreeMap::new(),
            by_dot: BTreeMap::new(),
            seen: Knowledge::new(),
            by_hash: HashMap::new(),
            seq: 0,
            self_seq: 0,
            tombstones: 0,
            sum: [0; 4],
            clock: HlcClock::default(),
            inflight: HashMap::new(),
        };
        let mut lost_snapshot = false;
        match std::fs::read(&snap_path) {
            Ok(bytes) => match serde_json::from_slice::<Snapshot>(&bytes) {
                Ok(snap) => {
                    idx.seq = snap.seq;
                    idx.self_seq = snap.self_seq;
                    for (seq, e) in snap.entries {
                        idx.insert(seq, e);
                    }
                }
                Err(e) => {
                    // A damaged snapshot (disk fault on the state folder) must not keep the daemon
                    // from starting: set it aside and rebuild from the log, the files and the
                    // neighbours. Nothing is lost that a neighbour or the sync folder still has.
                    tracing::error!(path = %snap_path.display(), "index snapshot unreadable ({e}); set aside, rebuilding");
                    let aside = dir.join(format!("snapshot.json.corrupt-{}", wall_ms()));
                    std::fs::rename(&snap_path, &aside).map_err(io_err(&snap_path))?;
                    lost_snapshot = true;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&snap_path)(e)),
        }
        let log_path = dir.join("log");
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        let mut intents: BTreeMap<String, Entry> = BTreeMap::new();
        let mut good_len = 0u64;
        {
            let mut reader = BufReader::new(&mut log);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(io_err(&log_path))?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                good_len += n as u64;
                // A complete line that fails its checksum was damaged on disk (torn writes only
                // leave an incomplete last line): skip it rather than lose every later record.
                let Some(rec) = decode_line(line.trim_end_matches('\n')) else {
                    tracing::warn!(log = %log_path.display(), "skipping a damaged index log record");
                    continue;
                };
                idx.log_records += 1;
                match rec {
                    Record::Commit(seq, e, me) => {
                        intents.remove(&e.path);
                        idx.self_seq = idx.self_seq.max(me);
                        idx.insert(seq, e);
                    }
                    Record::Intent(e) => {
                        intents.insert(e.path.clone(), e);
                    }
                    Record::Epoch(_) => {}
                    Record::Forget(p) => idx.drop_tombstone(&p),
                }
            }
        }
        // Cut off a torn tail so new records start on a clean line.
        log.set_len(good_len).map_err(io_err(&log_path))?;
        log.seek(SeekFrom::End(0)).map_err(io_err(&log_path))?;
        idx.log = log;
        if lost_snapshot {
            // Our authoring counter was in the snapshot: restart it above anything we can have
            // issued (one per local change, far below the clock's milliseconds), so no version is
            // ever signed twice with the same counter.
            idx.self_seq = idx.self_seq.max(wall_ms());
        }
        let max_hlc = idx.entries.values().map(|s| s.entry.hlc).max().unwrap_or_default();
        idx.clock.observe(max_hlc, wall_ms());
        Ok((idx, intents.into_values().collect()))
    }

    fn insert(&mut self, seq: u64, e: Entry) {
        self.inflight.remove(&e.path);
        if let Some(Slot {
            seq: _,
            entry: old,
            hash: old_h,
            ..
        }) = self.entries.remove(&e.path)
        {
            self.unmap_dot(&old);
            lanes(&mut self.sum, &old_h, false);
            if old.deleted {
                self.tombstones -= 1;
            } else if let Some(paths) = hash_key(&old.hash).and_then(|k| self.by_hash.get_mut(&k)) {
                paths.retain(|p| p != &old.path);
                if paths.is_empty() {
                    self.by_hash.remove(&hash_key(&old.hash).expect("present"));
                }
            }
        }
        if e.deleted {
            self.tombstones += 1;
        } else {
            if let Some(k) = hash_key(&e.hash) {
                // Usually one path per hash: no room for four.
                self.by_hash
                    .entry(k)
                    .or_insert_with(|| Vec::with_capacity(1))
                    .push(e.path.clone());
            }
        }
        self.seq = self.seq.max(seq);
        self.by_dot.insert(dot(&e), e.path.clone());
        self.seen.insert(dot(&e));
        let hash = *blake3::hash(&e.digest_bytes()).as_bytes();
        lanes(&mut self.sum, &hash, true);
        self.entries.insert(
            e.path.clone(),
            Slot {
                seq,
                entry: e,
                hash,
                stamp: None,
            },
        );
    }

    /// Appends records in chunks of ~60 KiB, then one fsync for all of them.
    fn append<'a>(&mut self, recs: impl IntoIterator<Item = RecordOut<'a>>) -> Result<(), IndexError> {
        let path = self.dir.join("log");
        let before = self.log.metadata().map_err(io_err(&path))?.len();
        let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
        let mut json: Vec<u8> = Vec::with_capacity(1024);
        let mut n = 0usize;
        let mut written = Ok(());
        for r in recs {
            encode_line(&mut buf, &mut json, &r);
            n += 1;
            if buf.len() >= 60 << 10 {
                written = self.log.write_all(&buf);
                buf.clear();
                if written.is_err() {
                    break;
                }
            }
        }
        let written = written
            .and_then(|()| self.log.write_all(&buf))
            .and_then(|()| self.log.sync_data());
        if let Err(e) = written {
            // A partial write (disk full, I/O error) must not stay in the middle of the log:
            // replay stops at the first bad line, which would hide every later record.
            let _ = self.log.set_len(before);
            let _ = self.log.seek(SeekFrom::End(0));
            return Err(io_err(&path)(e));
        }
        self.log_records += n;
        Ok(())
    }

    /// Durably records entries that are about to be written to disk.
    pub fn record_intents(&mut self, entries: &[Entry]) -> Result<(), IndexError> {
        self.append(entries.iter().map(RecordOut::Intent))?;
        for e in entries {
            self.inflight.insert(e.path.clone(), e.hash.clone());
        }
        Ok(())
    }

    /// The hash of received content being put in place at `path` (see `inflight`).
    pub fn inflight(&self, path: &str) -> Option<&str> {
        self.inflight.get(path).map(String::as_str)
    }

    /// Durably commits new current entries (one fsync for the batch), then makes them visible.
    pub fn commit(&mut self, entries: Vec<Entry>) -> Result<(), IndexError> {
        if entries.is_empty() {
            return Ok(());
        }
        let base = self.seq;
        let me = self.self_seq;
        self.append(
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| RecordOut::Commit(base + 1 + i as u64, e, me)),
        )?;
        let now = wall_ms();
        for (i, e) in entries.into_iter().enumerate() {
            self.clock.observe(e.hlc, now);
            self.insert(base + 1 + i as u64, e);
        }
        if self.log_records > 20_000.max(self.entries.len() * 2) {
            self.compact()?;
        }
        Ok(())
    }

    /// Writes a snapshot (temp + fsync + rename + dir fsync) and empties the log.
    pub fn compact(&mut self) -> Result<(), IndexError> {
        /// The snapshot's entries, serialized straight from the index.
        struct Entries<'a>(&'a BTreeMap<String, Slot>);
        impl Serialize for Entries<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.values().map(|slot| (slot.seq, &slot.entry)))
            }
        }
        #[derive(Serialize)]
        struct SnapshotOut<'a> {
            seq: u64,
            self_seq: u64,
            entries: Entries<'a>,
        }
        let snap = SnapshotOut {
            seq: self.seq,
            self_seq: self.self_seq,
            entries: Entries(&self.entries),
        };
        let tmp = self.dir.join("snapshot.json.tmp");
        let fin = self.dir.join("snapshot.json");
        {
            let f = File::create(&tmp).map_err(io_err(&tmp))?;
            let mut w = std::io::BufWriter::with_capacity(64 << 10, f);
            serde_json::to_writer(&mut w, &snap).map_err(|e| io_err(&tmp)(e.into()))?;
            let f = w.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &fin).map_err(io_err(&fin))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        let log_path = self.dir.join("log");
        self.log.set_len(0).map_err(io_err(&log_path))?;
        self.log.sync_all().map_err(io_err(&log_path))?;
        self.log_records = 0;
        Ok(())
    }

    /// Durably forgets tombstones (the `legacy` flavor: deletes leave no trace). Live entries
    /// are never forgotten.
    pub fn forget(&mut self, paths: &[String]) -> Result<(), IndexError> {
        let gone: Vec<&String> = paths
            .iter()
            .filter(|p| self.get(p).is_some_and(|e| e.deleted))
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let recs: Vec<RecordOut> = gone.into_iter().map(|p| RecordOut::Forget(p)).collect();
        self.append(recs)?;
        for p in paths {
            self.drop_tombstone(p);
        }
        Ok(())
    }

    fn drop_tombstone(&mut self, path: &str) {
        if !self.entries.get(path).is_some_and(|s| s.entry.deleted) {
            return;
        }
        if let Some(slot) = self.entries.remove(path) {
            self.unmap_dot(&slot.entry);
            lanes(&mut self.sum, &slot.hash, false);
            self.tombstones -= 1;
        }
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path).map(|s| &s.entry)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().map(|s| &s.entry)
    }

    /// Digest of every entry (tombstones included): equal on two peers exactly when their
    /// indexes agree (up to BLAKE3 collisions).
    pub fn digest(&mut self) -> String {
        let mut h = blake3::Hasher::new();
        for l in self.sum {
            h.update(&l.to_le_bytes());
        }
        h.update(&(self.entries.len() as u64).to_le_bytes());
        h.finalize().to_hex().to_string()
    }

    /// Forgets the dot -> path mapping of an entry leaving `path` (unless the dot moved on, e.g.
    /// to the conflict copy of the same version).
    fn unmap_dot(&mut self, old: &Entry) {
        let d = dot(old);
        if self.by_dot.get(&d) == Some(&old.path) {
            self.by_dot.remove(&d);
        }
    }

    /// The version held under dot `d` (at any path), if any: what a received version with that dot
    /// is compared with to catch a forked author (see [`crate::equivocation`]).
    pub fn holding(&self, d: (u64, u64)) -> Option<&Entry> {
        let path = self.by_dot.get(&d)?;
        self.entries.get(path).map(|s| &s.entry).filter(|e| dot(e) == d)
    }

    /// Records a received version that changed nothing (dominated or equal): seen all the same.
    pub fn saw(&mut self, e: &Entry) {
        self.seen.insert(dot(e));
    }

    pub fn seen(&self) -> &Knowledge {
        &self.seen
    }

    /// What a neighbour that knows `k` lacks: the versions held here whose dots `k` does not
    /// contain, in dot order, at most `limit`; and, when that was all of them, the dots seen here
    /// but no longer held (superseded), for the neighbour to count as known.
    pub fn missing(&self, k: &Knowledge, limit: usize) -> Missing {
        let lacking = self.seen.minus(k);
        let mut out = Missing {
            entries: Vec::new(),
            fills: Knowledge::new(),
            complete: true,
        };
        let mut held = Knowledge::new();
        'all: for (author, ranges) in lacking.authors() {
            for &(lo, hi) in ranges.ranges() {
                for (d, path) in self.by_dot.range((author, lo)..=(author, hi)) {
                    if out.entries.len() >= limit {
                        out.complete = false;
                        break 'all;
                    }
                    if let Some(slot) = self.entries.get(path) {
                        out.entries.push(slot.entry.clone());
                        held.insert(*d);
                    }
                }
            }
        }
        if out.complete {
            out.fills = lacking.minus(&held);
        }
        out
    }

    /// Entries in path order after `after` (exclusive), at most `limit`: a full listing.
    pub fn after(&self, after: &str, limit: usize) -> Vec<Entry> {
        use std::ops::Bound;
        self.entries
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .take(limit)
            .map(|(_, s)| s.entry.clone())
            .collect()
    }

    /// Live (non-deleted) entries.
    pub fn live(&self) -> usize {
        self.entries.len() - self.tombstones
    }

    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// A path whose current entry has this content.
    pub fn path_for_hash(&self, hash: &str) -> Option<String> {
        hash_key(hash)
            .and_then(|k| self.by_hash.get(&k))
            .and_then(|s| s.first().cloned())
    }

    /// Next authoring counter (persisted with the next commit; never reused).
    pub fn next_counter(&mut self) -> u64 {
        self.self_seq = self.self_seq.saturating_add(1);
        self.self_seq
    }

    /// Never reuse a counter that other peers already saw from us (e.g. after losing the index).
    pub fn observe_counter(&mut self, seen: u64) {
        self.self_seq = self.self_seq.max(seen);
    }

    pub fn tick(&mut self) -> Hlc {
        self.clock.tick(wall_ms())
    }

    pub fn stamp(&self, path: &str) -> Option<Stamp> {
        self.entries.get(path).and_then(|s| s.stamp)
    }

    pub fn set_stamp(&mut self, path: &str, stamp: Option<Stamp>) {
        if let Some(slot) = self.entries.get_mut(path) {
            slot.stamp = stamp;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::version_vector::VersionVector;

    fn e(me: &Identity, path: &str, n: u64, deleted: bool) -> Entry {
        let mut vv = VersionVector::new();
        vv.set(&me.id().short(), n);
        let hash = if deleted {
            String::new()
        } else {
            blake3::hash(path.as_bytes()).to_hex().to_string()
        };
        Entry::author(me, path.into(), vv, hash, 1, deleted, Hlc { ms: n, c: 0 })
    }

    #[test]
    fn intents_are_inflight_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let me = Identity::from_seed([6; 32]);
        let (mut idx, _) = Index::open(dir.path()).unwrap();
        let a = e(&me, "a", 1, false);
        idx.record_intents(std::slice::from_ref(&a)).unwrap();
        assert_eq!(idx.inflight("a"), Some(a.hash.as_str()));
        idx.commit(vec![a]).unwrap();
        assert_eq!(idx.inflight("a"), None);
    }

    #[test]
    fn a_damaged_snapshot_is_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let me = Identity::from_seed([7; 32]);
        {
            let (mut idx, _) = Index::open(dir.path()).unwrap();
            idx.commit(vec![e(&me, "a", 1, false)]).unwrap();
            idx.compact().unwrap();
            idx.commit(vec![e(&me, "b", 2, false)]).unwrap();
        }
        std::fs::write(dir.path().join("index/snapshot.json"), b"{garbage").unwrap();
        let (mut idx, _) = Index::open(dir.path()).unwrap();
        assert!(idx.get("b").is_some(), "the log after the snapshot still counts");
        assert!(idx.next_counter() > 1_000_000_000);
    }

    #[test]
    fn a_damaged_record_in_the_middle_hides_nothing_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let me = Identity::from_seed([8; 32]);
        {
            let (mut idx, _) = Index::open(dir.path()).unwrap();
            idx.commit(vec![e(&me, "a", 1, false)]).unwrap();
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("index/log"))
            .unwrap();
        f.write_all(b"0000000000000000 {\"c\":[7]}\n").unwrap();
        drop(f);
        {
            let (mut idx, _) = Index::open(dir.path()).unwrap();
            idx.commit(vec![e(&me, "b", 2, false)]).unwrap();
        }
        let (idx, _) = Index::open(dir.path()).unwrap();
        assert!(idx.get("a").is_some() && idx.get("b").is_some());
    }

    #[test]
    fn survives_reopen_torn_tail_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let me = Identity::from_seed([9; 32]);
        let digest;
        {
            let (mut idx, intents) = Index::open(dir.path()).unwrap();
            assert!(intents.is_empty());
            idx.commit(vec![e(&me, "a", 1, false), e(&me, "b", 2, false)]).unwrap();
            idx.commit(vec![e(&me, "a", 3, true)]).unwrap();
            idx.record_intents(&[e(&me, "c", 4, false)]).unwrap();
            digest = idx.digest();
            assert_eq!((idx.live(), idx.tombstones()), (1, 1));
        }
        // Torn write: half a line at the end.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("index/log"))
            .unwrap();
        f.write_all(b"0123456789abcdef {\"c\":[9").unwrap();
        drop(f);
        let (mut idx, intents) = Index::open(dir.path()).unwrap();
        assert_eq!(idx.digest(), digest);
        assert_eq!(intents.len(), 1);
        assert_eq!(
            idx.after("", 10).iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(idx.after("a", 10).len(), 1);
        idx.compact().unwrap();
        idx.commit(vec![e(&me, "d", 5, false)]).unwrap();
        drop(idx);
        let (mut idx, _) = Index::open(dir.path()).unwrap();
        assert_eq!(idx.live(), 2);
        assert_ne!(idx.digest(), digest);
        assert!(idx.path_for_hash(blake3::hash(b"d").to_hex().as_ref()).is_some());
    }

    #[test]
    fn missing_names_what_a_neighbour_lacks_and_fills_superseded_dots() {
        let dir = tempfile::tempdir().unwrap();
        let me = Identity::from_seed([10; 32]);
        let a = crate::knowledge::author_key(&me.id().short());
        let (mut idx, _) = Index::open(dir.path()).unwrap();
        // Counters 1..=3 on "x" (1 and 2 superseded), 4 on "y", 5 on "z".
        for (n, p) in [(1, "x"), (2, "x"), (3, "x"), (4, "y"), (5, "z")] {
            idx.commit(vec![e(&me, p, n, false)]).unwrap();
        }
        let mut k = Knowledge::new();
        k.insert((a, 4));
        let m = idx.missing(&k, 10);
        assert!(m.complete);
        assert_eq!(
            m.entries.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            ["x", "z"]
        );
        assert!(m.fills.contains((a, 1)) && m.fills.contains((a, 2)) && !m.fills.contains((a, 3)));
        // A neighbour that knows everything gets nothing.
        let mut all = k.clone();
        all.insert_range(a, 1, 5);
        assert!(idx.missing(&all, 10).entries.is_empty());
        // A limit cuts the page and withholds the fills until the last page.
        let m = idx.missing(&Knowledge::new(), 1);
        assert!(!m.complete && m.entries.len() == 1 && m.fills.is_empty());
        // A version received and found dominated is seen too.
        let old = e(&me, "y", 0, false);
        idx.saw(&old);
        assert!(idx.seen().contains((a, 0)));
    }
}
