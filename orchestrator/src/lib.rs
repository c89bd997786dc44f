//! # syftchaos: a chaos-testing lab for peer-to-peer file sync
//!
//! The data flow of a run, one module per role (Jepsen's separation):
//!
//! ```text
//! plan (YAML) -> generator -> workload + nemesis + scraper -> history -> checkers -> report
//! ```
//!
//! * [`plan`]: the YAML a user writes, validated into data (file:line:column errors).
//! * [`profile`]: the daemon under test as data (`peer-image/profiles/<name>/profile.yaml`): image,
//!   files, readiness, identities, introductions, conventions, counters and the faults it can take.
//! * [`topology`], [`partition`]: who knows whom, and which links a partition cuts, as pure data.
//! * [`generator`]: the seeded schedule of file operations and fault starts/stops.
//! * [`soak`]: a soak plan's schedule, drawn lazily window by window from the seed, and its runner:
//!   play a window, heal, judge it alone, go on.
//! * [`docker`]: the only module that talks to Docker (through bollard).
//! * [`cluster`]: one run's network, peer containers and their fault-agent sidecars, acting on the
//!   profile (readiness, identities, introductions); and their teardown.
//! * [`workload`], [`nemesis`]: apply file operations and faults.
//! * [`monitor`]: reads every tree a few times a second: convergence, and when content appeared where.
//! * [`watcher`]: inotify on the host side of every sync folder: when content appeared, to the ms.
//! * [`scraper`]: every peer's metrics (when its profile has them) and container stats
//!   ([`kernel_stats`]: read from the kernel's cgroup files, the stats API where those are out of reach).
//! * [`record`]: what a run records (history, observations, metric samples, the run folder's layout):
//!   the floor under the collectors above and the checkers and report below.
//! * [`tree`]: a peer's file tree as (path, size, hash).
//! * [`checker`]: pure verdicts over the records and the final trees.
//! * [`report`]: `result.json`, `junit.xml`, `index.html`.
//! * [`run`]: a whole run, start to teardown, through a [`session`] (the phases a run and a soak
//!   window share); [`retention`]: what a run folder keeps, and rotation.
//! * [`console`]: what `chaos` prints to stderr, kept in the run folder as `chaos.log`.

/// `chaos`'s version (the crate's), recorded in every `result.json`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit `chaos` was built from (`build.rs`), or `unknown`.
pub const COMMIT: &str = env!("SYFTCHAOS_COMMIT");

pub mod checker;
pub mod cluster;
pub mod console;
pub mod docker;
pub mod generator;
pub mod kernel_stats;
pub mod listing;
pub mod monitor;
pub mod nemesis;
pub mod partition;
pub mod plan;
pub mod profile;
pub mod record;
pub mod report;
pub mod retention;
pub mod run;
pub mod scraper;
pub mod session;
pub mod soak;
pub mod topology;
pub mod tree;
pub mod watcher;
pub mod workload;
