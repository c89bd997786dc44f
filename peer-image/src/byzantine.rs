//! Byzantine mode: a running daemon turned into a liar by a control file, so that chaos plans can
//! put a misbehaving peer among honest ones without a separate fake implementation.
//!
//! Brief overview:
//! * [`ByzantineSwitch`]: reads the control file (`byzantine_file`, default `<state>/byzantine`)
//!   at most every [`REREAD`], caches the [`Behaviours`] it names, and logs every change. A missing
//!   or empty file means honest: then every hook below is a no-op and the peer behaves exactly as
//!   without this module.
//! * The hooks, one per place that serves data (`server.rs`) plus the flood task started by the
//!   daemon ([`crate::flood`]):
//!
//! | behaviour | on the wire |
//! |---|---|
//! | `tamper` | content served with flipped bytes: inline in pull pages, in `/v1/blobs` and `/v1/blob/{hash}` |
//! | `forge` | versions served with a lie the signature does not cover: the author's counter bumped (a claimed newer version) and another content hash |
//! | `withhold` | selective sharing: empty pull pages and index listings, blobs answered 404 / empty |
//! | `flood` | [`crate::flood::FLOOD_RATE`] requests a second to every neighbour over [`crate::flood::FLOOD_WORKERS`] connections, four times the default `rate_limit_per_sec` |
//! | `slowloris` | pull pages and blobs trickled at [`TRICKLE_BYTES`] per [`TRICKLE_EVERY`] |
//! | `equivocate` | a fork: each version the liar authors while equivocating is also signed a second time under the same dot ([`twin`]); half its neighbours ([`told_the_twin`]) are served the twin, the others the genuine one, and both are re-sent on every pull whatever the puller knows |
//! | `replay` | versions held when `replay` went on, re-sent as current once their path moved on ([`crate::replay`]); the summary digest lies so that neighbours keep pulling |
//! | `sybil` | one container, many identities ([`crate::sybil`]): [`SYBILS`] keys made up on the spot knock on every neighbour's sync port each second with their own certificates, and versions signed by them are offered on every pull through the liar's genuine link |
//! | `lie-timestamp` | signed metadata lies ([`lie`]): each of its own versions it serves is signed again dated ten years ahead |
//! | `lie-counter` | signed metadata lies ([`lie`]): each of its own versions it serves is signed again with a version vector claiming `u64::MAX - 1` for its author and every neighbour |
//! | `drop paths=G,.. peers=N,..` | targeted withholding ([`crate::targeted`]): only paths matching the globs, only to the named neighbours; the dropped versions' dots are claimed as seen-and-superseded (*fills*) |
//!
//! The file holds behaviour names separated by newlines, commas or spaces; `#` starts a comment. A
//! line with `key=value` words is one behaviour with parameters (only `drop` takes any; several
//! `drop` lines add up). Unknown names and keys are logged and ignored (the orchestrator validates
//! plans before writing).
//!
//! Honest peers are not told anything: they must notice on their own (signature and hash checks,
//! strikes and quarantine, rate limits, transfer timeouts, proofs of equivocation in
//! [`crate::equivocation`], version vectors against replays, anti-entropy with the other
//! neighbours against drops). The liar's own client side stays honest, so once the file is
//! removed it converges like any peer.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::entry::Entry;
use crate::hlc::wall_ms;
use crate::identity::Identity;
use crate::mutex::lock;
use crate::replay::Archive;
use crate::targeted::DropRule;

/// How stale the cached control file may be: cheap enough to check on every request, quick enough
/// that a fault switches within a fraction of a second.
pub const REREAD: Duration = Duration::from_millis(200);
/// Slowloris pace: this many bytes, then a pause.
pub const TRICKLE_BYTES: usize = 16;
pub const TRICKLE_EVERY: Duration = Duration::from_millis(500);

/// Identities a `sybil` liar makes up (see [`crate::sybil`]).
pub const SYBILS: usize = 8;

/// The behaviours a control file may name.
/// `drop` is last: the only one that takes parameters ([`Behaviours::names`] relies on the order).
pub const BEHAVIOURS: [&str; 11] = [
    "tamper",
    "forge",
    "withhold",
    "flood",
    "slowloris",
    "equivocate",
    "replay",
    "sybil",
    "lie-timestamp",
    "lie-counter",
    "drop",
];

