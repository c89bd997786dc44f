//! From raw YAML to a validated [`Plan`]: names become indexes, topologies become graphs, selectors and
//! fault parameters are checked, and every error points at the place in the file.

use std::path::Path;

use serde_saphyr::Spanned;

use super::image::check_image;
use super::limits::{
    MAX_CLOCK_OFFSET, MAX_CLOCK_RATE, MAX_DISK_LIMIT, MAX_FAULT_INTERVALS, MAX_FILES, MAX_LINK_DELAY, MAX_LINK_KBIT,
    MAX_NAME_LEN, MAX_RATE, MAX_RUN, MAX_WORKLOAD_OPS, MAX_WRITE_SIZE, MIN_DISK_LIMIT, MIN_EVERY,
};
use super::raw::*;
use super::units::check_path;
use super::*;
use crate::partition::CutMode;
use crate::topology::{self, Topology};

pub(super) struct Resolver<'a> {
    pub(super) file: &'a Path,
    pub(super) topologies_dir: &'a Path,
}

/// A number as a message shows it: `1e300`, not three hundred digits.
fn shown(v: f64) -> String {
    if v.is_finite() && v.abs() >= 1e9 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

impl Resolver<'_> {
    /// An error at `at`; an unknown location (a topology file as a whole) is the file's start.
    pub(super) fn err<T>(&self, at: &serde_saphyr::Location, message: impl Into<String>) -> Result<T, PlanError> {
        let (line, column) = match (at.line(), at.column()) {
            (0, _) => (1, 1),
            lc => lc,
        };
        Err(PlanError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        })
    }

    pub(super) fn plan(&self, raw: RawPlan) -> Result<Plan, PlanError> {
        let name = raw.name.value.trim().to_string();
        if !is_name(&name, false) {
            return self.err(
                &raw.name.referenced,
                format!(
                    "`name` is `{}`; allowed: letters, digits, `-`, `_`, at most {MAX_NAME_LEN} characters (it names the run folder)",
                    shorten(&name)
                ),
            );
        }
        let count = raw.peers.value;
        let count = match usize::try_from(count) {
            Ok(c) if (1..=MAX_PEERS).contains(&c) => c,
            _ => {
                return self.err(
                    &raw.peers.referenced,
                    format!("`peers` is {count}; allowed: a whole number from 1 to {MAX_PEERS}"),
                );
            }
        };
        let peers: Vec<String> = (1..=count).map(|i| format!("p{i}")).collect();
        let seed = raw.seed.unwrap_or(1);
        let topology = match &raw.topology {
            None => Topology::build(&topology::Shape::FullMesh, peers.len(), seed).expect("full mesh always builds"),
            Some(t) => self.topology(t, &peers, seed)?,
        };
        if let Some(image) = &raw.image {
            check_image(&image.value).or_else(|e| self.err(&image.referenced, e))?;
        }
        let flavor = match raw.flavor {
            None => "default".to_string(),
            Some(f) if ["default", "legacy"].contains(&f.value.as_str()) => f.value,
            Some(f) => {
                return self.err(
                    &f.referenced,
                    format!("unknown flavor `{}`; allowed: default, legacy", shorten(&f.value)),
                );
            }
        };
        let mut ops = 0u64;
        let mut workload = Vec::new();
        for w in &raw.workload {
            let step = self.write(w, &peers)?;
            let end = step.at.0.saturating_add(match &step.kind {
                WorkloadKind::Random { duration, .. } => duration.0,
                WorkloadKind::Single { .. } => std::time::Duration::ZERO,
            });
            self.within_run(&w.referenced, "this workload entry", end)?;
            let more = limits::workload_ops(&step, peers.len());
            self.count(
                &w.referenced,
                &mut ops,
                more,
                (MAX_WORKLOAD_OPS, "MAX_WORKLOAD_OPS"),
                "workload operations",
            )?;
            workload.push(step);
        }
        let mut intervals = 0u64;
        let mut steps = Vec::new();
        for (i, s) in raw.steps.iter().enumerate() {
            let step = self.step(i, s, &peers)?;
            let end = step
                .at
                .0
                .saturating_add(step.duration.map_or(std::time::Duration::ZERO, |d| d.0));
            self.within_run(&s.referenced, &format!("step `{}`", step.name), end)?;
            let more = limits::fault_intervals(&step);
            let limit = (MAX_FAULT_INTERVALS, "MAX_FAULT_INTERVALS");
            self.count(
                &s.referenced,
                &mut intervals,
                more,
                limit,
                "fault steps (each flap counts)",
            )?;
            steps.push(step);
        }
        conflicts::check(&steps, peers.len()).map_err(|(at, message)| PlanError {
            file: self.file.to_path_buf(),
            line: at.0,
            column: at.1,
            message,
        })?;
        let soak = match raw.soak {
            None => None,
            Some(s) => {
                // One schedule per plan: a soak draws its own workload and faults.
                if let Some(first) = raw
                    .workload
                    .first()
                    .map(|w| &w.referenced)
                    .or(raw.steps.first().map(|s| &s.referenced))
                {
                    return self.err(
                        first,
                        "a plan with a `soak` section has its workload and faults there; allowed: `workload` and `steps` in plans without `soak`, or `soak.workload` and `soak.faults`",
                    );
                }
                Some(self.soak(s, &peers)?)
            }
        };
        let expect = raw.expect.unwrap_or_default();
        let engine = match raw.engine {
            None => "auto".to_string(),
            Some(e) if ["auto", "netem", "userspace"].contains(&e.value.as_str()) => e.value,
            Some(e) => {
                return self.err(
                    &e.referenced,
                    format!(
                        "unknown engine `{}`; allowed: auto, netem, userspace",
                        shorten(&e.value)
                    ),
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
        if let Some(limit) = &raw.disk_limit
            && !(MIN_DISK_LIMIT..=MAX_DISK_LIMIT).contains(&limit.value.0)
        {
            return self.err(
                &limit.referenced,
                format!(
                    "`disk_limit` is {} bytes; allowed: 4MiB to 4GiB (the peer's tmpfs lives in host memory)",
                    limit.value.0
                ),
            );
        }
        // A disk can only be filled if it is small: default to 64 MiB when a plan fills without a limit.
        let disk_limit = raw.disk_limit.map(|s| s.value.0).or(fills.then_some(64 << 20));
        let positive = |d: &Option<Spanned<Dur>>, key: &str| match d {
            Some(d) if d.value.0.is_zero() => self.err(
                &d.referenced,
                format!("`{key}` is 0; allowed: more than 0, at most 24h"),
            ),
            _ => Ok(d.as_ref().map(|d| d.value)),
        };
        let quarantine = positive(&raw.quarantine, "quarantine")?;
        let anti_entropy = positive(&raw.anti_entropy, "anti_entropy")?;
        let converge_within = positive(&expect.converge_within, "converge_within")?;
        let quarantine_within = positive(&expect.quarantine_within, "quarantine_within")?;
        let leak = self.leak_limits(expect.leak.as_ref())?;
        let criteria = self.criteria(expect.criteria.as_ref())?;
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
            image: raw.image.map(|i| i.value),
            flavor,
            anti_entropy: anti_entropy.unwrap_or(Dur::from_ms(1000)),
            disk_limit,
            engine,
            quarantine,
            workload,
            steps,
            expect: Expect {
                converge_within: converge_within.unwrap_or(Dur::from_ms(60_000)),
                quiet: expect.quiet.map_or(Dur::from_ms(2_000), |q| q.value),
                quarantine_within: quarantine_within.unwrap_or(Dur::from_ms(10_000)),
                leak,
                criteria,
            },
            soak,
        })
    }

    /// `expect.leak`, each limit range-checked, defaults for the rest.
    fn leak_limits(&self, raw: Option<&super::raw::RawLeak>) -> Result<LeakLimits, PlanError> {
        let d = LeakLimits::default();
        let Some(raw) = raw else { return Ok(d) };
        let rate = |v: &Option<Spanned<f64>>, key: &str, default: f64| match v {
            Some(v) if !(v.value >= 0.0 && v.value <= 1e6) => self.err(
                &v.referenced,
                format!("`{key}` is {}; allowed: a number from 0 to 1000000", v.value),
            ),
            Some(v) => Ok(v.value),
            None => Ok(default),
        };
        let min_span = match &raw.min_span {
            Some(m) if m.value.0.is_zero() => {
                return self.err(&m.referenced, "`min_span` is 0; allowed: more than 0, at most 24h");
            }
            Some(m) => m.value,
            None => d.min_span,
        };
        Ok(LeakLimits {
            warmup: raw.warmup.as_ref().map_or(d.warmup, |w| w.value),
            min_span,
            memory_pct_per_hour: rate(&raw.memory_pct_per_hour, "memory_pct_per_hour", d.memory_pct_per_hour)?,
            tasks_per_hour: rate(&raw.tasks_per_hour, "tasks_per_hour", d.tasks_per_hour)?,
        })
    }

    /// `expect.criteria`, each threshold range-checked; unset ones stay unset (not judged).
    fn criteria(&self, raw: Option<&RawCriteria>) -> Result<Criteria, PlanError> {
        let Some(raw) = raw else {
            return Ok(Criteria::default());
        };
        let time = |v: &Option<Spanned<Dur>>, key: &str| match v {
            Some(d) if d.value.0.is_zero() => self.err(
                &d.referenced,
                format!("`criteria.{key}` is 0; allowed: more than 0, at most 24h"),
            ),
            _ => Ok(v.as_ref().map(|d| d.value)),
        };
        // A conflict rate may be held to 0; a ratio, a time or a CPU share of 0 cannot be met.
        let number = |v: &Option<Spanned<f64>>, key: &str, max: f64, allowed: &str| match v {
            Some(n) if !((n.value > 0.0 || (n.value == 0.0 && key == "conflict_pct")) && n.value <= max) => self.err(
                &n.referenced,
                format!("`criteria.{key}` is {}; allowed: {allowed}", shown(n.value)),
            ),
            _ => Ok(v.as_ref().map(|n| n.value)),
        };
        let memory = match &raw.memory {
            Some(m) if m.value.0 == 0 => {
                return self.err(
                    &m.referenced,
                    "`criteria.memory` is 0 bytes; allowed: a size more than 0, at most 4GiB (the seed's 100MB)",
                );
            }
            m => m.as_ref().map(|m| m.value.0),
        };
        Ok(Criteria {
            recovery: time(&raw.recovery, "recovery")?,
            propagation_p50: time(&raw.propagation_p50, "propagation_p50")?,
            propagation_p95: time(&raw.propagation_p95, "propagation_p95")?,
            propagation_p99: time(&raw.propagation_p99, "propagation_p99")?,
            bytes_ratio: number(
                &raw.bytes_ratio,
                "bytes_ratio",
                1e6,
                "a multiple of the minimum, more than 0, at most 1000000 (the seed's 1.5)",
            )?,
            messages_ratio: number(
                &raw.messages_ratio,
                "messages_ratio",
                1e6,
                "a multiple of the minimum, more than 0, at most 1000000",
            )?,
            conflict_pct: number(
                &raw.conflict_pct,
                "conflict_pct",
                100.0,
                "a percentage of writes, from 0 to 100 (the seed's 0.1)",
            )?,
            cpu_pct: number(
                &raw.cpu_pct,
                "cpu_pct",
                100_000.0,
                "a percentage of one core, more than 0, at most 100000 (the seed's 10)",
            )?,
            memory,
            flood_slowdown: number(
                &raw.flood_slowdown,
                "flood_slowdown",
                1e6,
                "a multiple of the calm p99, more than 0, at most 1000000 (issue 14: 2)",
            )?,
        })
    }

    /// Adds what one entry makes to a schedule count, refusing the entry that takes it past the limit:
    /// counted on the resolved plan, before the generator makes anything.
    fn count(
        &self,
        at: &serde_saphyr::Location,
        total: &mut u64,
        more: u64,
        (limit, name): (u64, &str),
        what: &str,
    ) -> Result<(), PlanError> {
        *total = total.saturating_add(more);
        if *total > limit {
            return self.err(
                at,
                format!(
                    "with this entry the plan makes {total} {what}; allowed: at most {limit} in a plan ({name}, docs/PLANS.md#limits)"
                ),
            );
        }
        Ok(())
    }

    /// Every time in a plan lies within [`MAX_RUN`] of the start.
    fn within_run(&self, at: &serde_saphyr::Location, what: &str, end: std::time::Duration) -> Result<(), PlanError> {
        if end > MAX_RUN {
            return self.err(
                at,
                format!(
                    "{what} ends at {}, past the end of the longest run; allowed: every entry and step within {} of the start",
                    humantime::format_duration(std::time::Duration::from_secs(end.as_secs())),
                    humantime::format_duration(MAX_RUN)
                ),
            );
        }
        Ok(())
    }

    fn topology(&self, t: &Spanned<RawTopology>, peers: &[String], seed: u64) -> Result<Topology, PlanError> {
        // Errors about the graph as a whole point at the plan's `topology`, or into the topology file.
        let (spec, whole) = match &t.value {
            RawTopology::Inline(spec) => (self.topology_spec(spec, &t.referenced, peers)?, None),
            RawTopology::Named(name) => match builtin_shape(name) {
                Some(shape) => (shape, None),
                None => {
                    let known = is_name(name, false);
                    let file = self.topologies_dir.join(format!("{name}.yaml"));
                    if !known || !file.is_file() {
                        return self.err(
                            &t.referenced,
                            format!(
                                "unknown topology `{}`; allowed: {} or a file in {}",
                                shorten(name),
                                topology::SHAPE_NAMES,
                                self.topologies_dir.display()
                            ),
                        );
                    }
                    let text = read_yaml(&file, "topology")?;
                    let spec: RawTopologySpec = from_yaml(&text, &file, "topology")?;
                    let nested = Resolver {
                        file: &file,
                        topologies_dir: self.topologies_dir,
                    };
                    // Errors about the file as a whole (no key to point at) go to its start.
                    let start = serde_saphyr::Location::UNKNOWN;
                    (nested.topology_spec(&spec, &start, peers)?, Some(file))
                }
            },
        };
        let whole_err = |message: String| match &whole {
            Some(file) => Err(PlanError {
                file: file.clone(),
                line: 1,
                column: 1,
                message,
            }),
            None => self.err(&t.referenced, message),
        };
        let topo = match Topology::build(&spec, peers.len(), seed) {
            Ok(topo) => topo,
            Err(e) => return whole_err(format!("{e}; allowed: a topology that fits {} peers", peers.len())),
        };
        let apart = topo.unreachable();
        if !apart.is_empty() {
            let names: Vec<&str> = apart.iter().take(8).map(|p| peers[*p].as_str()).collect();
            let more = if apart.len() > 8 { ", …" } else { "" };
            return whole_err(format!(
                "the topology is not connected: p1 cannot reach {}{more} (of {} peers), so some writes could never reach every peer; allowed: a connected graph over all peers",
                names.join(", "),
                peers.len()
            ));
        }
        Ok(topo)
    }

    fn topology_spec(
        &self,
        spec: &RawTopologySpec,
        at: &serde_saphyr::Location,
        peers: &[String],
    ) -> Result<topology::Shape, PlanError> {
        let n = peers.len();
        if let Some(edges) = &spec.edges {
            let mut list = Vec::new();
            for e in edges {
                let (a, b) = &e.value;
                let (a, b) = (
                    self.peer_index(a, &e.referenced, peers)?,
                    self.peer_index(b, &e.referenced, peers)?,
                );
                if a == b {
                    return self.err(
                        &e.referenced,
                        format!(
                            "edge [{}, {}] joins a peer to itself; allowed: two different peers",
                            peers[a], peers[b]
                        ),
                    );
                }
                list.push((a, b));
            }
            return Ok(topology::Shape::Edges { edges: list });
        }
        let kind = spec.kind.as_ref().map_or("full-mesh", |k| k.value.as_str());
        let kind_at = spec.kind.as_ref().map_or(at, |k| &k.referenced);
        match (kind, builtin_shape(kind)) {
            ("tree", _) => {
                let fanout = spec.fanout.as_ref().map_or(2, |f| f.value);
                if let Some(f) = &spec.fanout
                    && !(1..=n.max(1)).contains(&f.value)
                {
                    return self.err(
                        &f.referenced,
                        format!(
                            "`fanout` is {}; allowed: a whole number from 1 to {n} (the peer count)",
                            f.value
                        ),
                    );
                }
                Ok(topology::Shape::Tree { fanout })
            }
            ("random", _) => {
                let degree = spec.degree.as_ref().map_or(3, |d| d.value);
                let d_at = spec.degree.as_ref().map_or(kind_at, |d| &d.referenced);
                let most = n.saturating_sub(1).min(topology::MAX_RANDOM_DEGREE);
                if degree == 0 || degree > most || !(n * degree).is_multiple_of(2) {
                    return self.err(
                        d_at,
                        format!(
                            "`degree` is {degree} for {n} peers; allowed: a whole number from 1 to {most} (the peer count minus one, at most {}), with peers x degree even",
                            topology::MAX_RANDOM_DEGREE
                        ),
                    );
                }
                Ok(topology::Shape::Random { degree })
            }
            (_, Some(shape)) => Ok(shape),
            (other, None) => self.err(
                kind_at,
                format!(
                    "unknown topology kind `{}`; allowed: {}",
                    shorten(other),
                    topology::SHAPE_NAMES
                ),
            ),
        }
    }

    fn peer_index(&self, name: &str, at: &serde_saphyr::Location, peers: &[String]) -> Result<usize, PlanError> {
        peers.iter().position(|p| p == name).map_or_else(
            || {
                self.err(
                    at,
                    format!(
                        "unknown peer `{}`; allowed: {}, all, one, minority, majority or {{random: k}}",
                        shorten(name),
                        peer_range(peers)
                    ),
                )
            },
            Ok,
        )
    }

    pub(super) fn targets(
        &self,
        t: &RawTargets,
        at: &serde_saphyr::Location,
        peers: &[String],
    ) -> Result<Selector, PlanError> {
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
                    return self.err(
                        at,
                        format!(
                            "an empty peer list selects nobody; allowed: a list of {}",
                            peer_range(peers)
                        ),
                    );
                }
                let mut picked = Vec::new();
                for n in names {
                    let i = self.peer_index(n, at, peers)?;
                    if picked.contains(&i) {
                        return self.err(at, format!("peer `{n}` is listed twice; allowed: each peer once"));
                    }
                    picked.push(i);
                }
                Ok(Selector::Peers(picked))
            }
            RawTargets::Random { random } => {
                if *random == 0 || *random > peers.len() {
                    return self.err(
                        at,
                        format!(
                            "`random` is {random}; allowed: a whole number of peers from 1 to {}",
                            peers.len()
                        ),
                    );
                }
                Ok(Selector::Random(*random))
            }
        }
    }

    fn write(&self, w: &Spanned<RawWrite>, peers: &[String]) -> Result<WorkloadStep, PlanError> {
        let at = &w.referenced;
        let raw = &w.value;
        let selected = self.targets(&raw.peer.value, &raw.peer.referenced, peers)?;
        let size = self.write_size(raw.size.as_ref())?;
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
            let (rate, files) = self.rate_and_files(&r.rate, r.files.as_ref(), 20, at)?;
            let mix = self.mix(r.mix, at)?;
            chosen.push(WorkloadKind::Random {
                duration: r.duration,
                rate,
                files,
                size,
                mix,
            });
        }
        const OPS: &str = "create, modify, delete, touch, chmod, random";
        match chosen.len() {
            1 => Ok(WorkloadStep {
                at: raw.at,
                peers: selected,
                kind: chosen.remove(0),
            }),
            0 => self.err(
                at,
                format!("a workload entry needs one of: {OPS}; allowed: exactly one of {OPS}"),
            ),
            _ => self.err(
                at,
                format!("a workload entry takes exactly one operation; allowed: exactly one of {OPS}"),
            ),
        }
    }

    /// A write's size (default 1 KiB), at most [`MAX_WRITE_SIZE`].
    pub(super) fn write_size(&self, size: Option<&Spanned<SizeRange>>) -> Result<SizeRange, PlanError> {
        match size {
            None => Ok(SizeRange { min: 1024, max: 1024 }),
            Some(s) if s.value.max > MAX_WRITE_SIZE => self.err(
                &s.referenced,
                format!(
                    "`size` is up to {} bytes; allowed: at most 1GiB ({MAX_WRITE_SIZE} bytes) per write",
                    s.value.max
                ),
            ),
            Some(s) => Ok(s.value),
        }
    }

    /// A random workload's `rate` (ops/s, at most [`MAX_RATE`]) and pool of `files` (`default` when
    /// not given); a missing `files` is reported at `at`.
    pub(super) fn rate_and_files(
        &self,
        rate: &Spanned<f64>,
        files: Option<&Spanned<u32>>,
        default: u32,
        at: &serde_saphyr::Location,
    ) -> Result<(f64, u32), PlanError> {
        let r = rate.value;
        if !(r > 0.0 && r <= MAX_RATE) {
            return self.err(
                &rate.referenced,
                format!("`rate` is {r}; allowed: more than 0, at most {MAX_RATE} operations per second"),
            );
        }
        let n = files.map_or(default, |f| f.value);
        if !(1..=MAX_FILES).contains(&n) {
            return self.err(
                files.map_or(at, |f| &f.referenced),
                format!("`files` is {n}; allowed: a whole number from 1 to {MAX_FILES}"),
            );
        }
        Ok((r, n))
    }

    /// A random workload's mix of operations (default create 50, modify 40, delete 10): weights that
    /// add up to 1 to `u32::MAX`, so one draw picks among them.
    pub(super) fn mix(&self, mix: Option<Mix>, at: &serde_saphyr::Location) -> Result<Mix, PlanError> {
        let mix = mix.unwrap_or(Mix {
            create: 50,
            modify: 40,
            delete: 10,
            touch: 0,
            chmod: 0,
        });
        let weights = [mix.create, mix.modify, mix.delete, mix.touch, mix.chmod];
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        if total == 0 || total > u64::from(u32::MAX) {
            return self.err(
                at,
                format!(
                    "`mix` weights add up to {total}; allowed: a total from 1 to {}, e.g. {{create: 50, modify: 40, delete: 10}}",
                    u32::MAX
                ),
            );
        }
        Ok(mix)
    }

    pub(super) fn step(&self, index: usize, s: &Spanned<RawStep>, peers: &[String]) -> Result<FaultStep, PlanError> {
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
                        "a lock fault takes one action; allowed: exactly one of `stale: <path>`, `unwritable: true`",
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
                        "a disk fault takes one action; allowed: exactly one of `corrupt: <path>|true`, `truncate: <path>|true`, `fill: true`",
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
        let every = raw.every.as_ref().map(|e| e.value);
        if let Fault::Clock(ClockSpec {
            change: ClockChange::Strobe(..),
            ..
        }) = &fault
            && every.is_none()
        {
            return self.err(
                at,
                "a clock strobe needs `every` (how often the clock flips); allowed: a strobe with `every` and `duration`",
            );
        }
        if let Some(e) = &raw.every {
            if !matches!(fault, Fault::Partition(_) | Fault::Clock(_) | Fault::Link(_)) {
                return self.err(
                    &e.referenced,
                    format!(
                        "`every` (flapping) does not apply to a {} fault; allowed: `every` with partition, link and clock faults",
                        fault.kind()
                    ),
                );
            }
            let Some(duration) = raw.duration else {
                return self.err(
                    at,
                    "`every` needs a `duration` (the window in which the fault flaps or rolls); allowed: `every` with `duration`",
                );
            };
            if e.value.0 < MIN_EVERY || e.value > duration {
                return self.err(
                    &e.referenced,
                    format!(
                        "`every` is {}; allowed: from {} to the step's `duration` ({duration})",
                        e.value,
                        humantime::format_duration(MIN_EVERY)
                    ),
                );
            }
        }
        if let (
            Fault::Partition(PartitionSpec {
                shape: PartitionShape::Rolling,
                ..
            }),
            None,
        ) = (&fault, every)
        {
            return self.err(
                at,
                "a rolling partition needs `every` (how often the isolated peer moves on); allowed: `every` with `duration`",
            );
        }
        if let Some(d) = raw.duration
            && d.0.is_zero()
        {
            return self.err(
                at,
                "`duration` is 0; allowed: more than 0, or no `duration` (until the final heal)",
            );
        }
        let name = match &raw.name {
            Some(n) if is_name(n.value.trim(), true) => n.value.trim().to_string(),
            Some(n) => {
                return self.err(
                    &n.referenced,
                    format!(
                        "step `name` is `{}`; allowed: letters, digits, `-`, `_`, `.`, at most {MAX_NAME_LEN} characters",
                        shorten(&n.value)
                    ),
                );
            }
            None => format!("step-{}", index + 1),
        };
        let at_line = match &raw.name {
            Some(n) => (n.referenced.line(), n.referenced.column()),
            None => (at.line(), at.column()),
        };
        Ok(FaultStep {
            name,
            at: raw.at,
            duration: raw.duration,
            every,
            fault,
            at_line,
        })
    }

    fn partition(&self, p: &Spanned<RawPartition>, peers: &[String]) -> Result<PartitionSpec, PlanError> {
        let at = &p.referenced;
        let raw = &p.value;
        let shape = match (&raw.groups, raw.shape.as_deref()) {
            (Some(_), Some(_)) => {
                return self.err(at, "a partition with both `groups` and `shape`; allowed: one of them");
            }
            (Some(groups), None) => {
                let mut out = Vec::new();
                for g in groups {
                    if g.is_empty() {
                        return self.err(at, "a group in `groups` is empty; allowed: groups of at least one peer");
                    }
                    out.push(
                        g.iter()
                            .map(|n| self.peer_index(n, at, peers))
                            .collect::<Result<Vec<_>, _>>()?,
                    );
                }
                if out.len() < 2 {
                    return self.err(
                        at,
                        "`groups` has fewer than two groups; allowed: at least two groups, e.g. [[p1], [p2, p3]]",
                    );
                }
                PartitionShape::Groups(out)
            }
            (None, None) => {
                return self.err(
                    at,
                    format!("a partition needs `groups` or `shape`; allowed: shapes {PARTITION_SHAPES}"),
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
                        return self.err(
                            at,
                            "a one-way partition needs `from` and `to` peers; allowed: {shape: one-way, from: <peers>, to: <peers>}",
                        );
                    };
                    PartitionShape::OneWay {
                        from: self.targets(from, at, peers)?,
                        to: self.targets(to, at, peers)?,
                    }
                }
                other => {
                    return self.err(
                        at,
                        format!(
                            "unknown partition shape `{}`; allowed: {PARTITION_SHAPES}",
                            shorten(other)
                        ),
                    );
                }
            },
        };
        if peers.len() < 2 {
            return self.err(
                at,
                "a partition in a plan of one peer; allowed: partitions with at least two peers",
            );
        }
        let shape_name = raw.shape.as_deref().unwrap_or("groups");
        for (key, given, takes) in [
            ("peers", raw.peers.is_some(), "isolate"),
            ("from", raw.from.is_some(), "one-way"),
            ("to", raw.to.is_some(), "one-way"),
        ] {
            if given && shape_name != takes {
                return self.err(
                    at,
                    format!(
                        "`{key}` does nothing in a `{shape_name}` partition; allowed: `{key}` with `shape: {takes}`"
                    ),
                );
            }
        }
        if let PartitionShape::OneWay {
            from: Selector::Peers(from),
            to: Selector::Peers(to),
        } = &shape
            && let Some(p) = from.iter().find(|p| to.contains(p))
        {
            return self.err(
                at,
                format!(
                    "peer `{}` is in both `from` and `to`; allowed: `to` peers other than the `from` peers",
                    peers[*p]
                ),
            );
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
                self.err(at, format!("`{name}` is `{}`; allowed: {}", shorten(v), set.join(", ")))
            }
            _ => Ok(()),
        };
        allowed("direction", &p.direction, &["egress", "ingress", "both"])?;
        allowed("distribution", &p.distribution, &["uniform", "normal", "pareto"])?;
        allowed("engine", &p.engine, &["auto", "netem", "userspace"])?;
        allowed("mitm", &p.mitm, MITM_MODES)?;
        if p.mitm.is_some() {
            let packet = [
                ("direction", p.direction.is_some()),
                ("delay", p.delay.is_some()),
                ("jitter", p.jitter.is_some()),
                ("distribution", p.distribution.is_some()),
                ("loss", p.loss.is_some()),
                ("loss_correlation", p.loss_correlation.is_some()),
                ("corrupt", p.corrupt.is_some()),
                ("duplicate", p.duplicate.is_some()),
                ("reorder", p.reorder.is_some()),
                ("reorder_delay", p.reorder_delay.is_some()),
                ("rate", p.rate.is_some()),
                ("engine", p.engine.is_some()),
            ];
            if let Some((name, _)) = packet.iter().find(|(_, set)| *set) {
                return self.err(
                    at,
                    format!(
                        "`mitm` with `{name}`: a man in the middle works on streams, both ways, not on packets; \
                         allowed: `mitm` alone with `peers` and `to` (put packet faults in their own step)"
                    ),
                );
            }
            return Ok(LinkSpec {
                peers: sel(&raw.peers)?,
                to: sel(&raw.to)?,
                params: p.clone(),
            });
        }
        if let Some(r) = &p.rate {
            parse_rate_kbit(r).or_else(|e| self.err(at, e))?;
        }
        for (name, d) in [
            ("delay", p.delay),
            ("jitter", p.jitter),
            ("reorder_delay", p.reorder_delay),
        ] {
            if let Some(d) = d
                && d.0 > MAX_LINK_DELAY
            {
                return self.err(
                    at,
                    format!(
                        "`{name}` is {d}; allowed: at most {} (a longer hold is a partition)",
                        humantime::format_duration(MAX_LINK_DELAY)
                    ),
                );
            }
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
                "a link fault without a fault; allowed: at least one of delay, loss, corrupt, duplicate, reorder, rate, or `mitm`",
            );
        }
        if p.jitter.is_some() && p.delay.is_none() {
            return self.err(
                at,
                "`jitter` needs a `delay` to spread around; allowed: `jitter` with `delay`",
            );
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
                return self.err(
                    at,
                    format!("unknown byzantine behaviour `{}`; allowed: {allowed}", shorten(n)),
                );
            }
            if behaviours.contains(n) {
                return self.err(
                    at,
                    format!("byzantine behaviour `{n}` is given twice; allowed: each behaviour once"),
                );
            }
            behaviours.push(n.clone());
        }
        let (paths, to) = (&b.value.paths, &b.value.to);
        if let Some(i) = behaviours.iter().position(|n| n == "drop") {
            behaviours[i] = self.drop_line(b, peers)?;
        } else if let Some(extra) = paths.as_ref().or(to.as_ref()) {
            return self.err(
                &extra.referenced,
                "`paths` and `to` go with behaviour `drop` only; allowed: behaviour drop, or no `paths`/`to`",
            );
        }
        Ok(ByzantineSpec {
            peers: self.targets(&b.value.peers, &b.referenced, peers)?,
            behaviours,
        })
    }

    /// The control-file line of a `drop` step: its `paths` (globs) and `to` (peer names), checked.
    fn drop_line(&self, b: &Spanned<RawByzantine>, peers: &[String]) -> Result<String, PlanError> {
        // One word or a list of words; `{random: k}` means nothing here.
        let words = |t: &Spanned<RawTargets>, what: &str| match &t.value {
            RawTargets::Word(w) => Ok(vec![w.clone()]),
            RawTargets::List(l) if !l.is_empty() => Ok(l.clone()),
            _ => self.err(
                &t.referenced,
                format!("`{what}` is empty or random; allowed: one {what} or a list of them"),
            ),
        };
        let mut globs = Vec::new();
        if let Some(p) = &b.value.paths {
            for g in words(p, "glob")? {
                if let Err(e) = targeted::check_glob(&g) {
                    return self.err(
                        &p.referenced,
                        format!("`paths`: {e}; allowed: {}", targeted::GLOB_ALLOWED),
                    );
                }
                globs.push(g);
            }
        }
        let mut to = Vec::new();
        if let Some(t) = &b.value.to {
            for n in words(t, "peer name")? {
                let i = self.peer_index(&n, &t.referenced, peers)?;
                if to.contains(&peers[i]) {
                    return self.err(
                        &t.referenced,
                        format!("peer `{n}` is listed twice; allowed: each peer once"),
                    );
                }
                to.push(peers[i].clone());
            }
        }
        if globs.is_empty() && to.is_empty() {
            return self.err(
                &b.value.behaviour.referenced,
                "behaviour `drop` needs `paths`, `to` or both; allowed: e.g. {behaviour: drop, paths: \"secret/**\", to: [p2]} (to drop everything for everyone, use withhold)",
            );
        }
        Ok(targeted::control_line(&globs, &to))
    }

    fn clock(&self, c: &Spanned<RawClock>, peers: &[String], flapping: bool) -> Result<ClockSpec, PlanError> {
        let at = &c.referenced;
        let raw = &c.value;
        let offset = |key: &str, s: &str| parse_signed_ms(s).or_else(|e| self.err(at, format!("`{key}`: {e}")));
        let change = match (&raw.offset, &raw.strobe, raw.rate) {
            (Some(o), None, None) => ClockChange::Offset(offset("offset", o)?),
            (None, Some((a, b)), None) => ClockChange::Strobe(offset("strobe", a)?, offset("strobe", b)?),
            (None, None, Some(r)) if r > 0.0 && r <= MAX_CLOCK_RATE => ClockChange::Rate(r),
            (None, None, Some(r)) => {
                return self.err(
                    at,
                    format!("clock `rate` is {r}; allowed: a speed factor more than 0, at most {MAX_CLOCK_RATE}"),
                );
            }
            _ => {
                return self.err(
                    at,
                    "a clock fault takes one change; allowed: exactly one of `offset: +1h`, `strobe: [+0s, +1h]`, `rate: 2`",
                );
            }
        };
        if flapping && !matches!(change, ClockChange::Strobe(..)) {
            return self.err(
                at,
                "`every` with a clock fault is a strobe; allowed: `strobe: [<offset>, <offset>]` with `every`",
            );
        }
        Ok(ClockSpec {
            peers: self.targets(&raw.peers, at, peers)?,
            change,
        })
    }
}

