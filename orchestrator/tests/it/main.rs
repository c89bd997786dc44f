//! Integration tests of the `chaos` binary, one test binary with a module per area (ripgrep's habit).
//! Tests that need Docker run for real; without Docker they fail under `CI=true` and skip elsewhere,
//! saying why.

// Plans rejected before anything starts: no Docker needed.
mod bad_plans;
// Mutated plans through parse, resolve, profile check and generator: no panic, hang or bare error.
mod fuzz_plans;
// `chaos plan`: the seeded schedule printed, nothing started.
mod plan_cmd;
// The walking skeleton on real containers: smoke plan, SIGKILL + `chaos clean`.
mod skeleton;
// A started cluster with its nemesis, for measuring faults.
mod bed;
// Clock faults read back from the peers' own clocks.
mod clock;
// Issue 11: clock skew for any binary (static musl, Go) through the vDSO, from the fault agent.
mod clock_vdso;
// Faults measured between real containers.
mod faults;
// Issue 16: container counters from the kernel's files, against Docker's stats API.
mod container_stats;
// Issue 16: the nemesis's shell per fault agent, against a plain exec and a replaced agent.
mod agent_shell;
// Issue 6: the legacy plans, valid with the default flavor, caught with the legacy one.
mod legacy;
// Reports opened in headless Chromium: charts rendered, no console errors, a screenshot.
mod report_render;
// Shipped plans with process, lock and disk faults, run for real.
mod plans;
// Issue 13: `chaos replay` repeats a run with its seed, keys and image.
mod replay;
// Issue 13: several runs started at once, and their verdicts on a shared, loaded host.
mod concurrent;
// Issue 12: a deliberately leaking daemon is caught by the growth check, an honest one is not.
mod leak;
// Syncthing, the second daemon under test, through its shipped profile.
mod syncthing;
// Issue 13: symlinks planted by peers never lead the orchestrator out of the run folder.
mod symlink_escape;
// Issue 12: what a run folder keeps, result.json's provenance, chaos.log, `chaos prune`.
mod retention;
// Issue 12: `chaos soak`: windows judged alone, the seeded schedule played, a failed window replayed.
mod soak;
// Issue 15: syncpeer's mutants, each caught by the check that proves its invariant; the honest daemon valid.
mod mutants;
mod util;
