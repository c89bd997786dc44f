//! From raw YAML to a validated [`Plan`]: names become indexes, topologies become graphs, selectors and
//! fault parameters are checked, and every error points at the place in the file.

use std::path::Path;

use serde_saphyr::Spanned;

use super::raw::*;
use super::units::check_path;
use super::*;
use crate::partition::CutMode;
use crate::topology::{self, Topology};

pub(super) struct Resolver<'a> {
    pub(super) file: &'a Path,
    pub(super) topologies_dir: &'a Path,
}

impl Resolver<'_> {
    fn err<T>(&self, at: &serde_saphyr::Location, message: impl Into<String>) -> Result<T, PlanError> {
        Err(PlanError {
            file: self.file.to_path_buf(),
            line: at.line(),
            column: at.column(),
            message: message.into(),
        })
    }

    pub(super) fn plan(&self, raw: RawPlan) -> Result<Plan, PlanError> {
        let name = raw.name.value.trim().to_string();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return self.err(
                &raw.name.referenced,
                "`name` must be non-empty letters, digits, `-` or `_` (it names the run folder)",
            );
        }
        let count = raw.peers.value;
        if count < 1 || count as usize > MAX_PEERS {
            return self.err(
                &raw.peers.referenced,
                format!("`peers` is {count}; allowed: 1 to {MAX_PEERS}"),
            );
        }
        let peers: Vec<String> = (1..=count).map(|i| format!("p{i}")).collect();
        let seed = raw.seed.unwrap_or(1);
        let topology = match &raw.topology {
            None => Topology::build(&topology::Shape::FullMesh, peers.len(), seed).expect("full mesh always builds"),
            Some(t) => self.topology(t, &peers, seed)?,
        };
        let flavor = match raw.flavor {
            None => "default".to_string(),
            Some(f) if ["default", "legacy"].contains(&f.value.as_str()) => f.value,
            Some(f) => {
                return self.err(
                    &f.referenced,
                    format!("unknown flavor `{}`; allowed: default, legacy", f.value),
                );
            }
        };
        let workload = raw
            .workload
            .iter()
            .map(|w| self.write(w, &peers))
            .collect::<Result<Vec<_>, _>>()?;
        let steps = raw
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| self.step(i, s, &peers))
            .collect::<Result<Vec<_>, _>>()?;
        let expect = raw.expect.unwrap_or_default();
        let engine = match raw.engine {
            None => "auto".to_string(),
            Some(e) if ["auto", "netem", "userspace"].contains(&e.value.as_str()) => e.value,
            Some(e) => {
                return self.err(
                    &e.referenced,
                    format!("unknown engine `{}`; allowed: auto, netem, userspace", e.value),
                );
            }
        };
        let fills = steps.iter().any(|s| {
            matches!(
                &s.fault,
                Fault::Disk(DiskSpec {
                    action: DiskAction::Fill,
                    ..
                })
            )
        });
        // A disk can only be filled if it is small: default to 64 MiB when a plan fills without a limit.
        let disk_limit = raw.disk_limit.map(|s| s.0).or(fills.then_some(64 << 20));
        if let Some(limit) = disk_limit
            && limit < (4 << 20)
        {
            return self.err(
                &raw.name.referenced,
                format!("`disk_limit` is {limit} bytes; allowed: at least 4MiB"),
            );
        }
        let quarantine = match raw.quarantine {
            Some(q) if q.value.0.is_zero() => {
                return self.err(&q.referenced, "`quarantine` must be more than 0");
            }
            q => q.map(|q| q.value),
        };
        Ok(Plan {
            name,
            description: raw.description,
            source: self.file.to_path_buf(),
            seed,
            peers,
            topology,
            peer: raw
                .peer
                .as_ref()
                .map_or_else(|| "syncpeer".to_string(), |p| p.value.clone()),
            peer_at: raw
                .peer
                .as_ref()
                .map_or((1, 1), |p| (p.referenced.line(), p.referenced.column())),
            image: raw.image,
            flavor,
            anti_entropy: raw.anti_entropy.unwrap_or(Dur::from_ms(1000)),
            disk_limit,
            engine,
            quarantine,
            workload,
            steps,
            expect: Expect {
                converge_within: expect.converge_within.unwrap_or(Dur::from_ms(60_000)),
                quiet: expect.quiet.unwrap_or(Dur::from_ms(2_000)),
            },
        })
    }

    fn topology(&self, t: &Spanned<RawTopology>, peers: &[String], seed: u64) -> Result<Topology, PlanError> {
        let spec = match &t.value {
            RawTopology::Inline(spec) => self.topology_spec(spec, &t.referenced, peers)?,
            RawTopology::Named(name) => match builtin_shape(name) {
                Some(shape) => shape,
                None => {
                    let file = self.topologies_dir.join(format!("{name}.yaml"));
                    let text = std::fs::read_to_string(&file).or_else(|_| {
                        self.err(
                            &t.referenced,
                            format!(
                                "unknown topology `{name}`; allowed: {} or a file in {}",
                                topology::SHAPE_NAMES,
                                self.topologies_dir.display()
                            ),
                        )
                    })?;
                    let spec: RawTopologySpec = serde_saphyr::from_str(&text).map_err(|e| yaml_error(&file, &e))?;
                    let nested = Resolver {
                        file: &file,
                        topologies_dir: self.topologies_dir,
                    };
                    nested.topology_spec(&spec, &serde_saphyr::Location::UNKNOWN, peers)?
                }
            },
        };
        let topo = Topology::build(&spec, peers.len(), seed).or_else(|e| self.err(&t.referenced, e))?;
        if !topo.is_connected() {
            return self.err(
                &t.referenced,
                "the topology is not connected: some writes could never reach every peer",
            );
        }
        Ok(topo)
    }

    fn topology_spec(
        &self,
        spec: &RawTopologySpec,
        at: &serde_saphyr::Location,
        peers: &[String],
    ) -> Result<topology::Shape, PlanError> {
        if let Some(edges) = &spec.edges {
            let mut list = Vec::new();
            for (a, b) in edges {
                list.push((self.peer_index(a, at, peers)?, self.peer_index(b, at, peers)?));
            }
            return Ok(topology::Shape::Edges { edges: list });
        }
        let kind = spec.kind.as_deref().unwrap_or("full-mesh");
        match (kind, builtin_shape(kind)) {
            ("tree", _) => Ok(topology::Shape::Tree {
                fanout: spec.fanout.unwrap_or(2),
            }),
            ("random", _) => Ok(topology::Shape::Random {
                degree: spec.degree.unwrap_or(3),
            }),
            (_, Some(shape)) => Ok(shape),
            (other, None) => self.err(
                at,
                format!("unknown topology kind `{other}`; allowed: {}", topology::SHAPE_NAMES),
            ),
        }
    }

    fn peer_index(&self, name: &str, at: &serde_saphyr::Location, peers: &[String]) -> Result<usize, PlanError> {
        peers.iter().position(|p| p == name).map_or_else(
            || {
                self.err(
                    at,
                    format!("unknown peer `{name}`; this plan has {}", peer_range(peers)),
                )
            },
            Ok,
        )
    }

    fn targets(&self, t: &RawTargets, at: &serde_saphyr::Location, peers: &[String]) -> Result<Selector, PlanError> {
        match t {
            RawTargets::Word(w) => match w.as_str() {
                "all" => Ok(Selector::All),
                "one" => Ok(Selector::One),
                "minority" => Ok(Selector::Minority),
                "majority" => Ok(Selector::Majority),
                name => Ok(Selector::Peers(vec![self.peer_index(name, at, peers)?])),
            },
            RawTargets::List(names) => {
                if names.is_empty() {
                    return self.err(at, "an empty peer list selects nobody");
                }
                Ok(Selector::Peers(
                    names
                        .iter()
                        .map(|n| self.peer_index(n, at, peers))
                        .collect::<Result<_, _>>()?,
                ))
            }
            RawTargets::Random { random } => {
                if *random == 0 || *random > peers.len() {
                    return self.err(at, format!("`random: {random}` must pick 1 to {} peers", peers.len()));
                }
                Ok(Selector::Random(*random))
            }
        }
    }

    fn write(&self, w: &Spanned<RawWrite>, peers: &[String]) -> Result<WorkloadStep, PlanError> {
        let at = &w.referenced;
        let raw = &w.value;
        let selected = self.targets(&raw.peer.value, &raw.peer.referenced, peers)?;
        let size = raw.size.unwrap_or(SizeRange { min: 1024, max: 1024 });
        let singles = [
            (FileOpKind::Create, &raw.create),
            (FileOpKind::Modify, &raw.modify),
            (FileOpKind::Delete, &raw.delete),
            (FileOpKind::Touch, &raw.touch),
            (FileOpKind::Chmod, &raw.chmod),
        ];
        let mut chosen: Vec<WorkloadKind> = singles
            .iter()
            .filter_map(|(op, path)| path.as_ref().map(|p| (op, p)))
            .map(|(op, path)| check_path(path).map(|path| WorkloadKind::Single { op: *op, path, size }))
            .collect::<Result<_, String>>()
            .or_else(|e| self.err(at, e))?;
        if let Some(r) = &raw.random {
            if !(r.rate > 0.0 && r.rate <= 1000.0) {
                return self.err(
                    at,
                    format!(
                        "`rate` is {}; allowed: more than 0, at most 1000 ops per second",
                        r.rate
                    ),
                );
            }
            let mix = r.mix.unwrap_or(Mix {
                create: 50,
                modify: 40,
                delete: 10,
                touch: 0,
                chmod: 0,
            });
            if mix.create + mix.modify + mix.delete + mix.touch + mix.chmod == 0 {
                return self.err(at, "`mix` weights are all zero");
            }
            chosen.push(WorkloadKind::Random {
                duration: r.duration,
                rate: r.rate,
                files: r.files.unwrap_or(20).max(1),
                size,
                mix,
            });
        }
        match chosen.len() {
            1 => Ok(WorkloadStep {
                at: raw.at,
                peers: selected,
                kind: chosen.remove(0),
            }),
            0 => self.err(
                at,
                "a workload entry needs one of: create, modify, delete, touch, chmod, random",
            ),
            _ => self.err(
                at,
                "a workload entry takes exactly one of: create, modify, delete, touch, chmod, random",
            ),
        }
    }

    fn step(&self, index: usize, s: &Spanned<RawStep>, peers: &[String]) -> Result<FaultStep, PlanError> {
        let raw = &s.value;
        let at = &s.referenced;
        let given = [
            raw.partition.is_some(),
            raw.link.is_some(),
            raw.clock.is_some(),
            raw.kill.is_some(),
            raw.stop.is_some(),
            raw.pause.is_some(),
            raw.lock.is_some(),
            raw.disk.is_some(),
            raw.byzantine.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            let what = if given == 0 {
                "a step needs a fault"
            } else {
                "a step takes exactly one fault"
            };
            return self.err(at, format!("{what}; allowed: {FAULT_KINDS}"));
        }
        let fault = if let Some(p) = &raw.partition {
            Fault::Partition(self.partition(p, peers)?)
        } else if let Some(l) = &raw.link {
            Fault::Link(Box::new(self.link(l, peers)?))
        } else if let Some(c) = &raw.clock {
            Fault::Clock(self.clock(c, peers, raw.every.is_some())?)
        } else if let Some(l) = &raw.lock {
            let sel = self.targets(&l.value.peers, &l.referenced, peers)?;
            let action = match (&l.value.stale, l.value.unwritable) {
                (Some(path), None) => LockAction::Stale(check_path(path).or_else(|e| self.err(&l.referenced, e))?),
                (None, Some(true)) => LockAction::Unwritable,
                _ => {
                    return self.err(
                        &l.referenced,
                        "a lock fault takes one of: `stale: <path>`, `unwritable: true`",
                    );
                }
            };
            Fault::Lock(LockSpec { peers: sel, action })
        } else if let Some(d) = &raw.disk {
            let sel = self.targets(&d.value.peers, &d.referenced, peers)?;
            let pick = |p: &RawPathOrPick| match p {
                RawPathOrPick::Path(s) => Some(s.clone()),
                RawPathOrPick::Pick => None,
            };
            let action = match (&d.value.corrupt, &d.value.truncate, d.value.fill) {
                (Some(c), None, None) => DiskAction::Corrupt(pick(c)),
                (None, Some(t), None) => DiskAction::Truncate(pick(t)),
                (None, None, Some(true)) => DiskAction::Fill,
                _ => {
                    return self.err(
                        &d.referenced,
                        "a disk fault takes one of: `corrupt: <path>|true`, `truncate: <path>|true`, `fill: true`",
                    );
                }
            };
            Fault::Disk(DiskSpec { peers: sel, action })
        } else if let Some(b) = &raw.byzantine {
            Fault::Byzantine(self.byzantine(b, peers)?)
        } else {
            let (p, action) = match (&raw.kill, &raw.stop, &raw.pause) {
                (Some(p), _, _) => (p, ProcessAction::Kill),
                (_, Some(p), _) => (p, ProcessAction::Stop),
                (_, _, Some(p)) => (p, ProcessAction::Pause),
                _ => unreachable!("exactly one fault key was counted"),
            };
            Fault::Process(ProcessSpec {
                peers: self.targets(&p.value.peers, &p.referenced, peers)?,
                action,
            })
        };
        if let Fault::Clock(ClockSpec {
            change: ClockChange::Strobe(..),
            ..
        }) = &fault
            && raw.every.is_none()
        {
            return self.err(
                at,
                "a clock strobe needs `every` (how often the clock flips) and a `duration`",
            );
        }
        if raw.every.is_some() && !matches!(fault, Fault::Partition(_) | Fault::Clock(_) | Fault::Link(_)) {
            return self.err(at, "`every` (flapping) applies to partition, link and clock faults");
        }
        if let Some(every) = raw.every {
            if every.0.is_zero() {
                return self.err(at, "`every` must be more than 0");
            }
            if raw.duration.is_none() {
                return self.err(
                    at,
                    "`every` needs a `duration` (the window in which the fault flaps or rolls)",
                );
            }
        }
        if let (
            Fault::Partition(PartitionSpec {
                shape: PartitionShape::Rolling,
                ..
            }),
            None,
        ) = (&fault, raw.every)
        {
            return self.err(
                at,
                "a rolling partition needs `every` (how often the isolated peer moves on)",
            );
        }
        Ok(FaultStep {
            name: raw.name.clone().unwrap_or_else(|| format!("step-{}", index + 1)),
            at: raw.at,
            duration: raw.duration,
            every: raw.every,
            fault,
            at_line: (at.line(), at.column()),
        })
    }

    fn partition(&self, p: &Spanned<RawPartition>, peers: &[String]) -> Result<PartitionSpec, PlanError> {
        let at = &p.referenced;
        let raw = &p.value;
        let shape = match (&raw.groups, raw.shape.as_deref()) {
            (Some(_), Some(_)) => return self.err(at, "give either `groups` or `shape`, not both"),
            (Some(groups), None) => {
                let mut out = Vec::new();
                for g in groups {
                    out.push(
                        g.iter()
                            .map(|n| self.peer_index(n, at, peers))
                            .collect::<Result<Vec<_>, _>>()?,
                    );
                }
                if out.len() < 2 {
                    return self.err(at, "`groups` needs at least two groups");
                }
                PartitionShape::Groups(out)
            }
            (None, None) => {
                return self.err(
                    at,
                    format!("a partition needs `groups` or `shape`; shapes: {PARTITION_SHAPES}"),
                );
            }
            (None, Some(shape)) => match shape {
                "halves" => PartitionShape::Halves,
                "islands" => PartitionShape::Islands,
                "bridge" => PartitionShape::Bridge,
                "majorities-ring" => PartitionShape::MajoritiesRing,
                "rolling" => PartitionShape::Rolling,
                "isolate" => PartitionShape::Isolate(match &raw.peers {
                    Some(t) => self.targets(t, at, peers)?,
                    None => Selector::One,
                }),
                "one-way" => {
                    let (Some(from), Some(to)) = (&raw.from, &raw.to) else {
                        return self.err(at, "a one-way partition needs `from` and `to` peers");
                    };
                    PartitionShape::OneWay {
                        from: self.targets(from, at, peers)?,
                        to: self.targets(to, at, peers)?,
                    }
                }
                other => {
                    return self.err(
                        at,
                        format!("unknown partition shape `{other}`; allowed: {PARTITION_SHAPES}"),
                    );
                }
            },
        };
        if peers.len() < 2 {
            return self.err(at, "a partition needs at least two peers");
        }
        Ok(PartitionSpec {
            shape,
            mode: raw.mode.unwrap_or(CutMode::Drop),
            port: raw.port.clone(),
        })
    }
}

