//! What a soak window starts from: the trees the previous window ended with.
//!
//! The checkers judge a window from its own history alone, so a file written windows ago and left
//! alone since would look like content no operation made. The window's history therefore begins with
//! one operation per (path, content) the peers held when the window began, authored by
//! [`checker::WINDOW_START`]: a path nothing touched must still hold it, and the workload's
//! recorded bases order the window's own operations after it. When the previous window ended
//! diverged, each content any peer held is such an operation, concurrent with the others: what
//! the next window must keep is then all of them (a failure goes on being judged, as it should).

use std::collections::BTreeMap;

use crate::checker::{self, PeerFinal};
use crate::plan::FileOpKind;
use crate::record::history::{Event, Outcome, Record};

/// Per path, the contents some peer held (and their sizes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Baseline {
    files: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Baseline {
    /// What the peers hold in `finals`.
    pub fn of(finals: &[PeerFinal]) -> Baseline {
        let mut files: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for p in finals {
            for (path, e) in &p.tree.files {
                files.entry(path.clone()).or_default().insert(e.hash.clone(), e.size);
            }
        }
        Baseline { files }
    }

    /// Paths held with more than one content, or by some peers only.
    pub fn divergent(&self, finals: &[PeerFinal]) -> usize {
        self.files
            .iter()
            .filter(|(path, contents)| contents.len() > 1 || finals.iter().any(|p| !p.tree.files.contains_key(*path)))
            .count()
    }

    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// The history records standing for this baseline, at `t_ms` (the window's start).
    pub fn records(&self, t_ms: u64) -> impl Iterator<Item = Record> + '_ {
        self.files.iter().flat_map(move |(path, contents)| {
            contents.iter().map(move |(hash, size)| Record {
                t_ms,
                wall: String::new(),
                event: Event::Write {
                    op: 0,
                    peer: checker::WINDOW_START.into(),
                    kind: FileOpKind::Create,
                    path: path.clone(),
                    size: *size,
                    hash: Some(hash.clone()),
                    base: None,
                    outcome: Outcome::Ok,
                },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{FileEntry, Tree};

    fn peer(name: &str, files: &[(&str, &str)]) -> PeerFinal {
        PeerFinal {
            name: name.into(),
            tree: Tree {
                files: files
                    .iter()
                    .map(|(p, h)| {
                        (
                            p.to_string(),
                            FileEntry {
                                size: 3,
                                hash: h.to_string(),
                            },
                        )
                    })
                    .collect(),
            },
            alive: true,
            log: String::new(),
            id: None,
            convictions: None,
        }
    }

    #[test]
    fn a_baseline_is_one_window_start_operation_per_content_held() {
        let agreed = [
            peer("p1", &[("a", "h1"), ("b", "h2")]),
            peer("p2", &[("a", "h1"), ("b", "h2")]),
        ];
        let b = Baseline::of(&agreed);
        assert_eq!((b.files(), b.divergent(&agreed)), (2, 0));
        let recs: Vec<Record> = b.records(700).collect();
        assert_eq!(recs.len(), 2);
        assert!(recs.iter().all(|r| r.t_ms == 700
            && matches!(&r.event, Event::Write { op: 0, peer, outcome: Outcome::Ok, base: None, .. } if peer == checker::WINDOW_START)));

        // Diverged: `a` differs, `b` is on p1 only; every content held is handed on.
        let split = [peer("p1", &[("a", "h1"), ("b", "h2")]), peer("p2", &[("a", "h3")])];
        let b = Baseline::of(&split);
        assert_eq!(b.divergent(&split), 2);
        assert_eq!(b.records(0).count(), 3);
    }
}
