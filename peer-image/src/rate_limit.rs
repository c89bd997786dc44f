//! [`RateLimiter`]: a token bucket per requesting peer, for the sync port's requests.
//!
//! A sender that keeps going over its limit is told so: every [`REFUSALS_PER_STRIKE`]th refusal
//! is an [`Admission::Strike`], which the node counts like bad data, so a flooding neighbour is
//! quarantined after a few dozen refusals instead of costing its full rate for as long as it likes.
//!
//! A sender is named by a header nobody authenticates, so the table of buckets is keyed by
//! whatever strangers send: it holds at most [`SENDERS_MAX`] buckets. When it is full, the buckets
//! that refilled completely are dropped first (a fresh bucket is the same thing), then the fuller
//! half: a sender that emptied its bucket is the last to be forgotten, so flooding other names
//! never buys it a fresh one.

use std::collections::HashMap;
use std::time::Instant;

/// Buckets kept at most (~100 bytes each).
pub const SENDERS_MAX: usize = 4096;

/// Refusals per strike. With three strikes to a quarantine (the default `strike_limit`), a sender
/// is quarantined at its 30th refusal: about a second after its burst ran dry for a flood held by
/// the server's tarpit, and never for an honest neighbour, whose retries after a refusal wait.
pub const REFUSALS_PER_STRIKE: u64 = 10;

/// What the bucket says to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    Refused,
    /// Refused, and the sender has now been refused another [`REFUSALS_PER_STRIKE`] times.
    Strike,
}

impl Admission {
    pub fn admitted(self) -> bool {
        self == Admission::Admitted
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
    refused: u64,
}

/// Token buckets by sender: `per_sec` refill, `burst` capacity (a new sender starts full).
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    pub fn new(per_sec: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            per_sec,
            burst,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token from `who`'s bucket at `now`; refused when it is empty.
    pub fn admit(&mut self, who: &str, now: Instant) -> Admission {
        if self.buckets.len() >= SENDERS_MAX && !self.buckets.contains_key(who) {
            self.evict(now);
        }
        let bucket = self.buckets.entry(who.to_string()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
            refused: 0,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.per_sec;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Admission::Admitted;
        }
        bucket.refused += 1;
        if bucket.refused.is_multiple_of(REFUSALS_PER_STRIKE) {
            Admission::Strike
        } else {
            Admission::Refused
        }
    }

    /// Makes room: drops every bucket that has refilled by `now`, then, if that freed less than
    /// half, the fullest until half is free. Amortised O(1) per new sender.
    fn evict(&mut self, now: Instant) {
        let (per_sec, burst) = (self.per_sec, self.burst);
        let level = |b: &Bucket| (b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec).min(burst);
        self.buckets.retain(|_, b| level(b) < burst);
        let keep = SENDERS_MAX / 2;
        if self.buckets.len() <= keep {
            return;
        }
        let mut levels: Vec<(f64, String)> = self.buckets.iter().map(|(k, b)| (level(b), k.clone())).collect();
        let drop = levels.len() - keep;
        levels.select_nth_unstable_by(drop - 1, |a, b| b.0.total_cmp(&a.0));
        for (_, k) in &levels[..drop] {
            self.buckets.remove(k);
        }
    }

    /// Senders with a bucket.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_sender_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(10.0, 3.0);
        assert!((0..3).all(|_| l.admit("a", t0).admitted()));
        assert!(!l.admit("a", t0).admitted());
        assert!(l.admit("b", t0).admitted(), "buckets are per sender");
        assert!(l.admit("a", t0 + Duration::from_millis(100)).admitted());
        assert!(!l.admit("a", t0 + Duration::from_millis(100)).admitted());
    }

    #[test]
    fn every_tenth_refusal_is_a_strike_and_admissions_do_not_reset_the_count() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(10.0, 1.0);
        assert!(l.admit("a", t0).admitted());
        let said: Vec<Admission> = (0..25).map(|_| l.admit("a", t0)).collect();
        let strikes: Vec<usize> = (0..25).filter(|&i| said[i] == Admission::Strike).collect();
        assert_eq!(strikes, [9, 19], "{said:?}");
        // A token in between: the sender is still the one that went over, 25 times so far.
        assert!(l.admit("a", t0 + Duration::from_millis(100)).admitted());
        let more: Vec<Admission> = (0..5).map(|_| l.admit("a", t0 + Duration::from_millis(100))).collect();
        assert_eq!(more[4], Admission::Strike, "{more:?}");
        assert_eq!(
            l.admit("b", t0),
            Admission::Admitted,
            "another sender has its own count"
        );
    }

    #[test]
    fn issue_13_a_flood_of_sender_names_keeps_the_table_bounded() {
        // Every request may name a new sender: the table grew by one bucket per name, forever.
        let t0 = Instant::now();
        let mut l = RateLimiter::new(500.0, 1000.0);
        for i in 0..100_000u32 {
            l.admit(&format!("{i:016x}"), t0 + Duration::from_micros(u64::from(i)));
        }
        assert!(l.len() <= SENDERS_MAX, "{} buckets", l.len());
    }

    #[test]
    fn issue_13_forgetting_senders_never_frees_a_limited_one() {
        // Eviction drops the buckets that are (nearly) full, which a fresh bucket would equal: a
        // sender that ran its bucket dry cannot get a new one by flooding other names.
        let t0 = Instant::now();
        let mut l = RateLimiter::new(1.0, 5.0);
        assert!((0..5).all(|_| l.admit("greedy", t0).admitted()));
        assert!(!l.admit("greedy", t0).admitted());
        for i in 0..(3 * SENDERS_MAX) {
            l.admit(&format!("other-{i}"), t0);
        }
        assert!(!l.admit("greedy", t0).admitted());
        assert!(l.len() <= SENDERS_MAX);
    }
}
