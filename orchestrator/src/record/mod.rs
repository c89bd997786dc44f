//! What a run records, the floor under both the collectors that write it (workload, nemesis, monitor,
//! scraper) and the checkers and report that read it:
//!
//! * [`history`]: every event of a run, streamed to `history.jsonl`;
//! * [`observations`]: when each content appeared at each peer (`observations.jsonl`);
//! * [`samples`]: metrics and container counters, raw and as roles (`metrics.jsonl`);
//! * [`run_folder`]: where each peer's folders are;
//! * [`recipe`]: what a replay needs (plan, seed, image, profile, the peers' keys);
//! * [`segment`]: the folder those streams go to (a soak's window), and reading them back compressed;
//! * [`beneath`]: file operations in a peer's folder that never follow its symlinks out of it.

pub mod beneath;
pub mod history;
pub mod observations;
pub mod recipe;
pub mod run_folder;
pub mod samples;
pub mod segment;
