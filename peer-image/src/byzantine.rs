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
//!
//! The file holds behaviour names separated by newlines, commas or spaces; `#` starts a comment.
//! Unknown names are logged and ignored (the orchestrator validates plans before writing).
//!
//! Honest peers are not told anything: they must notice on their own (signature and hash checks,
//! strikes and quarantine, rate limits, transfer timeouts). The liar's own client side stays
//! honest, so once the file is removed it converges like any peer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::entry::Entry;
use crate::mutex::lock;

/// How stale the cached control file may be: cheap enough to check on every request, quick enough
/// that a fault switches within a fraction of a second.
pub const REREAD: Duration = Duration::from_millis(200);
/// Slowloris pace: this many bytes, then a pause.
pub const TRICKLE_BYTES: usize = 16;
pub const TRICKLE_EVERY: Duration = Duration::from_millis(500);

/// The behaviours a control file may name.
pub const BEHAVIOURS: [&str; 5] = ["tamper", "forge", "withhold", "flood", "slowloris"];

/// A set of behaviours; the default is honest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Behaviours {
    pub tamper: bool,
    pub forge: bool,
    pub withhold: bool,
    pub flood: bool,
    pub slowloris: bool,
}

impl Behaviours {
    /// Parses a control file's text; returns the set and the words it did not know.
    pub fn parse(text: &str) -> (Behaviours, Vec<String>) {
        let mut b = Behaviours::default();
        let mut unknown = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
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
                    other => unknown.push(other.to_string()),
                }
            }
        }
        (b, unknown)
    }

    pub fn is_honest(&self) -> bool {
        *self == Behaviours::default()
    }

    pub fn names(&self) -> Vec<&'static str> {
        let on = [self.tamper, self.forge, self.withhold, self.flood, self.slowloris];
        BEHAVIOURS
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect()
    }
}

struct Cached {
    read_at: Option<Instant>,
    /// The file's text at the last read: a change is logged once, even one that only adds an
    /// unknown name (which changes no behaviour).
    text: String,
    current: Behaviours,
}

/// The control file and its cached contents.
pub struct ByzantineSwitch {
    file: PathBuf,
    cached: Mutex<Cached>,
}

impl ByzantineSwitch {
    pub fn new(file: &Path) -> ByzantineSwitch {
        ByzantineSwitch {
            file: file.to_path_buf(),
            cached: Mutex::new(Cached {
                read_at: None,
                text: String::new(),
                current: Behaviours::default(),
            }),
        }
    }

    /// The behaviours in force, re-reading the file when the cache is older than [`REREAD`].
    pub fn current(&self) -> Behaviours {
        let mut c = lock(&self.cached);
        if c.read_at.is_some_and(|t| t.elapsed() < REREAD) {
            return c.current;
        }
        c.read_at = Some(Instant::now());
        // Missing or unreadable: honest (the orchestrator heals by removing the file).
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        if text == c.text {
            return c.current;
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
        c.text = text;
        c.current = now;
        now
    }
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
    fn tampering_keeps_the_size_and_changes_the_hash() {
        let mut c = b"some content that is longer than sixty-four bytes, to flip two of them".to_vec();
        let before = blake3::hash(&c);
        tamper(&mut c);
        assert_eq!(c.len(), 70);
        assert_ne!(blake3::hash(&c), before);
    }
}
