//! The fault decision: given a spec and a seeded RNG, what happens to the next packet.
//!
//! [`Decider::decide`] is a pure function of the spec, the RNG state and the loss-chain state;
//! the same seed and the same packet sequence give the same decisions.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::spec::{Distribution, FaultSpec, GilbertElliott};

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Drop,
    Pass(PassPlan),
}

/// How a passing packet is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassPlan {
    /// Hold time in microseconds (before per-flow ordering is applied).
    pub delay_us: u64,
    /// Corrupt it; the value picks which bit (see `packet::corrupt`).
    pub corrupt: Option<u64>,
    /// Send a second copy.
    pub duplicate: bool,
    /// Hold it `reorder_delay` longer and let later packets of its flow overtake it.
    pub reorder: bool,
}

/// The loss process.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Loss {
    None,
    /// Two-state Markov chain with stationary loss rate `p` and lag-1 correlation `rho`.
    Correlated {
        p: f64,
        rho: f64,
        last_lost: bool,
    },
    GilbertElliott {
        ge: GilbertElliott,
        bad: bool,
    },
}

/// Decides, packet by packet, with its own seeded RNG.
#[derive(Debug, Clone)]
pub struct Decider {
    rng: ChaCha8Rng,
    loss: Loss,
    delay_us: f64,
    jitter_us: f64,
    distribution: Distribution,
    corrupt: f64,
    duplicate: f64,
    reorder: f64,
}