/// A set of behaviours; the default is honest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Behaviours {
    pub tamper: bool,
    pub forge: bool,
    pub withhold: bool,
    pub flood: bool,
    pub slowloris: bool,
    pub equivocate: bool,
    pub replay: bool,
    pub sybil: bool,
    pub lie_timestamp: bool,
    pub lie_counter: bool,
    /// One rule per `drop` line; empty: nothing dropped.
    pub drop: Vec<DropRule>,
}

impl Behaviours {
    /// Parses a control file's text; returns the set and the words it did not know.
    pub fn parse(text: &str) -> (Behaviours, Vec<String>) {
        let mut b = Behaviours::default();
        let mut unknown = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            if line.contains('=') {
                // One behaviour with parameters: `drop paths=a/** peers=p2`.
                let mut words = line.split_whitespace();
                match words.next() {
                    Some("drop") => match DropRule::parse(words) {
                        Ok(rule) => b.drop.push(rule),
                        Err(word) => unknown.push(word),
                    },
                    Some(other) => unknown.push(other.to_string()),
                    None => {}
                }
                continue;
            }
            for word in line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
            {
                match word {
                    "tamper" => b.tamper = true,
                    "forge" => b.forge = true,
                    "withhold" => b.withhold = true,
                    "flood" => b.flood = true,
                    "slowloris" => b.slowloris = true,
                    "equivocate" => b.equivocate = true,
                    "replay" => b.replay = true,
                    "drop" => b.drop.push(DropRule::default()),
                    "sybil" => b.sybil = true,
                    "lie-timestamp" => b.lie_timestamp = true,
                    "lie-counter" => b.lie_counter = true,
                    other => unknown.push(other.to_string()),
                }
            }
        }
        (b, unknown)
    }

    pub fn is_honest(&self) -> bool {
        *self == Behaviours::default()
    }

    pub fn names(&self) -> Vec<String> {
        let on = [
            self.tamper,
            self.forge,
            self.withhold,
            self.flood,
            self.slowloris,
            self.equivocate,
            self.replay,
            self.sybil,
            self.lie_timestamp,
            self.lie_counter,
        ];
        BEHAVIOURS
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| n.to_string())
            .chain(self.drop.iter().map(DropRule::line))
            .collect()
    }

    /// Whether `path` is kept back from the requester (`short` key id, `name` in our config).
    pub fn drops(&self, path: &str, short: &str, name: &str) -> bool {
        self.drop.iter().any(|r| r.drops(path, short, name))
    }

    /// Whether everything is kept back from the requester.
    pub fn drops_all(&self, short: &str, name: &str) -> bool {
        self.drop.iter().any(|r| r.drops_all(short, name))
    }
}

struct Cached {
    read_at: Option<Instant>,
    /// The file's text at the last read: a change is logged once, even one that only adds an
    /// unknown name (which changes no behaviour).
    text: String,
    current: Behaviours,
    /// Wall-clock ms at which `equivocate` was last seen switched on.
    equivocating_since: Option<u64>,
}

/// The control file and its cached contents.
pub struct ByzantineSwitch {
    file: PathBuf,
    cached: Mutex<Cached>,
    /// What `replay` re-sends (empty while it is off).
    pub replay: Archive,
    /// The identities `sybil` presents, made up the first time it is on and kept for the life of
    /// the process (the same made-up keys knock again and again).
    sybils: OnceLock<Vec<Identity>>,
}

impl ByzantineSwitch {
    pub fn new(file: &Path) -> ByzantineSwitch {
        ByzantineSwitch {
            file: file.to_path_buf(),
            cached: Mutex::new(Cached {
                read_at: None,
                text: String::new(),
                current: Behaviours::default(),
                equivocating_since: None,
            }),
            replay: Archive::default(),
            sybils: OnceLock::new(),
        }
    }

    /// The [`SYBILS`] identities `sybil` presents: fresh keys no neighbour's config names.
    pub fn sybils(&self) -> &[Identity] {
        self.sybils
            .get_or_init(|| (0..SYBILS).map(|_| Identity::generate()).collect())
    }

    /// Since when (wall-clock ms) `equivocate` is on, if it is: the liar forks only the versions
    /// it authors from then on.
    pub fn equivocating_since(&self) -> Option<u64> {
        let since = lock(&self.cached).equivocating_since;
        since.filter(|_| self.current().equivocate)
    }

