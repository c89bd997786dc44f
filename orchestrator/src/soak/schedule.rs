//! The soak schedule: a plan's `soak:` section turned into timed actions on demand, never held whole.
//!
//! A soak is cut into windows (`soak.window`); window `k` is drawn from its own random streams of
//! the plan's seed (ChaCha stream `2k` for the workload, `2k + 1` for the faults), so
//! [`SoakSchedule::window`] makes exactly window `k`'s actions without making the windows before it,
//! and [`SoakSchedule::actions`] is just every window in turn: same plan and seed, same sequence.
//!
//! Within a window, the workload is drawn one operation at a time (operation `i` is at
//! `i * 1000 / rate` ms, so a window knows its operations' ids without counting the earlier ones).
//! The faults are drawn when the window begins, like a Jepsen nemesis package mixing its faults:
//! a start every `stagger` (drawn), an entry drawn by weight among those allowed now, lasting a drawn
//! `duration`, with these rules:
//!
//! * at most `max_concurrent` faults at once;
//! * never two faults of one `exclusive` group at once;
//! * never two process faults (kill, stop, pause) on one peer at once, nor two link, lock, disk or
//!   Byzantine faults on one peer (their undo restores one state; partitions and clock offsets add up);
//! * every fault stopped by the window's end: each window begins healed.
//!
//! A window's faults are bounded when the plan is validated (`limits::soak_window_intervals`), so the
//! memory held is one window's faults and one workload cursor, whatever the soak's length.
//!
//! ```
//! # use std::path::Path;
//! let text = "name: s\npeers: 3\nsoak:\n  duration: 1h\n  window: 10m\n  workload: {rate: 5}\n  faults:\n    - {partition: {shape: halves}}\n";
//! let plan = syftchaos::plan::parse(text, Path::new("s.yaml"), Path::new("topologies")).unwrap();
//! let soak = syftchaos::soak::SoakSchedule::new(&plan).unwrap();
//! assert_eq!(soak.windows(), 6);
//! let third: Vec<_> = soak.window(2).collect();
//! assert!(third.iter().all(|op| (1_200_000..=1_800_000).contains(&op.at_ms)));
//! ```

use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::generator::{self, Action, FileOp, ScheduledOp};
use crate::plan::{DurRange, Fault, FileOpKind, Plan, Selector, Soak, SoakWorkload};

/// A plan's soak schedule, ready to be drawn window by window.
#[derive(Clone, Copy, Debug)]
pub struct SoakSchedule<'a> {
    plan: &'a Plan,
    soak: &'a Soak,
}

impl<'a> SoakSchedule<'a> {
    /// `None` for a plan without a `soak:` section.
    pub fn new(plan: &'a Plan) -> Option<Self> {
        plan.soak.as_ref().map(|soak| SoakSchedule { plan, soak })
    }

    pub fn windows(&self) -> u64 {
        self.soak.windows()
    }

    /// Window `k`'s start and end in ms from the soak's start (the last window ends with the soak).
    pub fn span(&self, k: u64) -> (u64, u64) {
        let w = self.soak.window.ms();
        let end = self.soak.duration.ms();
        (
            k.saturating_mul(w).min(end),
            k.saturating_add(1).saturating_mul(w).min(end),
        )
    }