impl Resolver<'_> {
    fn link(&self, l: &Spanned<RawLink>, peers: &[String]) -> Result<LinkSpec, PlanError> {
        let at = &l.referenced;
        let raw = &l.value;
        let sel = |t: &Option<RawTargets>| t.as_ref().map_or(Ok(Selector::All), |t| self.targets(t, at, peers));
        let p = &raw.params();
        for (name, v) in [
            ("loss", p.loss),
            ("loss_correlation", p.loss_correlation),
            ("corrupt", p.corrupt),
            ("duplicate", p.duplicate),
            ("reorder", p.reorder),
        ] {
            if let Some(v) = v
                && !(0.0..=100.0).contains(&v)
            {
                return self.err(at, format!("`{name}` is {v}; allowed: a percentage from 0 to 100"));
            }
        }
        let allowed = |name: &str, v: &Option<String>, set: &[&str]| match v {
            Some(v) if !set.contains(&v.as_str()) => {
                self.err(at, format!("`{name}: {v}` is unknown; allowed: {}", set.join(", ")))
            }
            _ => Ok(()),
        };
        allowed("direction", &p.direction, &["egress", "ingress", "both"])?;
        allowed("distribution", &p.distribution, &["uniform", "normal", "pareto"])?;
        allowed("engine", &p.engine, &["auto", "netem", "userspace"])?;
        if let Some(r) = &p.rate {
            parse_rate_kbit(r).or_else(|e| self.err(at, e))?;
        }
        let nothing = p.delay.is_none()
            && p.loss.is_none()
            && p.corrupt.is_none()
            && p.duplicate.is_none()
            && p.reorder.is_none()
            && p.rate.is_none();
        if nothing {
            return self.err(
                at,
                "a link fault needs at least one of: delay, loss, corrupt, duplicate, reorder, rate",
            );
        }
        if p.jitter.is_some() && p.delay.is_none() {
            return self.err(at, "`jitter` needs a `delay` to spread around");
        }
        Ok(LinkSpec {
            peers: sel(&raw.peers)?,
            to: sel(&raw.to)?,
            params: p.clone(),
        })
    }

    fn byzantine(&self, b: &Spanned<RawByzantine>, peers: &[String]) -> Result<ByzantineSpec, PlanError> {
        let at = &b.value.behaviour.referenced;
        let allowed = BYZANTINE_BEHAVIOURS.join(", ");
        let names = match &b.value.behaviour.value {
            RawTargets::Word(w) => std::slice::from_ref(w),
            RawTargets::List(l) if !l.is_empty() => l.as_slice(),
            _ => {
                return self.err(
                    at,
                    format!("a byzantine fault needs a `behaviour` or a list of them; allowed: {allowed}"),
                );
            }
        };
        let mut behaviours: Vec<String> = Vec::new();
        for n in names {
            if !BYZANTINE_BEHAVIOURS.contains(&n.as_str()) {
                return self.err(at, format!("unknown byzantine behaviour `{n}`; allowed: {allowed}"));
            }
            if behaviours.contains(n) {
                return self.err(at, format!("byzantine behaviour `{n}` is given twice"));
            }
            behaviours.push(n.clone());
        }
        Ok(ByzantineSpec {
            peers: self.targets(&b.value.peers, &b.referenced, peers)?,
            behaviours,
        })
    }

    fn clock(&self, c: &Spanned<RawClock>, peers: &[String], flapping: bool) -> Result<ClockSpec, PlanError> {
        let at = &c.referenced;
        let raw = &c.value;
        let offset = |s: &str| parse_signed_ms(s).or_else(|e| self.err(at, e));
        let change = match (&raw.offset, &raw.strobe, raw.rate) {
            (Some(o), None, None) => ClockChange::Offset(offset(o)?),
            (None, Some((a, b)), None) => ClockChange::Strobe(offset(a)?, offset(b)?),
            (None, None, Some(r)) if r > 0.0 && r <= 100.0 => ClockChange::Rate(r),
            (None, None, Some(r)) => {
                return self.err(at, format!("clock `rate: {r}`; allowed: more than 0, at most 100"));
            }
            _ => {
                return self.err(
                    at,
                    "a clock fault takes one of: `offset: +1h`, `strobe: [+0s, +1h]`, `rate: 2`",
                );
            }
        };
        if flapping && !matches!(change, ClockChange::Strobe(..)) {
            return self.err(
                at,
                "`every` with a clock fault is a strobe: write `strobe: [<offset>, <offset>]`",
            );
        }
        Ok(ClockSpec {
            peers: self.targets(&raw.peers, at, peers)?,
            change,
        })
    }
}

