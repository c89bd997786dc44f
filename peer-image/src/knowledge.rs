//! [`Knowledge`]: which versions a node has seen, as *dots*: every version is authored with a
//! node-wide, ever-growing counter, so `(author, counter)` names it uniquely, across paths.
//!
//! A node's knowledge is, per author, a set of counters kept as sorted, disjoint ranges. It is
//! what a puller sends (`POST /v1/pull`): the neighbour answers with the versions it holds whose
//! dots the puller lacks, so a version a node already has is never announced to it again. This is
//! what keeps a mesh cheap: with summaries "since my last pull", every node heard of every
//! version from every neighbour (nine times in a 10-peer mesh); with knowledge, a version crosses
//! each link about once. Authors' counters are dense (1, 2, 3, ...), so the knowledge of a node
//! that is in sync is one range per author, however many files there are.

use std::collections::BTreeMap;

use crate::entry::Entry;

/// Ranges in one knowledge, all authors together: the decoding cap of a received one (16 MiB
/// decoded; a hint body, at most 2 MiB, holds about 1M ranges anyway) and the cap of what is kept
/// about a neighbour (its claims, its fills). Honest knowledge has about one range per author, at
/// worst one per file held.
pub const KNOWLEDGE_RANGES_MAX: usize = 1 << 20;

/// The 64-bit form of a short author id (16 hex); 0 for a malformed one, which no key has.
pub fn author_key(short: &str) -> u64 {
    if short.len() != 16 {
        return 0;
    }
    u64::from_str_radix(short, 16).unwrap_or(0)
}

/// The short author id (16 hex) of a 64-bit author key.
pub fn author_short(key: u64) -> String {
    format!("{key:016x}")
}

/// The dot of an entry: its author and the author's counter for it.
pub fn dot(e: &Entry) -> (u64, u64) {
    (author_key(&e.author), e.vv.get(&e.author))
}

/// A set of counters as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet(Vec<(u64, u64)>);

impl RangeSet {
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, n: u64) -> bool {
        let i = self.0.partition_point(|&(_, hi)| hi < n);
        self.0.get(i).is_some_and(|&(lo, _)| lo <= n)
    }

    pub fn insert(&mut self, n: u64) {
        self.insert_range(n, n);
    }

    /// Adds `lo..=hi`, merging with overlapping or adjacent ranges.
    pub fn insert_range(&mut self, lo: u64, hi: u64) {
        if lo > hi {
            return;
        }
        // First range that could touch `lo` (ends at or after lo - 1).
        let start = self.0.partition_point(|&(_, h)| h.saturating_add(1) < lo);
        let mut end = start;
        let (mut nlo, mut nhi) = (lo, hi);
        while end < self.0.len() && self.0[end].0 <= hi.saturating_add(1) {
            nlo = nlo.min(self.0[end].0);
            nhi = nhi.max(self.0[end].1);
            end += 1;
        }
        self.0.splice(start..end, [(nlo, nhi)]);
    }

    /// Adds every counter of `other`: one merge of the two sorted lists, linear in both (a range
    /// at a time into the middle was quadratic, and a neighbour chooses `other`).
    pub fn union(&mut self, other: &RangeSet) {
        if other.0.is_empty() {
            return;
        }
        if self.0.is_empty() {
            self.0.clone_from(&other.0);
            return;
        }
        let (a, b) = (std::mem::take(&mut self.0), &other.0);
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let next = if j == b.len() || (i < a.len() && a[i].0 <= b[j].0) {
                i += 1;
                a[i - 1]
            } else {
                j += 1;
                b[j - 1]
            };
            match out.last_mut() {
                Some(last) if next.0 <= last.1.saturating_add(1) => last.1 = last.1.max(next.1),
                _ => out.push(next),
            }
        }
        self.0 = out;
    }

    /// The counters in `self` that are not in `other`.
    pub fn minus(&self, other: &RangeSet) -> RangeSet {
        let mut out = Vec::new();
        let mut j = 0;
        for &(lo, hi) in &self.0 {
            while j < other.0.len() && other.0[j].1 < lo {
                j += 1;
            }
            // `cur` is the first counter of lo..=hi not yet known to be covered.
            let mut cur = lo;
            let mut covered_to_end = false;
            let mut k = j;
            while k < other.0.len() && other.0[k].0 <= hi {
                let (olo, ohi) = other.0[k];
                if olo > cur {
                    out.push((cur, olo - 1));
                }
                if ohi >= hi {
                    covered_to_end = true;
                    break;
                }
                cur = ohi + 1;
                k += 1;
            }
            if !covered_to_end {
                out.push((cur, hi));
            }
        }
        RangeSet(out)
    }
}

