//! Chaos plans: the YAML a user writes, parsed with locations and validated into a [`Plan`].
//!
//! Two stages (ripgrep's habit): the `Raw*` types in `raw` mirror the YAML exactly (unknown keys
//! rejected, every name spanned), `resolve` turns them into a [`Plan`], the validated data the generator
//! consumes: peer names are indexes, topologies are graphs, selectors are checked. `units` parses
//! durations and sizes, `image` image references; `limits` holds every limit (and counts the schedule
//! a plan will make before it is made); `conflicts` checks across steps (unique names, one process
//! fault per peer at a time); `soak` the `soak:` section (a long run's workload and fault mix);
//! `explain` words the YAML library's errors. Every error is one line
//! `file:line:column: what is wrong; allowed: what is allowed`.
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

mod conflicts;
mod explain;
mod image;
pub mod limits;
pub mod units;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::partition::CutMode;
use crate::topology::Topology;
pub use units::{Dur, LongDur, Size, SizeRange};

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

/// A port in a plan: a number, or a name from the peer profile's `container.ports` (`sync`), so one
/// plan cuts the sync port of whichever daemon it runs; names are bound by [`crate::profile::check_plan`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum PortRef {
    Number(u16),
    Named(String),
}

// Hand-written: an untagged enum would answer "data did not match any variant" to `port: 99999`.
impl<'de> serde::Deserialize<'de> for PortRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const ALLOWED: &str = "a port number from 1 to 65535, or a port name of the peer profile (e.g. sync)";
        impl serde::de::Visitor<'_> for V {
            type Value = PortRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(ALLOWED)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortRef, E> {
                match u16::try_from(v) {
                    Ok(n) if n > 0 => Ok(PortRef::Number(n)),
                    _ => Err(E::custom(format!("port {v} is out of range; allowed: {ALLOWED}"))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortRef, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("port {v} is negative; allowed: {ALLOWED}"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortRef, E> {
                let ok = !v.is_empty()
                    && v.len() <= 64
                    && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if ok {
                    Ok(PortRef::Named(v.to_string()))
                } else {
                    Err(E::custom(format!("port `{v}` is not a port; allowed: {ALLOWED}")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl PortRef {
    /// The port number; `None` for a name not yet bound to a profile.
    pub fn number(&self) -> Option<u16> {
        match self {
            PortRef::Number(n) => Some(*n),
            PortRef::Named(_) => None,
        }
    }
}

pub use limits::MAX_PEERS;

/// A validated plan. Defaults: seed 1, topology full-mesh, peer profile `syncpeer`, flavor
/// `default`, `expect.converge_within` 60s, `expect.quiet` 2s, anti-entropy 1s.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub name: String,
    pub description: String,
    pub source: PathBuf,
    pub seed: u64,
    pub peers: Vec<String>,
    pub topology: Topology,
    /// The peer profile (the daemon under test): a name under `peer-image/profiles/` or a folder.
    pub peer: String,
    /// Where `peer` was written in the plan (line, column), for errors that the profile finds.
    pub peer_at: (u64, u64),
    /// The image, when the plan overrides its profile's.
    pub image: Option<String>,
    pub flavor: String,
    pub anti_entropy: Dur,
    /// Each peer's data folder is a size-limited tmpfs of this many bytes (needed by `disk: {fill}`).
    pub disk_limit: Option<u64>,
    /// The packet-fault engine for `link` steps that do not name one: `auto`, `netem` or `userspace`.
    pub engine: String,
    /// How long peers ignore a neighbour that sent bad data (the peers' `quarantine_ms`); `None`
    /// keeps the peer's own default. Byzantine plans shorten it so the liar is forgiven in time.
    pub quarantine: Option<Dur>,
    pub workload: Vec<WorkloadStep>,
    pub steps: Vec<FaultStep>,
    pub expect: Expect,
    /// A long run with a lazily drawn schedule (`soak:`); such a plan has no `workload` or `steps`.
    pub soak: Option<Soak>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Expect {
    /// After the final heal, every peer must hold the same tree within this long.
    pub converge_within: Dur,
    /// Trees must stay identical (and counters flat) for this long to count as settled.
    pub quiet: Dur,
    /// A liar that signed two histories must be convicted by every honest neighbour within this
    /// long of its first forked write (`offender-quarantined`; the seed's §3.3 asks 10 s).
    pub quarantine_within: Dur,
    /// Limits of the growth check (`no-leak`).
    pub leak: LeakLimits,
    /// Thresholds on the run's figures (`criterion-*` checks); none by default.
    pub criteria: Criteria,
}

/// `expect.criteria`: thresholds on the run's figures, the seed's success criteria (§9.2, §9.3) as
/// checks. Each is optional: a set one becomes a `criterion-*` check, an unset one is not judged
/// (so a plan without `criteria` has exactly the checks it had before). `chaos-plans/seed-criteria.yaml`
/// sets the seed's numbers: recovery 30s, propagation p99 100ms, bytes 1.5 x the minimum, conflicts
/// 0.1 %, CPU 10 %, memory 100MB.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Criteria {
    /// Every heal (each fault's stop and the final heal-all): all peers converged within this.
    pub recovery: Option<Dur>,
    /// Quantiles of the propagation latency (a write at one peer to its content at another).
    pub propagation_p50: Option<Dur>,
    pub propagation_p95: Option<Dur>,
    pub propagation_p99: Option<Dur>,
    /// Bytes sent per operation, as a multiple of the minimum ((N-1) x the mean content size).
    pub bytes_ratio: Option<f64>,
    /// Messages sent per operation, as a multiple of the minimum (N-1).
    pub messages_ratio: Option<f64>,
    /// Conflict copies per content write, percent.
    pub conflict_pct: Option<f64>,
    /// Each peer's CPU at steady state (after the trees last agreed), percent of one core.
    pub cpu_pct: Option<f64>,
    /// Each peer's memory (anonymous: no page cache) at steady state, bytes, at its highest.
    pub memory: Option<u64>,
    /// Honest propagation p99 while a Byzantine peer floods, as a multiple of the calm p99 (plus
    /// `checker::byzantine::FLOOD_SLACK_MS`): `flood-tolerated`.
    pub flood_slowdown: Option<f64>,
}

impl Criteria {
    /// True when no threshold is set.
    pub fn is_empty(&self) -> bool {
        *self == Criteria::default()
    }
}

/// `expect.leak`: how much a peer's memory and task count may grow, judged after `warmup` over at
/// least `min_span` (shorter runs are not judged). Defaults: 2m, 5m, 5 % of the median per hour,
/// 10 tasks per hour.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LeakLimits {
    pub warmup: Dur,
    pub min_span: Dur,
    pub memory_pct_per_hour: f64,
    pub tasks_per_hour: f64,
}

impl Default for LeakLimits {
    fn default() -> Self {
        LeakLimits {
            warmup: Dur::from_ms(120_000),
            min_span: Dur::from_ms(300_000),
            memory_pct_per_hour: 5.0,
            tasks_per_hour: 10.0,
        }
    }
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
    /// Metadata only: the file's mtime set to now, content untouched.
    Touch,
    /// Metadata only: the file's permission bits flipped between 0644 and 0600.
    Chmod,
}

impl FileOpKind {
    /// Touch and chmod change no content: they are recorded as `meta` events, not writes, and a
    /// peer that turns them into versions shows up in `no-loop`.
    pub fn is_metadata(self) -> bool {
        matches!(self, FileOpKind::Touch | FileOpKind::Chmod)
    }
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
    #[serde(default)]
    pub touch: u32,
    #[serde(default)]
    pub chmod: u32,
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
    /// Where the step is in the plan (line, column), for errors found later (e.g. by the profile).
    pub at_line: (u64, u64),
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
    Byzantine(ByzantineSpec),
}

/// What a man in the middle (`link: {mitm: ...}`) does to one message of each stream.
pub const MITM_MODES: &[&str] = &["alter", "drop", "replay"];

/// The fault keys a step may carry (exactly one).
pub const FAULT_KINDS: &str = "partition, link, clock, kill, stop, pause, lock, disk, byzantine";

/// The same keys, one by one (as [`Fault::kind`] names them).
pub const FAULT_KEYS: [&str; 9] = [
    "partition",
    "link",
    "clock",
    "kill",
    "stop",
    "pause",
    "lock",
    "disk",
    "byzantine",
];

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition(_) => "partition",
            Fault::Link(_) => "link",
            Fault::Clock(_) => "clock",
            Fault::Process(p) => p.action.as_str(),
            Fault::Lock(_) => "lock",
            Fault::Disk(_) => "disk",
            Fault::Byzantine(_) => "byzantine",
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
    /// A man in the middle instead of packet faults: `alter`, `drop` or `replay` one message of
    /// every stream between `peers` and `to` on the daemon's sync port (`netfault mitm`; judged by
    /// `mitm-refused`). Alone: it cannot be combined with the packet faults above.
    pub mitm: Option<String>,
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

/// Peers turned into liars: the behaviours are written into their Byzantine control file.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ByzantineSpec {
    pub peers: Selector,
    /// Control-file lines, one per behaviour from [`BYZANTINE_BEHAVIOURS`], at least one, no
    /// repeats: the plain name, except `drop`, which carries its parameters
    /// (`drop paths=secret/** peers=p2`, see `targeted`).
    pub behaviours: Vec<String>,
}

/// What a Byzantine peer may do (`syncpeer`'s control file; see docs/PEER.md#byzantine-mode).
pub const BYZANTINE_BEHAVIOURS: [&str; 11] = [
    "tamper",
    "forge",
    "withhold",
    "flood",
    "slowloris",
    "equivocate",
    "replay",
    "drop",
    "sybil",
    "lie-timestamp",
    "lie-counter",
];

#[derive(Clone, Debug, serde::Serialize)]
pub struct PartitionSpec {
    pub shape: PartitionShape,
    pub mode: CutMode,
    pub port: Option<PortRef>,
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

mod raw;
mod resolve;
mod soak;
mod targeted;

use raw::RawPlan;
use resolve::Resolver;
pub use resolve::{parse_rate_kbit, parse_signed_ms};
pub use soak::{DurRange, Soak, SoakFault, SoakWorkload};

// ---------------------------------------------------------------------------------------------------
// Loading.

/// Reads and validates a plan file. `topologies_dir` is where named topology files live.
pub fn load(path: &Path, topologies_dir: &Path) -> Result<Plan, PlanError> {
    let text = read_yaml(path, "plan")?;
    parse(&text, path, topologies_dir)
}

/// Reads a YAML file the plan names (the plan itself, a topology): at most [`MAX_PLAN_BYTES`], UTF-8,
/// and not empty, each an error located in the file.
pub(crate) fn read_yaml(path: &Path, what: &str) -> Result<String, PlanError> {
    let at = |line, column, message: String| PlanError {
        file: path.to_path_buf(),
        line,
        column,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| at(0, 0, format!("cannot read the {what}: {e}")))?;
    if meta.len() > limits::MAX_PLAN_BYTES as u64 {
        return Err(at(
            1,
            1,
            format!(
                "the {what} is {} bytes; allowed: at most {} bytes (1 MiB)",
                meta.len(),
                limits::MAX_PLAN_BYTES
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| at(0, 0, format!("cannot read the {what}: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        let column = good.iter().rev().take_while(|b| **b != b'\n').count() as u64 + 1;
        at(
            line,
            column,
            format!("the {what} is not UTF-8 text here; allowed: UTF-8 YAML"),
        )
    })?;
    Ok(text)
}

/// Parses plan text; `path` is used for messages and to find the plan's folder.
pub fn parse(text: &str, path: &Path, topologies_dir: &Path) -> Result<Plan, PlanError> {
    let raw: RawPlan = from_yaml(text, path, "plan")?;
    Resolver {
        file: path,
        topologies_dir,
    }
    .plan(raw)
}

/// Deserializes one YAML document within the plan's YAML limits; an empty document is an error.
pub(crate) fn from_yaml<T: serde::de::DeserializeOwned>(text: &str, file: &Path, what: &str) -> Result<T, PlanError> {
    if text.lines().all(|l| {
        let t = l.trim_start_matches('\u{feff}').trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    }) {
        return Err(PlanError {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("the {what} is empty; allowed: a YAML map (see docs/PLANS.md)"),
        });
    }
    serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| yaml_error(file, text, &e))
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: limits::MAX_YAML_DEPTH,
            flow_nesting_limit: limits::MAX_YAML_DEPTH,
            max_nodes: limits::MAX_YAML_NODES,
            max_events: 4 * limits::MAX_YAML_NODES,
            max_aliases: limits::MAX_YAML_ALIASES,
            max_anchors: limits::MAX_YAML_ALIASES,
            max_documents: 1,
            max_total_scalar_bytes: limits::MAX_PLAN_BYTES,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: limits::MAX_YAML_REPLAYED,
            max_replay_stack_depth: 8,
        },
    }
}

pub use explain::{profile_yaml_error, yaml_error};
pub use image::check_image;

#[cfg(test)]
mod tests;
