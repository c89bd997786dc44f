//! Every limit a plan is held to, in one place, with why (docs/PLANS.md#limits lists them for users).
//!
//! The schedule-size limits are checked on the resolved plan *before* the generator materialises a
//! single operation: [`workload_ops`] and [`fault_intervals`] count what an entry will produce, in
//! saturating arithmetic, so a 24 h workload at 1000 ops/s is an error in microseconds, not a hang.

use std::time::Duration;

use super::{Fault, FaultStep, Selector, WorkloadKind, WorkloadStep};

/// The most peers one plan may start (the design's target is 100 on one machine).
pub const MAX_PEERS: usize = 200;

/// The largest plan file read. Shipped plans are under 3 KiB; a plan at the schedule limits written
/// out entry by entry stays far below this. Checked before the YAML parser sees a byte.
pub const MAX_PLAN_BYTES: usize = 1 << 20;

/// Every time in a plan (`at`, `at + duration`, a random workload's end) lies within this of the
/// start, and no duration is longer: a plan describes at most a day. This also keeps every time in
/// milliseconds far from `u64` overflow.
pub const MAX_RUN: Duration = Duration::from_secs(24 * 3600);

/// The longest soak (`soak.duration`): the "MTBF over 30 days", run as one soak. A soak's
/// schedule is generated lazily, window by window, so its length costs no memory; only the times must
/// stay far from overflow, which milliseconds over 30 days do.
pub const MAX_SOAK: Duration = Duration::from_secs(30 * 24 * 3600);

/// The shortest soak `window`: every window ends with heal-all, quiescence and the checkers, which
/// take seconds; a shorter window would be mostly healing.
pub const MIN_SOAK_WINDOW: Duration = Duration::from_secs(10);

/// The most faults a soak holds at once (`max_concurrent`) and the most entries in its fault mix:
/// each active fault is a Docker-side rule or a stopped container; more is noise, not a nemesis.
pub const MAX_SOAK_CONCURRENT: u32 = 16;
pub const MAX_SOAK_FAULTS: usize = 64;

/// The most workload operations a schedule may hold. Each is a file written on the host and two
/// history records (~300 bytes); 100 000 of them is 100 s at the highest rate on every peer, or a
/// day at ~1 op/s: more is a load test, not a chaos plan, and would only fill memory and disk.
pub const MAX_WORKLOAD_OPS: u64 = 100_000;

/// The most fault intervals (each flap, hand-over or strobe half counts one) a schedule may hold.
/// Each is a start and a stop through Docker (tens of milliseconds each): 10 000 is hours of nemesis
/// work already.
pub const MAX_FAULT_INTERVALS: u64 = 10_000;

/// The shortest `every`: a flap is two nemesis calls of tens of milliseconds each, so a faster
/// period cannot be applied on time.
pub const MIN_EVERY: Duration = Duration::from_millis(100);

/// The longest link delay, jitter or reorder delay: a packet held longer than TCP's retransmission
/// budget is a partition; write one.
pub const MAX_LINK_DELAY: Duration = Duration::from_secs(60);

/// The largest file one workload write may create (content is generated in memory).
pub const MAX_WRITE_SIZE: u64 = 1 << 30;

/// `disk_limit` bounds: the peer's tmpfs lives in host memory and `disk: {fill}` fills it; below 4 MiB
/// the peer cannot even start.
pub const MIN_DISK_LIMIT: u64 = 4 << 20;
pub const MAX_DISK_LIMIT: u64 = 4 << 30;

/// The largest clock offset: libfaketime and the peers' timestamps stay meaningful (ten years).
pub const MAX_CLOCK_OFFSET: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Random workload rate (ops per second) and pool of files.
pub const MAX_RATE: f64 = 1000.0;
pub const MAX_FILES: u32 = 100_000;

/// A clock's speed factor (libfaketime's `x` rate).
pub const MAX_CLOCK_RATE: f64 = 100.0;

/// Link bandwidth, in kbit/s: 1 kbit/s to 100 gbit/s.
pub const MAX_LINK_KBIT: u64 = 100_000_000;

/// Plan and step names (a plan's names the run folder; a step's names its faults in the journal).
pub const MAX_NAME_LEN: usize = 64;

/// Workload paths: the whole path, and each folder or file name (the common file-system limit).
pub const MAX_PATH_LEN: usize = 1024;
pub const MAX_PATH_COMPONENT: usize = 255;

/// Docker's limit on an image reference's name.
pub const MAX_IMAGE_LEN: usize = 255;

/// YAML structure: nesting, nodes and aliases. A plan at the schedule limits needs a fraction of
/// these; they make alias bombs ("billion laughs") and deep nesting an error, not a hang.
pub const MAX_YAML_DEPTH: usize = 32;
pub const MAX_YAML_NODES: usize = 100_000;
pub const MAX_YAML_ALIASES: usize = 1_000;
pub const MAX_YAML_REPLAYED: usize = 10_000;

/// How many file operations one workload entry makes on `n` peers (counted, not generated).
pub fn workload_ops(step: &WorkloadStep, n: usize) -> u64 {
    match &step.kind {
        WorkloadKind::Single { .. } => selected(&step.peers, n),
        // The generator makes floor(duration * rate) ops; the float is bounded by the checks on
        // duration (<= MAX_RUN) and rate (<= MAX_RATE), so the cast cannot wrap.
        WorkloadKind::Random { duration, rate, .. } => (duration.0.as_secs_f64() * rate).floor() as u64,
    }
}

/// The most fault intervals one soak window can make, counted from the plan: every start the
/// stagger allows in a window, each with its most intervals (`every` within its longest duration).
/// A window's faults are drawn when the window begins (the workload is drawn op by op), so this
/// bounds what is held at once.
pub fn soak_window_intervals(window: Duration, stagger_min: Duration, most_per_fault: u64) -> u64 {
    let starts = u64::try_from(window.as_millis() / stagger_min.as_millis().max(1)).unwrap_or(u64::MAX);
    starts.saturating_add(1).saturating_mul(most_per_fault)
}

/// How many fault intervals a step makes: one, or one per flap (two per strobe period).
pub fn fault_intervals(step: &FaultStep) -> u64 {
    let (Some(every), Some(duration)) = (step.every, step.duration) else {
        return 1;
    };
    let every = every.0.as_millis().max(1);
    let periods = u64::try_from(duration.0.as_millis().div_ceil(every)).unwrap_or(u64::MAX);
    match &step.fault {
        Fault::Clock(_) => periods.saturating_mul(2),
        _ => periods,
    }
}

/// How many peers a selector names (seeded selectors count what they will draw).
fn selected(sel: &Selector, n: usize) -> u64 {
    let k = match sel {
        Selector::All => n,
        Selector::Peers(p) => p.len(),
        Selector::One => 1,
        Selector::Minority => (n.saturating_sub(1) / 2).max(1),
        Selector::Majority => n / 2 + 1,
        Selector::Random(k) => (*k).min(n),
    };
    k as u64
}