/// `+1h`, `-30m`, `+90s`, `-2d`: a signed offset in milliseconds (a bare duration is positive).
pub fn parse_signed_ms(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (sign, rest) = match t.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    units::parse_duration(rest)
        .map(|d| sign * d.as_millis() as i64)
        .map_err(|_| format!("`{t}` is not a clock offset; write e.g. +1h, -30m, +90s, -2d"))
}

/// `500kbit`, `2mbit`, `1gbit`, or a bare number of kbit/s.
pub fn parse_rate_kbit(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let idx = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let v: f64 = t[..idx]
        .parse()
        .map_err(|_| format!("`{text}` is not a rate; write e.g. 500kbit, 2mbit"))?;
    let scale = match t[idx..].trim() {
        "" | "kbit" => 1.0,
        "mbit" => 1000.0,
        "gbit" => 1_000_000.0,
        _ => return Err(format!("`{text}` is not a rate; write e.g. 500kbit, 2mbit, 1gbit")),
    };
    let kbit = (v * scale).round() as u64;
    if kbit == 0 {
        return Err(format!(
            "rate `{text}` is zero; a partition cuts a link, a rate slows it"
        ));
    }
    Ok(kbit)
}

fn builtin_shape(name: &str) -> Option<topology::Shape> {
    match name {
        "full-mesh" | "mesh" => Some(topology::Shape::FullMesh),
        "ring" => Some(topology::Shape::Ring),
        "line" => Some(topology::Shape::Line),
        "star" => Some(topology::Shape::Star),
        "tree" => Some(topology::Shape::Tree { fanout: 2 }),
        "random" => Some(topology::Shape::Random { degree: 3 }),
        _ => None,
    }
}

fn peer_range(peers: &[String]) -> String {
    match peers.len() {
        1 => "p1".to_string(),
        n => format!("p1..p{n}"),
    }
}