/// `+1h`, `-30m`, `+90s`, `-2d`: a signed offset in milliseconds (a bare duration is positive), at
/// most [`MAX_CLOCK_OFFSET`] either way.
pub fn parse_signed_ms(text: &str) -> Result<i64, String> {
    let t = text.trim();
    const ALLOWED: &str = "a signed offset such as +1h, -30m, +90s, -2d, at most 3650d either way";
    let (sign, rest) = match t.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    let d = units::parse_duration(rest).map_err(|e| {
        let what = if e.contains("too long") {
            "is too large"
        } else {
            "is not a clock offset"
        };
        format!("`{}` {what}; allowed: {ALLOWED}", shorten(t))
    })?;
    if d > MAX_CLOCK_OFFSET {
        return Err(format!(
            "clock offset `{}` is too large; allowed: {ALLOWED}",
            shorten(t)
        ));
    }
    // Within ten years: the milliseconds fit an i64 many times over.
    let ms = i64::try_from(d.as_millis())
        .map_err(|_| format!("clock offset `{}` is too large; allowed: {ALLOWED}", shorten(t)))?;
    Ok(sign * ms)
}

/// `500kbit`, `2mbit`, `1gbit`, or a bare number of kbit/s: 1 kbit/s to [`MAX_LINK_KBIT`].
pub fn parse_rate_kbit(text: &str) -> Result<u64, String> {
    const ALLOWED: &str = "a bandwidth from 1kbit to 100gbit, e.g. 500kbit, 2mbit, 1gbit";
    let t = text.trim().to_ascii_lowercase();
    let bad = || format!("`rate` `{}` is not a bandwidth; allowed: {ALLOWED}", shorten(text));
    let idx = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let v: f64 = t[..idx].parse().map_err(|_| bad())?;
    let scale = match t[idx..].trim() {
        "" | "kbit" => 1.0,
        "mbit" => 1000.0,
        "gbit" => 1_000_000.0,
        _ => return Err(bad()),
    };
    let kbit = (v * scale).round();
    if !(kbit.is_finite() && kbit >= 1.0 && kbit <= MAX_LINK_KBIT as f64) {
        return Err(format!(
            "`rate` `{}` is out of range (a partition cuts a link, a rate slows it); allowed: {ALLOWED}",
            shorten(text)
        ));
    }
    // In range: a whole number from 1 to 10^8.
    Ok(kbit as u64)
}

/// A plan or step name: it names the run folder or the step's faults in the journal.
pub(super) fn is_name(name: &str, dots: bool) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || (dots && c == '.'))
}

/// A value as quoted in a message: at most 60 characters of it.
pub(super) fn shorten(v: &str) -> String {
    let mut s: String = v.chars().take(60).collect();
    if v.chars().count() > 60 {
        s.push('…');
    }
    s
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
        n => format!("p1 to p{n}"),
    }
}
