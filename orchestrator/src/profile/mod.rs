//! Peer profiles: the daemon under test as data (`peer-image/profiles/<name>/profile.yaml`).
//!
//! A profile says how to get the daemon's image (a tag, and a script that builds it offline), how to
//! start it (command, environment, user, where its data and sync folders are, its ports), which files
//! each peer gets (templates over the cluster's [`Facts`]), how the peers learn each other's identities,
//! when a peer is ready, which calls introduce the peers to each other after start, which files in the
//! sync folder are the daemon's own, how it names conflict copies, which Prometheus counters mean what,
//! which log lines mean a crash, and which fault kinds it can take. `syncpeer` and Syncthing are two
//! profiles; a user's daemon is a third, with no Rust written (`docs/PEER-CONTRACT.md`).
//!
//! This module only reads and validates ([`load`]); [`crate::cluster`] acts on a profile.

mod raw;
mod resolve;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use template::{Facts, PeerFacts, PlanFacts};

use crate::plan::PlanError;

/// The profile a plan uses when it names none.
pub const DEFAULT_PROFILE: &str = "syncpeer";

/// A validated profile. Strings called templates are minijinja sources, checked at load time.
#[derive(Clone, Debug)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// The `profile.yaml` it was read from, and its folder (build scripts and templates are there).
    pub source: PathBuf,
    pub dir: PathBuf,
    pub image: String,
    /// A command run in the profile's folder (`sh -c`) to build `image` when it is missing.
    pub build: Option<String>,
    /// Templates; `None`: the image's own.
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// Name -> template.
    pub env: BTreeMap<String, String>,
    /// The uid and gid the daemon runs as: files the orchestrator writes into its folders get them.
    pub user: Option<(u32, u32)>,
    /// Where the peer's host folder is mounted in the container.
    pub data_dir: String,
    /// The sync folder, relative to `data_dir` (`sync`, or `.` when they are the same).
    pub sync_rel: String,
    pub ports: BTreeMap<String, u16>,
    /// Kernel settings of the peer's network namespace, set when its container is created (e.g. a
    /// lower TCP retransmission ceiling, so reconnects after a heal are fast).
    pub sysctls: BTreeMap<String, String>,
    pub files: Vec<FileSpec>,
    pub identity: IdentitySource,
    pub ready: Probe,
    pub ready_timeout: Duration,
    pub introduce: Vec<Action>,
    /// The daemon's own files in the sync folder, as written (globs over paths relative to it).
    pub ignore: Vec<String>,
    pub conventions: Conventions,
    pub metrics: Option<Metrics>,
    pub status: Option<StatusProbe>,
    /// Where the daemon lists the proofs of misbehaviour it holds (`None`: it keeps none).
    pub evidence: Option<EvidenceProbe>,
    /// Fault kinds (as plans name them: partition, link, clock, kill, stop, pause, lock, disk,
    /// byzantine) this daemon can take.
    pub faults: BTreeSet<String>,
    pub clock: ClockMethod,
    /// The Byzantine control file, relative to `data_dir` (only `syncpeer` has one).
    pub byzantine_file: Option<String>,
    pub locks: Option<LockFormat>,
    /// Variants of the daemon a plan may pick with `flavor` (`plan.flavor` in templates); `default`
    /// always.
    pub flavors: Vec<String>,
}

/// One file rendered into each peer's host folder before it starts.
#[derive(Clone, Debug)]
pub struct FileSpec {
    /// Relative to the peer's data folder.
    pub path: String,
    pub template: String,
    pub mode: u32,
}

/// How peers learn each other's identities (`peer.id` in templates).
#[derive(Clone, Debug)]
pub enum IdentitySource {
    /// None needed: `peer.id` is the peer's name.
    None,
    /// The orchestrator makes ed25519 keys (`key_hex` in templates; `id` is the public key in hex).
    HostEd25519,
    /// Read from each peer after start: the JSON pointer in an HTTP answer.
    Http(HttpCall),
    /// Read from each peer after start: an exec's trimmed standard output.
    Exec(Vec<String>),
}

