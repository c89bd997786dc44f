//! The generator: turns a validated [`Plan`] into a seeded, time-ordered [`Schedule`] of file operations
//! (for the workload) and fault starts and stops (for the nemesis). Pure: the same plan and seed give
//! the same schedule, which is what makes a failing run reproducible.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::partition::{self, Cut};
use crate::plan::{
    ClockChange, DiskAction, Fault, FaultStep, FileOpKind, LinkParams, LockAction, PartitionShape, Plan, ProcessAction,
    Selector, WorkloadKind,
};

/// One file operation a client performs on one peer's sync folder.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileOp {
    /// Unique in the run; also seeds the content, so every write has distinct bytes.
    pub id: u64,
    pub peer: usize,
    pub kind: FileOpKind,
    pub path: String,
    pub size: u64,
}

/// A fault with every selector drawn: what the nemesis applies.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ConcreteFault {
    Partition(Cut),
    /// Packet faults installed on `peers` for traffic to `to` (by `netfault`, seeded).
    Link {
        peers: Vec<usize>,
        to: Vec<usize>,
        params: Box<LinkParams>,
        seed: u64,
    },
    /// `offset_ms` added to the peers' wall clocks; `rate` makes them run fast or slow.
    Clock {
        peers: Vec<usize>,
        offset_ms: i64,
        rate: Option<f64>,
    },
    Process {
        peers: Vec<usize>,
        action: ProcessAction,
    },
    Lock {
        peers: Vec<usize>,
        action: LockAction,
    },
    Disk {
        peers: Vec<usize>,
        action: DiskAction,
        seed: u64,
    },
    /// The peers serve lies (`behaviours` written into their Byzantine control file).
    Byzantine {
        peers: Vec<usize>,
        behaviours: Vec<String>,
    },
}

