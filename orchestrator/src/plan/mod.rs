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
    /// Each peer's data folder is a size-limited tmpfs of this many bytes (needed by `disk: {fill}`).
    pub disk_limit: Option<u64>,
    /// The packet-fault engine for `link` steps that do not name one: `auto`, `netem` or `userspace`.
    pub engine: String,
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
    /// Packet faults on links: delay, jitter, loss, corruption, duplication, reordering, bandwidth.
    Link(Box<LinkSpec>),
    Clock(ClockSpec),
    Process(ProcessSpec),
    Lock(LockSpec),
    Disk(DiskSpec),
}

/// The fault keys a step may carry (exactly one).
pub const FAULT_KINDS: &str = "partition, link, clock, kill, stop, pause, lock, disk";

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition(_) => "partition",
            Fault::Link(_) => "link",
            Fault::Clock(_) => "clock",
            Fault::Process(p) => p.action.as_str(),
            Fault::Lock(_) => "lock",
            Fault::Disk(_) => "disk",
        }
    }
}

/// Packet faults applied on `peers`, for traffic to (egress) or from (ingress) the `to` peers.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LinkSpec {
    pub peers: Selector,
    pub to: Selector,
    pub params: LinkParams,
}

/// What happens to packets on a faulty link; the fields map one to one onto `netfault`'s spec.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LinkParams {
    /// `egress` (default: packets the peer sends), `ingress`, or `both`.
    pub direction: Option<String>,
    pub delay: Option<Dur>,
    pub jitter: Option<Dur>,
    /// `uniform` (default), `normal` or `pareto`.
    pub distribution: Option<String>,
    /// Percentages, 0 to 100.
    pub loss: Option<f64>,
    pub loss_correlation: Option<f64>,
    pub corrupt: Option<f64>,
    pub duplicate: Option<f64>,
    pub reorder: Option<f64>,
    pub reorder_delay: Option<Dur>,
    /// Bandwidth: `500kbit`, `2mbit`, `1gbit`.
    pub rate: Option<String>,
    /// `auto` (default), `netem` or `userspace`.
    pub engine: Option<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClockSpec {
    pub peers: Selector,
    pub change: ClockChange,
}

/// Clock faults on one peer add up: the peer's offset is the sum of its active offsets.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockChange {
    /// A fixed offset in milliseconds (for `duration`, or until the final heal).
    Offset(i64),
    /// Flip between two offsets every `every / 2` within `duration`.
    Strobe(i64, i64),
    /// The clock runs this many times as fast as real time (libfaketime's `x` rate).
    Rate(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessAction {
    /// SIGKILL; started again when the fault ends.
    Kill,
    /// Graceful stop (SIGTERM, then SIGKILL after 10 s); started again when the fault ends.
    Stop,
    /// Frozen with the cgroup freezer; thawed when the fault ends.
    Pause,
}

impl ProcessAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessAction::Kill => "kill",
            ProcessAction::Stop => "stop",
            ProcessAction::Pause => "pause",
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProcessSpec {
    pub peers: Selector,
    pub action: ProcessAction,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LockSpec {
    pub peers: Selector,
    pub action: LockAction,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockAction {
    /// Leave a lock for this path as a crashed apply would (its holder is dead).
    Stale(String),
    /// Make the peer's lock folder unwritable while the fault lasts.
    Unwritable,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DiskSpec {
    pub peers: Selector,
    pub action: DiskAction,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskAction {
    /// Flip bits in the middle of this file (or a seeded pick of the peer's files), keeping its mtime.
    Corrupt(Option<String>),
    /// Cut this file (or a seeded pick) to half its size, keeping its mtime.
    Truncate(Option<String>),
    /// Fill the peer's (size-limited) data folder until writes fail with ENOSPC; freed when the fault ends.
    Fill,
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
    disk_limit: Option<Size>,
    #[serde(default)]
    engine: Option<Spanned<String>>,
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
    #[serde(default)]
    link: Option<Spanned<RawLink>>,
    #[serde(default)]
    clock: Option<Spanned<RawClock>>,
    #[serde(default)]
    kill: Option<Spanned<RawPeersOnly>>,
    #[serde(default)]
    stop: Option<Spanned<RawPeersOnly>>,
    #[serde(default)]
    pause: Option<Spanned<RawPeersOnly>>,
    #[serde(default)]
    lock: Option<Spanned<RawLock>>,
    #[serde(default)]
    disk: Option<Spanned<RawDisk>>,
}

// The link parameters are spelled out again here rather than `#[serde(flatten)]`ed: serde does not
// support `deny_unknown_fields` together with `flatten`, and unknown keys must be errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    #[serde(default)]
    peers: Option<RawTargets>,
    #[serde(default)]
    to: Option<RawTargets>,
    #[serde(default)]
    direction: Option<String>,
    #[serde(default)]
    delay: Option<Dur>,
    #[serde(default)]
    jitter: Option<Dur>,
    #[serde(default)]
    distribution: Option<String>,
    #[serde(default)]
    loss: Option<f64>,
    #[serde(default)]
    loss_correlation: Option<f64>,
    #[serde(default)]
    corrupt: Option<f64>,
    #[serde(default)]
    duplicate: Option<f64>,
    #[serde(default)]
    reorder: Option<f64>,
    #[serde(default)]
    reorder_delay: Option<Dur>,
    #[serde(default)]
    rate: Option<String>,
    #[serde(default)]
    engine: Option<String>,
}

impl RawLink {
    fn params(&self) -> LinkParams {
        LinkParams {
            direction: self.direction.clone(),
            delay: self.delay,
            jitter: self.jitter,
            distribution: self.distribution.clone(),
            loss: self.loss,
            loss_correlation: self.loss_correlation,
            corrupt: self.corrupt,
            duplicate: self.duplicate,
            reorder: self.reorder,
            reorder_delay: self.reorder_delay,
            rate: self.rate.clone(),
            engine: self.engine.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClock {
    peers: RawTargets,
    #[serde(default)]
    offset: Option<String>,
    #[serde(default)]
    strobe: Option<(String, String)>,
    #[serde(default)]
    rate: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeersOnly {
    peers: RawTargets,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    peers: RawTargets,
    #[serde(default)]
    stale: Option<String>,
    #[serde(default)]
    unwritable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    peers: RawTargets,
    /// A path, or `true` for a seeded pick among the peer's files.
    #[serde(default)]
    corrupt: Option<RawPathOrPick>,
    #[serde(default)]
    truncate: Option<RawPathOrPick>,
    #[serde(default)]
    fill: Option<bool>,
}

enum RawPathOrPick {
    Path(String),
    Pick,
}

impl<'de> Deserialize<'de> for RawPathOrPick {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawPathOrPick;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path in the sync folder, or `true` for a seeded pick")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawPathOrPick, E> {
                check_path(v).map(RawPathOrPick::Path).map_err(E::custom)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawPathOrPick, E> {
                if v {
                    Ok(RawPathOrPick::Pick)
                } else {
                    Err(E::custom("use `true` or a path"))
                }
            }
        }
        d.deserialize_any(V)
    }
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
            disk_limit,
            engine,
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
        let given = [
            raw.partition.is_some(),
            raw.link.is_some(),
            raw.clock.is_some(),
            raw.kill.is_some(),
            raw.stop.is_some(),
            raw.pause.is_some(),
            raw.lock.is_some(),
            raw.disk.is_some(),
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