/// An HTTP request to a peer, with templated path, headers and body.
#[derive(Clone, Debug)]
pub struct HttpCall {
    pub method: String,
    pub port: u16,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    /// The status the answer must have (default: any 2xx).
    pub status: Option<u16>,
    /// A JSON pointer into the answer: the value read (identity) or compared (`equals`).
    pub pointer: Option<String>,
    /// A template the value at `pointer` must equal (readiness).
    pub equals: Option<String>,
}

/// A readiness probe: polled until it passes or `ready_timeout` ends; never a fixed sleep.
#[derive(Clone, Debug)]
pub enum Probe {
    Http(HttpCall),
    Tcp(u16),
    Exec(Vec<String>),
}

/// A step of the introductions after start.
#[derive(Clone, Debug)]
pub enum Action {
    Http(HttpCall),
    Exec(Vec<String>),
}

/// How the daemon names things the checkers must recognise in its tree.
#[derive(Clone, Debug, Default)]
pub struct Conventions {
    /// Names a conflict copy's original path: groups `stem` and `ext` (original = stem + ext), and
    /// optionally `author` (a prefix of the writer's identity) and `hash` (a prefix of the content hash).
    pub conflicts: Option<regex::Regex>,
    /// Log patterns that mean the daemon crashed.
    pub crash: Vec<regex::Regex>,
}

/// A conflict copy's path, split up by the profile's `conflicts` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictName {
    /// The path the copy is a copy of: `stem` + `ext`.
    pub origin: String,
    /// A prefix of the writer's identity, when the daemon names it.
    pub author: Option<String>,
    /// A prefix of the content hash, when the daemon names it.
    pub hash: Option<String>,
}

impl Conventions {
    /// The conflict copy `path` is, if it is one.
    pub fn conflict(&self, path: &str) -> Option<ConflictName> {
        let c = self.conflicts.as_ref()?.captures(path)?;
        let group = |n: &str| c.name(n).map(|m| m.as_str().to_string());
        // Syncthing names a dotfile's copy `.sync-conflict-...-ID.hidden`: an empty stem, the whole
        // name in `ext`. Whatever the split, the original's file name must not be empty.
        let origin = format!(
            "{}{}",
            group("stem").unwrap_or_default(),
            group("ext").unwrap_or_default()
        );
        if origin.is_empty() || origin.ends_with('/') {
            return None;
        }
        Some(ConflictName {
            origin,
            author: group("author"),
            hash: group("hash"),
        })
    }

    /// The first log line that means a crash.
    pub fn crash_line<'a>(&self, log: &'a str) -> Option<&'a str> {
        log.lines().find(|l| self.crash.iter().any(|re| re.is_match(l)))
    }
}

/// Prometheus counters and what they mean: role -> series selector.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub port: u16,
    pub path: String,
    pub counters: BTreeMap<Role, Series>,
}

/// What a counter means to the checkers. A checker reads roles, never a daemon's metric names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Protocol messages and bytes that carry changes (must stay flat once the trees agree).
    MessagesSent,
    MessagesReceived,
    BytesSent,
    BytesReceived,
    /// Periodic exchanges that go on when nothing changes (anti-entropy digests, pings).
    BackgroundMessagesSent,
    BackgroundBytesSent,
    /// Remote versions written into the peer's tree.
    VersionsApplied,
    /// Versions the peer authored from changes it saw in its own folder.
    LocalChanges,
    /// Conflict copies the peer made.
    Conflicts,
    /// Data refused from neighbours (bad signature, bad hash...), by label `reason`.
    Rejections,
    /// Neighbours held in quarantine now (a gauge).
    Quarantined,
    /// Proofs of equivocation the peer found or was given and checked (a neighbour that signed two
    /// different statements under one counter).
    Equivocations,
    /// Requests a Byzantine `sybil` liar sent under identities it made up, by label `outcome`
    /// (`refused`, `answered`): only the liar counts them.
    SybilRequests,
    /// From Docker, for every daemon: the container's network counters.
    NetTxBytes,
    NetTxPackets,
    NetRxBytes,
}