    /// Every action of the soak in time order, drawn as it is consumed.
    pub fn actions(self) -> impl Iterator<Item = ScheduledOp> + 'a {
        (0..self.windows()).flat_map(move |k| self.window(k))
    }

    /// Window `k`'s actions alone, exactly as [`Self::actions`] makes them (for replaying one window).
    /// A `k` past the last window is empty.
    pub fn window(&self, k: u64) -> Window {
        let (start, end) = self.span(k);
        let faults = if k < self.windows() {
            self.faults(k, start, end)
        } else {
            Vec::new()
        };
        Window {
            faults: faults.into_iter().peekable(),
            writes: self
                .soak
                .workload
                .as_ref()
                .filter(|_| k < self.windows())
                .map(|w| Writes::new(w, self.plan, k, start, end)),
        }
    }

    /// The random stream of window `k`'s workload (`part` 0) or faults (`part` 1).
    fn rng(&self, k: u64, part: u64) -> ChaCha8Rng {
        stream(self.plan.seed, k, part)
    }

    /// Window `k`'s fault starts and stops, in time order.
    fn faults(&self, k: u64, start: u64, end: u64) -> Vec<ScheduledOp> {
        let soak = self.soak;
        let n = self.plan.peers.len();
        let mut rng = self.rng(k, 1);
        let mut out: Vec<ScheduledOp> = Vec::new();
        if soak.faults.is_empty() {
            return out;
        }
        let mut active: Vec<Active> = Vec::new();
        let mut started = 0u64;
        let mut t = start.saturating_add(draw_ms(&soak.stagger, &mut rng));
        while t < end {
            active.retain(|a| a.end > t);
            let earliest_end = active.iter().map(|a| a.end).min();
            if active.len() >= soak.max_concurrent as usize {
                // Full: the next start waits for the first stop (starts stay at least `stagger.min` apart).
                t = earliest_end.expect("a full set is not empty");
                continue;
            }
            let Some((entry, peers)) = self.pick(&active, t, end, &mut rng) else {
                match earliest_end {
                    // Something allowed may be after the next stop.
                    Some(e) => {
                        t = e;
                        continue;
                    }
                    // Nothing active and nothing fits: the window is too short for what is left.
                    None => break,
                }
            };
            let fault = &soak.faults[entry];
            let longest = fault.duration.max.ms().min(end - t);
            let duration = rng.random_range(fault.duration.min.ms()..=longest);
            let mut step = fault.step.clone();
            step.at = crate::plan::Dur::from_ms(t);
            step.duration = Some(crate::plan::Dur::from_ms(duration));
            if let Some(peers) = &peers {
                set_peers(&mut step.fault, peers.clone());
            }
            started += 1;
            let name = format!("{}.w{k}.{started}", fault.name);
            let intervals = generator::intervals(&step, n, &self.plan.engine, &mut rng);
            for (i, (from, to, concrete)) in intervals.into_iter().enumerate() {
                let id = format!("{name}#{}", i + 1);
                out.push(ScheduledOp {
                    at_ms: from,
                    action: Action::FaultStart {
                        id: id.clone(),
                        step: name.clone(),
                        fault: concrete,
                    },
                });
                // Every soak fault has a duration: it stops within its window.
                let to = to.unwrap_or(t + duration);
                out.push(ScheduledOp {
                    at_ms: to,
                    action: Action::FaultStop { id },
                });
            }
            active.push(Active {
                entry,
                end: t + duration,
                held: held_per_peer(&fault.step.fault).map(|(family, _)| family),
                peers: peers.unwrap_or_default(),
            });
            t = t.saturating_add(draw_ms(&soak.stagger, &mut rng));
        }
        out.sort_by_key(|op| (op.at_ms, op.action.rank()));
        out
    }

    /// Draws the next fault entry among those allowed at `t` (and, for faults held per peer, the
    /// peers it takes from those free); `None` when nothing is allowed now.
    fn pick(&self, active: &[Active], t: u64, end: u64, rng: &mut ChaCha8Rng) -> Option<(usize, Option<Vec<usize>>)> {
        let soak = self.soak;
        let n = self.plan.peers.len();
        let mut allowed: Vec<usize> = (0..soak.faults.len())
            .filter(|&i| {
                let f = &soak.faults[i];
                f.weight > 0
                    && t.saturating_add(f.duration.min.ms()) <= end
                    && !active.iter().any(|a| excludes(soak, a.entry, i))
            })
            .collect();
        while !allowed.is_empty() {
            let weights = WeightedIndex::new(allowed.iter().map(|&i| soak.faults[i].weight))
                .expect("weights above 0 and at most u32::MAX each");
            let at = weights.sample(rng);
            let entry = allowed[at];
            let fault = &soak.faults[entry];
            let Some((family, sel)) = held_per_peer(&fault.step.fault) else {
                return Some((entry, None));
            };
            let mut busy = vec![false; n];
            for a in active.iter().filter(|a| a.held == Some(family)) {
                for &p in &a.peers {
                    busy[p] = true;
                }
            }
            match draw_free(sel, n, &busy, rng) {
                Some(peers) => return Some((entry, Some(peers))),
                // Its peers are held by a fault of its family: draw among the others.
                None => {
                    allowed.remove(at);
                }
            }
        }
        None
    }
}

