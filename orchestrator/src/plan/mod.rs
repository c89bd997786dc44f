//! Chaos plans: the YAML a user writes, parsed with locations and validated into a [`Plan`].
//!
//! Two stages (ripgrep's habit): the `Raw*` types mirror the YAML exactly (unknown keys rejected, every
//! name spanned), and [`Plan`] is the resolved, validated data the generator consumes: peer names are
//! indexes, topologies are graphs, selectors are checked. Every error is one line naming
//! `file:line:column`, what is wrong and what is allowed.
//!
//! ```yaml
//! name: smoke
//! seed: 42
//! peers: 3
//! topology: full-mesh
//! workload:
//!   - {at: 1s, peer: p1, create: notes/a.txt, size: 4KiB}
//! steps:
//!   - at: 3s
//!     duration: 5s
//!     partition: {groups: [[p1], [p2, p3]]}
//! expect:
//!   converge_within: 30s
//! ```

pub mod units;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::partition::CutMode;
use crate::topology::{self, Topology};
pub use units::{Dur, Size, SizeRange};

/// A plan error: where in which file, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for PlanError {}

/// The most peers one plan may start (the design's target is 100 on one machine).
pub const MAX_PEERS: usize = 200;

/// A validated plan. Defaults: seed 1, topology full-mesh, image `syftchaos/peer:latest`, flavor
/// `default`, `expect.converge_within` 60s, `expect.quiet` 2s, anti-entropy 1s.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub name: String,
    pub description: String,
    pub source: PathBuf,
    pub seed: u64,
    pub peers: Vec<String>,
    pub topology: Topology,
    pub image: String,
    pub flavor: String,
    pub anti_entropy: Dur,
    pub workload: Vec<WorkloadStep>,
    pub steps: Vec<FaultStep>,
    pub expect: Expect,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Expect {
    /// After the final heal, every peer must hold the same tree within this long.
    pub converge_within: Dur,
    /// Trees must stay identical (and counters flat) for this long to count as settled.
    pub quiet: Dur,
}