    /// The behaviours in force, re-reading the file when the cache is older than [`REREAD`].
    pub fn current(&self) -> Behaviours {
        let mut c = lock(&self.cached);
        if c.read_at.is_some_and(|t| t.elapsed() < REREAD) {
            return c.current.clone();
        }
        c.read_at = Some(Instant::now());
        // Missing or unreadable: honest (the orchestrator heals by removing the file).
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        if text == c.text {
            return c.current.clone();
        }
        let (now, unknown) = Behaviours::parse(&text);
        if !unknown.is_empty() {
            tracing::warn!(file = %self.file.display(), ?unknown, "unknown byzantine behaviours ignored");
        }
        if now != c.current {
            if now.is_honest() {
                tracing::warn!(file = %self.file.display(), "byzantine mode off: honest again");
            } else {
                tracing::warn!(file = %self.file.display(), behaviours = ?now.names(), "byzantine mode on");
            }
        }
        if now.equivocate && !c.current.equivocate {
            c.equivocating_since = Some(wall_ms());
        }
        if !now.replay {
            self.replay.forget();
        }
        c.text = text;
        c.current = now.clone();
        now
    }
}

/// How far ahead `lie-timestamp` dates a version: ten years.
pub const LIE_AHEAD_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// `e` (a version `me` authored) signed again with the metadata lies `liar` tells, if any: the
/// content, path and hash stay true, so a receiver that checks signatures and content only takes it.
/// `neighbours`: short ids whose counters `lie-counter` claims to have seen at `u64::MAX - 1`, so
/// that a receiver that believed it would find its own counter exhausted.
pub fn lie(me: &Identity, liar: &Behaviours, e: &Entry, neighbours: &[&str]) -> Option<Entry> {
    if !(liar.lie_timestamp || liar.lie_counter) || e.origin.is_some() {
        return None;
    }
    let mut vv = e.vv.clone();
    let mut hlc = e.hlc;
    if liar.lie_timestamp {
        hlc.ms = wall_ms().saturating_add(LIE_AHEAD_MS);
    }
    if liar.lie_counter {
        for who in neighbours.iter().copied().chain([e.author.as_str()]) {
            vv.set(who, u64::MAX - 1);
        }
    }
    Some(Entry::author(
        me,
        e.path.clone(),
        vv,
        e.hash.clone(),
        e.size,
        e.deleted,
        hlc,
    ))
}

/// Flips bytes of `content` (one in every 64, and always the first): the size stays, the hash does not.
pub fn tamper(content: &mut [u8]) {
    for b in content.iter_mut().step_by(64) {
        *b ^= 0xA5;
    }
}

/// A lie about a version that its signature does not cover: a newer counter for its author and
/// another content. The entry keeps its old signature, so a receiver that checks finds it forged.
pub fn forge(e: &mut Entry) {
    let counter = e.vv.get(&e.author);
    let author = e.author.clone();
    e.vv.set(&author, counter + 1);
    if !e.deleted {
        e.hash = blake3::hash(format!("forged {}", e.hash).as_bytes())
            .to_hex()
            .to_string();
    }
}

/// The liar's second statement under the dot of `e`, a live version it authored: a delete of the
/// same path with the same vector and clock, signed with the same key. Both statements verify; only
/// a peer shown both can tell that the key forked. A delete rather than other content, so that no
/// honest peer ever holds bytes that no write produced (the lab's `no-poisoning` check stays a
/// judge of poisoning), and so the fork resolves the same way everywhere: with equal vectors and
/// clocks the live version's hash beats the delete's empty one ([`crate::entry::resolve`]).
pub fn twin(me: &Identity, e: &Entry) -> Entry {
    Entry::author(me, e.path.clone(), e.vv.clone(), String::new(), 0, true, e.hlc)
}

/// Whether the liar forks `e`: a live, non-copy version it authored (`me`) since `since_ms`.
pub fn equivocates_on(e: &Entry, me: &str, since_ms: u64) -> bool {
    e.author == me && e.origin.is_none() && !e.deleted && e.hlc.ms >= since_ms
}

/// Whether requester `who` is on the side told the twin: every other neighbour in key order, so
/// that both sides are non-empty with two neighbours or more and the split is stable across
/// requests (a hash of the key could put every neighbour on one side).
pub fn told_the_twin(neighbours: &[&str], who: &str) -> bool {
    let mut sorted = neighbours.to_vec();
    sorted.sort_unstable();
    sorted.iter().position(|n| *n == who).is_some_and(|i| i % 2 == 1)
}

