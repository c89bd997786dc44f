//! [`Node`]: the state every task of a running daemon shares (settings, identity, index, trust,
//! metrics, reputation, pending downloads), and small helpers over it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::client::PeerClient;
use crate::config::{Flavor, Neighbour, Settings};
use crate::entry::{Entry, Resolution, resolve_with};
use crate::identity::{Identity, PeerId};
use crate::index::Index;
use crate::knowledge::{KNOWLEDGE_RANGES_MAX, Knowledge, dot};
use crate::locks::Locks;
use crate::metrics::Metrics;
use crate::mutant::{Mutant, Tie};
use crate::mutex::lock;
use crate::rate_limit::{Admission, RateLimiter};
use crate::scan_queue::ScanTx;
use crate::tls::Credentials;

/// Runtime state of one neighbour.
pub struct PeerState {
    pub cfg: Neighbour,
    pub short: String,
    /// Mutual TLS to this neighbour, pinned to its key; one idle connection (each keeps read
    /// buffers, which with several neighbours was a large part of resident memory).
    pub client: PeerClient,
    /// Woken by a hint from this neighbour: pull its index delta now.
    pub pull: Notify,
    pub reachable: AtomicBool,
    pub last_sync_ms: AtomicU64,
    /// Dots this neighbour told us it has seen but holds no version of any more (superseded):
    /// part of the knowledge we send *it* only (a lying neighbour can only starve itself).
    pub fills: Mutex<Knowledge>,
    /// What this neighbour told us it knows (its hints and pull requests): a hint that would
    /// tell it nothing new is not sent.
    pub known: Mutex<Knowledge>,
    /// This neighbour told us (answering a hint) that it keeps hearing from us of versions it
    /// already has: in `broadcast: tree` it gets no more hints, only digest rounds, until it
    /// pulls from us something it lacked (a graft). See [`crate::sync`].
    pub pruned: AtomicBool,
    /// A pull this neighbour's hint asked for brought nothing new (another neighbour was first):
    /// our answer to its next hint prunes it.
    pub prune_owed: AtomicBool,
    /// What our delivered hints told it (`broadcast: tree`): a hint that would repeat it is not
    /// sent (it had its chance to pull, and the digest rounds back that up).
    pub told: Mutex<Knowledge>,
}

/// Strikes and quarantine per peer (by short id).
#[derive(Default)]
pub struct Reputation {
    strikes: HashMap<String, VecDeque<Instant>>,
    until: HashMap<String, Instant>,
}

impl Reputation {
    /// Records a strike; returns true when it quarantines the peer.
    pub fn strike(&mut self, peer: &str, limit: u32, window: Duration, quarantine: Duration) -> bool {
        let now = Instant::now();
        let q = self.strikes.entry(peer.to_string()).or_default();
        q.push_back(now);
        while q.front().is_some_and(|t| now.duration_since(*t) > window) {
            q.pop_front();
        }
        if q.len() as u32 >= limit {
            q.clear();
            self.until.insert(peer.to_string(), now + quarantine);
            return true;
        }
        false
    }

    /// Quarantines a peer at once (a proven fork needs no strikes).
    pub fn quarantine(&mut self, peer: &str, quarantine: Duration) {
        self.until.insert(peer.to_string(), Instant::now() + quarantine);
    }

    pub fn is_quarantined(&self, peer: &str) -> bool {
        self.until.get(peer).is_some_and(|t| Instant::now() < *t)
    }

    pub fn count(&self) -> usize {
        let now = Instant::now();
        self.until.values().filter(|t| now < **t).count()
    }
}

/// Versions waiting for content, at most (~1 KiB each). A version that finds the queue full is
/// not queued and not counted as seen, so it is offered again once the queue drains (an initial
/// sync of a larger tree takes more rounds, nothing is lost).
pub const PENDING_MAX: usize = 100_000;

/// A version waiting for its content.
pub struct PendingItem {
    pub entry: Entry,
    /// Neighbours (indexes into `Node::peers`) that advertised exactly this entry, in order.
    pub sources: Vec<usize>,
    /// Neighbours already tried for the current attempt.
    pub tried: Vec<usize>,
    pub received: Instant,
    /// Content that came inline with the version, already verified and in the temp folder.
    pub staged: Option<PathBuf>,
    pub next_try: Instant,
    pub failures: u32,
}

