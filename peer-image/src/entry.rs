//! [`Entry`]: one signed version of one path, and the pure rules over entries: canonical encoding,
//! signature check, conflict-copy naming and [`resolve`] (which version wins).
//!
//! Resolution is a pure function of the two entries, so every peer that sees the same versions
//! reaches the same index, whatever order the versions arrived in:
//! * a version whose vector dominates wins; a dominated or equal one is ignored (replays, late and
//!   out-of-order messages are harmless);
//! * concurrent versions are ordered by `(hlc, author, hash, deleted)`; the loser, unless it is a
//!   delete, has the same content as the winner, or already is a conflict copy, is kept as a
//!   conflict copy: the loser's own signed entry re-keyed to a path derived from its author and
//!   hash. Every peer derives the same copy entry, so a resolved conflict never conflicts again.

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;
use crate::identity::{Identity, PeerId};
use crate::mutant::Tie;
use crate::version_vector::{Causality, VersionVector};

/// Marker in conflict-copy file names.
pub const CONFLICT_MARKER: &str = ".sync-conflict-";

/// One version of one path, as stored in the index and sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path with `/` separators.
    pub path: String,
    /// For a conflict copy: the path the loser was written at (and signed for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    pub vv: VersionVector,
    /// BLAKE3 of the content, 64 hex; empty for a tombstone.
    pub hash: String,
    pub size: u64,
    /// Tombstone: a delete is a version like any other.
    pub deleted: bool,
    /// Short id (16 hex) of the author's key.
    pub author: String,
    pub hlc: Hlc,
    /// ed25519 signature (128 hex) over [`Entry::canonical`].
    pub sig: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The author is not in the trust list.
    Untrusted,
    /// Malformed, bad path, or the signature does not verify.
    BadSignature,
}

fn field(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    buf.extend_from_slice(bytes);
}

impl Entry {
    /// The path the author signed.
    pub fn signed_path(&self) -> &str {
        self.origin.as_deref().unwrap_or(&self.path)
    }

    /// Length-prefixed encoding of everything the signature covers (path, history, content, author,
    /// time), so that no two different versions share an encoding.
    pub fn canonical(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(160);
        field(&mut b, b"syncpeer-entry-v1");
        field(&mut b, self.signed_path().as_bytes());
        field(&mut b, self.vv.canonical().as_bytes());
        field(&mut b, self.hash.as_bytes());
        field(&mut b, &self.size.to_be_bytes());
        field(&mut b, &[self.deleted as u8]);
        field(&mut b, self.author.as_bytes());
        field(&mut b, &self.hlc.ms.to_be_bytes());
        field(&mut b, &self.hlc.c.to_be_bytes());
        b
    }

    /// Bytes that identify this entry exactly (for the index digest).
    pub fn digest_bytes(&self) -> Vec<u8> {
        let mut b = self.canonical();
        field(&mut b, self.path.as_bytes());
        field(&mut b, self.sig.as_bytes());
        b
    }

    /// Builds and signs a new version authored by `me`.
    #[allow(clippy::too_many_arguments)]
    pub fn author(
        me: &Identity,
        path: String,
        vv: VersionVector,
        hash: String,
        size: u64,
        deleted: bool,
        hlc: Hlc,
    ) -> Entry {
        let mut e = Entry {
            path,
            origin: None,
            vv,
            hash,
            size,
            deleted,
            author: me.id().short(),
            hlc,
            sig: String::new(),
        };
        e.sig = hex::encode(me.sign(&e.canonical()));
        e
    }