/// A fault in progress in the window being drawn.
struct Active {
    entry: usize,
    end: u64,
    /// For a fault held per peer: its family, and the peers drawn for it.
    held: Option<Family>,
    peers: Vec<usize>,
}

/// Faults that one peer takes one at a time: their undo restores a single state (a container's
/// running state, the netfault spec, the lock folder, the disk, the Byzantine control file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Process,
    Link,
    Lock,
    Disk,
    Byzantine,
}

/// A fault held per peer: its family and its `peers` selector. Partitions and clock offsets add
/// up, so they are not held.
fn held_per_peer(f: &Fault) -> Option<(Family, &Selector)> {
    match f {
        Fault::Process(s) => Some((Family::Process, &s.peers)),
        Fault::Link(s) => Some((Family::Link, &s.peers)),
        Fault::Lock(s) => Some((Family::Lock, &s.peers)),
        Fault::Disk(s) => Some((Family::Disk, &s.peers)),
        Fault::Byzantine(s) => Some((Family::Byzantine, &s.peers)),
        Fault::Partition(_) | Fault::Clock(_) => None,
    }
}

/// Replaces the `peers` selector of a fault held per peer by the peers drawn for it.
fn set_peers(f: &mut Fault, peers: Vec<usize>) {
    let sel = Selector::Peers(peers);
    match f {
        Fault::Process(s) => s.peers = sel,
        Fault::Link(s) => s.peers = sel,
        Fault::Lock(s) => s.peers = sel,
        Fault::Disk(s) => s.peers = sel,
        Fault::Byzantine(s) => s.peers = sel,
        Fault::Partition(_) | Fault::Clock(_) => {}
    }
}

/// Whether entries `a` and `b` share an `exclusive` group.
fn excludes(soak: &Soak, a: usize, b: usize) -> bool {
    soak.exclusive.iter().any(|g| g.contains(&a) && g.contains(&b))
}

/// Draws a selector's peers among those not `busy`; `None` if it cannot be met (a named or `all`
/// selector naming a busy peer, or fewer free peers than it takes).
fn draw_free(sel: &Selector, n: usize, busy: &[bool], rng: &mut ChaCha8Rng) -> Option<Vec<usize>> {
    let k = match sel {
        Selector::All => return (!busy.iter().any(|b| *b)).then(|| (0..n).collect()),
        Selector::Peers(p) => return (!p.iter().any(|&i| busy[i])).then(|| p.clone()),
        Selector::One => 1,
        Selector::Minority => (n.saturating_sub(1) / 2).max(1),
        Selector::Majority => n / 2 + 1,
        Selector::Random(k) => *k,
    };
    let mut free: Vec<usize> = (0..n).filter(|&i| !busy[i]).collect();
    if free.len() < k {
        return None;
    }
    free.shuffle(rng);
    let mut picked: Vec<usize> = free.into_iter().take(k).collect();
    picked.sort();
    Some(picked)
}

fn draw_ms(r: &DurRange, rng: &mut ChaCha8Rng) -> u64 {
    rng.random_range(r.min.ms()..=r.max.ms())
}

/// Window `k`'s stream `part` of the plan's seed: ChaCha's 64-bit stream number keeps the windows'
/// draws independent, so any window is made without the ones before it.
fn stream(seed: u64, k: u64, part: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(k.wrapping_mul(2).wrapping_add(part));
    rng
}

