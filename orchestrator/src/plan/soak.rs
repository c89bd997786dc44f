//! The `soak:` section of a plan: a long run as data. A continuous workload (a rate over a pool of
//! paths) and a weighted fault mix, cut into windows that each end healed; the seeded schedule is
//! drawn lazily from this by [`crate::soak`], never held whole.
//!
//! ```yaml
//! soak:
//!   duration: 8h
//!   window: 10m
//!   workload: {peers: all, rate: 20, files: 1000, size: 1KiB..16KiB}
//!   max_concurrent: 2
//!   stagger: {min: 10s, max: 1m}
//!   exclusive: [[partition, link], [crash, freeze]]
//!   faults:
//!     - {weight: 3, partition: {shape: halves}}
//!     - {name: crash, weight: 1, duration: {min: 2s, max: 20s}, kill: {peers: one}}
//!     - {name: freeze, weight: 1, pause: {peers: one}}
//! ```
//!
//! Each fault entry is a fault step without `at` (the schedule draws when): it is resolved by the
//! same code as a step, so every fault key means and checks exactly what it does in `steps`.

use serde_saphyr::Spanned;

use super::limits::{
    MAX_FAULT_INTERVALS, MAX_SOAK_CONCURRENT, MAX_SOAK_FAULTS, MIN_EVERY, MIN_SOAK_WINDOW, soak_window_intervals,
};
use super::raw::{RawDurRange, RawSoak, RawSoakFault, RawSoakWorkload, RawStep};
use super::resolve::{Resolver, is_name, shorten};
use super::units::{Dur, LongDur, SOAK_DURATION_ALLOWED, SizeRange};
use super::{FAULT_KEYS, FAULT_KINDS, FaultStep, Mix, PlanError, Selector, limits};

/// A validated soak. Defaults: `window` 10m, no workload, no faults, `max_concurrent` 1, `stagger`
/// 10s..1m, each fault's `duration` 5s..1m and `weight` 1.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Soak {
    pub duration: LongDur,
    /// Every window ends with every fault stopped (and, when run, heal-all and the checkers).
    pub window: Dur,
    pub workload: Option<SoakWorkload>,
    pub faults: Vec<SoakFault>,
    /// Groups of indexes into `faults`: never two faults of one group at once (an entry in a group
    /// never overlaps itself either).
    pub exclusive: Vec<Vec<usize>>,
    /// The gap between one fault start and the next is drawn from this.
    pub stagger: DurRange,
    pub max_concurrent: u32,
}

impl Soak {
    /// How many windows the soak has (the last one may be shorter).
    pub fn windows(&self) -> u64 {
        self.duration.ms().div_ceil(self.window.ms().max(1))
    }
}

/// The continuous workload: `rate` operations per second, each on one peer drawn from `peers`, on
/// one of `files` paths, of a kind drawn from `mix` (as a `random` workload entry).
#[derive(Clone, Debug, serde::Serialize)]
pub struct SoakWorkload {
    pub peers: Selector,
    pub rate: f64,
    pub files: u32,
    pub size: SizeRange,
    pub mix: Mix,
}

/// One entry of the fault mix: a fault step template (`at` 0, `duration` its longest) with its
/// weight and the bounds its duration is drawn from.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SoakFault {
    pub name: String,
    pub weight: u32,
    pub duration: DurRange,
    pub step: FaultStep,
}

/// An inclusive range of durations, `{min: 5s, max: 1m}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DurRange {
    pub min: Dur,
    pub max: Dur,
}

const DEFAULT_FAULT_DURATION: DurRange = DurRange {
    min: Dur(std::time::Duration::from_secs(5)),
    max: Dur(std::time::Duration::from_secs(60)),
};
const DEFAULT_STAGGER: DurRange = DurRange {
    min: Dur(std::time::Duration::from_secs(10)),
    max: Dur(std::time::Duration::from_secs(60)),
};