/// Per author key, the counters seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Knowledge(BTreeMap<u64, RangeSet>);

impl Knowledge {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn authors(&self) -> impl Iterator<Item = (u64, &RangeSet)> {
        self.0.iter().map(|(a, r)| (*a, r))
    }

    pub fn insert(&mut self, (author, n): (u64, u64)) {
        self.0.entry(author).or_default().insert(n);
    }

    pub fn insert_range(&mut self, author: u64, lo: u64, hi: u64) {
        self.0.entry(author).or_default().insert_range(lo, hi);
    }

    /// The knowledge of a set of dots, in O(n log n): sorted first, so each insert appends
    /// (dots in arrival order, inserted one by one, each shifted the ranges after it).
    pub fn from_dots(mut dots: Vec<(u64, u64)>) -> Knowledge {
        dots.sort_unstable();
        let mut k = Knowledge::new();
        for d in dots {
            k.insert(d);
        }
        k
    }

    pub fn contains(&self, (author, n): (u64, u64)) -> bool {
        self.0.get(&author).is_some_and(|r| r.contains(n))
    }

    pub fn union(&mut self, other: &Knowledge) {
        for (a, r) in &other.0 {
            self.0.entry(*a).or_default().union(r);
        }
    }

    /// [`Knowledge::union`] for what is kept about a neighbour (its hints, its fills): past `cap`
    /// ranges only `other` is kept, or nothing if it alone is over. Knowing less about a
    /// neighbour costs a hint or a larger request, never a version.
    pub fn union_capped(&mut self, other: &Knowledge, cap: usize) {
        self.union(other);
        if self.ranges() > cap {
            *self = if other.ranges() <= cap {
                other.clone()
            } else {
                Knowledge::new()
            };
        }
    }