/// When workload operation `i` (0-based) happens, in ms from the soak's start.
fn op_at(i: u64, rate: f64) -> u64 {
    (i as f64 * 1000.0 / rate) as u64
}

/// The first operation at or after `t` ms.
fn first_op(t: u64, rate: f64) -> u64 {
    // The estimate is off by at most one either way (float rounding); step to the exact first.
    let mut i = ((t as f64 * rate / 1000.0).floor() as u64).saturating_sub(2);
    while op_at(i, rate) < t {
        i += 1;
    }
    i
}

/// One window's workload cursor: the next operation's index and the window's draws.
struct Writes {
    rng: ChaCha8Rng,
    next: u64,
    end: u64,
    rate: f64,
    peers: Vec<usize>,
    kinds: WeightedIndex<u32>,
    files: u32,
    min_size: u64,
    max_size: u64,
}

const KINDS: [FileOpKind; 5] = [
    FileOpKind::Create,
    FileOpKind::Modify,
    FileOpKind::Delete,
    FileOpKind::Touch,
    FileOpKind::Chmod,
];

impl Writes {
    fn new(w: &SoakWorkload, plan: &Plan, k: u64, start: u64, end: u64) -> Writes {
        let mut rng = stream(plan.seed, k, 0);
        let peers = generator::draw(&w.peers, plan.peers.len(), &mut rng);
        let m = w.mix;
        Writes {
            rng,
            next: first_op(start, w.rate),
            end: first_op(end, w.rate),
            rate: w.rate,
            peers,
            kinds: WeightedIndex::new([m.create, m.modify, m.delete, m.touch, m.chmod])
                .expect("a validated mix has a total from 1 to u32::MAX"),
            files: w.files,
            min_size: w.size.min,
            max_size: w.size.max,
        }
    }

    fn next_at(&self) -> Option<u64> {
        (self.next < self.end).then(|| op_at(self.next, self.rate))
    }

    fn take(&mut self) -> ScheduledOp {
        let i = self.next;
        self.next += 1;
        let rng = &mut self.rng;
        let peer = *self.peers.choose(rng).expect("selectors draw at least one peer");
        let kind = KINDS[self.kinds.sample(rng)];
        let path = format!("soak/file-{:05}.dat", rng.random_range(0..self.files));
        let size = rng.random_range(self.min_size..=self.max_size);
        ScheduledOp {
            at_ms: op_at(i, self.rate),
            action: Action::Write(FileOp {
                // Ids count from 1 over the whole soak: operation i's id is i + 1 in every window.
                id: i + 1,
                peer,
                kind,
                path,
                size,
            }),
        }
    }
}

/// One window's actions in time order: its faults (drawn when the window was made) merged with its
/// workload (drawn one operation at a time).
pub struct Window {
    faults: std::iter::Peekable<std::vec::IntoIter<ScheduledOp>>,
    writes: Option<Writes>,
}

impl Iterator for Window {
    type Item = ScheduledOp;

