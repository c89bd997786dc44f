//! [`VersionVector`]: causal history of one path, as a map from author id to that author's counter.
//!
//! Version vectors alone decide whether one version supersedes another; clocks never do. Two vectors
//! are either equal, ordered (one dominates), or concurrent, and only the last case needs a tie-break.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How two version vectors relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    /// Same history.
    Equal,
    /// `self` happened before `other` (`other` dominates).
    Before,
    /// `self` dominates `other`.
    After,
    /// Neither dominates: concurrent edits.
    Concurrent,
}

/// Author id (16 hex chars, see [`crate::identity::PeerId::short`]) -> counter. Missing means 0.
///
/// A sorted vector rather than a map: a path usually has one to three authors, and a `BTreeMap`
/// allocates a node for eleven per entry (this is most of the index's memory). Serialized as a
/// JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionVector(Vec<(String, u64)>);

impl Serialize for VersionVector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = BTreeMap::<String, u64>::deserialize(d)?;
        Ok(VersionVector(m.into_iter().collect()))
    }
}

impl VersionVector {
    pub fn new() -> Self {
        Self::default()
    }

    /// A vector from pairs already sorted by author, without duplicates (a decoder checks that).
    pub fn from_sorted(pairs: Vec<(String, u64)>) -> Self {
        debug_assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
        VersionVector(pairs)
    }

    /// Counter of `author` (0 if absent).
    pub fn get(&self, author: &str) -> u64 {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(author))
            .map_or(0, |i| self.0[i].1)
    }

    /// Sets `author`'s counter (used when authoring: the caller passes a node-wide, ever-growing
    /// sequence so that a counter is never reused, even across paths).
    pub fn set(&mut self, author: &str, counter: u64) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(author)) {
            Ok(i) => self.0[i].1 = counter,
            Err(i) => {
                // Most paths have one author: a growing Vec would reserve four.
                self.0.reserve_exact(1);
                self.0.insert(i, (author.to_string(), counter))
            }
        }
    }

    /// Number of authors with a counter.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(author, counter)` pairs, sorted by author.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Element-wise maximum.
    pub fn merge(&mut self, other: &VersionVector) {
        for (k, v) in &other.0 {
            let cur = self.get(k);
            if *v > cur {
                self.set(k, *v);
            }
        }
    }

    /// Compares two vectors element-wise.
    pub fn compare(&self, other: &VersionVector) -> Causality {
        let mut less = false;
        let mut greater = false;
        for (k, _) in self.0.iter().chain(other.0.iter()) {
            let (a, b) = (self.get(k), other.get(k));
            less |= a < b;
            greater |= a > b;
            if less && greater {
                return Causality::Concurrent;
            }
        }
        match (less, greater) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (true, true) => Causality::Concurrent,
        }
    }

    /// Canonical text form for signing: `id:counter,` sorted by id, zero counters skipped so that
    /// `{a:0}` and `{}` encode (and compare) the same.
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.0 {
            if *v > 0 {
                s.push_str(k);
                s.push(':');
                s.push_str(&v.to_string());
                s.push(',');
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(pairs: &[(&str, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (k, c) in pairs {
            v.set(k, *c);
        }
        v
    }

    #[test]
    fn compare_covers_all_cases() {
        assert_eq!(vv(&[("a", 1)]).compare(&vv(&[("a", 1)])), Causality::Equal);
        assert_eq!(vv(&[]).compare(&vv(&[("a", 0)])), Causality::Equal);
        assert_eq!(vv(&[("a", 1)]).compare(&vv(&[("a", 2)])), Causality::Before);
        assert_eq!(vv(&[("a", 2), ("b", 1)]).compare(&vv(&[("a", 2)])), Causality::After);
        assert_eq!(vv(&[("a", 1)]).compare(&vv(&[("b", 1)])), Causality::Concurrent);
        assert_eq!(
            vv(&[("a", 2), ("b", 1)]).compare(&vv(&[("a", 1), ("b", 2)])),
            Causality::Concurrent
        );
    }

    #[test]
    fn serializes_as_a_sorted_map() {
        let v = vv(&[("b", 2), ("a", 1)]);
        let j = serde_json::to_string(&v).unwrap();
        assert_eq!(j, r#"{"a":1,"b":2}"#);
        assert_eq!(serde_json::from_str::<VersionVector>(&j).unwrap(), v);
    }

    #[test]
    fn merge_dominates_both() {
        let a = vv(&[("a", 3), ("b", 1)]);
        let b = vv(&[("b", 2), ("c", 5)]);
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(a.compare(&m), Causality::Before);
        assert_eq!(b.compare(&m), Causality::Before);
        assert_eq!(m.canonical(), "a:3,b:2,c:5,");
    }
}