pub struct Node {
    pub settings: Settings,
    pub me: Identity,
    pub short: String,
    pub index: Mutex<Index>,
    pub metrics: Metrics,
    pub locks: Locks,
    pub peers: Vec<PeerState>,
    /// Trusted authors: short id -> (name, key). Includes ourselves and every neighbour.
    pub keys: HashMap<String, (String, PeerId)>,
    pub reputation: Mutex<Reputation>,
    pub rate: Mutex<RateLimiter>,
    pub pending: Mutex<BTreeMap<String, PendingItem>>,
    /// [`PENDING_MAX`] (smaller in tests).
    pub pending_max: usize,
    pub fetch_wake: Notify,
    /// One pull at a time (briefly, see [`crate::sync`]): a version offered by two neighbours at
    /// once would otherwise cross both links.
    pub pull_turn: tokio::sync::Mutex<()>,
    /// Pull pages being built for neighbours at once (each reads up to
    /// [`crate::protocol::PULL_INLINE_MAX`] of files).
    pub pull_builders: tokio::sync::Semaphore,
    /// Bumped after every index commit; hint senders watch it.
    pub changed: watch::Sender<u64>,
    /// Where downloads are staged (same filesystem as the sync folder).
    pub tmp_dir: PathBuf,
    /// Our transport certificate (see [`crate::tls`]): the flood task makes clients with it.
    pub credentials: Credentials,
    /// Paths the scanner should look at (relative); fed by notify and by the blob server.
    pub scan_tx: ScanTx,
    /// Verifications and damaged files (see [`crate::damage`]).
    pub damage: crate::damage::Damage,
    /// Byzantine mode's control file (see [`crate::byzantine`]); honest while it is absent.
    pub byzantine: crate::byzantine::ByzantineSwitch,
    /// Proofs of equivocation accepted, and those to tell (see [`crate::evidence`]).
    pub evidence: crate::evidence::Evidence,
    /// Who sent what (see [`crate::audit`]).
    pub audit: crate::audit::Audit,
    /// `mutant-software-bug` panics once per process: set when it has.
    pub mutant_fired: AtomicBool,
}

impl Node {
    /// Whether this node runs `m` (its flavor, see [`crate::mutant`]).
    pub fn mutant(&self, m: Mutant) -> bool {
        self.settings.flavor == Flavor::Mutant(m)
    }

    /// Whether this node runs the seed's design (its flavor, see [`crate::legacy`]).
    pub fn legacy(&self) -> bool {
        self.settings.flavor == Flavor::Legacy
    }

    /// Which of two versions of a path wins, by this node's flavor: [`crate::entry::resolve`], with
    /// another tie-break under `mutant-consensus-failure`, or the legacy flavor's wall-clock rule.
    pub fn resolve(&self, local: Option<&Entry>, remote: &Entry) -> Resolution {
        match self.settings.flavor {
            Flavor::Legacy => crate::legacy::resolve(local, remote),
            Flavor::Mutant(Mutant::ConsensusFailure) => resolve_with(Tie::PreferOwn(&self.short), local, remote),
            _ => resolve_with(Tie::Total, local, remote),
        }
    }

    /// What we tell neighbour `i` we know: every dot seen, queued for download, or filled in by
    /// `i` itself.
    pub fn knowledge_for(&self, i: usize) -> Knowledge {
        // Lock order: pending before index, or one at a time.
        let queued = Knowledge::from_dots(lock(&self.pending).values().map(|p| dot(&p.entry)).collect());
        let mut k = self.index().seen().clone();
        k.union(&queued);
        k.union(&lock(&self.peers[i].fills));
        k
    }

    /// Records what neighbour `short` says it knows (capped: its claims are unauthenticated).
    pub fn learn_known(&self, short: &str, k: &Knowledge) {
        if let Some(p) = self.peers.iter().find(|p| p.short == short) {
            lock(&p.known).union_capped(k, KNOWLEDGE_RANGES_MAX);
        }
    }

    pub fn full_path(&self, rel: &str) -> PathBuf {
        self.settings.sync_dir.join(rel)
    }

    pub fn key_of(&self, short: &str) -> Option<PeerId> {
        self.keys.get(short).map(|(_, k)| *k)
    }