    fn next(&mut self) -> Option<ScheduledOp> {
        let write_at = self.writes.as_ref().and_then(Writes::next_at);
        match (self.faults.peek().map(|op| op.at_ms), write_at) {
            // Faults before writes at the same instant (a write lands in the fault it meets).
            (Some(f), Some(w)) if f <= w => self.faults.next(),
            (_, Some(_)) => self.writes.as_mut().map(Writes::take),
            (Some(_), None) => self.faults.next(),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::generator::ConcreteFault;

    const MIX: &str = "\
name: soak-test
seed: 1
peers: 5
soak:
  duration: 2h
  window: 10m
  workload: {rate: 50, files: 200, size: 1KiB..4KiB}
  max_concurrent: 3
  stagger: {min: 2s, max: 20s}
  exclusive: [[partition], [crash, link]]
  faults:
    - {weight: 3, partition: {shape: halves}}
    - {weight: 1, partition: {shape: isolate, peers: one}}
    - {weight: 1, every: 2s, duration: {min: 4s, max: 20s}, partition: {shape: rolling}}
    - {name: crash, weight: 2, duration: {min: 1s, max: 30s}, kill: {peers: one}}
    - {name: freeze, weight: 2, pause: {peers: minority}}
    - {name: halt, weight: 1, stop: {peers: one}}
    - {weight: 1, link: {peers: one, delay: 100ms}}
    - {weight: 1, every: 1s, duration: {min: 2s, max: 10s}, clock: {peers: one, strobe: [+0s, +1h]}}
    - {weight: 1, disk: {peers: one, corrupt: true}}
";

    fn plan(text: &str) -> Plan {
        crate::plan::parse(text, Path::new("soak.yaml"), Path::new("../topologies")).unwrap()
    }

    fn with_seed(text: &str, seed: u64) -> Plan {
        let mut p = plan(text);
        p.seed = seed;
        p
    }

    #[test]
    fn the_same_seed_gives_the_same_actions_and_windows() {
        let (a, b) = (plan(MIX), plan(MIX));
        let (a, b) = (SoakSchedule::new(&a).unwrap(), SoakSchedule::new(&b).unwrap());
        let first: Vec<_> = a.actions().take(10_000).collect();
        assert_eq!(first.len(), 10_000);
        assert!(first.iter().eq(b.actions().take(10_000).collect::<Vec<_>>().iter()));
        for k in [0, 5, 11] {
            assert!(a.window(k).eq(b.window(k)), "window {k}");
        }
    }

    #[test]
    fn different_seeds_give_different_actions() {
        let (a, b) = (with_seed(MIX, 1), with_seed(MIX, 2));
        let (a, b) = (SoakSchedule::new(&a).unwrap(), SoakSchedule::new(&b).unwrap());
        assert!(!a.actions().take(1000).eq(b.actions().take(1000)));
        assert!(!a.window(3).eq(b.window(3)));
    }

    #[test]
    fn a_window_alone_is_that_windows_slice_of_the_whole_soak() {
        let p = plan(MIX);
        let s = SoakSchedule::new(&p).unwrap();
        assert_eq!(s.windows(), 12);
        let mut whole = s.actions().peekable();
        for k in 0..s.windows() {
            let (start, end) = s.span(k);
            let alone: Vec<_> = s.window(k).collect();
            assert!(!alone.is_empty(), "window {k} is empty");
            // The whole soak's actions of window k are the next alone.len() ones.
            let slice: Vec<_> = whole.by_ref().take(alone.len()).collect();
            assert_eq!(slice, alone, "window {k}");
            assert!(alone.iter().all(|op| (start..=end).contains(&op.at_ms)), "window {k}");
        }
        assert!(whole.next().is_none());
        assert_eq!(s.window(12).count(), 0, "past the last window");
    }

    #[test]
    fn the_workload_runs_at_its_rate_with_ids_counting_over_the_soak() {
        let p = plan(MIX);
        let s = SoakSchedule::new(&p).unwrap();
        let ids: Vec<u64> = s
            .actions()
            .filter_map(|op| match op.action {
                Action::Write(w) => Some(w.id),
                _ => None,
            })
            .collect();
        // 2 h at 50 ops/s, ids 1.. in order, none lost or repeated at window edges.
        assert_eq!(ids.len(), 2 * 3600 * 50);
        assert!(ids.iter().enumerate().all(|(i, id)| *id == i as u64 + 1));
    }

    /// One drawn fault: every interval of one start (flaps share it), with its window.
    #[derive(Debug)]
    struct Drawn {
        entry: String,
        window: u64,
        start: u64,
        end: u64,
        process_peers: Vec<usize>,
    }

    fn drawn(p: &Plan) -> Vec<Drawn> {
        let s = SoakSchedule::new(p).unwrap();
        let mut by_step: BTreeMap<String, Drawn> = BTreeMap::new();
        let mut step_of: BTreeMap<String, String> = BTreeMap::new();
        let mut last = 0;
        for op in s.actions() {
            assert!(op.at_ms >= last, "time goes forward");
            last = op.at_ms;
            match op.action {
                Action::FaultStart { id, step, fault } => {
                    let (entry, rest) = step.split_once(".w").unwrap();
                    let window: u64 = rest.split('.').next().unwrap().parse().unwrap();
                    let d = by_step.entry(step.clone()).or_insert(Drawn {
                        entry: entry.to_string(),
                        window,
                        start: op.at_ms,
                        end: op.at_ms,
                        process_peers: Vec::new(),
                    });
                    if let ConcreteFault::Process { peers, .. } = fault {
                        d.process_peers = peers;
                    }
                    step_of.insert(id, step);
                }
                Action::FaultStop { id } => {
                    let step = step_of.remove(&id).expect("a stop follows its start");
                    let d = by_step.get_mut(&step).unwrap();
                    d.end = d.end.max(op.at_ms);
                }
                Action::Write(_) => {}
            }
        }
        assert!(step_of.is_empty(), "every fault stopped: {step_of:?}");
        let mut all: Vec<Drawn> = by_step.into_values().collect();
        all.sort_by_key(|d| (d.start, d.end));
        all
    }

    #[test]
    fn the_nemesis_keeps_its_rules_over_many_seeds() {
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let p = with_seed(MIX, seed);
            let soak = p.soak.as_ref().unwrap();
            let faults = drawn(&p);
            assert!(faults.len() > 100, "seed {seed}: only {} faults in 2 h", faults.len());
            let entry = |name: &str| soak.faults.iter().position(|f| f.name == name).unwrap();
            let schedule = SoakSchedule::new(&p).unwrap();
            for (i, a) in faults.iter().enumerate() {
                kinds.insert(a.entry.clone());
                let f = &soak.faults[entry(&a.entry)];
                let d = a.end - a.start;
                assert!(
                    (f.duration.min.ms()..=f.duration.max.ms()).contains(&d),
                    "seed {seed}: {a:?} lasts {d} ms"
                );
                let (ws, we) = schedule.span(a.window);
                assert!(a.start >= ws && a.end <= we, "seed {seed}: {a:?} outside its window");
                if let Some(b) = faults.get(i + 1) {
                    assert!(
                        b.start - a.start >= soak.stagger.min.ms(),
                        "seed {seed}: starts closer than the stagger: {a:?} {b:?}"
                    );
                }
                let overlapping: Vec<&Drawn> = faults[..i].iter().filter(|b| b.end > a.start).collect();
                assert!(
                    overlapping.len() < soak.max_concurrent as usize,
                    "seed {seed}: more than max_concurrent at {}",
                    a.start
                );
                for b in overlapping {
                    let (x, y) = (entry(&a.entry), entry(&b.entry));
                    assert!(
                        !soak.exclusive.iter().any(|g| g.contains(&x) && g.contains(&y)),
                        "seed {seed}: exclusive faults at once: {a:?} {b:?}"
                    );
                    assert!(
                        !a.process_peers.iter().any(|p| b.process_peers.contains(p)),
                        "seed {seed}: two process faults on one peer: {a:?} {b:?}"
                    );
                }
            }
        }
        assert_eq!(kinds.len(), 9, "every entry of the mix is drawn: {kinds:?}");
    }

    #[test]
    fn concurrency_and_peer_rules_bite_when_the_mix_pushes_them() {
        // Kills on `one` peer of 2, up to 4 at once: never two on one peer, so at most 2 at once.
        let text = "name: s\npeers: 2\nsoak:\n  duration: 1h\n  window: 10m\n  max_concurrent: 4\n  stagger: {min: 100ms, max: 200ms}\n  faults:\n    - {duration: {min: 5s, max: 10s}, kill: {peers: one}}\n";
        let p = plan(text);
        let faults = drawn(&p);
        let most = faults
            .iter()
            .map(|a| faults.iter().filter(|b| b.start <= a.start && b.end > a.start).count())
            .max()
            .unwrap();
        assert_eq!(most, 2, "both peers killed at times, never one twice");
    }

    // ------------------------------------------------------------------------------------------------
    // Memory: a counting allocator, per thread, so parallel tests do not blur the figure.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Counting;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
        static TOTAL: Cell<usize> = const { Cell::new(0) };
    }