impl Resolver<'_> {
    pub(super) fn soak(&self, s: Spanned<RawSoak>, peers: &[String]) -> Result<Soak, PlanError> {
        let raw = s.value;
        let duration = raw.duration.value;
        // Shorter than the shortest window is no soak (and under a millisecond, no window at all).
        if duration.0 < MIN_SOAK_WINDOW {
            return self.err(
                &raw.duration.referenced,
                format!("soak `duration` is {duration}; allowed: {SOAK_DURATION_ALLOWED}"),
            );
        }
        let window = raw.window.as_ref().map_or(Dur::from_ms(600_000), |w| w.value);
        if let Some(w) = &raw.window
            && w.value.0 < MIN_SOAK_WINDOW
        {
            return self.err(
                &w.referenced,
                format!(
                    "soak `window` is {}; allowed: from {} to 24h (each window ends healed and checked)",
                    w.value,
                    humantime::format_duration(MIN_SOAK_WINDOW)
                ),
            );
        }
        let workload = raw.workload.map(|w| self.soak_workload(w, peers)).transpose()?;
        let max_concurrent = match &raw.max_concurrent {
            None => 1,
            Some(m) if (1..=MAX_SOAK_CONCURRENT).contains(&m.value) => m.value,
            Some(m) => {
                return self.err(
                    &m.referenced,
                    format!(
                        "`max_concurrent` is {}; allowed: a whole number from 1 to {MAX_SOAK_CONCURRENT}",
                        m.value
                    ),
                );
            }
        };
        let stagger = match &raw.stagger {
            None => DEFAULT_STAGGER,
            Some(r) => self.dur_range(r, "stagger", MIN_EVERY)?,
        };
        if raw.faults.len() > MAX_SOAK_FAULTS {
            return self.err(
                &raw.faults[MAX_SOAK_FAULTS].referenced,
                format!(
                    "the soak's fault mix has {} entries; allowed: at most {MAX_SOAK_FAULTS}",
                    raw.faults.len()
                ),
            );
        }
        let mut faults: Vec<SoakFault> = Vec::new();
        let mut most_intervals = 1u64;
        for (i, f) in raw.faults.into_iter().enumerate() {
            let fault = self.soak_fault(i, f, peers, window)?;
            most_intervals = most_intervals.max(limits::fault_intervals(&fault.step));
            faults.push(fault);
        }
        let total: u64 = faults.iter().map(|f| u64::from(f.weight)).sum();
        if !faults.is_empty() && (total == 0 || total > u64::from(u32::MAX)) {
            return self.err(
                &s.referenced,
                format!(
                    "the soak's fault weights add up to {total}; allowed: a total from 1 to {} (or no `faults`)",
                    u32::MAX
                ),
            );
        }
        let made = soak_window_intervals(window.0, stagger.min.0, most_intervals);
        if !faults.is_empty() && made > MAX_FAULT_INTERVALS {
            let at = raw.stagger.as_ref().map_or(&s.referenced, |r| &r.referenced);
            return self.err(
                at,
                format!(
                    "a {window} window with faults every {} or more can make {made} fault intervals; allowed: at most {MAX_FAULT_INTERVALS} in a window (MAX_FAULT_INTERVALS, docs/PLANS.md#limits): a longer `stagger.min` or a shorter `window`",
                    stagger.min
                ),
            );
        }
        let mut exclusive = Vec::new();
        for g in &raw.exclusive {
            exclusive.push(self.exclusive_group(g, &faults)?);
        }
        Ok(Soak {
            duration,
            window,
            workload,
            faults,
            exclusive,
            stagger,
            max_concurrent,
        })
    }

    fn soak_workload(&self, w: Spanned<RawSoakWorkload>, peers: &[String]) -> Result<SoakWorkload, PlanError> {
        let raw = w.value;
        let (rate, files) = self.rate_and_files(&raw.rate, raw.files.as_ref(), 100, &w.referenced)?;
        let size = self.write_size(raw.size.as_ref())?;
        let mix_at = raw.mix.as_ref().map_or(&w.referenced, |m| &m.referenced);
        let mix = self.mix(raw.mix.as_ref().map(|m| m.value), mix_at)?;
        let sel = match &raw.peers {
            None => Selector::All,
            Some(p) => self.targets(&p.value, &p.referenced, peers)?,
        };
        Ok(SoakWorkload {
            peers: sel,
            rate,
            files,
            size,
            mix,
        })
    }

    fn dur_range(
        &self,
        r: &Spanned<RawDurRange>,
        key: &str,
        least: std::time::Duration,
    ) -> Result<DurRange, PlanError> {
        let (min, max) = (r.value.min, r.value.max);
        if min.0 < least || min > max {
            return self.err(
                &r.referenced,
                format!(
                    "`{key}` is {{min: {min}, max: {max}}}; allowed: {} <= min <= max, e.g. {{min: 10s, max: 1m}}",
                    humantime::format_duration(least)
                ),
            );
        }
        Ok(DurRange { min, max })
    }

    fn soak_fault(
        &self,
        index: usize,
        f: Spanned<RawSoakFault>,
        peers: &[String],
        window: Dur,
    ) -> Result<SoakFault, PlanError> {
        let at = f.referenced;
        let raw = f.value;
        let keys = [
            ("partition", raw.partition.is_some()),
            ("link", raw.link.is_some()),
            ("clock", raw.clock.is_some()),
            ("kill", raw.kill.is_some()),
            ("stop", raw.stop.is_some()),
            ("pause", raw.pause.is_some()),
            ("lock", raw.lock.is_some()),
            ("disk", raw.disk.is_some()),
            ("byzantine", raw.byzantine.is_some()),
        ];
        let given: Vec<&str> = keys.iter().filter(|(_, g)| *g).map(|(k, _)| *k).collect();
        let kind = match given[..] {
            [kind] => kind,
            [] => {
                return self.err(
                    &at,
                    format!("a soak fault needs a fault key; allowed: one of {FAULT_KINDS}"),
                );
            }
            _ => {
                return self.err(
                    &at,
                    format!(
                        "a soak fault takes exactly one fault key, not {}; allowed: one of {FAULT_KINDS}",
                        given.join(" and ")
                    ),
                );
            }
        };
        let name = match &raw.name {
            None => format!("{kind}-{}", index + 1),
            Some(n) => {
                let name = n.value.trim();
                if !is_name(name, false) || FAULT_KEYS.contains(&name) {
                    return self.err(
                        &n.referenced,
                        format!(
                            "soak fault `name` is `{}`; allowed: letters, digits, `-`, `_`, at most 64 characters, not a fault key ({FAULT_KINDS})",
                            shorten(&n.value)
                        ),
                    );
                }
                name.to_string()
            }
        };
        let weight = raw.weight.as_ref().map_or(1, |w| w.value);
        let duration = match &raw.duration {
            None => DEFAULT_FAULT_DURATION,
            Some(r) => self.dur_range(r, "duration", MIN_EVERY)?,
        };
        if duration.max > window {
            let place = raw.duration.as_ref().map_or(&at, |r| &r.referenced);
            return self.err(
                place,
                format!(
                    "soak fault `{name}` lasts up to {}, longer than a window ({window}); allowed: `duration.max` at most the soak's `window` (every window ends healed)",
                    duration.max
                ),
            );
        }
        if let Some(e) = &raw.every
            && e.value > duration.min
        {
            return self.err(
                &e.referenced,
                format!(
                    "`every` is {}; allowed: from {} to the fault's shortest `duration` ({})",
                    e.value,
                    humantime::format_duration(MIN_EVERY),
                    duration.min
                ),
            );
        }
        // The template is a step at 0 lasting the longest duration: the step resolver checks the
        // fault keys (and `every` against that duration) exactly as it does for `steps`.
        let step = RawStep {
            name: None,
            at: Dur::default(),
            duration: Some(duration.max),
            every: raw.every,
            partition: raw.partition,
            link: raw.link,
            clock: raw.clock,
            kill: raw.kill,
            stop: raw.stop,
            pause: raw.pause,
            lock: raw.lock,
            disk: raw.disk,
            byzantine: raw.byzantine,
        };
        let mut step = self.step(index, &Spanned::new(step, at, at), peers)?;
        step.name = name.clone();
        Ok(SoakFault {
            name,
            weight,
            duration,
            step,
        })
    }

    fn exclusive_group(&self, g: &Spanned<Vec<String>>, faults: &[SoakFault]) -> Result<Vec<usize>, PlanError> {
        if g.value.is_empty() {
            return self.err(
                &g.referenced,
                "an empty `exclusive` group; allowed: a list of fault names or fault keys, e.g. [partition, link]",
            );
        }
        let mut group = Vec::new();
        for word in &g.value {
            let hits: Vec<usize> = faults
                .iter()
                .enumerate()
                .filter(|(_, f)| f.name == *word || f.step.fault.kind() == word)
                .map(|(i, _)| i)
                .collect();
            if hits.is_empty() {
                let names: Vec<&str> = faults.iter().map(|f| f.name.as_str()).collect();
                return self.err(
                    &g.referenced,
                    format!(
                        "`exclusive` names `{}`, which is no fault in the soak's mix; allowed: the faults' names ({}) or fault keys ({FAULT_KINDS})",
                        shorten(word),
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    ),
                );
            }
            for h in hits {
                if !group.contains(&h) {
                    group.push(h);
                }
            }
        }
        group.sort();
        Ok(group)
    }
}