    /// Metrics label for a requester's short id.
    pub fn peer_label(&self, short: &str) -> String {
        if let Some(p) = self.peers.iter().find(|p| p.short == short) {
            return p.cfg.name.clone();
        }
        self.keys
            .get(short)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| "unknown".into())
    }

    pub fn is_quarantined(&self, short: &str) -> bool {
        lock(&self.reputation).is_quarantined(short)
    }

    /// A strike against a peer that sent bad data or stays over its rate limit.
    pub fn strike(&self, short: &str) {
        let s = &self.settings;
        let mut rep = lock(&self.reputation);
        if rep.strike(short, s.strike_limit, s.strike_window, s.quarantine) {
            tracing::warn!(peer = %self.peer_label(short), "peer quarantined after repeated strikes");
        }
        self.metrics.quarantined_peers.set(rep.count() as i64);
    }

    /// Quarantines a peer proven to lie (see [`crate::equivocation`]), for `quarantine_ms` from now.
    pub fn quarantine(&self, short: &str) {
        let mut rep = lock(&self.reputation);
        rep.quarantine(short, self.settings.quarantine);
        self.metrics.quarantined_peers.set(rep.count() as i64);
    }

    /// Token bucket check for an incoming request, by the sender's TLS identity. Senders that are
    /// not trusted keys would share one bucket; since the handshake admits neighbours only, that
    /// is a second line of defence. A neighbour that keeps going over its limit gets a strike
    /// (see [`crate::rate_limit::REFUSALS_PER_STRIKE`]): a flood ends in quarantine.
    pub fn admit_rate(&self, who: &str) -> bool {
        let known = self.keys.contains_key(who);
        let admission = lock(&self.rate).admit(if known { who } else { "unknown" }, Instant::now());
        if known && admission == Admission::Strike {
            self.strike(who);
        }
        admission.admitted()
    }

    /// Refreshes the index gauges and tells hint senders the index changed.
    pub fn index_changed(&self, idx: &Index) {
        self.metrics.index_entries.set(idx.live() as i64);
        self.metrics.index_tombstones.set(idx.tombstones() as i64);
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn index(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }
}

/// Gives freed heap back to the kernel. glibc keeps freed memory of transient buffers (index
/// pages, blob batches) mapped; after a burst of work this keeps resident memory near the index's
/// real size.
pub fn release_memory() {
    // SAFETY: malloc_trim only walks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Picks the staging folder: `<state>/tmp` when it is on the sync folder's filesystem (renames
/// must not cross filesystems), else `<sync>/.syncpeer-tmp`.
pub fn pick_tmp_dir(state: &Path, sync: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let st = state.join("tmp");
    std::fs::create_dir_all(&st)?;
    let same = std::fs::metadata(&st)?.dev() == std::fs::metadata(sync)?.dev();
    let dir = if same { st } else { sync.join(".syncpeer-tmp") };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub type SharedNode = Arc<Node>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::version_vector::VersionVector;

    fn version(author: &Identity, counters: &[(&Identity, u64)], ms: u64) -> Entry {
        let mut vv = VersionVector::new();
        for (who, n) in counters {
            vv.set(&who.id().short(), *n);
        }
        let hash = blake3::hash(&ms.to_be_bytes()).to_hex().to_string();
        Entry::author(author, "f".into(), vv, hash, 8, false, Hlc { ms, c: 0 })
    }

    #[test]
    fn a_node_resolves_by_its_own_flavor() {
        let dir = tempfile::tempdir().unwrap();
        let other = Identity::generate();
        let mut node = crate::daemon::test_node(dir.path(), &other);
        // `other`'s clock is an hour ahead; we saw its write and overwrote it 4 s later.
        let first = version(&other, &[(&other, 1)], 3_601_000);
        let later = version(&node.me, &[(&other, 1), (&node.me, 1)], 5_000);
        assert!(matches!(
            node.resolve(Some(&first), &later),
            Resolution::TakeRemote { .. }
        ));
        node.settings.flavor = Flavor::Legacy;
        assert_eq!(node.resolve(Some(&first), &later), Resolution::Ignore);
        // Concurrent versions: the honest tie-break is the same on every peer; the mutant's is not.
        let mine = version(&node.me, &[(&node.me, 2)], 10);
        let theirs = version(&other, &[(&other, 2)], 20);
        node.settings.flavor = Flavor::Default;
        assert!(matches!(
            node.resolve(Some(&mine), &theirs),
            Resolution::TakeRemote { .. }
        ));
        node.settings.flavor = Flavor::Mutant(Mutant::ConsensusFailure);
        assert!(matches!(
            node.resolve(Some(&mine), &theirs),
            Resolution::KeepLocal { .. }
        ));
    }
}
