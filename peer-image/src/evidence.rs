//! Proofs of equivocation and the evidence an honest peer keeps of them.
//!
//! A [`Proof`] is two statements signed by one author under one dot (the same author counter) that
//! say different things: honest authors never sign a counter twice (it is node-wide and persisted),
//! so two such statements prove that the key forked its history. Anyone can check a proof without
//! trusting whoever shows it ([`Proof::check`]): both signatures, the same author and counter, and
//! different signed content. A proof is therefore safe to pass on, and a forged one convicts nobody.
//!
//! [`Evidence`] keeps every proof this peer accepted (seen itself or told by a neighbour) in
//! `<state>/evidence.json`, at most [`EVIDENCE_MAX`] (one per dot; the earliest are kept, as those
//! are what the offender was convicted on), and queues new ones for [`crate::equivocation`] to tell
//! the neighbours. `GET /v1/evidence` on the status port lists them.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::entry::{Entry, Invalid};
use crate::identity::PeerId;
use crate::mutex::lock;

/// Proofs kept on disk, at most: one per forked dot; past it a proof is still acted on.
pub const EVIDENCE_MAX: usize = 256;

/// Two statements signed under one dot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub a: Entry,
    pub b: Entry,
}

impl Proof {
    /// A proof of `held` and `shown`, in a fixed order (by signature) so that the same fork is the
    /// same proof whoever found it.
    pub fn new(held: Entry, shown: Entry) -> Proof {
        let (a, b) = if held.sig <= shown.sig {
            (held, shown)
        } else {
            (shown, held)
        };
        Proof { a, b }
    }

    pub fn author(&self) -> &str {
        &self.a.author
    }

    /// The author's counter both statements were signed under.
    pub fn counter(&self) -> u64 {
        self.a.vv.get(&self.a.author)
    }

    /// What every receiver checks itself before acting on a proof: both statements verify
    /// (trusted author, signature), they have one author and one counter of that author, and they
    /// are different statements (their signed encodings differ: a conflict copy of a version is the
    /// same statement as the version).
    pub fn check(&self, key_of: impl Fn(&str) -> Option<PeerId>) -> Result<(), Invalid> {
        self.a.verify(&key_of)?;
        self.b.verify(&key_of)?;
        let same_dot = self.a.author == self.b.author && self.counter() == self.b.vv.get(&self.b.author);
        if !same_dot || self.counter() == 0 || self.a.canonical() == self.b.canonical() {
            return Err(Invalid::BadSignature);
        }
        Ok(())
    }
}

/// How a peer came by a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// It held one statement and was shown the other.
    Seen,
    /// A neighbour sent it the proof (checked here all the same).
    Told,
}

/// One conviction, as kept and listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The offender's short id (16 hex, the `author` of both statements).
    pub author: String,
    /// Its name in our config, or `unknown`.
    pub author_name: String,
    pub counter: u64,
    /// The two signed statements, as received (each verifiable on its own).
    pub statements: [Entry; 2],
    pub how: How,
    /// The neighbour that showed us the second statement (seen) or sent the proof (told).
    pub from: String,
    /// Wall-clock ms of the conviction (the offender was quarantined at that moment).
    pub detected_ms: u64,
}

/// The proofs a peer accepted, kept on disk, and those still to tell the neighbours.
pub struct Evidence {
    file: PathBuf,
    records: Mutex<Vec<Record>>,
    /// New proofs to send to every neighbour but `.1` (the one that told us).
    outbox: Mutex<Vec<(Proof, Option<String>)>>,
    pub wake: Notify,
}

impl Evidence {
    /// The evidence kept in `<state>/evidence.json` (none if it is missing or unreadable).
    pub fn load(state_dir: &Path) -> Evidence {
        let file = state_dir.join("evidence.json");
        let records = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Evidence {
            file,
            records: Mutex::new(records),
            outbox: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// Whether a proof for this dot is already kept.
    pub fn knows(&self, author: &str, counter: u64) -> bool {
        lock(&self.records)
            .iter()
            .any(|r| r.author == author && r.counter == counter)
    }

    /// Keeps a new conviction (written to disk at once) and queues its proof for the neighbours
    /// (but `told_by`). Returns false if the dot was convicted already.
    pub fn keep(&self, record: Record, told_by: Option<String>) -> bool {
        let proof = Proof::new(record.statements[0].clone(), record.statements[1].clone());
        {
            let mut records = lock(&self.records);
            if records
                .iter()
                .any(|r| r.author == record.author && r.counter == record.counter)
            {
                return false;
            }
            if records.len() < EVIDENCE_MAX {
                records.push(record);
                if let Err(e) = self.save(&records) {
                    tracing::warn!(file = %self.file.display(), "cannot keep evidence: {e}");
                }
            }
        }
        lock(&self.outbox).push((proof, told_by));
        self.wake.notify_one();
        true
    }

    /// Written aside, flushed and renamed over: a crash leaves the old list or the new one.
    fn save(&self, records: &[Record]) -> std::io::Result<()> {
        let tmp = self.file.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(records).expect("serializable"))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.file)
    }

