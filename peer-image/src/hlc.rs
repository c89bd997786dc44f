//! [`Hlc`]: a hybrid logical clock (Kulkarni et al.): wall-clock milliseconds plus a counter.
//!
//! It never goes backwards even when the wall clock does (libfaketime can move it by hours at run
//! time), and it moves past every timestamp the node has seen, so a version authored after seeing
//! another always carries a larger timestamp. It is only a tie-break between *concurrent* versions;
//! version vectors decide order.

use serde::{Deserialize, Serialize};

/// One timestamp. Ordered by `(ms, c)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (the largest physical time seen).
    pub ms: u64,
    /// Logical counter within one `ms`.
    pub c: u32,
}

/// Remote timestamps further than this ahead of our wall clock are not adopted: a Byzantine or
/// badly broken peer must not be able to drag every clock in the cluster to the end of time.
/// (Versions still apply; version vectors do not need the clock.)
pub const MAX_FUTURE_MS: u64 = 366 * 24 * 3600 * 1000;

/// The node's clock state.
#[derive(Debug, Clone, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A timestamp for a new local event, given the wall clock in ms.
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        self.last = if wall_ms > self.last.ms {
            Hlc { ms: wall_ms, c: 0 }
        } else if self.last.c == u32::MAX {
            Hlc {
                ms: self.last.ms + 1,
                c: 0,
            }
        } else {
            Hlc {
                ms: self.last.ms,
                c: self.last.c + 1,
            }
        };
        self.last
    }

    /// Moves past a timestamp seen on a received version.
    pub fn observe(&mut self, seen: Hlc, wall_ms: u64) {
        if seen.ms > wall_ms.saturating_add(MAX_FUTURE_MS) {
            return;
        }
        self.last = self.last.max(seen);
    }

    pub fn last(&self) -> Hlc {
        self.last
    }
}

/// The process's own wall clock in ms (what libfaketime fakes).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_when_wall_clock_jumps_back() {
        let mut c = HlcClock::default();
        let a = c.tick(10_000);
        let b = c.tick(5_000); // two hours back, say
        let d = c.tick(5_001);
        assert!(a < b && b < d);
    }

    #[test]
    fn observe_moves_past_remote() {
        let mut c = HlcClock::default();
        c.observe(Hlc { ms: 50_000, c: 7 }, 1_000);
        let t = c.tick(1_000);
        assert!(t > Hlc { ms: 50_000, c: 7 });
    }

    #[test]
    fn far_future_is_not_adopted() {
        let mut c = HlcClock::default();
        c.observe(Hlc { ms: u64::MAX, c: 0 }, 1_000);
        assert_eq!(c.tick(1_000).ms, 1_000);
    }
}
