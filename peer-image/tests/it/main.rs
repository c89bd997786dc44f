//! Integration tests: real `syncpeer` processes on loopback. One binary, a module per area.

#[allow(dead_code)] // helpers used by only some areas
mod util;

// Two peers: create, update, delete, and basic daemon behaviour (config errors, shutdown).
mod basic;
// Triangle (no loop) and line (multi-hop) topologies.
mod topology;
// Concurrent writers and conflict copies.
mod conflict;
// Out-of-order delivery and replays, from a fake peer.
mod ordering;
// Tampered content, forged signatures, untrusted authors, quarantine.
mod byzantine;
mod fake;
// A real syncpeer made a liar by its Byzantine control file (tamper, forge, withhold, flood).
mod byzantine_mode;
// The liars of issue 14 (equivocate, replay, drop) and the honest peers' defences.
mod liars;
// SIGKILL and restart in the middle of a sync.
mod crash;
// Stale, corrupt and long-held lock files.
mod locks;
// Config errors, keygen, status fields.
mod daemon;
// Resuming a broken transfer.
mod resume;
// Disk damage (mtime kept) repaired from a neighbour, never spread.
mod scrub;
// The legacy flavor's seed bugs on real processes (a zombie), absent from the default flavor.
mod legacy;
// A hung neighbour (partition-like) and the heal.
mod partition;
// Hostile neighbours: unsigned data, symlinks in the sync folder (issue 13).
mod hostile;
// Local safe-saves racing with received versions of the same file (never overwritten).
mod safesave;
// The sync port's mutual TLS: plain HTTP, strangers, impostors and lying sender headers (issue 14).
mod transport;