    pub fn records(&self) -> Vec<Record> {
        lock(&self.records).clone()
    }

    pub fn len(&self) -> usize {
        lock(&self.records).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The proofs waiting to be told.
    pub fn take_outbox(&self) -> Vec<(Proof, Option<String>)> {
        std::mem::take(&mut *lock(&self.outbox))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::identity::Identity;
    use crate::version_vector::VersionVector;

    fn stmt(who: &Identity, path: &str, counter: u64, content: &[u8]) -> Entry {
        let mut vv = VersionVector::new();
        vv.set(&who.id().short(), counter);
        let hash = blake3::hash(content).to_hex().to_string();
        Entry::author(
            who,
            path.into(),
            vv,
            hash,
            content.len() as u64,
            false,
            Hlc { ms: 9, c: 0 },
        )
    }

    #[test]
    fn only_two_valid_statements_under_one_dot_prove_a_fork() {
        let liar = Identity::from_seed([4; 32]);
        let other = Identity::from_seed([5; 32]);
        let key_of = |s: &str| [&liar, &other].iter().map(|i| i.id()).find(|k| k.short() == s);
        let a = stmt(&liar, "f", 3, b"one");
        assert_eq!(Proof::new(a.clone(), stmt(&liar, "f", 3, b"two")).check(key_of), Ok(()));
        // The same dot on another path is a fork too.
        assert_eq!(Proof::new(a.clone(), stmt(&liar, "g", 3, b"one")).check(key_of), Ok(()));
        // Forged: a statement whose signature does not cover it.
        let mut forged = a.clone();
        forged.hash = blake3::hash(b"two").to_hex().to_string();
        assert!(Proof::new(a.clone(), forged).check(key_of).is_err());
        // Two genuine statements under different counters, or twice the same one: no fork.
        assert!(
            Proof::new(a.clone(), stmt(&liar, "f", 4, b"two"))
                .check(key_of)
                .is_err()
        );
        assert!(Proof::new(a.clone(), a.clone()).check(key_of).is_err());
        // Signed by someone else under the liar's name, or by nobody we trust.
        let mut framed = stmt(&other, "f", 3, b"two");
        framed.author = liar.id().short();
        assert!(Proof::new(a.clone(), framed).check(key_of).is_err());
        let stranger = Identity::from_seed([6; 32]);
        let s = stmt(&stranger, "f", 3, b"x");
        assert_eq!(
            Proof::new(s.clone(), stmt(&stranger, "f", 3, b"y")).check(key_of),
            Err(Invalid::Untrusted)
        );
        // Whoever found it, the same fork is the same proof.
        let b = stmt(&liar, "f", 3, b"two");
        assert_eq!(Proof::new(a.clone(), b.clone()), Proof::new(b, a));
    }

    #[test]
    fn evidence_is_kept_once_per_dot_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let liar = Identity::from_seed([4; 32]);
        let record = |how| Record {
            author: liar.id().short(),
            author_name: "p0".into(),
            counter: 3,
            statements: [stmt(&liar, "f", 3, b"one"), stmt(&liar, "f", 3, b"two")],
            how,
            from: "p2".into(),
            detected_ms: 1,
        };
        let ev = Evidence::load(dir.path());
        assert!(ev.keep(record(How::Seen), None));
        assert!(!ev.keep(record(How::Told), Some("p3".into())));
        assert_eq!(ev.take_outbox().len(), 1);
        let again = Evidence::load(dir.path());
        assert_eq!(again.records(), vec![record(How::Seen)]);
        assert!(again.knows(&liar.id().short(), 3));
    }
}