impl Role {
    pub const ALL: [Role; 16] = [
        Role::MessagesSent,
        Role::MessagesReceived,
        Role::BytesSent,
        Role::BytesReceived,
        Role::BackgroundMessagesSent,
        Role::BackgroundBytesSent,
        Role::VersionsApplied,
        Role::LocalChanges,
        Role::Conflicts,
        Role::Rejections,
        Role::Quarantined,
        Role::Equivocations,
        Role::SybilRequests,
        Role::NetTxBytes,
        Role::NetTxPackets,
        Role::NetRxBytes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::MessagesSent => "messages_sent",
            Role::MessagesReceived => "messages_received",
            Role::BytesSent => "bytes_sent",
            Role::BytesReceived => "bytes_received",
            Role::BackgroundMessagesSent => "background_messages_sent",
            Role::BackgroundBytesSent => "background_bytes_sent",
            Role::VersionsApplied => "versions_applied",
            Role::LocalChanges => "local_changes",
            Role::Conflicts => "conflicts",
            Role::Rejections => "rejections",
            Role::Quarantined => "quarantined",
            Role::Equivocations => "equivocations",
            Role::SybilRequests => "sybil_requests",
            Role::NetTxBytes => "net_tx_bytes",
            Role::NetTxPackets => "net_tx_packets",
            Role::NetRxBytes => "net_rx_bytes",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Roles a profile may map to its own metrics (the `net_*` ones come from Docker).
    pub fn from_metrics(self) -> bool {
        !matches!(self, Role::NetTxBytes | Role::NetTxPackets | Role::NetRxBytes)
    }
}

/// A metric name, and label values a sample must have (`only`) or must not have (`except`).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub only: BTreeMap<String, String>,
    pub except: BTreeMap<String, String>,
}

impl Series {
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        name == self.name
            && self.only.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.except.iter().all(|(k, v)| labels.get(k) != Some(v))
    }
}

impl Metrics {
    /// A scrape (series key -> value) as role-keyed values: `role{labels}` -> value, so a checker
    /// can still tell label values apart (e.g. rejections by reason).
    pub fn roles(&self, values: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (key, v) in values {
            let (name, labels) = split_key(key);
            for (role, series) in &self.counters {
                if series.matches(name, &labels) {
                    let rest = key.strip_prefix(name).unwrap_or("");
                    *out.entry(format!("{}{rest}", role.as_str())).or_default() += v;
                }
            }
        }
        out
    }

    pub fn has(&self, role: Role) -> bool {
        self.counters.contains_key(&role)
    }
}

/// A series key `name{a="x",b="y"}` split into the name and its labels.
pub fn split_key(key: &str) -> (&str, BTreeMap<String, String>) {
    let Some((name, rest)) = key.split_once('{') else {
        return (key, BTreeMap::new());
    };
    let inner = rest.strip_suffix('}').unwrap_or(rest);
    let mut labels = BTreeMap::new();
    let mut s = inner;
    while let Some((k, after)) = s.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        labels.insert(k.trim_start_matches(',').to_string(), after[..end].to_string());
        s = &after[end + 1..];
    }
    (name, labels)
}

/// Where the daemon tells its own view (used to measure clock faults), when it has one.
#[derive(Clone, Debug)]
pub struct StatusProbe {
    pub http: HttpCall,
    /// A JSON pointer to the daemon's wall clock in ms since the epoch.
    pub wall_clock_ms: Option<String>,
}

/// Where a daemon lists its convictions: the proofs it holds that a peer lied (for syncpeer, two
/// statements signed under one counter). Fetched from every peer when a run ends, kept in the run
/// folder, and judged by `offender-quarantined`.
#[derive(Clone, Debug)]
pub struct EvidenceProbe {
    pub http: HttpCall,
    /// JSON pointer to the array of proofs in the answer.
    pub list: String,
    /// Pointers into one proof: the offender (a peer name or the daemon's id for it), when this
    /// peer convicted it (wall-clock ms since the epoch), and the statements that prove it (an array).
    pub offender: String,
    pub detected_ms: String,
    pub statements: String,
}

impl EvidenceProbe {
    /// The convictions in one answer of the daemon; `None` when it is not JSON or has no list there.
    pub fn convictions(&self, body: &str) -> Option<Vec<Conviction>> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let list = v.pointer(&self.list)?.as_array()?;
        Some(
            list.iter()
                .map(|proof| Conviction {
                    offender: match proof.pointer(&self.offender) {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    },
                    detected_ms: proof.pointer(&self.detected_ms).and_then(|t| t.as_i64()),
                    statements: proof
                        .pointer(&self.statements)
                        .and_then(|s| s.as_array())
                        .map_or(0, |a| a.len()),
                })
                .collect(),
        )
    }
}

