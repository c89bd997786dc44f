//! The delay scheduler: holds items until their release time, keeping order within a flow.
//!
//! Time is plain microseconds from an arbitrary origin, so the scheduler is pure and testable.
//! A packet's release time is `now + delay`, raised to the release time of the previous packet
//! of the same flow, so jitter alone never reorders a flow (netem does reorder under jitter,
//! which surprises people). A packet marked `reorder` gets an extra hold and does not raise the
//! flow's release time, so the packets behind it overtake it.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

struct Held<T> {
    release_us: u64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Held<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.release_us, self.seq) == (o.release_us, o.seq)
    }
}
impl<T> Eq for Held<T> {}
impl<T> PartialOrd for Held<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Held<T> {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.release_us, self.seq).cmp(&(o.release_us, o.seq))
    }
}

/// What `schedule` did with an item.
#[derive(Debug, PartialEq, Eq)]
pub enum Scheduled<T> {
    /// Due now: release it at once (the caller keeps it).
    Now(T),
    /// Held until this time.
    Held { release_us: u64 },
}

/// A min-heap of held items plus the last release time of every flow.
pub struct DelayScheduler<T> {
    heap: BinaryHeap<Reverse<Held<T>>>,
    flow_last: HashMap<u64, u64>,
    seq: u64,
}

impl<T> Default for DelayScheduler<T> {
    fn default() -> Self {
        DelayScheduler {
            heap: BinaryHeap::new(),
            flow_last: HashMap::new(),
            seq: 0,
        }
    }
}

impl<T> DelayScheduler<T> {
    /// Schedule `item` of `flow`, arriving at `now_us`, to wait `delay_us` (plus `reorder_us`
    /// when `reorder`).
    pub fn schedule(&mut self, now_us: u64, flow: u64, delay_us: u64, reorder: Option<u64>, item: T) -> Scheduled<T> {
        let release_us = match reorder {
            Some(extra) => now_us + delay_us + extra,
            None => {
                let last = self.flow_last.get(&flow).copied().unwrap_or(0);
                let r = (now_us + delay_us).max(last);
                if r > now_us {
                    self.flow_last.insert(flow, r);
                }
                r
            }
        };
        if release_us <= now_us {
            return Scheduled::Now(item);
        }
        self.seq += 1;
        self.heap.push(Reverse(Held {
            release_us,
            seq: self.seq,
            item,
        }));
        if self.flow_last.len() > 65_536 {
            self.flow_last.retain(|_, r| *r > now_us);
        }
        Scheduled::Held { release_us }
    }

    /// Remove and return the next item due at `now_us`, if any.
    pub fn pop_due(&mut self, now_us: u64) -> Option<T> {
        if self.heap.peek()?.0.release_us <= now_us {
            self.heap.pop().map(|Reverse(h)| h.item)
        } else {
            None
        }
    }

    /// When the next held item is due.
    pub fn next_release(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(h)| h.release_us)
    }

    /// Remove every held item, in release order (used on shutdown: release, never drop).
    pub fn drain_all(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.heap.len());
        while let Some(Reverse(h)) = self.heap.pop() {
            out.push(h.item);
        }
        self.flow_last.clear();
        out
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_until<T>(s: &mut DelayScheduler<T>, now: u64) -> Vec<T> {
        std::iter::from_fn(|| s.pop_due(now)).collect()
    }

    #[test]
    fn zero_delay_is_released_at_once() {
        let mut s = DelayScheduler::default();
        assert_eq!(s.schedule(100, 1, 0, None, "a"), Scheduled::Now("a"));
        assert!(s.is_empty());
    }

    #[test]
    fn items_are_released_at_their_time_in_time_order() {
        let mut s = DelayScheduler::default();
        s.schedule(0, 1, 300, None, "slow");
        s.schedule(0, 2, 100, None, "fast");
        assert_eq!(s.next_release(), Some(100));
        assert_eq!(drain_until(&mut s, 99), Vec::<&str>::new());
        assert_eq!(drain_until(&mut s, 100), vec!["fast"]);
        assert_eq!(drain_until(&mut s, 1000), vec!["slow"]);
        assert_eq!(s.next_release(), None);
    }

    #[test]
    fn jitter_never_reorders_a_flow() {
        let mut s = DelayScheduler::default();
        // Second packet of flow 7 draws a shorter delay: it waits for the first.
        s.schedule(0, 7, 500, None, 1);
        assert_eq!(s.schedule(10, 7, 100, None, 2), Scheduled::Held { release_us: 500 });
        // Zero delay behind a held packet of the same flow is held too.
        assert_eq!(s.schedule(20, 7, 0, None, 3), Scheduled::Held { release_us: 500 });
        // Another flow is not affected.
        assert_eq!(s.schedule(20, 8, 0, None, 9), Scheduled::Now(9));
        assert_eq!(drain_until(&mut s, 500), vec![1, 2, 3]);
        // Once the flow is drained, zero delay passes at once again.
        assert_eq!(s.schedule(600, 7, 0, None, 4), Scheduled::Now(4));
    }

    #[test]
    fn a_reordered_packet_is_overtaken_by_its_flow() {
        let mut s = DelayScheduler::default();
        assert_eq!(
            s.schedule(0, 1, 0, Some(1000), "late"),
            Scheduled::Held { release_us: 1000 }
        );
        assert_eq!(s.schedule(10, 1, 0, None, "next"), Scheduled::Now("next"));
        assert_eq!(drain_until(&mut s, 2000), vec!["late"]);
    }

    #[test]
    fn equal_times_keep_arrival_order_and_drain_all_releases_everything() {
        let mut s = DelayScheduler::default();
        for i in 0..5 {
            s.schedule(0, i, 50, None, i);
        }
        s.schedule(0, 99, 10, None, 99);
        assert_eq!(s.len(), 6);
        assert_eq!(s.drain_all(), vec![99, 0, 1, 2, 3, 4]);
        assert!(s.is_empty());
    }
}