/// A response body fed by a task: `source` copied through, with flipped bytes if `tampered`,
/// trickled if `slow`. The task ends when the client hangs up.
pub fn pumped(source: impl AsyncRead + Send + Unpin + 'static, tampered: bool, slow: bool) -> Body {
    let (mut tx, rx) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut source = source;
        let mut buf = vec![0u8; if slow { TRICKLE_BYTES } else { 64 * 1024 }];
        loop {
            let n = match source.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if tampered {
                tamper(&mut buf[..n]);
            }
            if tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
            if slow {
                tokio::time::sleep(TRICKLE_EVERY).await;
            }
        }
    });
    Body::from_stream(tokio_util::io::ReaderStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_files_name_behaviours() {
        let (b, unknown) = Behaviours::parse("# liar\ntamper, flood\n\nslowloris  sulk\n");
        assert!(b.tamper && b.flood && b.slowloris && !b.forge && !b.withhold);
        assert_eq!(unknown, vec!["sulk".to_string()]);
        assert_eq!(b.names(), vec!["tamper", "flood", "slowloris"]);
        let (b, unknown) = Behaviours::parse(
            "equivocate replay\ndrop paths=secret/** peers=p2 # targeted\ndrop peers=p3\nforge x=1\ndrop path=x\n",
        );
        assert!(b.equivocate && b.replay && b.drop.len() == 2);
        assert_eq!(unknown, vec!["forge".to_string(), "path=x".to_string()]);
        assert!(b.drops("secret/a", "0000000000000000", "p2") && !b.drops("secret/a", "0000000000000000", "p1"));
        assert!(b.drops_all("0000000000000000", "p3") && !b.drops_all("0000000000000000", "p2"));
        assert_eq!(
            b.names(),
            vec!["equivocate", "replay", "drop paths=secret/** peers=p2", "drop peers=p3"]
        );
        assert!(Behaviours::parse("").0.is_honest());
        assert!(Behaviours::parse("# tamper\n").0.is_honest());
    }

    #[test]
    fn a_missing_file_is_honest_and_changes_are_seen_after_the_reread_delay() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("byzantine");
        let s = ByzantineSwitch::new(&file);
        assert!(s.current().is_honest());
        std::fs::write(&file, "withhold\n").unwrap();
        std::thread::sleep(REREAD + Duration::from_millis(20));
        assert!(s.current().withhold);
        std::fs::remove_file(&file).unwrap();
        std::thread::sleep(REREAD + Duration::from_millis(20));
        assert!(s.current().is_honest());
    }

    #[test]
    fn a_twin_shares_the_dot_verifies_and_loses_to_the_genuine_version() {
        use crate::entry::{Resolution, resolve};
        let me = Identity::from_seed([9; 32]);
        let mut vv = crate::version_vector::VersionVector::new();
        vv.set(&me.id().short(), 7);
        let hash = blake3::hash(b"x").to_hex().to_string();
        let genuine = Entry::author(&me, "f".into(), vv, hash, 1, false, crate::hlc::Hlc { ms: 50, c: 0 });
        let t = twin(&me, &genuine);
        assert_eq!(crate::knowledge::dot(&t), crate::knowledge::dot(&genuine));
        assert!(t.verify(|_| Some(me.id())).is_ok());
        assert_eq!(resolve(Some(&t), &genuine), Resolution::TakeRemote { copy: None });
        assert_eq!(resolve(Some(&genuine), &t), Resolution::Ignore);
        assert!(equivocates_on(&genuine, &me.id().short(), 50) && !equivocates_on(&genuine, &me.id().short(), 51));
        assert!(!equivocates_on(&t, &me.id().short(), 0));
    }

    #[test]
    fn neighbours_are_split_into_two_stable_sides() {
        let n = ["c", "a", "d", "b"];
        let twins: Vec<bool> = ["a", "b", "c", "d", "x"].iter().map(|w| told_the_twin(&n, w)).collect();
        assert_eq!(twins, vec![false, true, false, true, false]);
    }

    #[test]
    fn tampering_keeps_the_size_and_changes_the_hash() {
        let mut c = b"some content that is longer than sixty-four bytes, to flip two of them".to_vec();
        let before = blake3::hash(&c);
        tamper(&mut c);
        assert_eq!(c.len(), 70);
        assert_ne!(blake3::hash(&c), before);
    }
}