    /// Checks shape, path, conflict-copy derivation and signature. `key_of` maps a short author id
    /// to its trusted key.
    pub fn verify(&self, key_of: impl Fn(&str) -> Option<PeerId>) -> Result<(), Invalid> {
        let hash_ok = if self.deleted {
            self.hash.is_empty()
        } else {
            self.hash.len() == 64 && self.hash.bytes().all(|c| c.is_ascii_hexdigit())
        };
        // Only what the binary encoding carries intact (codec): otherwise the entry, once held,
        // would make every pull page that includes it malformed for the receivers.
        let short_id = |a: &str| a.len() == 16 && a.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        let wire_ok = self.path.len() <= PATH_MAX_BYTES
            && self.origin.as_ref().is_none_or(|o| o.len() <= PATH_MAX_BYTES)
            && self.vv.len() <= VV_AUTHORS_MAX
            && self.vv.iter().all(|(a, _)| short_id(a));
        if !hash_ok || !wire_ok || !valid_path(&self.path) || self.author.len() != 16 {
            return Err(Invalid::BadSignature);
        }
        if let Some(origin) = &self.origin
            && (self.deleted || !valid_path(origin) || conflict_name(origin, &self.author, &self.hash) != self.path)
        {
            return Err(Invalid::BadSignature);
        }
        let key = key_of(&self.author).ok_or(Invalid::Untrusted)?;
        let sig = hex::decode(&self.sig).map_err(|_| Invalid::BadSignature)?;
        if key.verify(&self.canonical(), &sig) {
            Ok(())
        } else {
            Err(Invalid::BadSignature)
        }
    }

    /// Total order among concurrent versions: the winner is the largest.
    fn tie_key(&self) -> (Hlc, &str, &str, bool) {
        (self.hlc, &self.author, &self.hash, self.deleted)
    }

    /// Whether both say the same thing about the file (same content, or both deleted).
    pub fn same_content(&self, other: &Entry) -> bool {
        self.deleted == other.deleted && (self.deleted || self.hash == other.hash)
    }

    /// The conflict copy that keeps `self` (a losing version) next to `winner`, if one is needed.
    pub fn conflict_copy(&self, winner: &Entry) -> Option<Entry> {
        if self.deleted || self.origin.is_some() || self.same_content(winner) {
            return None;
        }
        let mut copy = self.clone();
        copy.origin = Some(self.path.clone());
        copy.path = conflict_name(&self.path, &self.author, &self.hash);
        Some(copy)
    }
}

/// The largest counter a version vector may claim. 2^48 versions by one author is more than any
/// peer writes in its life (a million a second for nine years), and far enough below `u64::MAX`
/// that no counter can be pushed to saturation: a claim beyond it is a lie meant to exhaust an
/// author's counters (one that saw its own counter at `u64::MAX` would reuse it, and be convicted of
/// equivocation for its honest writes).
pub const COUNTER_MAX: u64 = 1 << 48;

/// A lie a validly signed version tells about its metadata (see [`Entry::metadata_lie`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataLie {
    /// Dated further ahead of the receiver's clock than any clock is wrong
    /// ([`crate::hlc::MAX_FUTURE_MS`]): it would win every concurrent tie for years.
    Timestamp,
    /// A counter beyond [`COUNTER_MAX`] for some author.
    Counter,
}

impl Entry {
    /// What a signature cannot rule out: an author may sign nonsense about itself. `wall_ms` is the
    /// receiver's clock. Sizes and hashes need no bound here: content that does not match them is
    /// refused when it arrives.
    pub fn metadata_lie(&self, wall_ms: u64) -> Option<MetadataLie> {
        if self.hlc.ms > wall_ms.saturating_add(crate::hlc::MAX_FUTURE_MS) {
            return Some(MetadataLie::Timestamp);
        }
        if self.vv.iter().any(|(_, c)| c > COUNTER_MAX) {
            return Some(MetadataLie::Counter);
        }
        None
    }
}

/// The longest path (and conflict origin) an entry may have, in bytes: Linux's `PATH_MAX`, and
/// what a pull page carries (`codec`).
pub const PATH_MAX_BYTES: usize = 4096;
/// The most authors a version vector may name (what a pull page carries).
pub const VV_AUTHORS_MAX: usize = 4096;

/// A path is relative, `/`-separated, without empty, `.`, `..` or `.syncpeer*` components.
pub fn valid_path(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\0')
        && !p.contains('\\')
        && p.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.starts_with(".syncpeer"))
}

