//! The `leak` flavor: a deliberately leaking daemon, for proving the lab's leak verdict (issue 12:
//! "a test with a deliberately leaking peer"). Every version the node authors or applies holds
//! [`LEAK_PER_VERSION`] bytes for the rest of the process's life. Only `flavor: leak` (a plan's
//! `flavor`, or `--flavor leak`) switches it on; nothing else behaves differently. The flavor is a
//! value of the node's settings, handed to [`versions`] by the code that counts versions.

use std::sync::Mutex;

use crate::config::Flavor;

/// What each version leaks: enough that a few versions a second grow the heap by megabytes a
/// minute, far past any honest growth.
pub const LEAK_PER_VERSION: usize = 256 * 1024;

/// The leaked memory. Process-wide on purpose: a leak is memory that nothing owns and nothing
/// frees for the rest of the process's life, which is what the lab's verdict must see.
static HELD: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// Holds memory for `versions` versions when `flavor` is `leak`. The bytes are written, so the
/// pages are really resident (anonymous memory), not just reserved.
pub fn versions(flavor: Flavor, versions: u64) {
    if flavor != Flavor::Leak || versions == 0 {
        return;
    }
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..versions {
        held.push(vec![0x5a; LEAK_PER_VERSION].into_boxed_slice());
    }
}

/// Bytes held so far.
pub fn held_bytes() -> usize {
    HELD.lock().map(|h| h.len() * LEAK_PER_VERSION).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_leak_flavor_holds_memory() {
        versions(Flavor::Default, 3);
        assert_eq!(held_bytes(), 0);
        versions(Flavor::Leak, 2);
        assert_eq!(held_bytes(), 2 * LEAK_PER_VERSION);
    }
}
