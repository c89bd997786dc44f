//! Soaks: long runs cut into windows that are each healed and judged alone.
//!
//! * [`schedule`]: a plan's `soak:` section drawn lazily, window by window, from the seed;
//! * [`baseline`]: what a window starts from (the trees the previous window ended with), as
//!   operations the checkers can order the window's own after;
//! * [`runner`]: plays each window on one cluster, heals, judges, records the window's verdict,
//!   compresses the window's files, and goes on (or stops at the first failure);
//! * [`summary`]: the windows' verdicts folded into the soak's checks, figures and MTBF.

pub mod baseline;
pub mod runner;
pub mod schedule;
pub mod summary;

pub use schedule::{SoakSchedule, Window};