/// `<stem>.sync-conflict-<author8>-<hash8><.ext>`, in the same folder as `path`.
pub fn conflict_name(path: &str, author: &str, hash: &str) -> String {
    let (dir, file) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    let (stem, ext) = match file.rfind('.') {
        Some(i) if i > 0 => (&file[..i], &file[i..]),
        _ => (file, ""),
    };
    let a8 = &author[..author.len().min(8)];
    let h8 = &hash[..hash.len().min(8)];
    format!("{dir}{stem}{CONFLICT_MARKER}{a8}-{h8}{ext}")
}

/// What to do with a received version given the local one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Dominated, equal, or a losing concurrent version with nothing to keep.
    Ignore,
    /// The remote version wins; `copy` keeps the local loser.
    TakeRemote { copy: Option<Entry> },
    /// The local version wins; `copy` keeps the remote loser.
    KeepLocal { copy: Entry },
    /// Both identical except for nothing we can see: same as Ignore but named for clarity.
    Same,
}

/// Decides between the local entry for a path (if any) and a received one.
pub fn resolve(local: Option<&Entry>, remote: &Entry) -> Resolution {
    resolve_with(Tie::Total, local, remote)
}

/// [`resolve`] with a given tie-break between concurrent versions ([`Tie::Total`] is the honest
/// one; [`Tie::PreferOwn`] is `mutant-consensus-failure`'s bug).
pub fn resolve_with(tie: Tie, local: Option<&Entry>, remote: &Entry) -> Resolution {
    let Some(local) = local else {
        return Resolution::TakeRemote { copy: None };
    };
    if local == remote {
        return Resolution::Same;
    }
    match remote.vv.compare(&local.vv) {
        Causality::After => Resolution::TakeRemote { copy: None },
        Causality::Before => Resolution::Ignore,
        // Equal vectors with different payloads only come from a key that signed two histories
        // (a fork): treat them like concurrent versions so every peer picks the same one.
        Causality::Equal | Causality::Concurrent => {
            let remote_wins = match tie {
                Tie::PreferOwn(me) if local.author != remote.author && (local.author == me || remote.author == me) => {
                    remote.author == me
                }
                _ => remote.tie_key() > local.tie_key(),
            };
            if remote_wins {
                Resolution::TakeRemote {
                    copy: local.conflict_copy(remote),
                }
            } else {
                match remote.conflict_copy(local) {
                    Some(copy) => Resolution::KeepLocal { copy },
                    None => Resolution::Ignore,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Identity, Identity, Identity) {
        (
            Identity::from_seed([1; 32]),
            Identity::from_seed([2; 32]),
            Identity::from_seed([3; 32]),
        )
    }

    fn mk(who: &Identity, path: &str, vv: &[(&Identity, u64)], content: &str, ms: u64) -> Entry {
        let mut v = VersionVector::new();
        for (i, c) in vv {
            v.set(&i.id().short(), *c);
        }
        let hash = blake3::hash(content.as_bytes()).to_hex().to_string();
        Entry::author(who, path.into(), v, hash, content.len() as u64, false, Hlc { ms, c: 0 })
    }

    fn key_of<'a>(all: &'a [&'a Identity]) -> impl Fn(&str) -> Option<PeerId> + 'a {
        move |s| all.iter().map(|i| i.id()).find(|id| id.short() == s)
    }

    #[test]
    fn conflict_names() {
        let h = "0123456789abcdef".repeat(4);
        let a = "fedcba9876543210";
        assert_eq!(
            conflict_name("d/report.txt", a, &h),
            "d/report.sync-conflict-fedcba98-01234567.txt"
        );
        assert_eq!(
            conflict_name("Makefile", a, &h),
            "Makefile.sync-conflict-fedcba98-01234567"
        );
        assert_eq!(conflict_name(".env", a, &h), ".env.sync-conflict-fedcba98-01234567");
        assert_eq!(
            conflict_name("a.tar.gz", a, &h),
            "a.tar.sync-conflict-fedcba98-01234567.gz"
        );
    }

    #[test]
    fn dominated_and_replayed_versions_are_ignored() {
        let (a, _, _) = ids();
        let v1 = mk(&a, "f", &[(&a, 1)], "one", 10);
        let v2 = mk(&a, "f", &[(&a, 2)], "two", 5); // older wall clock, still newer causally
        assert_eq!(resolve(Some(&v2), &v1), Resolution::Ignore);
        assert_eq!(resolve(Some(&v1), &v2), Resolution::TakeRemote { copy: None });
        assert_eq!(resolve(Some(&v2), &v2), Resolution::Same);
        let mut del = v2.clone();
        del.vv.set(&a.id().short(), 3);
        del.deleted = true;
        // Delete arrives before create: the create is dominated.
        assert_eq!(resolve(Some(&del), &v1), Resolution::Ignore);
    }

    #[test]
    fn a_clock_hours_ahead_never_makes_an_older_version_win() {
        let (a, b, _) = ids();
        // b's clock is two hours ahead, but its version is causally before a's update.
        let old = mk(&b, "f", &[(&b, 1)], "old", 1_000 + 7_200_000);
        let new = mk(&a, "f", &[(&b, 1), (&a, 1)], "new", 1_000);
        assert_eq!(resolve(Some(&new), &old), Resolution::Ignore);
        assert_eq!(resolve(Some(&old), &new), Resolution::TakeRemote { copy: None });
    }

    #[test]
    fn issue_15_the_consensus_failure_mutant_makes_each_writer_keep_its_own() {
        let (a, b, c) = ids();
        let x = mk(&a, "f", &[(&a, 1)], "from a", 100);
        let y = mk(&b, "f", &[(&b, 1)], "from b", 200);
        let (a8, b8, c8) = (a.id().short(), b.id().short(), c.id().short());
        // Honest: y wins on both sides. Mutant: a keeps x, b keeps y: they never agree.
        assert!(matches!(resolve(Some(&x), &y), Resolution::TakeRemote { .. }));
        assert!(matches!(
            resolve_with(Tie::PreferOwn(&a8), Some(&x), &y),
            Resolution::KeepLocal { .. }
        ));
        assert!(matches!(
            resolve_with(Tie::PreferOwn(&b8), Some(&y), &x),
            Resolution::KeepLocal { .. }
        ));
        // A third peer's and causal order are untouched.
        assert_eq!(resolve_with(Tie::PreferOwn(&c8), Some(&x), &y), resolve(Some(&x), &y));
        let later = mk(&b, "f", &[(&a, 1), (&b, 2)], "later", 50);
        assert_eq!(
            resolve_with(Tie::PreferOwn(&a8), Some(&x), &later),
            resolve(Some(&x), &later)
        );
    }

    #[test]
    fn concurrent_resolution_is_symmetric_and_copies_the_loser() {
        let (a, b, _) = ids();
        let x = mk(&a, "d/f.txt", &[(&a, 1)], "from a", 100);
        let y = mk(&b, "d/f.txt", &[(&b, 1)], "from b", 200);
        // y wins on hlc wherever it is resolved.
        let on_a = resolve(Some(&x), &y);
        let on_b = resolve(Some(&y), &x);
        let copy_a = match on_a {
            Resolution::TakeRemote { copy: Some(c) } => c,
            other => panic!("{other:?}"),
        };
        let copy_b = match on_b {
            Resolution::KeepLocal { copy } => copy,
            other => panic!("{other:?}"),
        };
        assert_eq!(copy_a, copy_b);
        assert!(copy_a.path.starts_with("d/f.sync-conflict-"));
        assert!(copy_a.verify(key_of(&[&a, &b])).is_ok());
        // The copy never conflicts with itself or causes a copy of a copy.
        assert_eq!(resolve(Some(&copy_a), &copy_b), Resolution::Same);
        assert_eq!(copy_a.conflict_copy(&y), None);
    }

    #[test]
    fn identical_concurrent_content_is_not_a_conflict() {
        let (a, b, _) = ids();
        let x = mk(&a, "f", &[(&a, 1)], "same", 100);
        let y = mk(&b, "f", &[(&b, 1)], "same", 200);
        assert_eq!(resolve(Some(&x), &y), Resolution::TakeRemote { copy: None });
        assert_eq!(resolve(Some(&y), &x), Resolution::Ignore);
    }

    #[test]
    fn concurrent_delete_loses_nothing() {
        let (a, b, _) = ids();
        let edit = mk(&a, "f", &[(&a, 1), (&b, 1)], "edit", 100);
        let mut del = mk(&b, "f", &[(&b, 2)], "", 300);
        del.deleted = true;
        del.hash.clear();
        // The delete wins on hlc, the edit survives as a conflict copy.
        match resolve(Some(&edit), &del) {
            Resolution::TakeRemote { copy: Some(c) } => assert_eq!(c.hash, edit.hash),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn three_way_order_independence() {
        let (a, b, c) = ids();
        let xs = [
            mk(&a, "f", &[(&a, 1)], "a", 100),
            mk(&b, "f", &[(&b, 1)], "b", 300),
            mk(&c, "f", &[(&c, 1)], "c", 200),
        ];
        let orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        let mut results = Vec::new();
        for o in orders {
            let mut cur: Option<Entry> = None;
            let mut copies = std::collections::BTreeSet::new();
            for i in o {
                match resolve(cur.as_ref(), &xs[i]) {
                    Resolution::TakeRemote { copy } => {
                        copies.extend(copy.map(|c| c.path));
                        cur = Some(xs[i].clone());
                    }
                    Resolution::KeepLocal { copy } => {
                        copies.insert(copy.path);
                    }
                    _ => {}
                }
            }
            results.push((cur.unwrap().hash, copies));
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
        assert_eq!(results[0].1.len(), 2);
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let (a, b, _) = ids();
        let x = mk(&a, "f", &[(&a, 1)], "a", 100);
        assert!(x.verify(key_of(&[&a])).is_ok());
        let mut t = x.clone();
        t.size += 1;
        assert_eq!(t.verify(key_of(&[&a])), Err(Invalid::BadSignature));
        assert_eq!(x.verify(key_of(&[&b])), Err(Invalid::Untrusted));
        let mut p = x.clone();
        p.path = "../etc/passwd".into();
        assert_eq!(p.verify(key_of(&[&a])), Err(Invalid::BadSignature));
    }

    #[test]
    fn issue_13_a_signed_entry_the_wire_cannot_carry_does_not_verify() {
        // A trusted author could sign a path longer than a pull page may carry, or a vector with
        // author ids that are not 16 lowercase hex: held, such an entry made every page with it
        // malformed for the receivers, stalling the versions that shared its page.
        let (a, _, _) = ids();
        let long = format!("{}/f", "d".repeat(PATH_MAX_BYTES));
        let odd = ["x", "ABCDEF0123456789", "0123456789abcdefg"];
        let mut bad = vec![mk(&a, &long, &[(&a, 1)], "a", 1)];
        for author in odd {
            let mut vv = VersionVector::new();
            vv.set(&a.id().short(), 1);
            vv.set(author, 2);
            let hash = blake3::hash(b"a").to_hex().to_string();
            bad.push(Entry::author(&a, "f".into(), vv, hash, 1, false, Hlc { ms: 1, c: 0 }));
        }
        for e in bad {
            assert_eq!(e.verify(key_of(&[&a])), Err(Invalid::BadSignature), "{:?}", e.vv);
        }
        let longest = format!("{}/f", "d".repeat(PATH_MAX_BYTES - 2));
        assert!(mk(&a, &longest, &[(&a, 1)], "a", 1).verify(key_of(&[&a])).is_ok());
    }

    #[test]
    fn path_rules() {
        assert!(valid_path("a/b.txt"));
        for bad in ["", "/a", "a//b", "../a", "a/./b", ".syncpeer-tmp/x", "d/.syncpeer.lock"] {
            assert!(!valid_path(bad), "{bad}");
        }
    }
}
