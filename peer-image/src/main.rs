//! `syncpeer`: the reference peer-to-peer file-sync daemon (work in progress).
fn main() {}