    fn note(delta: isize) {
        if delta > 0 {
            let _ = TOTAL.try_with(|t| t.set(t.get() + delta as usize));
        }
        let _ = LIVE.try_with(|l| {
            let v = l.get() + delta;
            l.set(v);
            let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
        });
    }

    // SAFETY: every call is forwarded to the system allocator unchanged; only sizes are counted.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                note(layout.size() as isize);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            note(-(layout.size() as isize));
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                note(new_size as isize - layout.size() as isize);
            }
            p
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// Issue 12: generating the schedule of a 24 h soak at 1000 ops/s stays under 50 MiB. The whole
    /// schedule is drawn and dropped op by op; the peak of bytes this thread holds is measured.
    #[test]
    fn a_24_hour_soak_at_1000_ops_a_second_is_generated_in_bounded_memory() {
        let text = "\
name: day
seed: 9
peers: 10
soak:
  duration: 24h
  window: 10m
  workload: {rate: 1000, files: 100000, size: 1KiB..64KiB}
  max_concurrent: 3
  stagger: {min: 1s, max: 10s}
  exclusive: [[partition]]
  faults:
    - {weight: 3, partition: {shape: halves}}
    - {weight: 1, every: 2s, duration: {min: 4s, max: 20s}, partition: {shape: rolling}}
    - {weight: 2, kill: {peers: one}}
    - {weight: 2, link: {peers: minority, delay: 50ms, loss: 1}}
";
        let p = plan(text);
        let s = SoakSchedule::new(&p).unwrap();
        let before = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(before));
        let (mut writes, mut faults) = (0u64, 0u64);
        for op in s.actions() {
            match op.action {
                Action::Write(_) => writes += 1,
                Action::FaultStart { .. } => faults += 1,
                Action::FaultStop { .. } => {}
            }
        }
        let peak = PEAK.with(Cell::get) - before;
        eprintln!(
            "24 h soak at 1000 ops/s: {writes} writes, {faults} fault intervals, peak {} KiB held while generating",
            peak / 1024
        );
        assert_eq!(writes, 24 * 3600 * 1000);
        assert!(faults > 10_000, "{faults}");
        assert!(peak < 50 << 20, "peak {peak} bytes");
    }

    /// A late window of a month-long soak is drawn alone: what it allocates is one window's worth,
    /// not the 2.6 billion operations before it (which would take gigabytes and hours).
    #[test]
    fn a_late_window_is_made_without_the_windows_before_it() {
        let text = "name: month\npeers: 4\nsoak:\n  duration: 30d\n  window: 10m\n  workload: {rate: 1000}\n  faults:\n    - {partition: {shape: halves}}\n    - {kill: {peers: one}}\n";
        let p = plan(text);
        let s = SoakSchedule::new(&p).unwrap();
        assert_eq!(s.windows(), 30 * 24 * 6);
        let last = s.windows() - 1;
        let before = TOTAL.with(Cell::get);
        let first: Vec<ScheduledOp> = s.window(last).take(10).collect();
        let allocated = TOTAL.with(Cell::get) - before;
        assert!(allocated < 1 << 20, "{allocated} bytes allocated");
        // Its first write is operation last * 600 000 (ids count over the whole soak).
        let Some(Action::Write(w)) = first
            .iter()
            .map(|op| &op.action)
            .find(|a| matches!(a, Action::Write(_)))
        else {
            panic!("no write in {first:?}");
        };
        assert_eq!(w.id, last * 600_000 + 1);
        assert_eq!(first[0].at_ms, s.span(last).0);
    }
}