impl ConcreteFault {
    pub fn kind(&self) -> &'static str {
        match self {
            ConcreteFault::Partition(_) => "partition",
            ConcreteFault::Link { .. } => "link",
            ConcreteFault::Clock { .. } => "clock",
            ConcreteFault::Process { action, .. } => action.as_str(),
            ConcreteFault::Lock { .. } => "lock",
            ConcreteFault::Disk { .. } => "disk",
            ConcreteFault::Byzantine { .. } => "byzantine",
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Action {
    FaultStop {
        id: String,
    },
    FaultStart {
        id: String,
        step: String,
        fault: ConcreteFault,
    },
    Write(FileOp),
}

impl Action {
    /// At equal times: stops, then starts, then writes (a rolling partition hands over before writes).
    pub fn rank(&self) -> u8 {
        match self {
            Action::FaultStop { .. } => 0,
            Action::FaultStart { .. } => 1,
            Action::Write(_) => 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ScheduledOp {
    pub at_ms: u64,
    pub action: Action,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Schedule {
    pub ops: Vec<ScheduledOp>,
    /// When the last op happens or the last timed fault ends; the final heal comes after this.
    pub end_ms: u64,
}

/// Builds the schedule for `plan`. Its size was counted and bounded when the plan was resolved
/// (`plan::limits`), so this only materialises what validation allowed; times saturate rather than wrap.
pub fn generate(plan: &Plan) -> Schedule {
    let n = plan.peers.len();
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let mut ops = Vec::new();
    let mut end_ms = 0;
    let mut next_id = 1u64;

    for step in &plan.workload {
        let peers = draw(&step.peers, n, &mut rng);
        match &step.kind {
            WorkloadKind::Single { op, path, size } => {
                for &peer in &peers {
                    let size = rng.random_range(size.min..=size.max);
                    ops.push(ScheduledOp {
                        at_ms: step.at.ms(),
                        action: Action::Write(FileOp {
                            id: next_id,
                            peer,
                            kind: *op,
                            path: path.clone(),
                            size,
                        }),
                    });
                    next_id += 1;
                }
            }
            WorkloadKind::Random {
                duration,
                rate,
                files,
                size,
                mix,
            } => {
                let count = (duration.0.as_secs_f64() * rate).floor() as u64;
                let weights = [
                    (FileOpKind::Create, mix.create),
                    (FileOpKind::Modify, mix.modify),
                    (FileOpKind::Delete, mix.delete),
                    (FileOpKind::Touch, mix.touch),
                    (FileOpKind::Chmod, mix.chmod),
                ];
                for i in 0..count {
                    let at_ms = step.at.ms().saturating_add((i as f64 * 1000.0 / rate) as u64);
                    let peer = *peers.choose(&mut rng).expect("selectors draw at least one peer");
                    let kind = weights
                        .choose_weighted(&mut rng, |w| w.1)
                        .expect("validated non-zero mix")
                        .0;
                    let path = format!("random/file-{:03}.dat", rng.random_range(0..*files));
                    let size = rng.random_range(size.min..=size.max);
                    ops.push(ScheduledOp {
                        at_ms,
                        action: Action::Write(FileOp {
                            id: next_id,
                            peer,
                            kind,
                            path,
                            size,
                        }),
                    });
                    next_id += 1;
                }
                end_ms = end_ms.max(step.at.ms().saturating_add(duration.ms()));
            }
        }
    }

    for step in &plan.steps {
        let intervals = intervals(step, n, &plan.engine, &mut rng);
        for (k, (from, to, fault)) in intervals.into_iter().enumerate() {
            let id = format!("{}#{}", step.name, k + 1);
            ops.push(ScheduledOp {
                at_ms: from,
                action: Action::FaultStart {
                    id: id.clone(),
                    step: step.name.clone(),
                    fault,
                },
            });
            end_ms = end_ms.max(from);
            if let Some(to) = to {
                ops.push(ScheduledOp {
                    at_ms: to,
                    action: Action::FaultStop { id },
                });
                end_ms = end_ms.max(to);
            }
        }
    }

    ops.sort_by_key(|op| (op.at_ms, op.action.rank()));
    end_ms = end_ms.max(ops.last().map_or(0, |op| op.at_ms));
    Schedule { ops, end_ms }
}

/// The intervals one fault step makes, each `(start, stop, fault)` in ms (`None`: until the final
/// heal), with every selector drawn from `rng`: one interval, or one per flap, hand-over or strobe
/// half. The soak schedule draws its faults through this too, from step templates.
pub fn intervals(
    step: &FaultStep,
    n: usize,
    engine: &str,
    rng: &mut ChaCha8Rng,
) -> Vec<(u64, Option<u64>, ConcreteFault)> {
    let start = step.at.ms();
    let window_end = step.duration.map(|d| start.saturating_add(d.ms()));
    // Each interval is one fault with its own id, so the history shows every flap and hand-over.
    let mut intervals: Vec<(u64, Option<u64>, ConcreteFault)> = Vec::new();
    let flaps = |every: u64, end: u64| {
        let every = every.max(1);
        let on = (every / 2).max(1);
        (0..)
            .map(move |k: u64| start.saturating_add(k.saturating_mul(every)))
            .take_while(move |t| *t < end)
            .map(move |t| (t, t.saturating_add(on).min(end)))
    };
    match &step.fault {
        Fault::Partition(spec) => {
            let cut_of = |shape: partition::Shape, rng: &mut ChaCha8Rng| {
                ConcreteFault::Partition(Cut {
                    links: shape.links(n, rng.random()),
                    mode: spec.mode,
                    port: spec.port.as_ref().map(|p| {
                        p.number()
                            .expect("named ports are bound to the profile before a schedule is made")
                    }),
                })
            };
            match (&spec.shape, step.every, window_end) {
                (PartitionShape::Rolling, Some(every), Some(end)) => {
                    let mut order: Vec<usize> = (0..n).collect();
                    order.shuffle(rng);
                    let mut t = start;
                    let mut k = 0;
                    while t < end {
                        let stop = t.saturating_add(every.ms()).min(end);
                        intervals.push((
                            t,
                            Some(stop),
                            cut_of(partition::Shape::Isolate(vec![order[k % n]]), &mut *rng),
                        ));
                        t = t.saturating_add(every.ms().max(1));
                        k += 1;
                    }
                }
                (shape, Some(every), Some(end)) => {
                    let cut = cut_of(concrete_shape(shape, n, rng), &mut *rng);
                    intervals.extend(flaps(every.ms(), end).map(|(a, b)| (a, Some(b), cut.clone())));
                }
                (shape, _, _) => intervals.push((start, window_end, cut_of(concrete_shape(shape, n, rng), &mut *rng))),
            }
        }
        Fault::Link(spec) => {
            let fault = ConcreteFault::Link {
                peers: draw(&spec.peers, n, rng),
                to: draw(&spec.to, n, rng),
                params: Box::new(LinkParams {
                    // A man in the middle moves streams, not packets: no packet engine.
                    engine: match spec.params.mitm {
                        Some(_) => None,
                        None => spec.params.engine.clone().or_else(|| Some(engine.to_string())),
                    },
                    ..spec.params.clone()
                }),
                seed: rng.random(),
            };
            match (step.every, window_end) {
                (Some(every), Some(end)) => {
                    intervals.extend(flaps(every.ms(), end).map(|(a, b)| (a, Some(b), fault.clone())))
                }
                _ => intervals.push((start, window_end, fault)),
            }
        }
        Fault::Clock(spec) => {
            let peers = draw(&spec.peers, n, rng);
            let clock = |offset_ms, rate| ConcreteFault::Clock {
                peers: peers.clone(),
                offset_ms,
                rate,
            };
            match (&spec.change, step.every, window_end) {
                (ClockChange::Strobe(a, b), Some(every), Some(end)) => {
                    for (t, half) in flaps(every.ms(), end) {
                        intervals.push((t, Some(half), clock(*a, None)));
                        if half < end {
                            intervals.push((half, Some(t.saturating_add(every.ms()).min(end)), clock(*b, None)));
                        }
                    }
                }
                (ClockChange::Rate(r), _, _) => intervals.push((start, window_end, clock(0, Some(*r)))),
                (ClockChange::Offset(o), _, _) | (ClockChange::Strobe(o, _), _, _) => {
                    intervals.push((start, window_end, clock(*o, None)))
                }
            }
        }
        Fault::Process(_) | Fault::Lock(_) | Fault::Disk(_) | Fault::Byzantine(_) => {
            intervals.push((start, window_end, whole_window(&step.fault, n, rng)))
        }
    }
    intervals
}

/// A fault that holds for its whole window (it never flaps), with its selectors drawn.
fn whole_window(fault: &Fault, n: usize, rng: &mut ChaCha8Rng) -> ConcreteFault {
    match fault {
        Fault::Process(spec) => ConcreteFault::Process {
            peers: draw(&spec.peers, n, rng),
            action: spec.action,
        },
        Fault::Lock(spec) => ConcreteFault::Lock {
            peers: draw(&spec.peers, n, rng),
            action: spec.action.clone(),
        },
        Fault::Disk(spec) => ConcreteFault::Disk {
            peers: draw(&spec.peers, n, rng),
            action: spec.action.clone(),
            seed: rng.random(),
        },
        Fault::Byzantine(spec) => ConcreteFault::Byzantine {
            peers: draw(&spec.peers, n, rng),
            behaviours: spec.behaviours.clone(),
        },
        Fault::Partition(_) | Fault::Link(_) | Fault::Clock(_) => {
            unreachable!("partitions, links and clocks may flap: the generator times them itself")
        }
    }
}

fn concrete_shape(shape: &PartitionShape, n: usize, rng: &mut ChaCha8Rng) -> partition::Shape {
    match shape {
        PartitionShape::Groups(g) => partition::Shape::Groups(g.clone()),
        PartitionShape::Halves => partition::Shape::Halves,
        PartitionShape::Isolate(sel) => partition::Shape::Isolate(draw(sel, n, rng)),
        PartitionShape::Islands => partition::Shape::Islands,
        PartitionShape::Bridge => partition::Shape::Bridge,
        PartitionShape::MajoritiesRing => partition::Shape::MajoritiesRing,
        PartitionShape::OneWay { from, to } => partition::Shape::OneWay {
            from: draw(from, n, rng),
            to: draw(to, n, rng),
        },
        // Rolling is expanded by the caller; as a single shape it isolates one peer.
        PartitionShape::Rolling => partition::Shape::Isolate(draw(&Selector::One, n, rng)),
    }
}

/// Draws the peers a selector names, in ascending order.
pub fn draw(sel: &Selector, n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    let k = match sel {
        Selector::All => return all,
        Selector::Peers(p) => return p.clone(),
        Selector::One => 1,
        Selector::Minority => (n.saturating_sub(1) / 2).max(1),
        Selector::Majority => n / 2 + 1,
        Selector::Random(k) => *k,
    };
    all.shuffle(rng);
    let mut picked: Vec<usize> = all.into_iter().take(k.min(n)).collect();
    picked.sort();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn plan(text: &str) -> Plan {
        crate::plan::parse(text, Path::new("t.yaml"), Path::new("../topologies")).unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let text = "name: x\nseed: 3\npeers: 4\nworkload:\n  - {at: 0s, peer: all, random: {duration: 5s, rate: 4}}\nsteps:\n  - {at: 1s, duration: 2s, partition: {shape: halves}}\n";
        assert_eq!(generate(&plan(text)).ops, generate(&plan(text)).ops);
        let other = text.replace("seed: 3", "seed: 4");
        assert_ne!(generate(&plan(text)).ops, generate(&plan(&other)).ops);
    }

    #[test]
    fn a_timed_partition_starts_and_stops() {
        let s = generate(&plan(
            "name: x\npeers: 3\nsteps:\n  - {at: 1s, duration: 2s, partition: {groups: [[p1], [p2, p3]]}}\n",
        ));
        assert_eq!(s.ops.len(), 2);
        assert!(matches!(
            &s.ops[0],
            ScheduledOp {
                at_ms: 1000,
                action: Action::FaultStart { .. }
            }
        ));
        assert!(matches!(
            &s.ops[1],
            ScheduledOp {
                at_ms: 3000,
                action: Action::FaultStop { .. }
            }
        ));
        assert_eq!(s.end_ms, 3000);
    }

    #[test]
    fn flapping_repeats_within_the_window() {
        let s = generate(&plan(
            "name: x\npeers: 3\nsteps:\n  - {at: 0s, duration: 10s, every: 2s, partition: {shape: halves}}\n",
        ));
        let starts = s
            .ops
            .iter()
            .filter(|o| matches!(o.action, Action::FaultStart { .. }))
            .count();
        let stops = s
            .ops
            .iter()
            .filter(|o| matches!(o.action, Action::FaultStop { .. }))
            .count();
        assert_eq!((starts, stops), (5, 5));
    }

    #[test]
    fn rolling_moves_the_isolated_peer_through_everyone() {
        let s = generate(&plan(
            "name: x\npeers: 3\nsteps:\n  - {at: 0s, duration: 6s, every: 2s, partition: {shape: rolling}}\n",
        ));
        let isolated: Vec<usize> = s
            .ops
            .iter()
            .filter_map(|o| match &o.action {
                Action::FaultStart {
                    fault: ConcreteFault::Partition(cut),
                    ..
                } => (0..3).find(|&p| (0..3).filter(|&q| q != p).all(|q| cut.links.contains(&(p, q)))),
                _ => None,
            })
            .collect();
        let mut sorted = isolated.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2], "each peer isolated once: {isolated:?}");
        // A hand-over stops the old fault before starting the new one at the same instant.
        assert!(matches!(s.ops[1].action, Action::FaultStop { .. }) && s.ops[1].at_ms == 2000);
    }

    #[test]
    fn a_write_on_all_peers_is_one_op_per_peer_with_unique_ids() {
        let s = generate(&plan(
            "name: x\npeers: 3\nworkload:\n  - {at: 1s, peer: all, create: a.txt}\n",
        ));
        let ids: Vec<u64> = s
            .ops
            .iter()
            .filter_map(|o| {
                if let Action::Write(w) = &o.action {
                    Some(w.id)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
    }

    #[test]
    fn selectors_draw_the_right_counts() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(draw(&Selector::Minority, 5, &mut rng).len(), 2);
        assert_eq!(draw(&Selector::Majority, 5, &mut rng).len(), 3);
        assert_eq!(draw(&Selector::One, 5, &mut rng).len(), 1);
        assert_eq!(draw(&Selector::Random(4), 5, &mut rng).len(), 4);
        assert_eq!(draw(&Selector::All, 3, &mut rng), vec![0, 1, 2]);
    }
}
