//! # syftchaos: a chaos-testing lab for peer-to-peer file sync
//!
//! The data flow of a run, one module per role (Jepsen's separation):
//!
//! ```text
//! plan (YAML) -> generator -> workload + nemesis + scraper -> history -> checkers -> report
//! ```
//!
//! * [`plan`]: the YAML a user writes, validated into data (file:line:column errors).
//! * [`topology`], [`partition`]: who knows whom, and which links a partition cuts, as pure data.
//! * [`generator`]: the seeded schedule of file operations and fault starts/stops.
//! * [`docker`]: the only module that talks to Docker (through bollard).
//! * [`cluster`]: one run's network and peer containers, and their teardown.
//! * [`peer_profile`]: what the orchestrator knows about `syncpeer` (config, keys, ports).
//! * [`workload`], [`nemesis`]: apply file operations and faults.
//! * [`history`]: every event of a run, streamed to `history.jsonl`.
//! * [`tree`]: a peer's file tree as (path, size, hash).
//! * [`monitor`]: reads every tree a few times a second: convergence, and when content appeared where.
//! * [`scraper`]: every peer's `/metrics` and container stats, streamed to `metrics.jsonl`.
//! * [`checker`]: pure verdicts over history and trees.
//! * [`report`]: `result.json`, `junit.xml`, `index.html`.
//! * [`run`]: a whole run, start to teardown.

pub mod checker;
pub mod cluster;
pub mod docker;
pub mod generator;
pub mod history;
pub mod monitor;
pub mod nemesis;
pub mod partition;
pub mod plan;
pub mod profile;
pub mod report;
pub mod run;
pub mod run_folder;
pub mod scraper;
pub mod topology;
pub mod tree;
pub mod workload;
