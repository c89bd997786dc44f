//! [`lock`]: the daemon's std mutexes are locked through it, ignoring poisoning, so that a task
//! that panicked while holding one does not wedge every other task. It sits below every module
//! that holds shared state (the node, the Byzantine switch), so that each can use it.

use std::sync::{Mutex, MutexGuard};

/// Locks a std mutex, ignoring poisoning (a panicked task must not wedge the daemon).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