/// One proof a peer holds, as its profile's `evidence` pointers read it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Conviction {
    pub offender: String,
    /// The peer's wall clock when it convicted (ms since the epoch).
    pub detected_ms: Option<i64>,
    /// How many statements it kept as proof (two for an equivocation).
    pub statements: usize,
}

/// How clock faults reach the daemon.
#[derive(Clone, Debug, PartialEq)]
pub enum ClockMethod {
    /// libfaketime from the tools image, preloaded by the orchestrator (a dynamically linked daemon
    /// that reads the clock through glibc).
    Libfaketime,
    /// `netfault clock` in the fault agent patches the daemon's vDSO through ptrace (any binary:
    /// glibc, static musl, Go); the agent then shares the peer's PID namespace with `SYS_PTRACE`.
    /// Offsets only (no `rate`), x86_64 only (docs/FAULTS.md).
    Vdso,
    /// Clock faults are refused, for this reason.
    Unsupported(String),
}

impl ClockMethod {
    /// The name a profile's `clock` and `--clock` use (`none` when clock faults are refused).
    pub fn name(&self) -> &'static str {
        match self {
            ClockMethod::Libfaketime => "libfaketime",
            ClockMethod::Vdso => "vdso",
            ClockMethod::Unsupported(_) => "none",
        }
    }

    /// A mechanism named on the command line or in a recipe: `libfaketime` or `vdso`.
    pub fn parse(name: &str) -> Option<ClockMethod> {
        match name {
            "libfaketime" => Some(ClockMethod::Libfaketime),
            "vdso" => Some(ClockMethod::Vdso),
            _ => None,
        }
    }
}

impl Profile {
    /// The profile with its clock mechanism replaced (`chaos run --clock`): the same daemon built
    /// another way (static, say) needs vDSO patching where the profile says libfaketime. A profile
    /// that refused clock faults takes them once a mechanism is given.
    pub fn with_clock(mut self, method: ClockMethod) -> Profile {
        if !matches!(method, ClockMethod::Unsupported(_)) {
            self.faults.insert("clock".into());
        }
        self.clock = method;
        self
    }
}

/// A daemon's lock files, for `lock` faults: a folder, a file name and the contents of a stale lock
/// (templates with `path`, `path_hash` (BLAKE3 hex of the path) and `now_ms`).
#[derive(Clone, Debug)]
pub struct LockFormat {
    /// Relative to the data folder.
    pub dir: String,
    pub name: String,
    pub stale: String,
}

