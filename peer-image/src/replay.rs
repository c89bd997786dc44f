//! Byzantine `replay` (see [`crate::byzantine`]): the liar re-sends versions it held when `replay`
//! was switched on, once the path has moved on, as if they were current. They are genuine: signed
//! by their authors at the time. Nothing is kept while the peer is honest: the versions to replay
//! are taken from the index at the first request served with `replay` on, and forgotten when it
//! goes off.
//!
//! The defence is the ordering rule itself ([`crate::entry::resolve`]): a version whose vector the
//! held one dominates is ignored, so a replay can never move a path back.

use std::sync::Mutex;

use crate::entry::Entry;
use crate::index::Index;
use crate::mutex::lock;
use crate::version_vector::Causality;

/// Versions kept to replay, at most: enough for a chaos plan's files, small beside the index.
pub const REPLAY_MAX: usize = 256;

/// The versions a replaying liar re-sends.
#[derive(Default)]
pub struct Archive(Mutex<Option<Vec<Entry>>>);

impl Archive {
    /// The archive, taken by `take` (at most [`REPLAY_MAX`] versions) if it is not yet.
    pub fn get(&self, take: impl FnOnce() -> Vec<Entry>) -> Vec<Entry> {
        let mut a = lock(&self.0);
        a.get_or_insert_with(|| {
            let mut v = take();
            v.truncate(REPLAY_MAX);
            v
        })
        .clone()
    }

    /// `replay` went off: the next switch-on takes a fresh archive.
    pub fn forget(&self) {
        *lock(&self.0) = None;
    }
}

/// Of the archived versions, those whose path now holds a version that dominates them: the old
/// ones, which the liar passes off as current.
pub fn stale(archive: &[Entry], idx: &Index) -> Vec<Entry> {
    archive
        .iter()
        .filter(|old| {
            idx.get(&old.path)
                .is_some_and(|now| old.vv.compare(&now.vv) == Causality::Before)
        })
        .cloned()
        .collect()
}