impl Decider {
    pub fn new(spec: &FaultSpec) -> Decider {
        let loss = if let Some(ge) = spec.loss_model {
            Loss::GilbertElliott { ge, bad: false }
        } else if spec.loss_pct > 0.0 {
            Loss::Correlated {
                p: spec.loss_pct / 100.0,
                rho: spec.loss_correlation_pct / 100.0,
                last_lost: false,
            }
        } else {
            Loss::None
        };
        Decider {
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
            loss,
            delay_us: spec.delay_ms * 1000.0,
            jitter_us: spec.jitter_ms * 1000.0,
            distribution: spec.distribution,
            corrupt: spec.corrupt_pct / 100.0,
            duplicate: spec.duplicate_pct / 100.0,
            reorder: spec.reorder_pct / 100.0,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }

    fn lose(&mut self) -> bool {
        match self.loss {
            Loss::None => false,
            Loss::Correlated { p, rho, last_lost } => {
                // P(loss | last lost) = p + rho(1-p), P(loss | last kept) = p(1-rho):
                // the stationary rate stays p and the lag-1 correlation is rho.
                let q = if last_lost {
                    p + rho * (1.0 - p)
                } else {
                    p * (1.0 - rho)
                };
                let lost = self.chance(q);
                self.loss = Loss::Correlated {
                    p,
                    rho,
                    last_lost: lost,
                };
                lost
            }
            Loss::GilbertElliott { ge, bad } => {
                let flip = if bad { ge.r_pct } else { ge.p_pct } / 100.0;
                let bad = if self.chance(flip) { !bad } else { bad };
                self.loss = Loss::GilbertElliott { ge, bad };
                let rate = if bad { ge.loss_bad_pct } else { ge.loss_good_pct } / 100.0;
                self.chance(rate)
            }
        }
    }

    /// A delay sample in microseconds, never negative.
    pub fn sample_delay_us(&mut self) -> u64 {
        let (d, j) = (self.delay_us, self.jitter_us);
        if j <= 0.0 {
            return d.max(0.0) as u64;
        }
        let x = match self.distribution {
            Distribution::Uniform => d + j * (2.0 * self.rng.random::<f64>() - 1.0),
            Distribution::Normal => d + j * self.standard_normal(),
            Distribution::Pareto => {
                // Pareto(x_m = 1, alpha = 3): mean 1.5, standard deviation sqrt(3)/2.
                let u: f64 = 1.0 - self.rng.random::<f64>(); // (0, 1]
                let y = u.powf(-1.0 / 3.0);
                d + j * (y - 1.5) / (3f64.sqrt() / 2.0)
            }
        };
        x.max(0.0).round() as u64
    }

    /// Box-Muller; one sample per call keeps the RNG stream simple to reason about.
    fn standard_normal(&mut self) -> f64 {
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Decide the fate of the next packet.
    pub fn decide(&mut self) -> Decision {
        if self.lose() {
            return Decision::Drop;
        }
        let corrupt = if self.chance(self.corrupt) {
            Some(self.rng.random::<u64>())
        } else {
            None
        };
        let duplicate = self.chance(self.duplicate);
        let reorder = self.chance(self.reorder);
        let delay_us = self.sample_delay_us();
        Decision::Pass(PassPlan {
            delay_us,
            corrupt,
            duplicate,
            reorder,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> FaultSpec {
        FaultSpec::from_json(json).unwrap()
    }

    fn stats(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt())
    }

    #[test]
    fn same_seed_same_decisions_other_seed_other_decisions() {
        let s = spec(r#"{"id":"a","loss_pct":30,"delay_ms":5,"jitter_ms":2,"seed":7}"#);
        let run = |s: &FaultSpec| {
            let mut d = Decider::new(s);
            (0..200).map(|_| d.decide()).collect::<Vec<_>>()
        };
        assert_eq!(run(&s), run(&s));
        let mut other = s.clone();
        other.seed = 8;
        assert_ne!(run(&s), run(&other));
    }

    #[test]
    fn loss_rate_is_within_a_binomial_bound() {
        let mut d = Decider::new(&spec(r#"{"id":"a","loss_pct":20,"seed":1}"#));
        let n = 100_000;
        let lost = (0..n).filter(|_| d.decide() == Decision::Drop).count() as f64;
        let sd = (n as f64 * 0.2 * 0.8).sqrt();
        assert!((lost - 20_000.0).abs() < 5.0 * sd, "lost {lost}");
    }

    #[test]
    fn correlated_loss_keeps_the_mean_and_makes_bursts() {
        let mut d = Decider::new(&spec(r#"{"id":"a","loss_pct":10,"loss_correlation_pct":80,"seed":3}"#));
        let n = 200_000;
        let seq: Vec<bool> = (0..n).map(|_| d.decide() == Decision::Drop).collect();
        let rate = seq.iter().filter(|l| **l).count() as f64 / n as f64;
        assert!((rate - 0.10).abs() < 0.01, "rate {rate}");
        // P(loss | previous loss) should be p + rho(1-p) = 0.82.
        let after_loss: Vec<bool> = seq.windows(2).filter(|w| w[0]).map(|w| w[1]).collect();
        let cond = after_loss.iter().filter(|l| **l).count() as f64 / after_loss.len() as f64;
        assert!((cond - 0.82).abs() < 0.02, "conditional {cond}");
    }

    #[test]
    fn gilbert_elliott_matches_its_stationary_rate() {
        // p=5%, r=20%: bad 1/5 of the time, losing everything there -> 20% loss.
        let mut d = Decider::new(&spec(r#"{"id":"a","loss_model":{"p_pct":5,"r_pct":20},"seed":4}"#));
        let n = 200_000;
        let lost = (0..n).filter(|_| d.decide() == Decision::Drop).count() as f64 / n as f64;
        assert!((lost - 0.2).abs() < 0.015, "lost {lost}");
    }

    #[test]
    fn delay_distributions_have_the_asked_mean_and_spread() {
        for (dist, want_sd) in [("uniform", 20.0 / 3f64.sqrt()), ("normal", 20.0), ("pareto", 20.0)] {
            let mut d = Decider::new(&spec(&format!(
                r#"{{"id":"a","delay_ms":100,"jitter_ms":20,"distribution":"{dist}","seed":5}}"#
            )));
            let xs: Vec<f64> = (0..100_000).map(|_| d.sample_delay_us() as f64 / 1000.0).collect();
            let (mean, sd) = stats(&xs);
            assert!((mean - 100.0).abs() < 1.0, "{dist} mean {mean}");
            assert!((sd - want_sd).abs() < want_sd * 0.1, "{dist} sd {sd}");
            assert!(xs.iter().all(|x| *x >= 0.0));
        }
    }

    #[test]
    fn pareto_has_a_longer_right_tail_than_normal() {
        let tail = |dist: &str| {
            let mut d = Decider::new(&spec(&format!(
                r#"{{"id":"a","delay_ms":100,"jitter_ms":20,"distribution":"{dist}","seed":6}}"#
            )));
            (0..100_000).filter(|_| d.sample_delay_us() > 180_000).count()
        };
        assert!(tail("pareto") > 10 * tail("normal").max(1));
    }

    #[test]
    fn delay_is_never_negative_and_exact_without_jitter() {
        let mut d = Decider::new(&spec(r#"{"id":"a","delay_ms":1,"jitter_ms":50,"seed":2}"#));
        assert!((0..10_000).any(|_| d.sample_delay_us() == 0));
        let mut d = Decider::new(&spec(r#"{"id":"a","delay_ms":42.5}"#));
        assert_eq!(d.sample_delay_us(), 42_500);
    }

    #[test]
    fn corrupt_duplicate_reorder_rates() {
        let mut d = Decider::new(&spec(
            r#"{"id":"a","corrupt_pct":10,"duplicate_pct":20,"reorder_pct":30,"seed":9}"#,
        ));
        let n = 100_000;
        let (mut c, mut du, mut r) = (0, 0, 0);
        for _ in 0..n {
            match d.decide() {
                Decision::Pass(p) => {
                    c += p.corrupt.is_some() as usize;
                    du += p.duplicate as usize;
                    r += p.reorder as usize;
                    assert_eq!(p.delay_us, 0);
                }
                Decision::Drop => panic!("no loss configured"),
            }
        }
        for (got, want) in [(c, 0.1), (du, 0.2), (r, 0.3)] {
            let rate = got as f64 / n as f64;
            assert!((rate - want).abs() < 0.01, "{rate} vs {want}");
        }
    }
}