    /// What `self` knows that `other` does not.
    pub fn minus(&self, other: &Knowledge) -> Knowledge {
        let mut out = BTreeMap::new();
        for (a, r) in &self.0 {
            let d = match other.0.get(a) {
                Some(o) => r.minus(o),
                None => r.clone(),
            };
            if !d.is_empty() {
                out.insert(*a, d);
            }
        }
        Knowledge(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(RangeSet::is_empty)
    }

    /// Whether everything `self` knows, `other` knows too.
    pub fn is_subset(&self, other: &Knowledge) -> bool {
        self.minus(other).is_empty()
    }

    /// Number of ranges (the encoded size grows with it).
    pub fn ranges(&self) -> usize {
        self.0.values().map(|r| r.0.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(r: &[(u64, u64)]) -> RangeSet {
        let mut s = RangeSet::default();
        for &(lo, hi) in r {
            s.insert_range(lo, hi);
        }
        s
    }

    #[test]
    fn inserts_merge_adjacent_and_overlapping_ranges() {
        let mut s = RangeSet::default();
        for n in [5, 3, 4, 10, 1, 12, 11] {
            s.insert(n);
        }
        assert_eq!(s.ranges(), &[(1, 1), (3, 5), (10, 12)]);
        s.insert_range(2, 9);
        assert_eq!(s.ranges(), &[(1, 12)]);
        s.insert_range(u64::MAX - 1, u64::MAX);
        assert_eq!(s.ranges(), &[(1, 12), (u64::MAX - 1, u64::MAX)]);
        assert!(s.contains(7) && !s.contains(0) && !s.contains(13) && s.contains(u64::MAX));
    }

    #[test]
    fn difference_of_range_sets() {
        let a = rs(&[(1, 10), (20, 30)]);
        assert_eq!(
            a.minus(&rs(&[(3, 4), (8, 22), (29, 40)])).ranges(),
            &[(1, 2), (5, 7), (23, 28)]
        );
        assert_eq!(a.minus(&RangeSet::default()), a);
        assert!(a.minus(&rs(&[(0, 100)])).is_empty());
        assert_eq!(a.minus(&rs(&[(11, 19)])), a);
        assert_eq!(rs(&[(5, u64::MAX)]).minus(&rs(&[(7, u64::MAX)])).ranges(), &[(5, 6)]);
    }

    #[test]
    fn difference_matches_a_brute_force_model() {
        // Small universe, many random sets: minus/union/contains agree with plain sets.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let pick = |n: &mut dyn FnMut() -> u64| -> std::collections::BTreeSet<u64> {
                (0..40).filter(|_| n().is_multiple_of(3)).collect()
            };
            let (x, y) = (pick(&mut next), pick(&mut next));
            let (mut a, mut b) = (RangeSet::default(), RangeSet::default());
            x.iter().for_each(|n| a.insert(*n));
            y.iter().for_each(|n| b.insert(*n));
            let d = a.minus(&b);
            for n in 0..40 {
                assert_eq!(d.contains(n), x.contains(&n) && !y.contains(&n));
            }
            let mut u = a.clone();
            u.union(&b);
            for n in 0..40 {
                assert_eq!(u.contains(n), x.contains(&n) || y.contains(&n));
            }
        }
    }

    #[test]
    fn issue_13_merging_interleaved_200k_range_sets_is_linear() {
        // What two `/v1/hint`s of 200k ranges each did to a neighbour's `known`: every range of
        // the second went into the middle of the first (a shift of the whole vector each), seconds
        // of work under a lock. A merge of the two sorted lists is linear.
        let n = 200_000u64;
        let (mut a, mut b) = (Knowledge::new(), Knowledge::new());
        for i in 0..n {
            a.insert_range(1, 4 * i, 4 * i);
            b.insert_range(1, 4 * i + 2, 4 * i + 2);
        }
        a.union(&b);
        assert_eq!(a.ranges(), 2 * n as usize);
        assert!(a.contains((1, 4 * (n - 1) + 2)) && !a.contains((1, 1)));
        // Adjacent ranges still merge.
        let mut c = rs(&[(1, 2), (7, 8)]);
        c.union(&rs(&[(3, 4), (6, 6), (10, u64::MAX)]));
        assert_eq!(c.ranges(), &[(1, 4), (6, 8), (10, u64::MAX)]);
    }

    #[test]
    fn issue_13_knowledge_kept_about_a_neighbour_is_capped() {
        // A neighbour's hints and fills accumulate; past the cap only its latest message is kept
        // (knowing less about it costs hints, never correctness).
        let mut kept = Knowledge::new();
        for i in 0..10u64 {
            let mut msg = Knowledge::new();
            for j in 0..100 {
                msg.insert((j, 3 * i));
            }
            kept.union_capped(&msg, 250);
            assert!(kept.ranges() <= 250, "{}", kept.ranges());
            assert!(msg.is_subset(&kept));
        }
        let mut huge = Knowledge::new();
        (0..300).for_each(|j| huge.insert((j, 1)));
        kept.union_capped(&huge, 250);
        assert!(kept.is_empty());
    }

    #[test]
    fn knowledge_subset_and_difference_per_author() {
        let mut a = Knowledge::new();
        a.insert_range(1, 1, 100);
        a.insert((2, 7));
        let mut b = a.clone();
        assert!(a.is_subset(&b));
        b.insert((3, 1));
        assert!(a.is_subset(&b) && !b.is_subset(&a));
        let d = b.minus(&a);
        assert!(d.contains((3, 1)) && !d.contains((1, 5)));
        assert_eq!(author_key(&author_short(0xdead_beef)), 0xdead_beef);
        assert_eq!(author_key("not hex at all!!"), 0);
    }
}