impl Profile {
    /// Why this profile cannot take a fault kind, or `None` when it can.
    pub fn refuses(&self, kind: &str) -> Option<String> {
        // A clock the profile says cannot be skewed: its reason says more than the list of kinds.
        if kind == "clock"
            && let ClockMethod::Unsupported(why) = &self.clock
        {
            return Some(format!(
                "the peer profile `{}` cannot take clock faults: {why}; allowed: the faults it declares ({})",
                self.name,
                self.faults
                    .iter()
                    .map(String::as_str)
                    .filter(|k| *k != "clock")
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !self.faults.contains(kind) {
            let can: Vec<&str> = self.faults.iter().map(String::as_str).collect();
            return Some(format!(
                "the peer profile `{}` cannot take `{kind}` faults; allowed: {} (see {})",
                self.name,
                can.join(", "),
                self.source.display()
            ));
        }
        None
    }
}

/// Why the `vdso` clock mechanism cannot take a clock change on an engine of architecture `arch`
/// (the orchestrator's, which is the engine's on one machine), or `None`.
pub fn vdso_refuses(method: &ClockMethod, change: &crate::plan::ClockChange, arch: &str) -> Option<String> {
    if *method != ClockMethod::Vdso {
        return None;
    }
    if arch != "x86_64" {
        return Some(format!(
            "clock faults by vDSO patching (`clock: vdso`) are implemented for x86_64 only, and this is {arch}"
        ));
    }
    if let crate::plan::ClockChange::Rate(_) = change {
        return Some(
            "clock faults by vDSO patching (`clock: vdso`) add a constant offset and have no `rate`; allowed: `offset` or `strobe`"
                .into(),
        );
    }
    None
}

/// Where profiles live: `peer-image/profiles/` beside the plan's folder, else under the current folder.
pub fn profiles_dir_for(plan: &Path) -> PathBuf {
    let beside = plan.parent().unwrap_or(Path::new(".")).join("../peer-image/profiles");
    if beside.is_dir() {
        beside
    } else {
        PathBuf::from("peer-image/profiles")
    }
}

/// Loads profile `name_or_dir`: a name under `profiles_dir`, or a folder holding `profile.yaml`.
pub fn load(name_or_dir: &str, profiles_dir: &Path) -> Result<Profile, PlanError> {
    let given = Path::new(name_or_dir);
    let dir = if name_or_dir.contains('/') || given.join("profile.yaml").is_file() {
        given.to_path_buf()
    } else {
        profiles_dir.join(name_or_dir)
    };
    let source = dir.join("profile.yaml");
    let text = std::fs::read_to_string(&source).map_err(|e| {
        let known = known_profiles(profiles_dir);
        PlanError {
            file: source.clone(),
            line: 0,
            column: 0,
            message: format!(
                "cannot read the peer profile `{name_or_dir}`: {e}; allowed: a folder with a profile.yaml, or one of the profiles in {}: {}",
                profiles_dir.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        }
    })?;
    parse(&text, &source)
}

/// Parses profile text; `source` names the file in messages and its folder holds templates.
pub fn parse(text: &str, source: &Path) -> Result<Profile, PlanError> {
    let raw: raw::RawProfile =
        serde_saphyr::from_str(text).map_err(|e| crate::plan::profile_yaml_error(source, text, &e))?;
    resolve::Resolver { file: source }.profile(raw)
}

/// The profile names under `dir` (folders with a `profile.yaml`).
pub fn known_profiles(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("profile.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Checks a plan's fault steps against what the profile can take, and binds the port names its
/// partitions use (`port: sync`) to the profile's ports; the error points at the step (or, for the
/// flavor, at the plan's `peer`).
pub fn check_plan(plan: &mut crate::plan::Plan, profile: &Profile) -> Result<(), PlanError> {
    let source = plan.source.clone();
    let at = |(line, column): (u64, u64), message: String| PlanError {
        file: source.clone(),
        line,
        column,
        message,
    };
    // A soak's fault templates are steps too: the same ports are bound, the same faults refused.
    let soak_steps = plan
        .soak
        .iter_mut()
        .flat_map(|s| s.faults.iter_mut().map(|f| &mut f.step));
    for step in plan.steps.iter_mut().chain(soak_steps) {
        if let crate::plan::Fault::Partition(spec) = &mut step.fault
            && let Some(crate::plan::PortRef::Named(name)) = &spec.port
        {
            let Some(&n) = profile.ports.get(name) else {
                let known: Vec<&str> = profile.ports.keys().map(String::as_str).collect();
                return Err(at(
                    step.at_line,
                    format!(
                        "step `{}`: no port named `{name}` in the peer profile `{}`; allowed: a port number or one of {}",
                        step.name,
                        profile.name,
                        known.join(", ")
                    ),
                ));
            };
            spec.port = Some(crate::plan::PortRef::Number(n));
        }
        if let Some(why) = profile.refuses(step.fault.kind()) {
            return Err(at(step.at_line, format!("step `{}`: {why}", step.name)));
        }
        if let crate::plan::Fault::Link(spec) = &step.fault
            && spec.params.mitm.is_some()
            && !profile.ports.contains_key("sync")
        {
            return Err(at(
                step.at_line,
                format!(
                    "step `{}`: a man in the middle sits on the daemon's sync port, and the peer profile `{}` names no `sync` port; allowed: a profile with `container.ports.sync`",
                    step.name, profile.name
                ),
            ));
        }
        if let crate::plan::Fault::Clock(spec) = &step.fault
            && let Some(why) = vdso_refuses(&profile.clock, &spec.change, std::env::consts::ARCH)
        {
            return Err(at(step.at_line, format!("step `{}`: {why}", step.name)));
        }
    }
    if !profile.flavors.contains(&plan.flavor) {
        return Err(at(
            plan.peer_at,
            format!(
                "flavor `{}` is not one of the peer profile `{}`'s flavors; allowed: {}",
                plan.flavor,
                profile.name,
                profile.flavors.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