/// Which peers a step acts on; seeded selectors are drawn by the generator.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selector {
    All,
    Peers(Vec<usize>),
    One,
    Minority,
    Majority,
    Random(usize),
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct WorkloadStep {
    pub at: Dur,
    pub peers: Selector,
    pub kind: WorkloadKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileOpKind {
    Create,
    Modify,
    Delete,
}

#[derive(Clone, Debug, serde::Serialize)]
pub enum WorkloadKind {
    /// One operation on one path (on each selected peer, at the same instant: a concurrent write).
    Single {
        op: FileOpKind,
        path: String,
        size: SizeRange,
    },
    /// A stream of random operations over a pool of `files` paths.
    Random {
        duration: Dur,
        rate: f64,
        files: u32,
        size: SizeRange,
        mix: Mix,
    },
}

#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    #[serde(default)]
    pub create: u32,
    #[serde(default)]
    pub modify: u32,
    #[serde(default)]
    pub delete: u32,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FaultStep {
    /// `step-<n>` unless the plan names it.
    pub name: String,
    pub at: Dur,
    /// How long the fault lasts; `None` means until the final heal.
    pub duration: Option<Dur>,
    /// Flapping: the fault is on for `every / 2`, off for the rest, repeated within `duration`.
    /// For rolling partitions: how often the isolated peer moves on.
    pub every: Option<Dur>,
    pub fault: Fault,
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    Partition(PartitionSpec),
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition(_) => "partition",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PartitionSpec {
    pub shape: PartitionShape,
    pub mode: CutMode,
    pub port: Option<u16>,
}

/// A partition shape with its selectors still to be drawn (see [`crate::partition::Shape`]).
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionShape {
    Groups(Vec<Vec<usize>>),
    Halves,
    Isolate(Selector),
    Islands,
    Bridge,
    MajoritiesRing,
    OneWay {
        from: Selector,
        to: Selector,
    },
    /// Isolate one peer at a time, moving to the next every `every`.
    Rolling,
}

pub const PARTITION_SHAPES: &str = "halves, isolate, islands, bridge, majorities-ring, one-way, rolling (or `groups`)";

// ---------------------------------------------------------------------------------------------------
// Raw YAML mirror.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    seed: Option<u64>,
    peers: Spanned<i64>,
    #[serde(default)]
    topology: Option<Spanned<RawTopology>>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    flavor: Option<Spanned<String>>,
    #[serde(default)]
    anti_entropy: Option<Dur>,
    #[serde(default)]
    workload: Vec<Spanned<RawWrite>>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
    #[serde(default)]
    expect: Option<RawExpect>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    converge_within: Option<Dur>,
    #[serde(default)]
    quiet: Option<Dur>,
}

/// `topology: ring` (a built-in shape or a file `topologies/<name>.yaml`) or an inline map.
enum RawTopology {
    Named(String),
    Inline(RawTopologySpec),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopologySpec {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    fanout: Option<usize>,
    #[serde(default)]
    degree: Option<usize>,
    #[serde(default)]
    edges: Option<Vec<(String, String)>>,
    /// Free text for people reading the file; accepted and ignored.
    #[serde(default, rename = "description")]
    _description: Option<String>,
}

/// `peer: p1`, `peer: [p1, p2]`, `peer: all|one|minority|majority`, `peer: {random: 2}`.
enum RawTargets {
    Word(String),
    List(Vec<String>),
    Random { random: usize },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRandomPick {
    random: usize,
}

// Hand-written instead of `#[serde(untagged)]`: untagged enums replace every inner error (an unknown
// key, a bad number) with "data did not match any variant", losing what the user needs to know.
impl<'de> Deserialize<'de> for RawTopology {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawTopology;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a topology name (full-mesh, ring, line, star, tree, random, or a file in topologies/) or a map with `kind` or `edges`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawTopology, E> {
                Ok(RawTopology::Named(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawTopology, A::Error> {
                RawTopologySpec::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(RawTopology::Inline)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawTargets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawTargets;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a peer name, a list of peer names, all, one, minority, majority, or {random: k}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawTargets, E> {
                Ok(RawTargets::Word(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawTargets, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                Ok(RawTargets::List(names))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawTargets, A::Error> {
                let pick = RawRandomPick::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawTargets::Random { random: pick.random })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWrite {
    at: Dur,
    peer: Spanned<RawTargets>,
    #[serde(default)]
    create: Option<String>,
    #[serde(default)]
    modify: Option<String>,
    #[serde(default)]
    delete: Option<String>,
    #[serde(default)]
    random: Option<RawRandom>,
    #[serde(default)]
    size: Option<SizeRange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRandom {
    duration: Dur,
    rate: f64,
    #[serde(default)]
    files: Option<u32>,
    #[serde(default)]
    mix: Option<Mix>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    name: Option<String>,
    at: Dur,
    #[serde(default)]
    duration: Option<Dur>,
    #[serde(default)]
    every: Option<Dur>,
    #[serde(default)]
    partition: Option<Spanned<RawPartition>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartition {
    #[serde(default)]
    shape: Option<String>,
    #[serde(default)]
    groups: Option<Vec<Vec<String>>>,
    #[serde(default)]
    peers: Option<RawTargets>,
    #[serde(default)]
    from: Option<RawTargets>,
    #[serde(default)]
    to: Option<RawTargets>,
    #[serde(default)]
    mode: Option<CutMode>,
    #[serde(default)]
    port: Option<u16>,
}

// ---------------------------------------------------------------------------------------------------
// Loading and validation.

/// Reads and validates a plan file. `topologies_dir` is where named topology files live.
pub fn load(path: &Path, topologies_dir: &Path) -> Result<Plan, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|e| PlanError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the plan: {e}"),
    })?;
    parse(&text, path, topologies_dir)
}

/// Parses plan text; `path` is used for messages and to find the plan's folder.
pub fn parse(text: &str, path: &Path, topologies_dir: &Path) -> Result<Plan, PlanError> {
    let raw: RawPlan = serde_saphyr::from_str(text).map_err(|e| yaml_error(path, &e))?;
    Resolver {
        file: path,
        topologies_dir,
    }
    .plan(raw)
}

fn yaml_error(file: &Path, e: &serde_saphyr::Error) -> PlanError {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    let text = e.without_snippet().to_string();
    // The crate appends its own "at line L, column C"; we print the location first, in one style.
    let message = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    PlanError {
        file: file.to_path_buf(),
        line,
        column,
        message: message.trim().to_string(),
    }
}

struct Resolver<'a> {
    file: &'a Path,
    topologies_dir: &'a Path,
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

    fn plan(&self, raw: RawPlan) -> Result<Plan, PlanError> {
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
        Ok(Plan {
            name,
            description: raw.description,
            source: self.file.to_path_buf(),
            seed,
            peers,
            topology,
            image: raw.image.unwrap_or_else(|| "syftchaos/peer:latest".into()),
            flavor,
            anti_entropy: raw.anti_entropy.unwrap_or(Dur::from_ms(1000)),
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
            });
            if mix.create + mix.modify + mix.delete == 0 {
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
            0 => self.err(at, "a workload entry needs one of: create, modify, delete, random"),
            _ => self.err(
                at,
                "a workload entry takes exactly one of: create, modify, delete, random",
            ),
        }
    }

    fn step(&self, index: usize, s: &Spanned<RawStep>, peers: &[String]) -> Result<FaultStep, PlanError> {
        let raw = &s.value;
        let at = &s.referenced;
        let fault = match &raw.partition {
            Some(p) => Fault::Partition(self.partition(p, peers)?),
            None => return self.err(at, "a step needs a fault; allowed: partition"),
        };
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
            port: raw.port,
        })
    }
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

/// Workload paths are relative, stay inside the sync folder, and avoid the daemon's own `.syncpeer*`.
fn check_path(path: &str) -> Result<String, String> {
    let p = Path::new(path);
    let bad = path.is_empty()
        || p.is_absolute()
        || p.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
        || p.components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with(".syncpeer"));
    if bad {
        return Err(format!(
            "path `{path}` must be relative, without `..`, and not start with `.syncpeer`"
        ));
    }
    Ok(path.to_string())
}

#[cfg(test)]
mod tests;
