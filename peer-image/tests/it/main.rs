//! Integration tests: real `syncpeer` processes on loopback. One binary, a module per area.

#[allow(dead_code)] // helpers used by only some areas
mod util;

// Two peers: create, update, delete, and basic daemon behaviour (config errors, shutdown).
mod basic;
